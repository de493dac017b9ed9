"""client.tune(): a Python function shipped to trial pods in a ConfigMap, and run locally."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import tune_helpers
import tune_objectives
from harness.fixtures import harness_env
from harness.studies import TRIAL_IMAGE
from kubetune import Client
from kubetune.errors import SpecChangeRefused
from tune_cluster import code_mount_turn

#: The first three trials: after two, the median pruner stops the third (x=0.9) at step 0.
WARM_START = [{"x": 0.1}, {"x": 0.2}, {"x": 0.9}]
TUNE_OPTIONS: dict[str, Any] = {
    # 0.1 is the lower bound, so the warm-start set x=0.1 stays the best whatever is sampled.
    "search_space": {"x": (0.1, 1.0)},
    "parallelism": 1,
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "median", "args": {"n_startup_trials": 2}},
    "modules": [tune_helpers],
    "warm_start": WARM_START,
}


def check_pruning(rows: list[Any]) -> None:
    states = {r.number: r.state for r in rows}
    assert [r.params["x"] for r in rows[:3]] == [0.1, 0.2, 0.9]
    assert states[0] == states[1] == "COMPLETE"
    assert states[2] == "PRUNED"


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_tune_ships_the_function_to_the_pods_and_prunes(
    cluster: Any, client: Any, kube: Any
) -> None:
    with code_mount_turn():
        ships_the_function_to_the_pods_and_prunes(cluster, client, kube)


def ships_the_function_to_the_pods_and_prunes(cluster: Any, client: Any, kube: Any) -> None:
    cluster.start()
    study = client.tune(
        tune_objectives.objective,
        max_trials=5,
        image=f"{TRIAL_IMAGE}:test",
        trials_per_pod=20,
        resources={"cpu": "500m", "memory": "1Gi"},
        **TUNE_OPTIONS,
    )
    name = study.metadata.name
    uid = study.metadata.model_extra["uid"]
    configmap = kube.get("configmaps", f"{name}-code", "default")
    assert set(configmap["data"]) == {"tune_objectives.py", "tune_helpers.py"}
    assert configmap["metadata"]["ownerReferences"] == [
        {"apiVersion": "kubetune.io/v1alpha1", "kind": "Study", "name": name, "uid": uid}
    ]

    done = client.wait(name, timeout=120, progress=False)
    assert done.status is not None and done.status.phase == "Succeeded"
    rows = client.trials(name)
    check_pruning(rows)
    # The pods imported the shipped copy, from the ConfigMap's mount.
    assert all(r.pod and r.pod.startswith(f"{name}-trial-") for r in rows)
    sources = {t.user_attrs["source"] for t in client.optuna_study(name).trials}
    assert sources == {"/kubetune/code/tune_objectives.py"}
    assert client.best_params(name) == {"x": 0.1}
    pod_spec = study.spec.trial
    assert {e.name: e.value for e in pod_spec.env}["PYTHONPATH"] == "/kubetune/code"
    assert pod_spec.resources.requests == {"cpu": "500m", "memory": "1Gi"}

    # The same code again continues the same study; other code under its name is refused.
    again = client.tune(
        tune_objectives.objective,
        max_trials=5,
        image=f"{TRIAL_IMAGE}:test",
        trials_per_pod=20,
        resources={"cpu": "500m", "memory": "1Gi"},
        **TUNE_OPTIONS,
    )
    assert again.metadata.name == name
    with pytest.raises(SpecChangeRefused, match="other code"):
        client.tune(
            tune_objectives.objective, {"x": (0.0, 1.0)}, name=name, image=f"{TRIAL_IMAGE}:test"
        )


def test_tune_locally(storage_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # worker logs go to ./.kubetune/logs
    study = Client().tune(
        tune_objectives.objective,
        max_trials=5,
        local=True,
        storage_url=storage_url,
        progress=False,
        **TUNE_OPTIONS,
    )
    assert study.status is not None and study.status.phase == "Succeeded"
    assert study.status.trials.complete + study.status.trials.pruned == 5
    assert study.status.best_trial is not None and study.status.best_trial.params == {"x": 0.1}
    # What Optuna users read after study.optimize, and what kubetune run writes.
    assert study.best_params == {"x": 0.1} and study.best_value == study.status.best_trial.value
    assert [r.number for r in study.trials] == [0, 1, 2, 3, 4]
    assert study.best_params_file == Path("best_params.json")
    assert json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8")) == {"x": 0.1}
    import optuna
    from kubetune.engine.trials import records

    optuna_study = optuna.load_study(study_name=study.metadata.name, storage=storage_url)
    rows = records(optuna_study.trials)
    check_pruning(rows)
    assert all(r.pod and ":w" in r.pod for r in rows)  # host:pid:worker, not a pod
    sources = {t.user_attrs["source"] for t in optuna_study.trials}
    assert len(sources) == 1 and "kubetune-code-" in sources.pop()  # the temporary copy


SCRIPT = """\
import json

import kubetune


def objective(trial):
    x = trial.suggest_float("x", -3.0, 3.0)
    return (x - 1.0) ** 2


study = kubetune.Client().tune(
    objective, max_trials=4, local=True, progress=False, sampler={"name": "random", "seed": 1}
)
print(json.dumps({
    "best_params": study.best_params,
    "best_value": study.best_value,
    "best_number": study.best_trial.number,
    "trials": [[t.number, t.state, t.values] for t in study.trials],
    "file": str(study.best_params_file),
    "study_name": study.study_name,
}))
"""


@pytest.mark.timeout(180)
def test_local_tune_returns_the_results_and_writes_best_params(tmp_path: Path) -> None:
    """A plain script (no __main__ guard) on the embedded PostgreSQL, as a user writes it:
    tune() gives best_params, best_value and the trials, and writes best_params.json."""
    (tmp_path / "tune.py").write_text(SCRIPT, encoding="utf-8")
    (tmp_path / "best_params.json").write_text('{"x": 99}', encoding="utf-8")  # an older run's
    env = harness_env({"KUBETUNE_HOME": str(tmp_path / "home")})
    for key in ("KUBETUNE_STORAGE_URL", "KUBETUNE_IN_TRIAL"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "tune.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    trials = result["trials"]
    assert [t[0] for t in trials] == [0, 1, 2, 3] and all(t[1] == "COMPLETE" for t in trials)
    best = min(trials, key=lambda t: t[2][0])
    assert result["best_number"] == best[0] and result["best_value"] == best[2][0]
    assert set(result["best_params"]) == {"x"}
    assert result["file"] == "best_params.json"
    written = json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8"))
    assert written == result["best_params"]

    # The study stays readable after tune() returned, as the returned name says.
    read = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import json, kubetune, optuna
            with kubetune.local_storage() as url:
                study = optuna.load_study(study_name={result["study_name"]!r}, storage=url)
                print(json.dumps(study.best_params))
        """)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr[-3000:]
    assert json.loads(read.stdout) == written
