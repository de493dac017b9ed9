"""The trial runner, as real worker processes against a real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import psutil
import pytest
from kubetune.engine.recovery import (
    FAIL_REASON_ATTR,
    WORKER_ATTR,
    fail_lost_trials,
    lost_trials,
)
from kubetune.engine.worker import EXIT_CONFIG_ERROR
from optuna.trial import TrialState
from runner_helpers import load, run_worker, start_worker

pytestmark = pytest.mark.timeout(120)

FAKE_TRAIN = str(Path(__file__).parent / "support" / "fake_train.py")


def python_spec(function: str, **budget: Any) -> dict[str, Any]:
    return {
        "objective": {"direction": "minimize"},
        "budget": {"maxTrials": 4, **budget},
        "sampler": {"name": "random", "seed": 1},
        "trial": {"python": f"kt_test_objectives:{function}"},
    }


def command_spec(*extra_args: str, **spec: Any) -> dict[str, Any]:
    return {
        "objective": {"direction": "minimize", "metric": "loss"},
        "searchSpace": {"x": {"type": "float", "low": 0, "high": 1}},
        "budget": {"maxTrials": 2},
        "sampler": {"name": "random", "seed": 1},
        "trial": {"command": [sys.executable, FAKE_TRAIN, "--x", "{x}", *extra_args]},
        **spec,
    }


def reasons(study: optuna.Study) -> list[str]:
    return [str(t.user_attrs.get(FAIL_REASON_ATTR)) for t in study.trials]


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.trials]


def test_unchanged_optuna_objective_runs_define_by_run(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    make_study(python_spec("quadratic"))
    code, output = run_worker(runner_env, worker="pod-a")
    assert code == 0, output
    study = load(storage_url)
    assert states(study) == [TrialState.COMPLETE] * 4
    assert all(t.user_attrs[WORKER_ATTR] == "pod-a" for t in study.trials)
    assert study.best_value == min(t.value for t in study.trials)
    assert "MaxTrialsReached" in output


def test_python_objective_reports_prunes_and_keeps_user_attrs(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    spec = python_spec("reports_steps")
    spec["pruner"] = {"name": "threshold", "args": {"upper": 6.0}}
    spec["budget"]["maxTrials"] = 8
    make_study(spec)
    code, output = run_worker(runner_env)
    assert code == 0, output
    study = load(storage_url)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and complete
    for trial in pruned:
        # pruned at the first step whose value passed the threshold
        assert max(trial.intermediate_values.values()) > 6.0
        assert len(trial.intermediate_values) < 5
    for trial in complete:
        assert len(trial.intermediate_values) == 5
    assert all(t.user_attrs["seen_by"] == "objective" for t in study.trials)


@pytest.mark.parametrize(
    ("function", "reason"),
    [
        ("raises", "ValueError: boom: the objective broke"),
        ("returns_nan", "objective returned NaN"),
    ],
)
def test_failing_python_objective_ends_fail_with_reason(
    make_study: Callable[..., optuna.Study],
    runner_env: dict[str, str],
    storage_url: str,
    function: str,
    reason: str,
) -> None:
    make_study(python_spec(function, maxTrials=2))
    code, output = run_worker(runner_env)
    assert code == 0, output
    study = load(storage_url)
    assert states(study) == [TrialState.FAIL] * 2
    assert all(r.startswith(reason) for r in reasons(study)), reasons(study)


def test_multi_objective_python(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    spec = python_spec("two_objectives")
    spec["objective"] = {"directions": ["minimize", "minimize"], "metrics": ["a", "b"]}
    make_study(spec)
    code, output = run_worker(runner_env)
    assert code == 0, output
    study = load(storage_url)
    assert all(len(t.values) == 2 for t in study.trials)
    assert study.metric_names == ["a", "b"]


def test_python_objective_that_does_not_import_stops_before_any_trial(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    spec = python_spec("quadratic")
    spec["trial"]["python"] = "no_such_module:objective"
    make_study(spec)
    code, output = run_worker(runner_env)
    assert code == EXIT_CONFIG_ERROR
    assert "spec.trial.python: cannot import 'no_such_module'" in output
    assert load(storage_url).trials == []


def test_command_objective_reads_metrics_and_reports_steps(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    make_study(command_spec("--steps", "3"))
    code, output = run_worker(runner_env)
    assert code == 0, output
    for trial in load(storage_url).trials:
        assert trial.state == TrialState.COMPLETE
        x = trial.params["x"]
        assert trial.value == pytest.approx(x)
        assert trial.intermediate_values == pytest.approx({0: x, 1: x + 1, 2: x + 2})


def test_command_objective_reads_json_lines(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    make_study(command_spec("--mode", "json", "--steps", "2"))
    code, output = run_worker(runner_env)
    assert code == 0, output
    for trial in load(storage_url).trials:
        assert trial.state == TrialState.COMPLETE
        assert trial.intermediate_values == pytest.approx(
            {0: trial.params["x"], 1: trial.params["x"] + 1}
        )


def test_pruned_command_is_terminated(
    make_study: Callable[..., optuna.Study],
    runner_env: dict[str, str],
    storage_url: str,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "finished"
    spec = command_spec("--steps", "50", "--step-seconds", "0.2", "--finished-marker", str(marker))
    spec["pruner"] = {"name": "threshold", "args": {"upper": 2.5}}
    spec["budget"]["maxTrials"] = 1
    make_study(spec)
    started = time.monotonic()
    code, output = run_worker(runner_env)
    assert code == 0, output
    trial = load(storage_url).trials[0]
    assert trial.state == TrialState.PRUNED
    # values x, x+1, x+2, x+3 with x < 1: pruned at step 2 or 3, long before step 49
    assert max(trial.intermediate_values) <= 3
    assert not marker.exists(), "the pruned program ran to its end"
    assert time.monotonic() - started < 10 * 0.2 * 50


PROBE = str(Path(__file__).parent / "support" / "command_probe.py")


def test_command_gets_placeholders_booleans_and_kubetune_params(
    make_study: Callable[..., optuna.Study],
    runner_env: dict[str, str],
    storage_url: str,
    tmp_path: Path,
) -> None:
    """``{name}``, ``{trial_number}``, ``{trial_id}`` and ``{study_name}`` in the argv;
    booleans as ``true``/``false``; every parameter in ``$KUBETUNE_PARAMS``."""
    spec = command_spec(
        searchSpace={
            "x": {"type": "float", "low": 0, "high": 1},
            "flag": {"type": "categorical", "choices": [True, False]},
        },
        budget={"maxTrials": 6},
    )
    spec["trial"]["command"] = [
        sys.executable,
        PROBE,
        "record",
        str(tmp_path),
        "x={x}",
        "model.flag={flag}",
        "{trial_number}",
        "{trial_id}",
        "{study_name}",
    ]
    make_study(spec)
    code, output = run_worker(runner_env)
    assert code == 0, output
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    by_number = {int(r["argv"][2]): r for r in records}
    trials = load(storage_url).trials
    assert sorted(by_number) == [t.number for t in trials]
    assert {t.params["flag"] for t in trials} == {True, False}, "both booleans were tried"
    for trial in trials:
        assert trial.state == TrialState.COMPLETE
        flag = "true" if trial.params["flag"] else "false"
        assert by_number[trial.number]["argv"] == [
            f"x={trial.params['x']}",
            f"model.flag={flag}",
            str(trial.number),
            str(trial._trial_id),
            "s",
        ]
        assert json.loads(by_number[trial.number]["params"]) == trial.params


def test_pruned_command_that_ignores_sigterm_is_killed(
    make_study: Callable[..., optuna.Study],
    runner_env: dict[str, str],
    storage_url: str,
    tmp_path: Path,
) -> None:
    spec = command_spec(budget={"maxTrials": 1})
    spec["trial"]["command"] = [sys.executable, PROBE, "stubborn", str(tmp_path), "{x}"]
    spec["pruner"] = {"name": "threshold", "args": {"upper": 2.5}}
    make_study(spec)
    code, output = run_worker(runner_env)
    assert code == 0, output
    trial = load(storage_url).trials[0]
    assert trial.state == TrialState.PRUNED
    assert (tmp_path / "sigterm").exists(), "the program got SIGTERM first"
    assert not (tmp_path / "finished").exists()
    program = int((tmp_path / "pid").read_text())
    assert not psutil.pid_exists(program) or psutil.Process(program).status() == "zombie", (
        "the program outlived its pruned trial"
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--mode", "crash"), "command exited with code 7: Traceback: something deep went wrong"),
        (("--mode", "silent"), "metric 'loss' was never printed"),
        (("--mode", "nan"), "objective returned NaN"),
    ],
)
def test_failing_command_ends_fail_with_reason(
    make_study: Callable[..., optuna.Study],
    runner_env: dict[str, str],
    storage_url: str,
    args: tuple[str, ...],
    reason: str,
) -> None:
    make_study(command_spec(*args))
    code, output = run_worker(runner_env)
    assert code == 0, output
    study = load(storage_url)
    assert states(study) == [TrialState.FAIL] * 2
    assert all(r.startswith(reason) for r in reasons(study)), reasons(study)


def test_command_not_found_stops_before_any_trial(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    spec = command_spec()
    spec["trial"]["command"] = ["no-such-trainer", "--x", "{x}"]
    make_study(spec)
    code, output = run_worker(runner_env)
    assert code == EXIT_CONFIG_ERROR
    assert "spec.trial.command[0]: program 'no-such-trainer' is not found on PATH" in output
    assert load(storage_url).trials == []


def test_parallel_workers_never_exceed_max_trials(
    make_study: Callable[..., optuna.Study],
    runner_env: dict[str, str],
    storage_url: str,
    tmp_path: Path,
) -> None:
    """Four workers finish their first trials together and all reach for the one
    trial left: exactly one gets it (without the claim lock, several would). Sixteen,
    through PgBouncer: tests/integration/test_pooled_claims.py."""
    workers_count = 4
    spec = python_spec("quadratic", maxTrials=workers_count + 1)
    spec["trial"]["python"] = "kt_race_objectives:meets_the_others"
    make_study(spec)
    barrier = {"KT_BARRIER_DIR": str(tmp_path), "KT_BARRIER_SIZE": str(workers_count)}
    workers = [
        start_worker(runner_env, worker=f"w{i}", KUBETUNE_WORKER_INDEX=str(i), **barrier)
        for i in range(workers_count)
    ]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * workers_count, outputs
    study = load(storage_url)
    assert len(list(tmp_path.iterdir())) == workers_count, "the first trials met"
    assert len(study.trials) == workers_count + 1, [t.user_attrs for t in study.trials]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len({t.user_attrs[WORKER_ATTR] for t in study.trials}) == workers_count


def test_trials_per_worker_quota(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    make_study(python_spec("quadratic", maxTrials=10))
    code, output = run_worker(runner_env, KUBETUNE_TRIALS_PER_WORKER="3")
    assert code == 0, output
    assert len(load(storage_url).trials) == 3


def test_too_many_failures_stops_the_worker(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    make_study(python_spec("raises", maxTrials=20, maxFailedTrials=2))
    code, output = run_worker(runner_env)
    assert code == 0, output
    assert len(load(storage_url).trials) == 3
    assert "TooManyFailedTrials" in output


def test_goal_stops_the_study(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], storage_url: str
) -> None:
    spec = python_spec("quadratic", maxTrials=50)
    spec["objective"]["goal"] = 1000.0  # any trial reaches it
    make_study(spec)
    code, output = run_worker(runner_env)
    assert code == 0, output
    assert len(load(storage_url).trials) == 1
    assert "GoalReached" in output


def test_sigterm_fails_and_requeues_the_running_trial(
    make_study: Callable[..., optuna.Study],
    runner_env: dict[str, str],
    storage_url: str,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "started"
    make_study(python_spec("sleeps", maxTrials=1))
    worker = start_worker(runner_env, KT_STARTED_MARKER=str(marker))
    _wait_for(marker.exists)
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 128 + signal.SIGTERM, output
    study = load(storage_url)
    first, retry = study.trials
    assert first.state == TrialState.FAIL
    assert first.user_attrs[FAIL_REASON_ATTR] == "worker w0 was stopped by SIGTERM"
    assert retry.state == TrialState.WAITING
    assert retry.system_attrs["fixed_params"] == first.params
    # The re-queued trial runs next, with the same parameters, and the budget is not overrun.
    code, output = run_worker(runner_env, KT_SLEEP="0")
    assert code == 0, output
    study = load(storage_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].params == first.params


def test_killed_worker_trial_is_failed_and_retried_by_a_supervisor(
    make_study: Callable[..., optuna.Study],
    runner_env: dict[str, str],
    storage_url: str,
    tmp_path: Path,
) -> None:
    """A SIGKILLed worker cannot clean up: its supervisor notices and recovers the trial,
    once per allowed retry. (What reason a supervisor gives is tested through the
    supervisors: ``kubetune run`` in test_local.py, the operator in tests/e2e.)"""
    marker = tmp_path / "started"
    spec = python_spec("sleeps", maxTrials=1)
    spec["trial"]["retries"] = 1
    study = make_study(spec)

    def kill_the_worker_of_a_running_trial(worker_name: str) -> list[Any]:
        marker.unlink(missing_ok=True)
        worker = start_worker(runner_env, worker=worker_name, KT_STARTED_MARKER=str(marker))
        _wait_for(marker.exists)
        assert lost_trials(study.get_trials(), live_workers={worker_name}) == []
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        return lost_trials(study.get_trials(), live_workers=set())

    lost = kill_the_worker_of_a_running_trial("pod-x")
    assert [t.number for t in lost] == [0]
    assert fail_lost_trials(study, lost, "pod pod-x OOMKilled", retries=1) == [0]
    # Failing the same trial again (a second supervisor, a later tick) does nothing.
    assert fail_lost_trials(study, lost, "pod pod-x OOMKilled", retries=1) == []
    retry = load(storage_url).trials[1]
    assert retry.state == TrialState.WAITING
    assert retry.system_attrs["fixed_params"] == lost[0].params
    # The retry runs with the same parameters; its worker is killed too: retries: 1
    # allows no third attempt, so nothing is queued again.
    lost = kill_the_worker_of_a_running_trial("pod-y")
    assert [t.number for t in lost] == [1]
    assert lost[0].params == study.trials[0].params
    assert fail_lost_trials(study, lost, "pod pod-y OOMKilled", retries=1) == [1]
    assert states(load(storage_url)) == [TrialState.FAIL, TrialState.FAIL]
    # The budget counts the last attempt: a new worker finds nothing to do.
    code, output = run_worker(runner_env, KT_SLEEP="0")
    assert code == 0, output
    assert "MaxTrialsReached" in output
    assert len(load(storage_url).trials) == 2


def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_a_claim_cut_off_by_a_restart_is_made_again_and_finds_the_budget_spent(
    make_study: Callable[..., optuna.Study],
    storage_url: str,
    postgres_server: Any,
    runner_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database restart cuts the claim's connection mid-claim; another worker takes
    the last trial of the budget meanwhile. The cut claim's transaction left nothing
    behind; made again, it finds the budget spent: never more than maxTrials."""
    import psycopg2
    import sqlalchemy
    from kubetune.engine.ledger import TrialLedger
    from kubetune.engine.worker import WorkerConfig
    from kubetune_trial import runner
    from kubetune_trial.runner import Worker, WorkerSummary

    monkeypatch.syspath_prepend(runner_env["PYTHONPATH"].split(os.pathsep)[0])
    make_study(python_spec("quadratic", maxTrials=1))
    worker = Worker(WorkerConfig(study_name="s", worker_name="a"), storage_url)
    other_worker = load(storage_url)
    create = runner.create_running_trial
    cut: list[int] = []

    def create_then_cut_the_connection(*args: Any, **kwargs: Any) -> int:
        trial_id = create(*args, **kwargs)
        if not cut:
            session = worker.study._storage._backend.scoped_session()
            cut.append(session.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar())
            admin = psycopg2.connect(postgres_server.get_uri())
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", (cut[0],))
            admin.close()
            claimed = other_worker.ask()
            other_worker._storage.set_trial_user_attr(claimed._trial_id, WORKER_ATTR, "b")
        return trial_id

    monkeypatch.setattr(runner, "create_running_trial", create_then_cut_the_connection)
    summary = WorkerSummary()
    assert worker._claim(summary) is None
    assert cut, "the claim's connection was cut"
    assert summary.stop is not None and summary.stop.value == "MaxTrialsReached"
    trials = load(storage_url).trials
    assert [t.user_attrs.get(WORKER_ATTR) for t in trials] == ["b"]
    assert TrialLedger.of(trials, ["minimize"]).spending.trials == 1
    worker.lock.close()
