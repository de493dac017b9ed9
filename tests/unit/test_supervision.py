"""The supervision policy, situation by situation: what the operator and
``kubetune run`` do next. No cluster, no process, no database."""

from __future__ import annotations

from typing import Any

import pytest
from kubetune.engine.budget import Spending, StopReason
from kubetune.engine.supervision import Decision, EndedWorker, Outcome, Situation, decide
from kubetune.study.spec import validate_spec


def situation(
    *,
    budget: dict[str, Any] | None = None,
    trials: int = 0,
    failures: int = 0,
    live: int = 0,
    busy: int = 0,
    queued: int = 0,
    finishing: int = 0,
    running: int = 0,
    ended: tuple[EndedWorker, ...] = (),
    in_a_row: int = 0,
    suspend: bool = False,
    now: float = 100.0,
    deadline: float | None = None,
    best: float | None = None,
    **spec_changes: Any,
) -> Situation:
    spec = validate_spec(
        {
            "budget": {"maxTrials": 10, "parallelism": 4, **(budget or {})},
            "suspend": suspend,
            "trial": {"python": "examples.objectives.quadratic:objective"},
            **spec_changes,
        }
    )
    return Situation(
        spec=spec,
        spending=Spending(trials=trials, failures=failures, best_value=best),
        now=now,
        deadline=deadline,
        live_workers=live,
        busy_workers=busy,
        queued_workers=queued,
        finishing_workers=finishing,
        running_trials=running,
        ended=ended,
        ends_without_progress=in_a_row,
    )


def crashed(name: str = "w", progressed: bool = False) -> EndedWorker:
    return EndedWorker(name, Outcome.CRASHED, f"{name} was OOMKilled", progressed)


def done(name: str = "w", progressed: bool = True) -> EndedWorker:
    return EndedWorker(name, Outcome.DONE, "exited", progressed)


def cannot_run(name: str = "w") -> EndedWorker:
    return EndedWorker(name, Outcome.CANNOT_RUN, "spec.trial.python: no module 'trian'", False)


@pytest.mark.parametrize(
    ("seen", "start", "retire"),
    [
        # A new study: as many workers as parallelism.
        (situation(), 4, 0),
        # Two trials left, one of them running: a worker per trial, no more.
        (situation(trials=8, live=1, busy=1), 2, 0),
        # Every trial started: no new worker, the running ones finish.
        (situation(trials=10, live=2, busy=2, running=2), 0, 0),
        # Parallelism lowered to 1 with three workers, one busy: the two idle go.
        (situation(budget={"parallelism": 1}, trials=3, live=3, busy=1), 0, 2),
        # Lowered below the busy workers: busy workers are never retired.
        (situation(budget={"parallelism": 1}, trials=3, live=3, busy=3), 0, 0),
        # Workers beyond what the budget needs are not retired (they exit by themselves).
        (situation(trials=9, live=4, busy=0), 0, 0),
        # Two pods done with their trialsPerPod, exiting: replaced now, not retired.
        (situation(trials=4, live=4, busy=2, finishing=2), 2, 0),
        # Parallelism lowered to 2 while two finish: nothing to start, nothing to retire.
        (situation(budget={"parallelism": 2}, trials=4, live=4, busy=2, finishing=2), 0, 0),
    ],
)
def test_how_many_workers_run(seen: Situation, start: int, retire: int) -> None:
    decision = decide(seen)
    assert (decision.phase, decision.start_workers, decision.retire_idle_workers) == (
        "Running",
        start,
        retire,
    )


def test_a_grid_starts_no_more_workers_than_points_left() -> None:
    seen = situation(
        sampler={"name": "grid"},
        searchSpace={"c": {"type": "categorical", "choices": ["a", "b", "c"]}},
        trials=1,
        live=1,
        busy=1,
    )
    assert decide(seen).start_workers == 2


