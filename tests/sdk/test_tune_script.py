"""``tune()`` called at a script's top level, as Optuna users write ``study.optimize``.

The script has no ``if __name__ == "__main__":`` guard and runs as ``python tune.py``.
Workers (and trial pods) import the shipped objective, never the script: its top
level runs once, in the user's process, and no worker starts a tune() of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from harness.fixtures import harness_env
from harness.studies import TRIAL_IMAGE
from kubetune_cli import python_script
from tune_cluster import code_mount_turn

#: The script a user writes: a helper module beside it, data made at the top level,
#: and tune() at the top level. ``{options}`` are tune()'s other arguments.
SCRIPT = """\
import json
import os
import os

import optuna
from helpers import shift

import kubetune

with open({marker!r}, "a") as marker:  # the top level ran once more
    marker.write(f"{{os.getpid()}}\\n")

CENTRE = shift(0.25)
POINTS = [CENTRE + i / 100 for i in range(3)]
WEIGHTS = {{}}
for i in range(3):
    WEIGHTS[i] = 1.0 + i


def distance(x):
    return min(abs(x - p) * WEIGHTS[i] for i, p in enumerate(POINTS))


def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr("pid", os.getpid())
    return distance(x) ** 2


study = kubetune.Client({client}).tune(
    objective,
    max_trials={max_trials},
    parallelism=2,
    sampler={{"name": "random", "seed": 0}},
    {options}
)
print("best params:", json.dumps({best}))
"""

HELPERS = "def shift(x):\n    return x + 0.05\n"


def write_script(
    folder: Path, max_trials: int, *, client: str = "", best: str, **options: str
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "helpers.py").write_text(HELPERS)
    text = SCRIPT.format(
        marker=str(folder / "marker"),
        client=client,
        max_trials=max_trials,
        best=best,
        options="\n    ".join(f"{key}={value}," for key, value in options.items()),
    )
    script = folder / "tune.py"
    script.write_text(text)
    return script


def run_script(
    script: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return python_script(env, script.parent, script.name, timeout=timeout)


def local_env(storage_url: str) -> dict[str, str]:
    env = harness_env({"KUBETUNE_STORAGE_URL": storage_url})
    env.pop("KUBETUNE_IN_TRIAL", None)
    return env


LOCAL_BEST = "study.status.best_trial.params"


@pytest.mark.timeout(180)
def test_top_level_tune_runs_once_with_its_workers(tmp_path: Path, storage_url: str) -> None:
    project = tmp_path / "project"
    script = write_script(project, 6, best=LOCAL_BEST, local="True", progress="False")
    done = run_script(script, local_env(storage_url))
    assert done.returncode == 0, done.stderr[-3000:]

    # The script's top level ran once: in the user's process, not in the workers.
    assert len((project / "marker").read_text().splitlines()) == 1
    best = json.loads(done.stdout.split("best params:", 1)[1])
    assert set(best) == {"x"}

    import optuna

    (summary,) = optuna.get_all_study_summaries(storage_url)
    study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
    assert len(study.trials) == 6 and all(t.state.name == "COMPLETE" for t in study.trials)
    # Two workers ran every trial: no worker started workers of its own.
    assert len({t.user_attrs["pid"] for t in study.trials}) <= 2
    logs = sorted(p.name for p in (project / ".kubetune" / "logs" / summary.study_name).iterdir())
    assert logs == ["worker-0.log", "worker-1.log"]
    assert study.best_params == best


def test_editing_the_budget_continues_the_study_and_editing_the_objective_does_not(
    tmp_path: Path,
) -> None:
    """The study's name comes from the objective's shipped code, not the whole file."""
    first = shipped(write_script(tmp_path / "a", 6, best="1", local="True"))
    assert sorted(first.files) == ["helpers.py", "kubetune_tune.py"]
    text = first.files["kubetune_tune.py"]
    assert "def objective" in text and "CENTRE = shift(0.25)" in text
    assert "    WEIGHTS[i] = 1.0 + i" in text  # a loop filling a name it uses
    assert "marker" not in text and "tune(" not in text and "print" not in text
    budget = shipped(write_script(tmp_path / "b", 60, best="2", local="True"))
    assert budget.digest == first.digest
    changed = write_script(tmp_path / "c", 6, best="1", local="True")
    changed.write_text(changed.read_text().replace("** 2", "** 3"))
    assert shipped(changed).digest != first.digest
    # A helper the objective uses is its code too.
    helper = write_script(tmp_path / "d", 6, best="1", local="True")
    (helper.parent / "helpers.py").write_text(HELPERS.replace("0.05", "0.06"))
    assert shipped(helper).digest != first.digest


def shipped(script: Path) -> Any:
    """What tune() ships for the objective of ``script`` run as ``__main__`` (the
    script is run up to its tune() call)."""
    import types

    from kubetune.cluster.shipping import ship

    source = script.read_text().split("study = kubetune.Client", 1)[0]
    module = types.ModuleType("__main__")
    module.__file__ = str(script)
    sys.path.insert(0, str(script.parent))
    sys.modules.pop("helpers", None)
    try:
        exec(compile(source, str(script), "exec"), module.__dict__)
        return ship(module.objective)
    finally:
        sys.path.remove(str(script.parent))
        sys.modules.pop("helpers", None)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_top_level_tune_in_a_cluster_runs_its_trials_in_pods(
    tmp_path: Path, cluster: Any, client: Any, kube: Any, kubeconfig: Path
) -> None:
    """The same script shape, submitted: the pods import the shipped objective (and the
    helper module beside the script) from the ConfigMap, never the script."""
    with code_mount_turn():
        runs_its_trials_in_pods(tmp_path, cluster, client, kube, kubeconfig)


def runs_its_trials_in_pods(
    tmp_path: Path, cluster: Any, client: Any, kube: Any, kubeconfig: Path
) -> None:
    cluster.start()
    project = tmp_path / "project"
    script = write_script(
        project,
        4,
        best="study.status.best_trial.params",
        image=repr(f"{TRIAL_IMAGE}:test"),
        trials_per_pod="10",
        wait="True",
        wait_timeout="150",
        progress="False",
    )
    env = harness_env({"KUBECONFIG": str(kubeconfig)})
    env.pop("KUBETUNE_STORAGE_URL", None)
    done = run_script(script, env, timeout=200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert len((project / "marker").read_text().splitlines()) == 1
    best = json.loads(done.stdout.split("best params:", 1)[1])

    (study,) = client.list()
    name = study.metadata.name
    assert (
        study.status.phase == "Succeeded" and study.spec.trial.python == "kubetune_tune:objective"
    )
    configmap = kube.get("configmaps", f"{name}-code", "default")
    assert set(configmap["data"]) == {"kubetune_tune.py", "helpers.py"}
    rows = client.trials(name)
    assert len(rows) == 4 and all(r.state == "COMPLETE" for r in rows)
    assert all(r.pod and r.pod.startswith(f"{name}-trial-") for r in rows)
    assert client.best_params(name) == best


@pytest.mark.timeout(120)
def test_a_killed_user_of_the_embedded_server_does_not_keep_it_running(tmp_path: Path) -> None:
    """A process killed while it used the embedded PostgreSQL (a storm of workers, a
    SIGKILL) stays on the server's list of users; the next run forgets it, so the
    server is stopped when that run ends."""
    import signal

    import psutil
    from kubetune.local.embedded import HANDLES_FILE, embedded_postgres

    data = tmp_path / "kubetune-home" / "postgres"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, pathlib\n"
            "from kubetune.local.embedded import embedded_postgres\n"
            "with embedded_postgres(pathlib.Path(sys.argv[1])):\n"
            "    print('up', flush=True)\n"
            "    time.sleep(600)\n",
            str(data),
        ],
        env=harness_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert holder.pid in json.loads((data / HANDLES_FILE).read_text())
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    assert psutil.pid_exists(postmaster)

    with embedded_postgres(data) as url:
        assert url.startswith("postgresql+psycopg2://")
        assert holder.pid not in json.loads((data / HANDLES_FILE).read_text())
    assert json.loads((data / HANDLES_FILE).read_text()) == []
    assert not (data / "postmaster.pid").exists()  # the server was stopped


IMPORTS_TUNE = """\
import kubetune


