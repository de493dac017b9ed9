"""The supervision policy: what a study's supervisor does next, given what it saw.

Two supervisors run a study's workers: the operator (trial pods) and
``kubetune run`` (local processes). They observe differently and act
differently, but decide the same way, here: how many workers to start or
retire, when to stop the workers and whether their trials run again, when the
study is over and why, and when workers that keep dying or cannot load the
objective fail the study. :func:`decide` is a pure function of a
:class:`Situation`: no cluster, no process, no database.

A worker held back by a queue (a trial pod Kueue has not admitted yet) is
waiting its turn: it is neither busy nor failing, it never counts toward the
crash rule, and it is the first to go when fewer workers are wanted (it holds
no trial and no node, and a queue's quota is shared). A worker stopped by a
preemption is not a crash either: another workload's priority is no fault of
the objective.

Example:
    >>> from kubetune.engine.budget import Spending
    >>> from kubetune.study.spec import validate_spec
    >>> spec = validate_spec({"budget": {"maxTrials": 10, "parallelism": 4},
    ...                       "trial": {"python": "examples.objectives.quadratic:objective"}})
    >>> situation = Situation(spec, Spending(trials=8, failures=0, best_value=1.0),
    ...                       now=0.0, deadline=None, live_workers=1, busy_workers=1)
    >>> decide(situation).start_workers     # 2 trials left, one running: one more worker
    2
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from kubetune.engine.budget import Spending, StopReason, describe, stop_reason, trial_limit
from kubetune.study.spec import StudySpec

#: Workers ending in a row without finishing a trial (crashing, or failing before
#: their first), after which the study fails: the next one would do the same.
MAX_ENDS_WITHOUT_PROGRESS = 3

#: Stop reasons that stop running trials at once; the others let them finish. A spent
#: budget is one: a running trial would keep spending past it (as past a timeout).
STOP_NOW = (
    StopReason.TIMEOUT,
    StopReason.GOAL,
    StopReason.TOO_MANY_FAILURES,
    StopReason.BUDGET_SPENT,
)

Phase = Literal["Running", "Suspended", "Succeeded", "Failed"]


class Outcome(str, enum.Enum):
    """How a worker ended, as its supervisor classifies its exit."""

    DONE = "done"
    """It exited by itself, cleanly (its share of the budget is spent)."""
    CANNOT_RUN = "cannot-run"
    """It could not run any trial and no other worker could (the objective does not
    load, the spec is wrong): the study fails with its reason."""
    CRASHED = "crashed"
    """It died (killed, out of memory, an error of its own); its trials are lost."""
    PREEMPTED = "preempted"
    """It was stopped to make room for other work (Kueue or the scheduler preempted
    it, a node was drained); its trials are lost but it says nothing of the objective."""


@dataclass(frozen=True)
class EndedWorker:
    """A worker seen ended since the supervisor last looked."""

    name: str
    outcome: Outcome
    reason: str
    """Why it ended, for people: ``pod OOMKilled (exit code 137)``, the objective's error."""
    progressed: bool
    """It finished a trial of its own."""


@dataclass(frozen=True)
class Situation:
    """What a supervisor saw of its study."""

    spec: StudySpec
    spending: Spending
    now: float
    deadline: float | None
    live_workers: int
    """Workers alive (pods not ended, processes running), after ``ended`` were removed."""
    busy_workers: int
    """Live workers running a trial."""
    queued_workers: int = 0
    """Live workers a queue holds back (not admitted yet): they run nothing, they wait."""
    running_trials: int = 0
    """Trials the storage shows running (a trial outlives its worker until failed)."""
    ended: tuple[EndedWorker, ...] = ()
    """Workers that ended since the last decision, oldest first."""
    ends_without_progress: int = 0
    """Workers that ended in a row without progress before ``ended`` (the last
    decision's :attr:`Decision.ends_without_progress`)."""
    stop_requested: str | None = None
    """Why the study was asked to stop (``study.stop()`` in a script's callback), if it was."""
    finishing_workers: int = 0
    """Live workers that ran all the trials they were started for (``trialsPerPod``) and
    are exiting: while the study runs, each is replaced at once, not when its pod ends
    (which no one announces), and never retired (it goes by itself)."""


