"""LightGBM stepwise tuning: one tuner trial per kubetune trial."""

from __future__ import annotations

from builtin_helpers import builtin_spec


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


def test_stepwise_refuses_a_search_space_and_parallel_workers(run_builtin) -> None:
    base = {
        "model": "lightgbm",
        "tuner": "stepwise",
        "data": {"dataset": "sklearn:breast_cancer"},
    }
    run = run_builtin(
        builtin_spec(
            base,
            objective={"direction": "minimize", "metric": "logloss"},
            budget={"maxTrials": 2, "parallelism": 2},
        )
    )
    assert run.returncode == 3
    assert "spec.budget.parallelism: must be 1 with tuner: stepwise" in run.output
    assert run.states() == []
