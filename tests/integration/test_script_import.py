"""Issue 16.1: importing an objective's module never runs the script's own study.

Scripts shaped like Optuna's tutorial (top-level ``create_study`` + ``optimize`` +
``print(study.best_params)``) are run by real worker processes against a real
PostgreSQL, through a Study whose ``trial.python`` names them. Each objective
writes a marker file named after the study that ran the trial, so a trial of the
script's own in-memory study would leave a ``no-name-…`` marker: there must be none.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from kubetune.engine.recovery import WORKER_ATTR
from kubetune.engine.scripts import NOTE_ATTR, import_module
from kubetune.engine.worker import EXIT_CONFIG_ERROR
from optuna.trial import TrialState
from runner_helpers import load, run_worker

pytestmark = pytest.mark.timeout(120)

OBJECTIVE = """\
import optuna
from pathlib import Path

MARKERS = Path({markers!r})


def objective(trial, offset=2.0):
    x = trial.suggest_float("x", -10, 10)
    (MARKERS / f"{{trial.study.study_name}}-{{trial.number}}").write_text("ran")
    return (x - offset) ** 2


def callback(study, trial):
    (MARKERS / "callback-ran").write_text("yes")
"""

TUTORIAL = (
    OBJECTIVE
    + """
study = optuna.create_study(direction="minimize")
study.optimize(objective, n_trials=30, n_jobs=2, timeout=600, callbacks=[callback])
print("SCRIPT BEST", study.best_params)
(MARKERS / "after-optimize").write_text("ran")
"""
)

GUARDED = (
    OBJECTIVE
    + """
if __name__ == "__main__":
    study = optuna.create_study(direction="minimize")
    study.optimize(objective, n_trials=30, n_jobs=2, timeout=600, callbacks=[callback])
    print("SCRIPT BEST", study.best_params)
"""
)

LAMBDA = (
    OBJECTIVE
    + """