@dataclass(frozen=True)
class Decision:
    """What the supervisor does now, and what it remembers until the next look."""

    phase: Phase
    start_workers: int = 0
    retire_idle_workers: int = 0
    """Running workers with no trial to remove (parallelism went down)."""
    retire_queued_workers: int = 0
    """Queued workers to remove: more than parallelism, or than the trials left need
    (a queued worker cannot see that there is nothing left for it and exit)."""
    stop_workers: str | None = None
    """Stop every live worker, failing their trials with this reason."""
    requeue: bool = False
    """The stopped workers' trials run again first (a suspend or Ctrl-C costs no attempt)."""
    finished: bool = False
    """The study is over: no worker left to wait for."""
    stop: StopReason | None = None
    reason: str = ""
    """Why the study is over, or why it fails, for people."""
    ends_without_progress: int = 0
    broken_worker: EndedWorker | None = field(default=None, compare=False)
    """The worker whose end failed the study, when one did."""

    @property
    def ends_study(self) -> str | None:
        """Why the study is over for good, when this decision ends it (its workers are
        stopped and their trials not run again, or it finished): the supervisor marks
        the study so before it stops the workers (:func:`kubetune.engine.bridge.mark_ended`).
        None for a suspend or while the study runs.

        Example:
            >>> Decision(phase="Failed", stop_workers="the study failed", finished=True).ends_study
            'the study failed'
            >>> Decision(phase="Suspended", stop_workers="the study was suspended",
            ...          requeue=True).ends_study is None
            True
        """
        if self.stop_workers and not self.requeue:
            return self.stop_workers
        if self.finished:
            return self.reason or f"the study ended ({self.phase})"
        return None


def decide(
    situation: Situation, *, max_ends_without_progress: int = MAX_ENDS_WITHOUT_PROGRESS
) -> Decision:
    """The next step for a study in ``situation`` (see the module docstring)."""
    spec = situation.spec
    in_a_row, broken = _fold_ended(situation)
    failing = broken is not None or in_a_row >= max_ends_without_progress
    if failing:
        return Decision(
            phase="Failed",
            stop_workers="the study failed",
            finished=True,
            reason=_failure_reason(broken, in_a_row, situation.ended),
            ends_without_progress=in_a_row,
            broken_worker=broken or (situation.ended[-1] if situation.ended else None),
        )
    if spec.suspend:
        return Decision(
            phase="Suspended",
            stop_workers="the study was suspended" if situation.live_workers else None,
            requeue=True,
            ends_without_progress=in_a_row,
        )
    stop = stop_reason(
        spec,
        situation.spending,
        now=situation.now,
        deadline=situation.deadline,
        stop_requested=situation.stop_requested,
    )
    if stop is None:
        remaining = max(0, trial_limit(spec) - situation.spending.trials)
        wanted = min(spec.budget.parallelism, situation.busy_workers + remaining)
        queued = situation.queued_workers
        staying = situation.live_workers - situation.finishing_workers
        idle = staying - situation.busy_workers  # the queued among them
        # Down to parallelism only: a worker over what the budget needs finds no trial
        # to claim and exits by itself, and one just starting may be about to claim.
        over_parallelism = min(idle, max(0, staying - spec.budget.parallelism))
        # A queued worker cannot exit by itself: the ones the trials left do not need go.
        unneeded_queued = min(queued, max(0, staying - wanted))
        retire_queued = max(unneeded_queued, min(queued, over_parallelism))
        return Decision(
            phase="Running",
            start_workers=max(0, wanted - staying),
            retire_idle_workers=max(0, over_parallelism - retire_queued),
            retire_queued_workers=retire_queued,
            ends_without_progress=in_a_row,
        )
    stopping_now = stop in STOP_NOW and situation.live_workers > 0
    # Queued workers are not waited for: they would only start to find nothing to do.
    live = 0 if stop in STOP_NOW else situation.live_workers - situation.queued_workers
    if live == 0 and (situation.running_trials == 0 or stop in STOP_NOW):
        return Decision(
            phase="Failed" if stop.is_failure else "Succeeded",
            stop_workers=f"the study stopped: {stop.value}" if stopping_now else None,
            finished=True,
            stop=stop,
            reason=describe(stop, spec, situation.spending, situation.stop_requested),
            ends_without_progress=in_a_row,
        )
    # The budget is spent: the running trials finish, no worker starts, none waits in a queue.
    return Decision(
        phase="Running",
        stop=stop,
        retire_queued_workers=situation.queued_workers,
        ends_without_progress=in_a_row,
    )


def _fold_ended(situation: Situation) -> tuple[int, EndedWorker | None]:
    """The count of workers ended in a row without progress, after ``ended``; and the
    first that could not run, if one could not."""
    in_a_row = situation.ends_without_progress
    for worker in situation.ended:
        if worker.outcome is Outcome.CANNOT_RUN:
            return in_a_row, worker
        if worker.progressed:
            in_a_row = 0
        elif worker.outcome is Outcome.CRASHED:  # not PREEMPTED: no fault of its own
            in_a_row += 1
    return in_a_row, None


def _failure_reason(
    broken: EndedWorker | None, in_a_row: int, ended: tuple[EndedWorker, ...]
) -> str:
    if broken is not None:
        return broken.reason
    last = ended[-1].reason if ended else "see the workers' logs"
    return f"{in_a_row} workers in a row ended without finishing a trial; the last: {last}"