def objective(trial):
    return trial.suggest_float("x", 0.0, 1.0)


kubetune.Client().tune(objective, max_trials=50, parallelism=4, local=True)
"""

STUDY_OF_IT = """\
apiVersion: kubetune.io/v1alpha1
kind: Study
metadata: {name: imports-tune}
spec:
  objective: {direction: minimize}
  budget: {maxTrials: 4, parallelism: 2}
  trial: {python: starts_tune:objective}
"""


@pytest.mark.timeout(120)
def test_a_worker_importing_a_module_that_calls_tune_refuses_instead_of_starting_workers(
    tmp_path: Path, storage_url: str
) -> None:
    """A Study file naming a module whose top level calls tune(): each worker would
    start workers of its own. The runner says it is inside a trial, and tune() refuses."""
    (tmp_path / "starts_tune.py").write_text(IMPORTS_TUNE)
    (tmp_path / "study.yaml").write_text(STUDY_OF_IT)
    done = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "run", "study.yaml", "--storage", storage_url],
        cwd=tmp_path,
        env=local_env(storage_url),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "TuneInsideTrial" in done.stderr and "inside a trial" in done.stderr
    logs = sorted(p.name for p in (tmp_path / ".kubetune" / "logs" / "imports-tune").iterdir())
    assert logs == ["worker-0.log", "worker-1.log"]  # no worker started workers


PACKAGE_SCRIPT = """\
import functools
import json
import os

