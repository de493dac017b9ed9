"""Trials as ``kubetune trials`` and ``Client.trials`` show them: a trial handed back
when its worker was stopped is STOPPED, not FAIL (Optuna records it FAIL)."""

from __future__ import annotations

import optuna
from kubetune.engine.recovery import FAIL_REASON_ATTR, STOPPED_ATTR
from kubetune.engine.trials import STATES, records
from optuna.trial import TrialState

DISTRIBUTIONS = {"x": optuna.distributions.FloatDistribution(0, 1)}


def trial(number: int, state: TrialState, **attrs: object) -> optuna.trial.FrozenTrial:
    made = optuna.trial.create_trial(
        params={"x": 0.5},
        distributions=DISTRIBUTIONS,
        value=1.0 if state == TrialState.COMPLETE else None,
        state=state,
        user_attrs=dict(attrs),
    )
    made.number = number
    return made


TRIALS = [
    trial(0, TrialState.COMPLETE),
    trial(1, TrialState.FAIL, **{FAIL_REASON_ATTR: "ValueError: bad"}),
    trial(2, TrialState.FAIL, **{STOPPED_ATTR: "the Study was suspended"}),
]


def test_a_trial_handed_back_is_stopped_not_failed() -> None:
    assert [(r.number, r.state) for r in records(TRIALS)] == [
        (0, "COMPLETE"),
        (1, "FAIL"),
        (2, "STOPPED"),
    ]


def test_states_filter_on_what_is_shown() -> None:
    assert [r.number for r in records(TRIALS, ["fail"])] == [1]
    assert [r.number for r in records(TRIALS, ["STOPPED"])] == [2]
    assert "STOPPED" in STATES