@pytest.mark.parametrize(
    ("seen", "phase", "stop", "stops_workers"),
    [
        # Budget spent, trials still running: wait for them.
        (situation(trials=10, live=2, busy=2, running=2), "Running", StopReason.MAX_TRIALS, False),
        # Budget spent and nothing left running: done.
        (situation(trials=10), "Succeeded", StopReason.MAX_TRIALS, False),
        # The deadline passed: running workers are stopped now, the study is over.
        (
            situation(budget={"timeout": "1m"}, trials=3, live=2, busy=2, running=2, deadline=50),
            "Succeeded",
            StopReason.TIMEOUT,
            True,
        ),
        # The goal is reached: the same.
        (
            situation(
                objective={"direction": "minimize", "goal": 0.1},
                trials=3,
                live=1,
                busy=1,
                running=1,
                best=0.05,
            ),
            "Succeeded",
            StopReason.GOAL,
            True,
        ),
        # Too many failed trials: the study fails and its workers stop.
        (
            situation(budget={"maxFailedTrials": 2}, trials=4, failures=3, live=1, running=1),
            "Failed",
            StopReason.TOO_MANY_FAILURES,
            True,
        ),
    ],
)
def test_when_the_study_is_over(
    seen: Situation, phase: str, stop: StopReason, stops_workers: bool
) -> None:
    decision = decide(seen)
    assert (decision.phase, decision.stop) == (phase, stop)
    assert decision.finished == (phase != "Running")
    assert bool(decision.stop_workers) == stops_workers
    assert decision.start_workers == 0
    assert not decision.requeue  # trials stopped by the study's end are not run again
    if decision.finished:
        assert decision.reason  # the status and the CLI say why
    # Marked ended before its workers are stopped (bridge.mark_ended), with the reason
    # their trials fail with; a study still finishing its running trials is not.
    expected_mark = decision.stop_workers or (decision.reason if decision.finished else None)
    assert decision.ends_study == expected_mark


def test_suspending_stops_the_workers_and_queues_their_trials_again() -> None:
    decision = decide(situation(suspend=True, trials=3, live=2, busy=2, running=2))
    assert decision.phase == "Suspended"
    assert decision.stop_workers == "the study was suspended"
    assert decision.requeue
    assert decision.ends_study is None, "a suspend is no end: the trials run again"
    assert not decision.finished
    assert decision.start_workers == 0


def test_a_suspended_study_with_no_worker_only_waits() -> None:
    decision = decide(situation(suspend=True, trials=3))
    assert decision == Decision(phase="Suspended", requeue=True)


def test_a_worker_that_cannot_load_the_objective_fails_the_study_at_once() -> None:
    decision = decide(situation(live=3, busy=0, ended=(cannot_run("pod-a"),)))
    assert decision.phase == "Failed"
    assert decision.finished
    assert decision.stop_workers
    assert decision.reason == "spec.trial.python: no module 'trian'"
    assert decision.ends_study == "the study failed"
    assert decision.broken_worker is not None and decision.broken_worker.name == "pod-a"


@pytest.mark.parametrize(
    ("in_a_row", "ended", "phase", "after"),
    [
        # The third worker in a row dying before it finished a trial fails the study.
        (2, (crashed("c"),), "Failed", 3),
        (0, (crashed("a"), crashed("b"), crashed("c")), "Failed", 3),
        # Two in a row is not yet a loop: the study goes on, and remembers the count.
        (1, (crashed("b"),), "Running", 2),
        # A worker that finished trials before dying breaks the run of failures.
        (2, (crashed("c", progressed=True),), "Running", 0),
        # So does one that exited cleanly after trials of its own.
        (2, (done("c"),), "Running", 0),
        # A clean exit with no trial (nothing was left to claim) changes nothing.
        (2, (done("c", progressed=False),), "Running", 2),
    ],
)
def test_workers_that_keep_dying_fail_the_study(
    in_a_row: int, ended: tuple[EndedWorker, ...], phase: str, after: int
) -> None:
    decision = decide(situation(trials=2, live=1, ended=ended, in_a_row=in_a_row))
    assert (decision.phase, decision.ends_without_progress) == (phase, after)
    if phase == "Failed":
        assert "3 workers in a row" in decision.reason
        assert "c was OOMKilled" in decision.reason  # the last one's reason


