"""Running totals of a study's trials: counts, what the budget has spent, the
best trial or the Pareto front.

A finished trial never changes (Optuna refuses updates to it), so a
:class:`TrialLedger` folds each one into its totals once and, on the next
:meth:`~TrialLedger.update`, looks again only at trials that were unfinished or
new. The operator keeps one ledger per study between reconcile ticks, the
trial runner one per worker between claims, so their cost per tick or claim
stays flat as a study grows to thousands of trials.

Example:
    >>> ledger = TrialLedger(["minimize"])
    >>> ledger.update(study.get_trials(deepcopy=False))  # doctest: +SKIP
    >>> ledger.counts.finished, ledger.spending.trials, ledger.best  # doctest: +SKIP
    (12, 12, [FrozenTrial(number=7, ...)])
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from kubetune.engine.budget import Spending, was_retried
from kubetune.engine.recovery import FAIL_REASON_ATTR, STOPPED_ATTR, WORKER_ATTR
from kubetune.engine.scripts import NOTE_ATTR
from kubetune.study.spec import TrialCounts

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


class TrialLedger:
    """A study's trials, finished ones folded into totals once each.

    ``directions`` are the study's, ``"minimize"``/``"maximize"`` per objective.
    Pass :meth:`update` the study's whole trial list each time (Optuna's
    ``get_trials`` returns it in trial-number order); a list that does not
    continue the one seen before (another study, a study re-created under the
    same name) starts the totals again.
    """

    def __init__(self, directions: Sequence[str]) -> None:
        self._maximize = [direction.lower() == "maximize" for direction in directions]
        self._reset()

    @classmethod
    def of(cls, trials: Sequence[FrozenTrial], directions: Sequence[str]) -> TrialLedger:
        """A ledger of ``trials``, for one-off questions."""
        ledger = cls(directions)
        ledger.update(trials)
        return ledger

    def _reset(self) -> None:
        # Trials [0, _prefix) are all finished and folded; beyond it, _folded_ids
        # holds the finished trials already folded (trials finish out of order).
        self._prefix = 0
        self._prefix_last_id: int | None = None
        self._folded_ids: set[int] = set()
        self._finished = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "STOPPED": 0}
        self._started = 0
        self._failures = 0
        self._best: FrozenTrial | None = None
        self._front: list[FrozenTrial] = []
        self._open: list[FrozenTrial] = []
        self._finished_per_worker: Counter[str] = Counter()
        # The first failure's reason, and whether every failure so far had it.
        self._failure_reason: str | None = None
        self._uniform_failures = True
        self._script_note: str | None = None
        # Spend: the finished attempts' run time; the plateau rule: each new best value
        # with the count of settled trials when it came.
        self._finished_seconds = 0.0
        self._best_history: list[tuple[int, float]] = []
        # The live line: each new best value with its trial's number, as they came.
        self._new_bests: list[tuple[int, float]] = []

    def update(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """Fold the trials that finished since the last update, remember the open ones;
        returns the newly finished trials."""
        if not self._continues(trials):
            self._reset()
        open_trials: list[FrozenTrial] = []
        finished: list[FrozenTrial] = []
        for index in range(self._prefix, len(trials)):
            trial = trials[index]
            if not trial.state.is_finished():
                open_trials.append(trial)
                self._note_script(trial)
            elif trial._trial_id not in self._folded_ids:
                self._fold(trial)
                self._folded_ids.add(trial._trial_id)
                finished.append(trial)
        while self._prefix < len(trials) and trials[self._prefix].state.is_finished():
            self._folded_ids.discard(trials[self._prefix]._trial_id)
            self._prefix += 1
        self._prefix_last_id = trials[self._prefix - 1]._trial_id if self._prefix else None
        self._open = open_trials
        return finished

    def _continues(self, trials: Sequence[FrozenTrial]) -> bool:
        if self._prefix == 0:
            return True
        return (
            len(trials) >= self._prefix
            and trials[self._prefix - 1]._trial_id == self._prefix_last_id
        )

    def _fold(self, trial: FrozenTrial) -> None:
        from optuna.trial import TrialState

        self._note_script(trial)
        stopped = trial.state == TrialState.FAIL and STOPPED_ATTR in trial.user_attrs
        self._finished["STOPPED" if stopped else trial.state.name] += 1
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker is not None:
            self._finished_per_worker[str(worker)] += 1
        if trial.datetime_start is not None and trial.datetime_complete is not None:
            self._finished_seconds += max(
                0.0, (trial.datetime_complete - trial.datetime_start).total_seconds()
            )
        if not was_retried(trial):
            self._started += 1
            if trial.state == TrialState.FAIL:
                self._failures += 1
                reason = failure_summary(trial)
                if self._failure_reason is None:
                    self._failure_reason = reason
                elif reason_key(reason) != reason_key(self._failure_reason):
                    self._uniform_failures = False
        values = trial.values
        if (
            trial.state != TrialState.COMPLETE
            or values is None
            or len(values) != len(self._maximize)
            or not all(math.isfinite(v) for v in values)
        ):
            return
        if len(self._maximize) == 1:
            if self._best is None or self._better(trial, self._best):
                if self._best is None or trial.values[0] != self._best.values[0]:
                    self._best_history.append((self._started, trial.values[0]))
                    self._new_bests.append((trial.number, trial.values[0]))
                self._best = trial
        elif not any(self._dominates(kept, trial) for kept in self._front):
            self._front = [kept for kept in self._front if not self._dominates(trial, kept)]
            self._front.append(trial)

    def _note_script(self, trial: FrozenTrial) -> None:
        if self._script_note is None and trial.user_attrs.get(NOTE_ATTR):
            self._script_note = str(trial.user_attrs[NOTE_ATTR])

    def _better(self, trial: FrozenTrial, than: FrozenTrial) -> bool:
        """Single objective: a better value, or the same value and an earlier trial."""
        value, other = trial.values[0], than.values[0]
        if value == other:
            return trial.number < than.number
        return value > other if self._maximize[0] else value < other

    def _dominates(self, trial: FrozenTrial, other: FrozenTrial) -> bool:
        """Pareto dominance: no worse in every objective and better in one."""
        no_worse, better = True, False
        for maximize, a, b in zip(self._maximize, trial.values, other.values, strict=True):
            if (a < b) if maximize else (a > b):
                no_worse = False
                break
            if a != b:
                better = True
        return no_worse and better

    # ------------------------------------------------------------ answers

    @property
    def open(self) -> list[FrozenTrial]:
        """Trials waiting or running at the last update, in number order."""
        return self._open

    @property
    def running(self) -> list[FrozenTrial]:
        from optuna.trial import TrialState

        return [t for t in self._open if t.state == TrialState.RUNNING]

    @property
    def counts(self) -> TrialCounts:
        running = len(self.running)
        return TrialCounts(
            waiting=len(self._open) - running,
            running=running,
            complete=self._finished["COMPLETE"],
            pruned=self._finished["PRUNED"],
            failed=self._finished["FAIL"],
            stopped=self._finished["STOPPED"],
        )

    @property
    def spending(self) -> Spending:
        """What counts against the budget: started trials (running ones too, not
        attempts that were retried), failures, and the best value so far."""
        from optuna.trial import TrialState

        started_now = sum(
            1 for t in self._open if t.state == TrialState.RUNNING and not was_retried(t)
        )
        best = self._best.values[0] if self._best is not None else None
        succeeded = self._finished["COMPLETE"] + self._finished["PRUNED"]
        uniform = self._failures if not succeeded and self._uniform_failures else 0
        return Spending(
            trials=self._started + started_now,
            failures=self._failures,
            best_value=best,
            uniform_failures=uniform,
            failure_reason=self._failure_reason if uniform else None,
            trial_seconds=self._finished_seconds + self._running_seconds(),
            settled=self._started,
            best_history=tuple(self._best_history),
        )

    def _running_seconds(self) -> float:
        """How long the running trials have run so far. Optuna stamps trials with the
        local clock's naive ``datetime.now()``, so the same clock measures them."""
        now = datetime.now()
        return sum(
            max(0.0, (now - t.datetime_start).total_seconds())
            for t in self.running
            if t.datetime_start is not None
        )

    @property
    def script_note(self) -> str | None:
        """What a worker said on importing the objective's module stopped at the script's
        own ``study.optimize`` (the first trial noting it, running or finished), if any:
        kubetune run and the operator say it once where the user looks."""
        return self._script_note

    @property
    def workers(self) -> set[str]:
        """The workers (pods, local processes) named by any trial."""
        open_workers = {
            str(t.user_attrs[WORKER_ATTR]) for t in self._open if WORKER_ATTR in t.user_attrs
        }
        return set(self._finished_per_worker) | open_workers

    def finished_by(self, worker: str) -> int:
        """How many of the study's finished trials ``worker`` ran last (a retry names the
        worker that claimed it): against its ``trialsPerPod``, what it has done."""
        return self._finished_per_worker[worker]

    @property
    def best(self) -> list[FrozenTrial]:
        """The best complete trial (one objective; the earliest among equals), or the
        Pareto front of complete trials in number order; only finite values count."""
        if len(self._maximize) == 1:
            return [self._best] if self._best is not None else []
        return sorted(self._front, key=lambda t: t.number)

    @property
    def new_bests(self) -> list[tuple[int, float]]:
        """Each new best value of a single-objective study with its trial's number, in
        the order they came (a display announces every one, not only the latest)."""
        return list(self._new_bests)


#: Numbers in a reason (a value, a size, a line, a process id) do not make it another reason.
_NUMBER = re.compile(r"\d+(\.\d+)?")


def failure_summary(trial: FrozenTrial) -> str:
    """The first line of a failed trial's reason."""
    reason = str(trial.user_attrs.get(FAIL_REASON_ATTR) or "").strip()
    return reason.splitlines()[0] if reason else "no reason recorded"


def reason_key(reason: str) -> str:
    """What two reasons share when they differ only in numbers."""
    return _NUMBER.sub("#", reason)
