"""Spend budgets and stop rules (issue 18, points 1 and 2): the ledger's measures, the
budget's decisions and what the status and messages say. No database, no process."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from kubetune.engine.budget import (
    RETRIED_ATTR,
    TERMINATOR_PREFIX,
    Spending,
    StopReason,
    describe,
    stop_reason,
)
from kubetune.engine.ledger import TrialLedger
from kubetune.engine.spend import spend_of
from kubetune.engine.supervision import Situation, decide
from kubetune.study.spec import SpecError, validate_spec
from kubetune_operator.status import trial_status
from optuna.trial import FrozenTrial, TrialState

START = datetime(2026, 1, 1, 12, 0, 0)
GPU_TRIAL: dict[str, Any] = {
    "python": "m:f",
    "nodes": 2,
    "resources": {"limits": {"nvidia.com/gpu": 1}, "requests": {"cpu": "500m"}},
}


def trial(
    number: int,
    state: TrialState,
    minutes: float | None,
    value: float | None = None,
    user_attrs: dict[str, Any] | None = None,
) -> FrozenTrial:
    """A trial that started at START + number hours and ran ``minutes`` (None: running)."""
    start = START + timedelta(hours=number)
    return FrozenTrial(
        number=number,
        state=state,
        value=value,
        datetime_start=start,
        datetime_complete=None if minutes is None else start + timedelta(minutes=minutes),
        params={},
        distributions={},
        user_attrs=user_attrs or {},
        system_attrs={},
        intermediate_values={},
        trial_id=number + 100,
    )


def spec_of(budget: dict[str, Any], trial_template: dict[str, Any] | None = None) -> Any:
    return validate_spec({"budget": budget, "trial": trial_template or GPU_TRIAL})


def test_every_attempt_counts_toward_the_spend() -> None:
    trials = [
        trial(0, TrialState.COMPLETE, 30, value=1.0),
        trial(1, TrialState.PRUNED, 15),
        # A retried attempt does not count against maxTrials, but its pods ran.
        trial(2, TrialState.FAIL, 15, user_attrs={RETRIED_ATTR: True}),
        trial(3, TrialState.FAIL, 60),
    ]
    spending = TrialLedger.of(trials, ["minimize"]).spending
    assert spending.trials == 3
    assert spending.trial_seconds == pytest.approx(2 * 3600)
    spec = spec_of({"maxGpuHours": 10, "pricePerHour": {"gpu": 2.5, "cpu": 0.1}})
    spend = spend_of(spec, spending.trial_seconds)
    # 2 hours of trials on 2 pods of 1 GPU and half a CPU each.
    assert (spend.gpu_hours, spend.cpu_hours) == (4.0, 2.0)
    assert spend.cost == pytest.approx(4 * 2.5 + 2 * 0.1)


def test_a_running_trial_spends_as_it_runs() -> None:
    running = trial(0, TrialState.RUNNING, None)
    running.datetime_start = datetime.now() - timedelta(minutes=30)
    spending = TrialLedger.of([running], ["minimize"]).spending
    assert spending.trial_seconds == pytest.approx(1800, abs=5)


def test_the_study_stops_when_the_gpu_hours_are_spent_and_says_so() -> None:
    spec = spec_of({"maxGpuHours": 2, "maxTrials": 100})
    under = Spending(trials=2, failures=0, best_value=None, trial_seconds=0.9 * 3600 / 1)
    assert stop_reason(spec, under, now=0, deadline=None) is None
    spent = Spending(trials=2, failures=0, best_value=None, trial_seconds=3600)
    assert stop_reason(spec, spent, now=0, deadline=None) is StopReason.BUDGET_SPENT
    assert describe(StopReason.BUDGET_SPENT, spec, spent) == "spent 2 of 2 GPU-hours"
    cost = spec_of({"maxCost": 5, "pricePerHour": {"gpu": 2.5}})
    assert stop_reason(cost, spent, now=0, deadline=None) is StopReason.BUDGET_SPENT
    assert describe(StopReason.BUDGET_SPENT, cost, spent) == "spent 5 of maxCost 5"


def test_a_spent_budget_stops_the_running_trials_like_a_timeout() -> None:
    spec = spec_of({"maxGpuHours": 2, "parallelism": 2})
    spent = Spending(trials=2, failures=0, best_value=None, trial_seconds=3600)
    decision = decide(
        Situation(
            spec, spent, now=0, deadline=None, live_workers=2, busy_workers=2, running_trials=2
        )
    )
    assert decision.finished and decision.phase == "Succeeded"
    assert decision.stop is StopReason.BUDGET_SPENT
    assert decision.stop_workers == "the study stopped: BudgetSpent"
    assert decision.reason == "spent 2 of 2 GPU-hours"


def test_plateau_counts_settled_trials_since_the_last_real_improvement() -> None:
    spec = spec_of({"stopWhen": {"plateau": {"trials": 3, "minDelta": 0.1}}})
    values = [5.0, 1.0, 0.95, 0.99, 0.97, 0.5, 0.45, 0.44, 0.43]
    trials = [trial(n, TrialState.COMPLETE, 1, value=v) for n, v in enumerate(values)]
    stops = []
    for count in range(1, len(trials) + 1):
        spending = TrialLedger.of(trials[:count], ["minimize"]).spending
        stops.append(stop_reason(spec, spending, now=0, deadline=None))
    # After 5 trials the best (0.95) is within 0.1 of the best 3 trials earlier (1.0);
    # trial 5's 0.5 is an improvement, and 3 trials after it the plateau is back.
    plateau = StopReason.PLATEAU
    assert stops == [None, None, None, None, plateau, None, None, None, plateau]
    spending = TrialLedger.of(trials, ["minimize"]).spending
    assert describe(StopReason.PLATEAU, spec, spending) == (
        "no improvement larger than 0.1 in the last 3 trials (best 0.5 then, 0.43 now)"
    )


def test_plateau_waits_for_a_first_value_and_ignores_failures_as_improvements() -> None:
    spec = spec_of({"maxFailedTrials": 100, "stopWhen": {"plateau": {"trials": 2}}})
    trials = [trial(n, TrialState.FAIL, 1) for n in range(5)]
    spending = TrialLedger.of(trials, ["minimize"]).spending
    assert stop_reason(spec, spending, now=0, deadline=None) is None


def test_the_terminators_request_stops_with_its_own_reason() -> None:
    spec = spec_of({"stopWhen": {"terminator": {}}})
    spent = Spending(trials=8, failures=0, best_value=0.9)
    why = TERMINATOR_PREFIX + "the regret bound 0.002 is below ..."
    assert stop_reason(spec, spent, now=0, deadline=None, stop_requested=why) is (
        StopReason.TERMINATOR
    )
    assert describe(StopReason.TERMINATOR, spec, spent, why) == (
        "the regret bound 0.002 is below ..."
    )
    # A script's own study.stop() is still StudyStopped.
    assert (
        stop_reason(spec, spent, now=0, deadline=None, stop_requested="trial 3 stopped it")
        is StopReason.STOPPED
    )


@pytest.mark.parametrize(
    ("budget", "template", "field", "words"),
    [
        ({"maxGpuHours": 1}, {"python": "m:f"}, "spec.budget.maxGpuHours", "asks for no gpu"),
        ({"maxCpuHours": 1}, {"python": "m:f"}, "spec.budget.maxCpuHours", "asks for no cpu"),
        ({"maxCost": 1}, GPU_TRIAL, "spec.budget.maxCost", "needs pricePerHour"),
        ({"maxGpuHours": 0}, GPU_TRIAL, "spec.budget.maxGpuHours", "greater than 0"),
        (
            {"stopWhen": {"plateau": {"trials": 0}}},
            GPU_TRIAL,
            "spec.budget.stopWhen.plateau.trials",
            "greater than or equal to 1",
        ),
    ],
)
def test_bad_spend_budgets_name_the_field(
    budget: dict[str, Any], template: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as error:
        spec_of(budget, template)
    assert any(path == field and words in reason for path, reason in error.value.problems), (
        error.value.problems
    )


def test_stop_rules_need_one_objective() -> None:
    with pytest.raises(SpecError) as error:
        validate_spec(
            {
                "objective": {"directions": ["minimize", "maximize"]},
                "budget": {"stopWhen": {"plateau": {"trials": 5}}},
                "trial": {"python": "m:f"},
            }
        )
    assert error.value.problems[0][0] == "spec.budget.stopWhen.plateau"


def test_status_shows_the_spend() -> None:
    spec = spec_of({"maxGpuHours": 10, "pricePerHour": {"gpu": 2.5}})
    ledger = TrialLedger.of([trial(0, TrialState.COMPLETE, 90, value=1.0)], ["minimize"])
    status = trial_status(spec, ledger)
    assert status["spend"] == {"trialHours": 1.5, "gpuHours": 3.0, "cpuHours": 1.5, "cost": 7.5}