from kubetune.cluster.shipping import ship

from .helpers import curve

N_TRIALS = {n}


@functools.lru_cache
def scale():
    return 3


def objective(trial):
    return curve(trial) * scale()


code = ship(objective)
print(json.dumps({{"digest": code.digest, "files": code.files}}))
"""


def test_a_script_run_as_a_module_of_its_package_ships_absolute_imports(tmp_path: Path) -> None:
    """``python -m pkg.tune``: relative imports become absolute, the package beside it is
    shipped, and the script's own file is not (its other lines are no part of the code)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("def curve(x):\n    return x * 2\n")

    def shipped(n: int) -> dict[str, Any]:
        (package / "tune.py").write_text(PACKAGE_SCRIPT.format(n=n))
        done = subprocess.run(
            [sys.executable, "-m", "pkg.tune"],
            cwd=tmp_path,
            env=harness_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    first = shipped(10)
    assert sorted(first["files"]) == ["kubetune_tune.py", "pkg/__init__.py", "pkg/helpers.py"]
    text = first["files"]["kubetune_tune.py"]
    assert "from pkg.helpers import curve" in text and "@functools.lru_cache" in text
    assert "N_TRIALS" not in text and "ship(" not in text
    namespace: dict[str, Any] = {}
    sys.path.insert(0, str(tmp_path))
    try:
        exec(compile(text, "kubetune_tune.py", "exec"), namespace)
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("pkg", "pkg.helpers"):
            sys.modules.pop(name, None)
    assert namespace["objective"](2) == 12
    assert shipped(20)["digest"] == first["digest"]


def test_a_name_set_only_under_the_main_guard_is_refused_when_tune_is_called(
    tmp_path: Path,
) -> None:
    import types

    from kubetune.cluster.shipping import ShippingError, ship

    script = tmp_path / "guarded.py"
    script.write_text(
        'def objective(trial):\n    return EPOCHS\n\nif __name__ == "__main__":\n    EPOCHS = 3\n'
    )
    module = types.ModuleType("__main__")
    module.__file__ = str(script)
    exec(compile(script.read_text(), str(script), "exec"), module.__dict__)
    with pytest.raises(ShippingError, match=r"'EPOCHS'.*only under if __name__"):
        ship(module.objective)


def test_a_trial_is_inside_a_trial_while_it_imports_and_runs_and_not_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner marks the objective's import and each call as inside a trial (tune()
    there raises TuneInsideTrial); a process that loads a worker in-process is not
    marked afterwards."""
    from kubetune.client.tuning import TuneInsideTrial
    from kubetune.engine.worker import IN_TRIAL_ENV
    from kubetune.study.spec import validate_spec
    from kubetune_trial.objectives import load_objective

    (tmp_path / "marks.py").write_text(
        "import os\n"
        "import kubetune\n"
        f"AT_IMPORT = os.environ.get({IN_TRIAL_ENV!r})\n\n"
        "def objective(trial):\n"
        "    kubetune.Client().tune(objective, local=True)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(IN_TRIAL_ENV, raising=False)
    spec = validate_spec({"trial": {"python": "marks:objective"}})
    objective = load_objective(spec, "marked")
    assert sys.modules["marks"].AT_IMPORT == "marked"
    assert IN_TRIAL_ENV not in os.environ
    with pytest.raises(TuneInsideTrial, match="inside a trial of study 'marked'"):
        objective(optuna.create_study().ask())
    assert IN_TRIAL_ENV not in os.environ
    sys.modules.pop("marks", None)
