"""How running trials stand against finished ones at the same step (the pruner's
view the operator ranks trials by for preemption)."""

from __future__ import annotations

import optuna
from kubetune.engine.standing import Standing
from optuna.trial import FrozenTrial, TrialState, create_trial


def finished(value: float, state: TrialState = TrialState.COMPLETE) -> FrozenTrial:
    return create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        intermediate_values={0: value, 5: value},
    )


def running(number: int, **values: float) -> FrozenTrial:
    trial = create_trial(
        state=TrialState.RUNNING, intermediate_values={int(k[1:]): v for k, v in values.items()}
    )
    trial.number = number
    return trial


def test_worse_than_the_median_at_the_latest_step_is_weak_either_direction() -> None:
    low = Standing(["minimize"])
    low.add([finished(1.0), finished(2.0), finished(3.0, TrialState.PRUNED)])
    trials = [running(7, s0=0.5, s5=2.5), running(8, s0=9.0, s5=1.5), running(9, s5=2.0)]
    assert low.weaker_half(trials) == {7}  # its latest step counts, not its first
    high = Standing(["maximize"])
    high.add([finished(1.0), finished(2.0), finished(3.0)])
    assert high.weaker_half(trials) == {8}


def test_trials_are_not_judged_without_enough_to_compare() -> None:
    standing = Standing(["minimize"])
    standing.add([finished(1.0), finished(5.0, TrialState.FAIL)])  # a failure says nothing
    assert standing.weaker_half([running(1, s0=9.0)]) == set()  # one peer only
    standing.add([finished(2.0)])
    assert standing.weaker_half([running(1, s0=9.0), running(2, s3=9.0), running(3)]) == {1}
    two = Standing(["minimize", "maximize"])  # Optuna prunes no multi-objective trial
    two.add([optuna.trial.create_trial(values=[1, 1], intermediate_values={0: 1.0})] * 3)
    assert two.weaker_half([running(1, s0=9.0)]) == set()
