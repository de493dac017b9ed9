"""Issue 16.2's SDK side: ``Client.tune_script`` runs an unchanged Optuna script's study
locally (real worker processes, real PostgreSQL), and builds the Study and the code a
cluster gets (``kubetune run script.py --cluster``): the script shipped whole, which a
worker with only the shipped files on its path runs, stopping at its optimize."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from kubetune import Client
from kubetune.client.tuning import script_cluster_study
from kubetune.cluster.shipping import ship_script
from kubetune.engine import bridge
from kubetune.engine.script_study import Overrides, derive_study
from kubetune.engine.scripts import ScriptError, run_script
from kubetune.engine.storage import open_storage
from kubetune.study.names import CODE_DIGEST_ANNOTATION, CODE_MOUNT_PATH
from kubetune_cli import python_script

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)

SCRIPT = """\
import time

import optuna
from helpers import shift


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    time.sleep(0.5)  # long enough for both workers to take trials
    return (x - shift()) ** 2


study = optuna.create_study(study_name="sdk script", sampler=optuna.samplers.TPESampler(seed=2))
study.optimize(objective, n_trials=8, n_jobs=2)
RESULT = (study.study_name, len(study.trials), study.best_value)
print("after optimize", RESULT)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "sdk_script.py").write_text(SCRIPT, encoding="utf-8")
    (folder / "helpers.py").write_text("def shift():\n    return 2.0\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the script's folder: the workers find it anyway
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.delenv("KUBETUNE_STORAGE_URL", raising=False)
    return folder


def test_tune_script_locally_runs_the_study_then_the_rest_of_the_script(
    project: Path, storage_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(storage_url=storage_url) as client:
        tuned = client.tune_script(project / "sdk_script.py", local=True, progress=False)
    assert tuned.status is not None and tuned.status.phase == "Succeeded"
    study = optuna.load_study(study_name="sdk script", storage=storage_url)
    assert len(study.trials) == 8
    assert len({t.user_attrs["kubetune.worker"] for t in study.trials}) == 2
    assert tuned.best_value == study.best_value
    out = capsys.readouterr().out
    assert f"after optimize ('sdk script', 8, {study.best_value})" in out
    assert Path("best_params.json").is_file()
    # Optuna is itself again afterwards.
    plain = optuna.create_study()
    plain.optimize(lambda t: t.suggest_float("y", 0, 1), n_trials=1)
    assert len(plain.trials) == 1


def test_a_script_without_optimize_is_refused(project: Path, storage_url: str) -> None:
    (project / "idle.py").write_text("import optuna\nstudy = optuna.create_study()\n")
    with (
        Client(storage_url=storage_url) as client,
        pytest.raises(ScriptError, match=r"idle\.py never calls study\.optimize"),
    ):
        client.tune_script(project / "idle.py", local=True, progress=False)


def test_the_cluster_gets_the_script_shipped_whole_and_a_pod_runs_it(
    project: Path, storage_url: str, tmp_path: Path
) -> None:
    script = project / "sdk_script.py"
    record = run_script(script)  # stops at optimize, as init does
    derived = derive_study(record, script, Overrides(parallelism=3))
    module, _, function = str(derived.study.spec.trial.python).partition(":")
    identity = derived.study.metadata.annotations[CODE_DIGEST_ANNOTATION]
    code = ship_script(script, module, function, identity)
    assert set(code.files) == {"sdk_script.py", "helpers.py"}
    study, notes = script_cluster_study(derived, code, namespace="team", image="trial:1")
    # A fixed Optuna study name would be shared by every Study of that study_name.
    assert notes == [
        "study_name 'sdk script' names the Study (sdk-script); its Optuna study in the "
        "cluster is named by the operator (status.studyName), so a Study deleted and run "
        "again starts afresh"
    ]
    assert study.metadata.name == "sdk-script"
    assert study.metadata.annotations[CODE_DIGEST_ANNOTATION] == identity
    trial = study.spec.trial
    assert trial.python == "sdk_script:objective" and trial.image == "trial:1"
    assert {e.name: e.value for e in trial.env}["PYTHONPATH"] == CODE_MOUNT_PATH
    assert trial.volumes[0]["configMap"]["name"] == "sdk-script-code"
    assert study.spec.budget.parallelism == 3 and study.spec.budget.max_trials == 8
    assert study.spec.storage.study_name is None

    # A pod: only the shipped files on its path, another working folder.
    mount = tmp_path / "mount"
    code.write_to(mount)
    bridge.prepare_study(open_storage(storage_url), "pod-study", study.spec)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(mount), str(REPO)]),
        "KUBETUNE_STORAGE_URL": storage_url,
        "KUBETUNE_STUDY_NAME": "pod-study",
        "KUBETUNE_WORKER_NAME": "pod-0",
    }
    elsewhere = tmp_path / "workdir"
    elsewhere.mkdir()
    done = python_script(env, elsewhere, "-m", "kubetune_trial")
    assert done.returncode == 0, done.stdout + done.stderr
    log = done.stdout + done.stderr
    assert "sdk_script.py calls study.optimize at import; kubetune runs the trials instead" in log
    assert "after optimize" not in log
    assert len(optuna.load_study(study_name="pod-study", storage=storage_url).trials) == 8
