"""``kubetune run`` on studies that cannot run at all: the objective does not
import, the program is not there, the storage does not answer. Each ends the run
quickly with exit code 3 and a message that says what to fix (and no password),
without starting worker after worker.

(A module that is not there at all: ``tests/integration/test_local.py``; the trial
runner's side: ``tests/integration/test_runner.py``.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from badinput_helpers import kubetune, write_study

pytestmark = pytest.mark.timeout(90)

EXIT_RUN_ERROR = 3


def spec_with(trial: dict[str, Any], **objective: Any) -> dict[str, Any]:
    return {
        "objective": {"direction": "minimize", **objective},
        "searchSpace": {"x": {"type": "float", "low": 0, "high": 1}},
        "budget": {"maxTrials": 4, "parallelism": 2},
        "trial": trial,
    }


@pytest.mark.parametrize(
    ("trial", "expected"),
    [
        (
            {"python": "kt_broken_module:objective"},
            "spec.trial.python: cannot import 'kt_broken_module': RuntimeError: this module "
            "breaks on import (line 7)",
        ),
        (
            {"python": "kt_bad_objectives:no_such_function"},
            "spec.trial.python: 'kt_bad_objectives' has no function 'no_such_function'",
        ),
        (
            {"command": ["no-such-trainer", "--x={x}"]},
            "spec.trial.command[0]: program 'no-such-trainer' is not found on PATH",
        ),
    ],
    ids=["module-raises-on-import", "no-such-function", "program-not-found"],
)
def test_an_objective_that_cannot_run_stops_the_run(
    cli_env: dict[str, str],
    storage_url: str,
    tmp_path: Path,
    trial: dict[str, Any],
    expected: str,
) -> None:
    spec = spec_with(trial, metric="loss") if "command" in trial else spec_with(trial)
    started = time.monotonic()
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_RUN_ERROR, output
    assert expected in " ".join(result.stderr.split()), result.stderr
    assert result.stderr.lstrip().startswith("error: "), result.stderr
    assert "[red]" not in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 45
    study = optuna.load_study(study_name="bad", storage=storage_url)
    assert study.trials == [], "no trial should be claimed by an objective that cannot run"
    # One worker log per worker started: two (parallelism), not a crash loop of restarts.
    logs = list((tmp_path / ".kubetune" / "logs" / "bad").glob("worker-*.log"))
    assert 1 <= len(logs) <= 2, logs


@pytest.mark.parametrize(
    ("how", "url", "expected"),
    [
        (
            "--storage",
            "postgres://tuner:hunter2-not-shown@no-such-host.invalid/optuna",
            "cannot reach the storage at postgresql+psycopg2://tuner:***@no-such-host.invalid",
        ),
        (
            "KUBETUNE_STORAGE_URL",
            "postgresql://tuner:hunter2-not-shown@127.0.0.1:1/optuna",
            "cannot reach the storage at postgresql+psycopg2://tuner:***@127.0.0.1:1/optuna",
        ),
        (
            "--storage",
            "mongodb://tuner:hunter2-not-shown@127.0.0.1:1/optuna",
            "cannot open the storage at mongodb://tuner:***@127.0.0.1:1/optuna",
        ),
    ],
    ids=["unknown-host", "refused-from-env", "not-a-database-optuna-knows"],
)
def test_a_storage_that_does_not_answer_fails_fast_naming_it_without_password(
    cli_env: dict[str, str], tmp_path: Path, how: str, url: str, expected: str
) -> None:
    study_file = str(write_study(tmp_path, spec_with({"python": "kt_bad_objectives:quadratic"})))
    started = time.monotonic()
    if how == "--storage":
        result = kubetune(cli_env, tmp_path, "run", study_file, "--storage", url)
    else:
        result = kubetune({**cli_env, how: url}, tmp_path, "run", study_file)
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_RUN_ERROR, output
    assert expected in " ".join(result.stderr.split()), result.stderr
    assert "hunter2" not in output
    assert "Traceback" not in output
    assert result.stderr.lstrip().startswith("error: ") and "[red]" not in result.stderr
    assert took < 20, f"took {took:.0f} s to give up"


def test_a_builtin_data_file_that_is_not_here_stops_the_run_before_it_starts(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Local workers read ``data.path`` from here: a file that is not here (or lacks the
    target column) is refused with exit 2 before a storage or a worker starts, naming
    the field. ``--storage`` points nowhere: reaching it would be another error."""
    builtin = {"model": "lightgbm", "task": "regression", "data": {"target": "y"}}
    spec = {
        "objective": {"direction": "minimize", "metric": "rmse"},
        "budget": {"maxTrials": 2},
        "trial": {"builtin": {**builtin, "data": {"path": "data/train.csv", "target": "y"}}},
    }
    nowhere = "postgresql+psycopg2://u@127.0.0.1:9/none"
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", nowhere
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "spec.trial.builtin.data.path: data/train.csv does not exist on this machine" in (
        result.stderr
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", nowhere
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "spec.trial.builtin.data.target" in result.stderr
    assert "cannot reach" not in result.stderr + result.stdout
