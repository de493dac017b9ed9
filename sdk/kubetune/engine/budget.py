"""What a study has spent and whether it may start another trial.

The trial runner asks :func:`stop_reason` (under the claim lock) before every
trial; the operator and ``kubetune run`` ask it to decide that a study is
done. One function, so the cluster and the laptop stop for the same reasons.
What has been spent comes from a :class:`kubetune.engine.ledger.TrialLedger`.

Example:
    >>> from kubetune.study.spec import validate_spec
    >>> spec = validate_spec({"budget": {"maxTrials": 3},
    ...                       "trial": {"python": "examples.objectives.quadratic:objective"}})
    >>> spent = Spending(trials=3, failures=0, best_value=None)
    >>> stop_reason(spec, spent, now=0.0, deadline=None)
    <StopReason.MAX_TRIALS: 'MaxTrialsReached'>
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubetune.engine.spend import has_limit, spend_of, used_up
from kubetune.study.spec import CategoricalParam, IntParam, StudySpec

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

#: With no ``maxFailedTrials`` in the spec, a study stops once this many trials
#: failed the same way (numbers aside) before any trial succeeded: the same error
#: would repeat through the whole budget. A spec's own ``maxFailedTrials`` replaces
#: the rule.
FIRST_FAILURES_LIMIT = 5

#: A failed attempt that was retried carries this user attribute; it does not
#: count against maxTrials or maxFailedTrials (its retry does). So does a trial a
#: worker gave up before running it (see kubetune.engine.recovery.give_up_trial).
RETRIED_ATTR = "kubetune.retried"

#: A stop request (:func:`kubetune.engine.bridge.request_stop`) whose reason starts so
#: came from Optuna's Terminator (``spec.budget.stopWhen.terminator``), run by a worker
#: after a trial: the study stops with :attr:`StopReason.TERMINATOR`, not as ``study.stop()``.
TERMINATOR_PREFIX = "Optuna's Terminator: "


class StopReason(str, enum.Enum):
    """Why a study stops starting trials; the value is the condition reason shown to users."""

    MAX_TRIALS = "MaxTrialsReached"
    GOAL = "GoalReached"
    TIMEOUT = "Timeout"
    TOO_MANY_FAILURES = "TooManyFailedTrials"
    GRID_EXHAUSTED = "GridExhausted"
    STOPPED = "StudyStopped"
    """A callback of the objective's script called ``study.stop()`` (see
    :func:`kubetune.engine.bridge.request_stop`): the running trials finish."""

    BUDGET_SPENT = "BudgetSpent"
    """A spend budget (maxGpuHours, maxCpuHours, maxCost) is used up: running trials stop."""
    PLATEAU = "Plateau"
    """stopWhen.plateau: no improvement larger than minDelta in the last K trials."""
    TERMINATOR = "TerminatorStopped"
    """stopWhen.terminator: Optuna's regret bound fell below the cross-validation error."""

    @property
    def is_failure(self) -> bool:
        return self is StopReason.TOO_MANY_FAILURES


def was_retried(trial: FrozenTrial) -> bool:
    """Whether the trial is an attempt that another runs again (it does not count).

    A supervisor marks a running trial retried, then fails it; if its worker told
    Optuna COMPLETE or PRUNED in between, the trial stands (no retry was queued) and
    counts, mark or not.
    """
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return False
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
    uniform_failures: int = 0
    """While no trial has succeeded (none COMPLETE or PRUNED) and every failure had the
    same reason: how many failed; otherwise 0."""
    failure_reason: str | None = None
    """That one reason (its first line), when ``uniform_failures`` counts."""
    trial_seconds: float = 0.0
    """Every attempt's run time added up (retried, pruned and running ones too): what
    :func:`kubetune.engine.spend.spend_of` turns into resource-hours."""
    settled: int = 0
    """Finished trials that count (retried attempts aside): the plateau rule's clock."""
    best_history: tuple[tuple[int, float], ...] = ()
    """Each new best value of a single-objective study, with ``settled`` as it was then."""


def stop_reason(
    spec: StudySpec,
    spent: Spending,
    *,
    now: float,
    deadline: float | None,
    stop_requested: str | None = None,
) -> StopReason | None:
    """Why no further trial may start, or None while the budget allows one.
    ``stop_requested``: why the study was asked to stop (``study.stop()``), if it was."""
    if stop_requested:
        if stop_requested.startswith(TERMINATOR_PREFIX):
            return StopReason.TERMINATOR
        return StopReason.STOPPED
    budget = spec.budget
    if budget.max_failed_trials is not None and spent.failures > budget.max_failed_trials:
        return StopReason.TOO_MANY_FAILURES
    if _first_trials_failed(spec, spent):
        return StopReason.TOO_MANY_FAILURES
    if spec.objective.reached_goal(spent.best_value):
        return StopReason.GOAL
    points = grid_points(spec)
    if points is not None and points <= budget.max_trials and spent.trials >= points:
        return StopReason.GRID_EXHAUSTED
    if spent.trials >= budget.max_trials:
        return StopReason.MAX_TRIALS
    if deadline is not None and now >= deadline:
        return StopReason.TIMEOUT
    if has_limit(spec) and used_up(spec, spend_of(spec, spent.trial_seconds)):
        return StopReason.BUDGET_SPENT
    if plateau(spec, spent) is not None:
        return StopReason.PLATEAU
    return None


