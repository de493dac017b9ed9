"""What ``kubetune run`` tells a user about trials that did not fail by themselves,
about each new best, and about a fixed objective, as found by a user review:

- trials cut off by the study's end (a timeout, a spent budget) are *stopped*, not
  failed: no "Failed trials" table, no "trial N failed";
- the live line counts against ``maxTrials`` only what the budget counts (a trial
  handed back by Ctrl-C does not);
- every new best is announced, however many trials finish between two looks;
- a multi-objective study's line shows its Pareto front, not one trial as "best";
- a study whose every trial failed starts over once its objective's code is fixed,
  as the message told the user to do.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

import optuna
import pytest
from kubetune.engine.recovery import STOPPED_ATTR
from kubetune_cli import kubetune, start_kubetune
from optuna.trial import TrialState
from test_failure_reasons import cli_env, summary_line, write_study
from test_local import _wait_for
from test_local_signals import signals_as_in_a_terminal

pytestmark = pytest.mark.timeout(180)
__all__ = ["cli_env"]  # the fixture, used by name

NAME = "reasons"  # test_failure_reasons' summary_line reads this study's summary


def study_of(storage_url: str) -> optuna.Study:
    return optuna.load_study(study_name=NAME, storage=storage_url)


def progress_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{NAME} ")]


def test_trials_cut_off_by_the_timeout_are_stopped_not_failed(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    spec = {
        "objective": {"direction": "minimize"},
        "budget": {"maxTrials": 10, "parallelism": 2, "timeout": "4s"},
        "trial": {"python": "kt_test_objectives:sleeps"},
    }
    study_file = write_study(tmp_path, spec)
    env = {**cli_env, "KT_SLEEP": "60"}  # running, both of them, when the timeout comes
    result = kubetune(env, tmp_path, "run", str(study_file), "--storage", storage_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_line(result.stdout) == f"study {NAME}: 0 complete, 0 pruned, 0 failed, 2 stopped"
    assert "Failed trials" not in result.stdout and " failed:" not in result.stdout, result.stdout
    assert "Timeout" in result.stdout
    trials = study_of(storage_url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all("Timeout" in t.user_attrs[STOPPED_ATTR] for t in trials)


def test_the_progress_count_leaves_out_trials_handed_back_by_ctrl_c(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    spec = {
        "objective": {"direction": "minimize"},
        "budget": {"maxTrials": 6, "parallelism": 2},
        "trial": {"python": "kt_test_objectives:sleeps"},
    }
    study_file = write_study(tmp_path, spec)
    env = {**cli_env, "KT_SLEEP": "0.3", "KT_STARTED_MARKER": str(marker)}
    run = start_kubetune(
        env,
        tmp_path,
        "run",
        str(study_file),
        "--storage",
        storage_url,
        preexec_fn=signals_as_in_a_terminal,
    )
    # Interrupted once some trials completed, while two run.
    _wait_for(lambda: marker.exists() and len(marker.read_text().splitlines()) >= 3)
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stdout + stderr
    study = study_of(storage_url)
    complete = sum(1 for t in study.trials if t.state == TrialState.COMPLETE)
    handed_back = sum(1 for t in study.trials if STOPPED_ATTR in t.user_attrs)
    assert handed_back, stdout
    # The last line drawn counts the completed trials only, of the 6 of the budget.
    assert re.search(rf" {complete}/6 {complete} complete ", progress_lines(stdout)[-1]), stdout


def test_every_new_best_is_announced(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    # Each trial beats the one before: every one of them is a new best, and trivial
    # trials finish many to one look of the supervisor.
    (tmp_path / "descending.py").write_text(
        "def objective(trial):\n"
        "    trial.suggest_float('x', 0, 1)\n"
        "    return 100.0 - trial.number\n",
        encoding="utf-8",
    )
    spec = {
        "objective": {"direction": "minimize"},
        "budget": {"maxTrials": 30, "parallelism": 1},
        "trial": {"python": "descending:objective"},
    }
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 0, result.stdout + result.stderr
    announced = [int(n) for n in re.findall(r"new best trial (\d+):", result.stdout)]
    assert announced == list(range(30)), result.stdout


def test_a_multi_objective_line_shows_its_pareto_front(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    spec = {
        "objective": {"directions": ["minimize", "minimize"]},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"maxTrials": 8, "parallelism": 1},
        "trial": {"python": "kt_test_objectives:two_objectives"},
    }
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 0, result.stdout + result.stderr
    front = len(study_of(storage_url).best_trials)
    assert f" · {front} on the Pareto front" in progress_lines(result.stdout)[-1], result.stdout
    assert "new best" not in result.stdout and " · best " not in result.stdout, result.stdout


def test_a_study_that_only_failed_starts_over_once_its_code_is_fixed(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    module = tmp_path / "myobj.py"
    module.write_text(
        "def objective(trial):\n    trial.suggest_float('x', 0, 1)\n    return float('nan')\n",
        encoding="utf-8",
    )
    spec: dict[str, Any] = {
        "objective": {"direction": "minimize"},
        "budget": {"maxTrials": 12, "parallelism": 2},
        "trial": {"python": "myobj:objective"},
    }
    study_file = write_study(tmp_path, spec)
    broken = kubetune(cli_env, tmp_path, "run", str(study_file), "--storage", storage_url)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "TooManyFailedTrials" in broken.stdout and "fix the cause" in broken.stdout
    failed = len(study_of(storage_url).trials)

    module.write_text(
        "def objective(trial):\n    return trial.suggest_float('x', 0, 1)\n", encoding="utf-8"
    )
    fixed = kubetune(cli_env, tmp_path, "run", str(study_file), "--storage", storage_url)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (
        f"study {NAME!r} had no finished trial ({failed} failed) and its objective's code "
        "changed: started it over"
    ) in fixed.stdout, fixed.stdout
    trials = study_of(storage_url).trials
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)


def test_an_objective_suggesting_a_spec_parameter_otherwise_is_told(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """The spec's value wins (Optuna gives back what was suggested first), and the worker
    log says so once; another kind fails each trial naming the spec's field."""
    (tmp_path / "ranges.py").write_text(
        "def narrower(trial):\n"
        "    return trial.suggest_float('x', 0, 1)\n"
        "\n"
        "def other_kind(trial):\n"
        "    return trial.suggest_int('x', 0, 1)\n",
        encoding="utf-8",
    )
    spec: dict[str, Any] = {
        "objective": {"direction": "minimize"},
        "searchSpace": {"x": {"type": "float", "low": -5, "high": 5}},
        "sampler": {"name": "random", "seed": 1},
        "budget": {"maxTrials": 6, "parallelism": 1},
        "trial": {"python": "ranges:narrower"},
    }
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 0, result.stdout + result.stderr
    trials = study_of(storage_url).trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert any(t.params["x"] < 0 for t in trials), "the spec's range gave the values"
    log = (tmp_path / ".kubetune" / "logs" / NAME / "worker-0.log").read_text()
    said = (
        "spec.searchSpace.x (float in [-5, 5]) gives the value; the objective's own "
        "suggestion of 'x' (float in [0, 1]) is not used"
    )
    assert log.count(said) == 1, log

    spec["trial"] = {"python": "ranges:other_kind"}
    refused = kubetune(
        cli_env,
        tmp_path,
        "run",
        str(write_study(tmp_path, spec)),
        "--storage",
        storage_url,
        "--fresh",
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    reason = (
        "spec.searchSpace.x: the objective suggests 'x' as int in [0, 1], the spec as "
        "float in [-5, 5]"
    )
    assert reason in refused.stdout, refused.stdout
    assert all(t.state == TrialState.FAIL for t in study_of(storage_url).trials)
