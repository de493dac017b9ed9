"""LightGBM stepwise tuning: one tuner trial per kubetune trial."""

from __future__ import annotations

import optuna
import pytest
from builtin_helpers import builtin_spec
from kubetune.engine.ledger import TrialLedger
from kubetune.engine.trials import best_summaries, effective_params
from kubetune.study.spec import SpecError, validate_spec


def ledger_of(study: optuna.Study) -> TrialLedger:
    ledger = TrialLedger([d.name.lower() for d in study.directions])
    ledger.update(study.get_trials(deepcopy=False))
    return ledger


def test_stepwise_runs_the_tuners_stages_as_kubetune_trials(run_builtin) -> None:
    spec = builtin_spec(
        {
            "model": "lightgbm",
            "tuner": "stepwise",
            "data": {"dataset": "sklearn:breast_cancer"},
            "validation": {"kind": "kfold", "folds": 3},
            "maxEpochs": 5,
            "params": {"num_threads": 1},
        },
        objective={"direction": "minimize", "metric": "logloss"},
        budget={"maxTrials": 9},
    )
    run = run_builtin(spec)
    assert run.returncode == 0, run.output
    trials = run.study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 9
    steps = [t.system_attrs["lightgbm_tuner:step_name"] for t in trials]
    # The tuner's first stage is a grid of seven feature fractions, then num_leaves.
    assert steps == ["feature_fraction"] * 7 + ["num_leaves"] * 2
    fractions = sorted(round(t.params["feature_fraction"], 2) for t in trials[:7])
    assert fractions == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert set(trials[8].params) == {"num_leaves"}
    # best_params.json and the status show every parameter behind the value, not only
    # the stage's own: the num_leaves stage keeps the best feature_fraction and the rest.
    best_fraction = min(trials[:7], key=lambda t: t.value).params["feature_fraction"]
    carried = effective_params(trials[8])
    assert set(carried) >= {"num_leaves", "feature_fraction", "lambda_l1", "lambda_l2"}
    assert carried["feature_fraction"] == pytest.approx(best_fraction)
    assert carried["num_leaves"] == trials[8].params["num_leaves"]
    assert best_summaries(ledger_of(run.study), limit=1)[0]["params"] == effective_params(
        run.study.best_trial
    )


def test_stepwise_refuses_parallel_workers(run_builtin) -> None:
    base = {
        "model": "lightgbm",
        "tuner": "stepwise",
        "data": {"dataset": "sklearn:breast_cancer"},
    }
    good = builtin_spec(
        base,
        objective={"direction": "minimize", "metric": "logloss"},
        budget={"maxTrials": 2, "parallelism": 1},
    )
    bad = {**good, "budget": {"maxTrials": 2, "parallelism": 2}}
    with pytest.raises(
        SpecError, match=r"spec\.budget\.parallelism: must be 1 with tuner: stepwise"
    ):
        validate_spec(bad)
    # A worker given such a spec anyway (stored by an older kubetune) refuses it too.
    run = run_builtin(good, stored=bad)
    assert run.returncode == 3
    assert "spec.budget.parallelism: must be 1 with tuner: stepwise" in run.output
    assert run.states() == []