def plateau(spec: StudySpec, spent: Spending) -> tuple[float, float] | None:
    """Under ``stopWhen.plateau`` (K trials, δ): the best value K settled trials ago and
    now, when it improved by no more than δ since; None otherwise (no rule, fewer
    trials, or no value yet K trials ago).

    >>> from kubetune.study.spec import validate_spec
    >>> spec = validate_spec({"budget": {"stopWhen": {"plateau": {"trials": 3, "minDelta": 0.1}}},
    ...                       "trial": {"python": "m:f"}})
    >>> history = ((1, 5.0), (2, 1.0), (4, 0.95))
    >>> plateau(spec, Spending(5, 0, 0.95, settled=5, best_history=history))
    (1.0, 0.95)
    >>> plateau(spec, Spending(4, 0, 0.95, settled=4, best_history=history)) is None
    True
    """
    rule = spec.budget.stop_when.plateau if spec.budget.stop_when else None
    if rule is None or spent.settled < rule.trials:
        return None
    cutoff = spent.settled - rule.trials
    before = [value for settled, value in spent.best_history if settled <= cutoff]
    if not before or not spent.best_history:
        return None
    then, now = before[-1], spent.best_history[-1][1]
    return (then, now) if abs(now - then) <= rule.min_delta else None


def _first_trials_failed(spec: StudySpec, spent: Spending) -> bool:
    return spec.budget.max_failed_trials is None and spent.uniform_failures >= FIRST_FAILURES_LIMIT


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def grid_points(spec: StudySpec) -> int | None:
    """How many points the grid sampler's grid has; None for other samplers.

    Each trial that counts against the budget runs one point (the grid sampler
    never repeats one, see :func:`kubetune.engine.bridge.build_sampler`), so once this many
    trials started the grid is done.
    """
    if spec.sampler.name != "grid":
        return None
    return grid_size(spec)


def trial_limit(spec: StudySpec) -> int:
    """The most trials the study starts: ``maxTrials``, or the grid's size when smaller."""
    points = grid_points(spec)
    return spec.budget.max_trials if points is None else min(points, spec.budget.max_trials)


def describe(
    reason: StopReason, spec: StudySpec, spent: Spending, stop_requested: str | None = None
) -> str:
    """A sentence for users about why the study stopped."""
    if reason is StopReason.STOPPED:
        return stop_requested or "the study was asked to stop"
    if reason is StopReason.TERMINATOR:
        return (stop_requested or TERMINATOR_PREFIX).removeprefix(TERMINATOR_PREFIX) or (
            "Optuna's Terminator stopped the study"
        )
    if reason is StopReason.BUDGET_SPENT:
        return used_up(spec, spend_of(spec, spent.trial_seconds)) or "the spend budget is used up"
    if reason is StopReason.PLATEAU:
        rule = spec.budget.stop_when.plateau if spec.budget.stop_when else None
        values = plateau(spec, spent)
        if rule is not None and values is not None:
            return (
                f"no improvement larger than {rule.min_delta:g} in the last {rule.trials} "
                f"trials (best {values[0]:.6g} then, {values[1]:.6g} now)"
            )
    if reason is StopReason.TOO_MANY_FAILURES and _first_trials_failed(spec, spent):
        return (
            f"the first {spent.uniform_failures} trials all failed the same way and none "
            f"succeeded: {_shorten(spent.failure_reason or 'no reason recorded')} (with no "
            f"maxFailedTrials in the spec, a study stops after {FIRST_FAILURES_LIMIT} such "
            "failures; fix the cause and run again)"
        )
    if reason is StopReason.GRID_EXHAUSTED:
        return f"the grid's {grid_points(spec)} points all ran"
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


def float_grid_points(low: float, high: float, step: float) -> int:
    """How many of ``low, low + step, ...`` are at most ``high``: Optuna's rule for a
    stepped float (a range the step does not divide ends at the last step below it).

    >>> float_grid_points(0.0, 1.0, 0.35)
    3
    """
    # The small tolerance keeps 0.3 / 0.1 (2.9999999999999996) at 3 steps.
    return math.floor((high - low) / step + 1e-9) + 1


def grid_size(spec: StudySpec) -> int:
    """How many points the grid sampler runs: ``spec.sampler.args.search_space`` when
    given, else the search space's grid (counted, not listed)."""
    explicit = spec.sampler.args.get("search_space")
    if isinstance(explicit, dict):
        sizes = [len(values) for values in explicit.values()]
    else:
        sizes = []
        for param in spec.search_space.values():
            if isinstance(param, CategoricalParam):
                sizes.append(len(param.choices))
            elif isinstance(param, IntParam):
                sizes.append(len(range(param.low, param.high + 1, param.step)))
            else:
                assert param.step is not None
                sizes.append(float_grid_points(param.low, param.high, param.step))
    return math.prod(sizes)
