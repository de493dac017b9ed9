"""A study that has ended takes its running trials with it (kubetune.engine.bridge.mark_ended).

The window, made to happen on purpose: the supervisor lists the running trials and fails
them with the study's reason, then stops the workers; a worker that claimed a trial in
between (or whose trial the list missed) is stopped by SIGTERM with a trial of a study
that is over. Real worker processes (``python -m kubetune_trial``), a real PostgreSQL.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import optuna
from kubetune.engine import bridge
from kubetune.engine.recovery import FAIL_REASON_ATTR
from optuna.trial import TrialState
from runner_helpers import load, run_worker, start_worker
from test_local import SPEC, run_cli, write_study
from test_runner import _wait_for, python_spec


def test_a_worker_stopped_after_the_study_ended_fails_its_trial_with_the_studys_reason(
    make_study: Callable[..., optuna.Study],
    runner_env: dict[str, str],
    storage_url: str,
    tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    study = make_study(python_spec("sleeps", maxTrials=3))
    worker = start_worker(runner_env, KT_STARTED_MARKER=str(started))
    # Its trial runs: one claimed after the supervisor listed the running trials.
    _wait_for(started.exists)
    bridge.mark_ended(study._storage, study._study_id, "the Study was deleted")
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 128 + signal.SIGTERM, output

    (trial,) = load(storage_url).trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[FAIL_REASON_ATTR] == "the Study was deleted", "the study's reason"
    # Only the one trial: no WAITING copy of it for a study that is over.


def test_an_ended_study_gives_no_trial_until_its_supervisor_lets_it_go_on(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    study = make_study(python_spec("sleeps", maxTrials=2))
    bridge.mark_ended(study._storage, study._study_id, "the study failed")
    bridge.mark_ended(study._storage, study._study_id, "the Study was deleted")
    assert bridge.stored_ended(study._storage, study._study_id) == "the study failed", (
        "the first reason stands"
    )

    code, output = run_worker(runner_env, KT_SLEEP="0")
    assert code == 0, output
    assert "the study ended: the study failed" in output
    assert load(storage_url).trials == [], "a worker started late claims nothing"

    # More trials asked for (kubetune run --trials N, a raised budget, a re-created
    # Study): the supervisor clears the mark before it starts workers.
    bridge.clear_ended(study._storage, study._study_id)
    code, output = run_worker(runner_env, KT_SLEEP="0")
    assert code == 0, output
    assert [t.state for t in load(storage_url).trials] == [TrialState.COMPLETE] * 2


def test_a_local_run_ended_by_its_timeout_marks_the_study_and_requeues_nothing(
    runner_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    spec = {
        **SPEC,
        "budget": {"maxTrials": 10, "parallelism": 2, "timeout": "3s"},
        "trial": {"python": "kt_test_objectives:sleeps"},
    }
    env = {**runner_env, "KT_SLEEP": "60"}  # running when the timeout comes
    result = run_cli(
        env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert "Timeout" in result.stdout, result.stdout + result.stderr
    study = load(storage_url, "local")
    assert bridge.stored_ended(study._storage, study._study_id) == "the study stopped: Timeout"
    assert study.trials, "trials ran"
    assert {t.state for t in study.trials} == {TrialState.FAIL}, "none left WAITING or RUNNING"
    assert {t.user_attrs[FAIL_REASON_ATTR] for t in study.trials} == {"the study stopped: Timeout"}
