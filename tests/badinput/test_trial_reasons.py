"""Trials that go wrong one by one — a metric never printed, NaN and infinite
values, values that are not numbers, a program that cannot start — each end FAIL
with the reason in ``kubetune.fail_reason``, and the study carries on.

One ``kubetune run`` per objective kind: the objective misbehaves differently on
each trial number (``support/kt_bad_objectives.py``, ``support/bad_metrics.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from badinput_helpers import SUPPORT, kubetune, write_study
from kubetune.engine.recovery import FAIL_REASON_ATTR
from optuna.trial import TrialState

pytestmark = pytest.mark.timeout(90)


def run_study(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path, spec: dict[str, Any]
) -> tuple[str, list[optuna.trial.FrozenTrial]]:
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    trials = optuna.load_study(study_name="bad", storage=storage_url).trials
    return output, sorted(trials, key=lambda t: t.number)


def outcomes(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """COMPLETE, or the first line of the fail reason, per trial."""
    return [
        t.state.name
        if t.state != TrialState.FAIL
        else str(t.user_attrs.get(FAIL_REASON_ATTR)).splitlines()[0]
        for t in trials
    ]


def test_bad_values_from_a_python_objective(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    spec = {
        "objective": {"direction": "minimize"},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"maxTrials": 7, "parallelism": 1},
        "trial": {"python": "kt_bad_objectives:misbehaves"},
    }
    output, trials = run_study(cli_env, storage_url, tmp_path, spec)
    assert outcomes(trials) == [
        "objective returned NaN",
        "objective returned inf",
        "objective returned -inf",
        "objective returned None, which is not a number",
        "objective returned '0.5 but as text', which is not a number",
        "objective returned 2 value(s); the study has 1 direction(s)",
        "COMPLETE",
    ]
    assert trials[-1].value == 0.25
    assert "1 complete, 0 pruned, 6 failed" in output
    # The best trial is the one good one, whatever the failed ones returned.
    best = json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8"))
    assert best == trials[-1].params


def test_bad_metrics_from_a_command(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    spec = {
        "objective": {"direction": "minimize", "metric": "loss"},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": {"maxTrials": 7, "parallelism": 1},
        "trial": {"command": [sys.executable, str(SUPPORT / "bad_metrics.py"), "{trial_number}"]},
    }
    _, trials = run_study(cli_env, storage_url, tmp_path, spec)
    assert outcomes(trials) == [
        "metric 'loss' was never printed (print a line such as 'loss=0.93' or '{\"loss\": 0.93}')",
        "objective returned NaN",
        "objective returned inf",
        "objective returned -inf",
        "objective returned NaN",  # {"loss": NaN}, JSON as Python writes it
        "objective returned inf",  # {"step": 1, "loss": Infinity}
        "COMPLETE",
    ]
    assert trials[-1].value == 0.5


def test_a_program_named_by_a_parameter_that_is_not_there(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """The program is only known per trial, so each trial fails, with the reason."""
    spec = {
        "objective": {"direction": "minimize", "metric": "loss"},
        "searchSpace": {"trainer": {"type": "categorical", "choices": ["no-such-trainer-a"]}},
        "budget": {"maxTrials": 2, "parallelism": 1, "maxFailedTrials": 1},
        "trial": {"command": ["{trainer}", "--fast"]},
    }
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 1, result.stdout + result.stderr  # the study failed
    assert "TooManyFailedTrials" in result.stdout
    trials = optuna.load_study(study_name="bad", storage=storage_url).trials
    assert len(trials) == 2
    for trial in trials:
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs[FAIL_REASON_ATTR].startswith(
            "cannot start 'no-such-trainer-a': [Errno 2] No such file or directory"
        )
