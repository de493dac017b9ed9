"""What a study has spent and whether it may start another trial.

The trial runner asks :func:`stop_reason` (under the claim lock) before every
trial; the operator and ``kubetune run`` ask it to decide that a study is
done. One function, so the cluster and the laptop stop for the same reasons.
What has been spent comes from a :class:`kubetune.ledger.TrialLedger`.

Example:
    >>> from kubetune.spec import validate_spec
    >>> spec = validate_spec({"budget": {"maxTrials": 3},
    ...                       "trial": {"python": "examples.objectives.quadratic:objective"}})
    >>> spent = Spending(trials=3, failures=0, best_value=None)
    >>> stop_reason(spec, spent, now=0.0, deadline=None)
    <StopReason.MAX_TRIALS: 'MaxTrialsReached'>
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubetune.spec import StudySpec

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

#: A failed attempt that was retried carries this user attribute; it does not
#: count against maxTrials or maxFailedTrials (its retry does). So does a trial a
#: worker gave up before running it (see kubetune.recovery.give_up_trial).
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


def stop_reason(
    spec: StudySpec,
    spent: Spending,
    *,
    now: float,
    deadline: float | None,
) -> StopReason | None:
    """Why no further trial may start, or None while the budget allows one."""
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


def describe(reason: StopReason, spec: StudySpec, spent: Spending) -> str:
    """A sentence for users about why the study stopped."""
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