study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=1))
study.optimize(lambda trial: objective(trial, offset=-3.0), n_trials=30)
print("SCRIPT BEST", study.best_params)
"""
)


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    return folder


@pytest.fixture
def script_env(runner_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = dict(runner_env)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    return env


def write_script(tmp_path: Path, name: str, template: str, markers: Path) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(template.format(markers=str(markers)), encoding="utf-8")
    return path


def spec_for(entry: str, trials: int = 4) -> dict[str, Any]:
    return {
        "objective": {"direction": "minimize"},
        "budget": {"maxTrials": trials},
        "sampler": {"name": "random", "seed": 0},
        "trial": {"python": entry},
    }


def own_study_markers(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir() if p.name.startswith("no-name-"))


@pytest.mark.parametrize("template", ["tutorial", "guarded"])
def test_a_tutorial_script_imported_by_a_worker_runs_only_kubetunes_trials(
    template: str,
    script_env: dict[str, str],
    make_study: Callable[..., optuna.Study],
    storage_url: str,
    tmp_path: Path,
    markers: Path,
) -> None:
    source = TUTORIAL if template == "tutorial" else GUARDED
    write_script(tmp_path, f"seed_{template}", source, markers)
    make_study(spec_for(f"seed_{template}:objective"), name="s")
    code, output = run_worker(script_env, "s")
    assert code == 0, output
    study = load(storage_url, "s")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    # Only kubetune's four trials ran the objective: none of the script's 30, nothing
    # after optimize, no print of the script's best. The script's callback ran after
    # kubetune's trials (in the worker that ran them), unless the guard kept it unseen.
    assert own_study_markers(markers) == []
    callback = ["callback-ran"] if template == "tutorial" else []
    assert sorted(p.name for p in markers.iterdir()) == callback + [f"s-{n}" for n in range(4)]
    assert "SCRIPT BEST" not in output
    note = f"seed_{template}.py calls study.optimize at import; kubetune runs the trials instead"
    if template == "tutorial":
        assert output.count(note) == 1, output
        assert study.trials[0].user_attrs[NOTE_ATTR] == note
        assert all(NOTE_ATTR not in t.user_attrs for t in study.trials[1:])
    else:  # the guard: importing runs nothing intercepted, and there is nothing to say
        assert note not in output
        assert all(NOTE_ATTR not in t.user_attrs for t in study.trials)


def test_a_module_alone_names_the_objective_it_passes_to_optimize(
    script_env: dict[str, str],
    make_study: Callable[..., optuna.Study],
    storage_url: str,
    tmp_path: Path,
    markers: Path,
) -> None:
    """``python: module``: the objective is what the script hands to optimize, here a
    lambda around the function (offset -3): the best x approaches -3, not 2."""
    write_script(tmp_path, "lambda_script", LAMBDA, markers)
    make_study(spec_for("lambda_script", trials=12), name="s")
    code, output = run_worker(script_env, "s")
    assert code == 0, output
    study = load(storage_url, "s")
    assert len(study.trials) == 12
    assert abs(study.best_params["x"] + 3.0) < abs(study.best_params["x"] - 2.0)
    assert study.best_value == pytest.approx((study.best_params["x"] + 3.0) ** 2)
    assert own_study_markers(markers) == []
    assert "SCRIPT BEST" not in output


@pytest.mark.parametrize(
    ("entry", "template", "expected"),
    [
        (
            "plain_module",
            OBJECTIVE,
            "'plain_module' does not call study.optimize when imported, so it gives no "
            "objective; name the function: plain_module:FUNCTION",
        ),
        ("plain_module:objectiv", OBJECTIVE, "'plain_module' has no function 'objectiv'"),
    ],
)
def test_an_objective_that_cannot_be_found_is_a_clear_error(
    entry: str,
    template: str,
    expected: str,
    script_env: dict[str, str],
    make_study: Callable[..., optuna.Study],
    storage_url: str,
    tmp_path: Path,
    markers: Path,
) -> None:
    write_script(tmp_path, "plain_module", template, markers)
    make_study(spec_for(entry), name="s")
    code, output = run_worker(script_env, "s")
    assert code == EXIT_CONFIG_ERROR
    assert f"spec.trial.python: {expected}" in output
    assert load(storage_url, "s").trials == []


def test_a_module_importing_one_that_optimizes_at_import_is_refused(
    script_env: dict[str, str],
    make_study: Callable[..., optuna.Study],
    storage_url: str,
    tmp_path: Path,
    markers: Path,
) -> None:
    write_script(tmp_path, "helper_optimizes", TUTORIAL, markers)
    (tmp_path / "uses_helper.py").write_text(
        "import helper_optimizes\n\ndef objective(trial):\n    return 1.0\n", encoding="utf-8"
    )
    make_study(spec_for("uses_helper:objective"), name="s")
    code, output = run_worker(script_env, "s")
    assert code == EXIT_CONFIG_ERROR
    assert "uses_helper.py imports code that calls study.optimize when imported" in output
    assert "helper_optimizes.py, line" in output
    assert own_study_markers(markers) == []


def test_import_module_keeps_the_module_and_restores_optuna(
    tmp_path: Path, markers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: the partly executed module stays importable, Optuna is as it was, and
    the recorded call carries optimize's arguments and the script's study settings."""
    import sys

    write_script(tmp_path, "kt_inprocess_script", TUTORIAL, markers)
    monkeypatch.syspath_prepend(str(tmp_path))
    real = (optuna.create_study, optuna.load_study, optuna.Study.optimize)
    try:
        module, record = import_module("kt_inprocess_script")
        assert sys.modules["kt_inprocess_script"] is module
        assert (optuna.create_study, optuna.load_study, optuna.Study.optimize) == real
        assert record is not None and record.optimize is not None
        assert record.optimize.func is module.objective
        assert record.optimize.arguments["n_trials"] == 30
        assert record.optimize.arguments["n_jobs"] == 2
        assert record.optimize.callbacks == [module.callback]
        assert record.studies[0].arguments == {"direction": "minimize"}
        assert not (markers / "after-optimize").exists()
        # The script's study is a real in-memory study that ran nothing.
        assert record.optimize.study.trials == []
        # Importing it again gives the same module, without executing it again.
        assert import_module("kt_inprocess_script")[0] is module
        # Optuna works as usual afterwards.
        plain = optuna.create_study()
        plain.optimize(lambda t: t.suggest_float("y", 0, 1), n_trials=2)
        assert len(plain.trials) == 2
    finally:
        sys.modules.pop("kt_inprocess_script", None)
    assert own_study_markers(markers) == []


def test_two_workers_share_the_study_and_neither_runs_the_scripts(
    script_env: dict[str, str],
    make_study: Callable[..., optuna.Study],
    storage_url: str,
    tmp_path: Path,
    markers: Path,
) -> None:
    from runner_helpers import start_worker

    write_script(tmp_path, "seed_two", TUTORIAL, markers)
    make_study(spec_for("seed_two:objective", trials=8), name="s")
    workers = [start_worker(script_env, "s", worker=f"w{i}") for i in range(2)]
    outputs = [w.communicate(timeout=100)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = load(storage_url, "s")
    assert len(study.trials) == 8
    assert {t.user_attrs[WORKER_ATTR] for t in study.trials} <= {"w0", "w1"}
    assert own_study_markers(markers) == []
    assert all("SCRIPT BEST" not in output for output in outputs)
