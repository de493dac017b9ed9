"""Where each running trial stands, as the pruner sees it: against the finished
trials' intermediate values at the same step.

The operator uses it to let a queue preempt the weakest running trials first: a
running trial worse than the median of the finished trials at its latest reported
step (the median pruner's test, before that pruner would stop it) is in the weaker
half. Trials with no report yet, or at a step fewer than two finished trials
reached, are not judged. Multi-objective studies are never judged (Optuna cannot
prune them).

Example:
    >>> import optuna
    >>> finished = [optuna.trial.create_trial(value=v, intermediate_values={1: v},
    ...             state=optuna.trial.TrialState.COMPLETE) for v in (1.0, 2.0, 3.0)]
    >>> standing = Standing(["minimize"])
    >>> standing.add(finished)
    >>> running = optuna.trial.create_trial(intermediate_values={1: 2.5},
    ...                                     state=optuna.trial.TrialState.RUNNING)
    >>> standing.weaker_half([running]) == {running.number}
    True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

#: Finished trials whose curves count: a failed trial's values say nothing of its parameters.
JUDGED_STATES = ("COMPLETE", "PRUNED")
#: Finished trials needed at a step before a running trial is judged there.
MIN_PEERS = 2


class Standing:
    """The finished trials' intermediate values by step, folded in once each."""

    def __init__(self, directions: Sequence[str]) -> None:
        self._maximize = len(directions) == 1 and directions[0].lower() == "maximize"
        self._judged = len(directions) == 1
        self._by_step: dict[int, list[float]] = {}

    def add(self, finished: Iterable[FrozenTrial]) -> None:
        """Fold newly finished trials in (pass each trial once)."""
        for trial in finished:
            if trial.state.name not in JUDGED_STATES:
                continue
            for step, value in trial.intermediate_values.items():
                if math.isfinite(value):
                    self._by_step.setdefault(step, []).append(value)

    def weaker_half(self, running: Iterable[FrozenTrial]) -> set[int]:
        """The numbers of the running trials worse than the finished trials' median at
        their latest reported step."""
        weak: set[int] = set()
        if not self._judged:
            return weak
        for trial in running:
            if not trial.intermediate_values:
                continue
            step = max(trial.intermediate_values)
            value = trial.intermediate_values[step]
            peers = self._by_step.get(step, [])
            if len(peers) < MIN_PEERS or not math.isfinite(value):
                continue
            median = statistics.median(peers)
            if (value < median) if self._maximize else (value > median):
                weak.add(trial.number)
        return weak