def test_the_crash_limit_is_the_supervisors_to_set() -> None:
    seen = situation(trials=2, ended=(crashed("a"),), in_a_row=3)
    assert decide(seen, max_ends_without_progress=5).phase == "Running"
    assert decide(seen, max_ends_without_progress=4).phase == "Failed"


def test_failing_wins_over_suspending_and_over_a_spent_budget() -> None:
    for seen in (
        situation(suspend=True, ended=(cannot_run(),)),
        situation(trials=10, ended=(cannot_run(),)),
    ):
        assert decide(seen).phase == "Failed"


# ---------------------------------------------------------------- queued workers
# A worker held back by a queue (a pod Kueue has not admitted) is waiting its turn.


def test_queued_workers_long_waiting_are_not_failing_and_not_replaced() -> None:
    # Four pods queued since long before any stuck-pod threshold: the study runs on,
    # starts no extra pod (they count toward parallelism) and retires none.
    decision = decide(situation(trials=0, live=4, busy=0, queued=4, now=1e9, in_a_row=2))
    assert decision.phase == "Running"
    assert (decision.start_workers, decision.retire_idle_workers) == (0, 0)
    assert decision.retire_queued_workers == 0
    assert decision.ends_without_progress == 2  # waiting adds nothing to the crash count
    assert decision.stop_workers is None and not decision.finished


def test_a_preempted_worker_is_not_a_crash() -> None:
    preempted = tuple(
        EndedWorker(n, Outcome.PREEMPTED, f"pod {n} was preempted (StoppedByKueue)", False)
        for n in ("a", "b", "c", "d")
    )
    decision = decide(situation(trials=2, live=0, ended=preempted, in_a_row=2))
    assert decision.phase == "Running"
    assert decision.ends_without_progress == 2
    assert decision.start_workers == 4  # replaced: their places in the queue are taken again


@pytest.mark.parametrize(
    ("seen", "retire_queued", "retire_idle"),
    [
        # One trial running, one left to start; three queued pods: one of them is needed.
        (situation(trials=9, live=4, busy=1, queued=3, running=1), 2, 0),
        # Two left to start: two of them are needed.
        (situation(trials=8, live=4, busy=1, queued=3, running=1), 1, 0),
        # Parallelism lowered from 4 to 2, one busy, one idle running, two queued:
        # the queued ones go first (they hold no trial and no node).
        (situation(budget={"parallelism": 2}, trials=1, live=4, busy=1, queued=2), 2, 0),
        # Lowered to 1: both queued go, then the idle running one.
        (situation(budget={"parallelism": 1}, trials=1, live=4, busy=1, queued=2), 2, 1),
    ],
)
def test_queued_workers_go_first_when_fewer_are_wanted(
    seen: Situation, retire_queued: int, retire_idle: int
) -> None:
    decision = decide(seen)
    assert (decision.retire_queued_workers, decision.retire_idle_workers) == (
        retire_queued,
        retire_idle,
    )


def test_a_spent_budget_does_not_wait_for_queued_workers() -> None:
    # The last trial runs; two queued pods could only start to find nothing: they go.
    running = decide(situation(trials=10, live=3, busy=1, queued=2, running=1))
    assert (running.phase, running.stop, running.retire_queued_workers) == (
        "Running",
        StopReason.MAX_TRIALS,
        2,
    )
    # Nothing running and only queued pods left: the study is over now.
    over = decide(situation(trials=10, live=2, busy=0, queued=2, running=0))
    assert (over.phase, over.finished) == ("Succeeded", True)
