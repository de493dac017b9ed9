"""The operator with a spend budget and a stop rule (FakeKube, a real PostgreSQL): the
status shows the spend as trials run, and the study ends with BudgetSpent, running pods
stopped, or with Plateau once its running trials finish."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from optuna.trial import TrialState
from test_reconciler_rules import Study


def test_a_spent_cpu_budget_ends_the_study_and_stops_its_running_trial(
    make: Callable[..., Study],
) -> None:
    # 2 CPUs a trial: 0.002 CPU-hours are 3.6 trial-seconds (room for a busy machine
    # between the claims and the first look; 0.72 s was not).
    study = make(
        budget={"maxTrials": 50, "parallelism": 2, "maxCpuHours": 0.002},
        trial={"resources": {"requests": {"cpu": 2}}},
    )
    study.tick()
    first, second = study.live_pods()
    done, running = study.claim(first), study.claim(second)
    study.complete(done)
    study.exit(first)
    assert study.tick() is False
    spend = study.status["spend"]
    assert spend["cpuHours"] == pytest.approx(2 * spend["trialHours"], rel=1e-3)
    assert study.status["phase"] == "Running"
    time.sleep(3.7)  # the running trial alone spends the rest
    assert study.tick() is True
    final = study.status
    assert final["phase"] == "Succeeded"
    complete = study.condition("Complete")
    assert complete["reason"] == "BudgetSpent"
    assert complete["message"].startswith("spent 0.002")
    assert complete["message"].endswith("of 0.002 CPU-hours")
    assert final["spend"]["cpuHours"] >= 0.002
    assert study.live_pods() == []
    stopped = study.optuna._storage.get_trial(running._trial_id)
    assert stopped.state == TrialState.FAIL
    assert "BudgetSpent" in stopped.user_attrs["kubetune.fail_reason"]


def test_a_plateau_ends_the_study_before_max_trials(make: Callable[..., Study]) -> None:
    study = make(budget={"maxTrials": 50, "parallelism": 1, "stopWhen": {"plateau": {"trials": 3}}})
    for value in (4.0, 1.0, 1.0, 1.5, 2.0):
        study.tick()
        (pod,) = study.live_pods()
        study.complete(study.claim(pod), value)
        study.exit(pod)
    assert study.tick() is True
    assert study.status["phase"] == "Succeeded"
    complete = study.condition("Complete")
    assert complete["reason"] == "Plateau"
    assert complete["message"] == (
        "no improvement larger than 0 in the last 3 trials (best 1 then, 1 now)"
    )
    assert len(study.optuna.trials) == 5


def test_a_running_trial_alone_does_not_rewrite_the_spend_at_every_look(
    make: Callable[..., Study],
) -> None:
    """status.spend grows by the second while a trial runs; the operator writes it when a
    trial starts or ends (and every SPEND_REFRESH_SECONDS), not at every look, so a
    running Study's watchers are not sent a new status for it alone."""
    study = make(budget={"maxTrials": 5, "parallelism": 1})
    study.tick()
    (pod,) = study.live_pods()
    running = study.claim(pod)
    study.tick()  # a trial started: the spend is written
    started = study.status["spend"]
    time.sleep(0.3)
    study.tick()
    assert study.status["spend"] == started
    study.complete(running)
    study.tick()  # a trial ended: written again, its whole run counted
    assert study.status["spend"]["trialHours"] >= started["trialHours"] + 0.3 / 3600
