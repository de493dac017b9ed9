"""What a study has spent and whether it may start another trial.

The trial runner asks :func:`stop_reason` (under the claim lock) before every
trial; the operator and ``kubetune run`` ask it to decide that a study is
done. One function, so the cluster and the laptop stop for the same reasons.

Example:
    >>> from kubetune.spec import validate_spec
    >>> spec = validate_spec({"budget": {"maxTrials": 3},
    ...                       "trial": {"python": "examples.objectives.quadratic:objective"}})
    >>> stop_reason(spec, [], now=0.0, deadline=None) is None
    True
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubetune.spec import StudySpec, TrialCounts

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

#: A failed attempt that was retried carries this user attribute; it does not
#: count against maxTrials or maxFailedTrials (its retry does).
RETRIED_ATTR = "kubetune.retried"


class StopReason(str, enum.Enum):
    """Why a study stops starting trials; the value is the condition reason shown to users."""

    MAX_TRIALS = "MaxTrialsReached"
    GOAL = "GoalReached"
    TIMEOUT = "Timeout"
    TOO_MANY_FAILURES = "TooManyFailedTrials"

    @property
    def is_failure(self) -> bool:
        return self is StopReason.TOO_MANY_FAILURES


def count_trials(trials: Sequence[FrozenTrial]) -> TrialCounts:
    """Trials by state, as the status shows them."""
    from optuna.trial import TrialState

    counts = {state: 0 for state in TrialState}
    for trial in trials:
        counts[trial.state] += 1
    return TrialCounts(
        waiting=counts[TrialState.WAITING],
        running=counts[TrialState.RUNNING],
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL],
    )


def was_retried(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(RETRIED_ATTR))


@dataclass(frozen=True)
class Spending:
    """What counts against the budget."""

    trials: int
    """Trials started, excluding attempts that were retried."""
    failures: int
    """Failed trials that were not retried."""
    best_value: float | None
    """The best value of a single-objective study so far."""

    @classmethod
    def of(cls, trials: Sequence[FrozenTrial], maximize: bool) -> Spending:
        from optuna.trial import TrialState

        started = failures = 0
        best: float | None = None
        for trial in trials:
            if trial.state == TrialState.WAITING or was_retried(trial):
                continue
            started += 1
            if trial.state == TrialState.FAIL:
                failures += 1
            elif trial.state == TrialState.COMPLETE and trial.values and len(trial.values) == 1:
                value = trial.values[0]
                if math.isfinite(value) and (
                    best is None or (value > best if maximize else value < best)
                ):
                    best = value
        return cls(trials=started, failures=failures, best_value=best)


def stop_reason(
    spec: StudySpec,
    trials: Sequence[FrozenTrial],
    *,
    now: float,
    deadline: float | None,
) -> StopReason | None:
    """Why no further trial may start, or None while the budget allows one."""
    maximize = spec.objective.study_directions[0] == "maximize"
    spent = Spending.of(trials, maximize)
    budget = spec.budget
    if budget.max_failed_trials is not None and spent.failures > budget.max_failed_trials:
        return StopReason.TOO_MANY_FAILURES
    if spec.objective.reached_goal(spent.best_value):
        return StopReason.GOAL
    if spent.trials >= budget.max_trials:
        return StopReason.MAX_TRIALS
    if deadline is not None and now >= deadline:
        return StopReason.TIMEOUT
    return None


def describe(reason: StopReason, spec: StudySpec, trials: Sequence[FrozenTrial]) -> str:
    """A sentence for users about why the study stopped."""
    maximize = spec.objective.study_directions[0] == "maximize"
    spent = Spending.of(trials, maximize)
    if reason is StopReason.TOO_MANY_FAILURES:
        return (
            f"{spent.failures} trials failed, more than maxFailedTrials "
            f"({spec.budget.max_failed_trials})"
        )
    if reason is StopReason.GOAL:
        return f"best value {spent.best_value:g} reached the goal {spec.objective.goal:g}"
    if reason is StopReason.TIMEOUT:
        return f"the timeout ({spec.budget.timeout}) passed"
    return f"{spent.trials} of maxTrials {spec.budget.max_trials} trials ran"
