"""LightGBM and XGBoost built-in objectives, through the trial runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builtin_helpers import builtin_spec

# Trial 0 learns fast and completes; trial 1 learns 30x slower, so its log loss
# after the first round is worse than trial 0's, and the median pruner (one
# start-up trial, no warm-up) stops it there.
PRUNER = {"name": "median", "args": {"n_startup_trials": 1, "n_warmup_steps": 0}}


def test_lightgbm_holdout_prunes_and_saves_the_best_model(run_builtin, tmp_path: Path) -> None:
    models = tmp_path / "models"
    spec = builtin_spec(
        {
            "model": "lightgbm",
            "data": {"dataset": "sklearn:breast_cancer"},
            "maxEpochs": 15,
            "params": {"num_threads": 1},
            "saveModel": {"path": str(models)},
        },
        objective={"direction": "minimize", "metric": "logloss"},
        pruner=PRUNER,
        sampler={"name": "tpe", "seed": 0},
        budget={"maxTrials": 2},
    )
    run = run_builtin(spec, enqueue=[{"learning_rate": 0.3}, {"learning_rate": 0.01}])
    assert run.returncode == 0, run.output
    trials = run.study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"], run.output
    assert list(trials[1].intermediate_values) == [0]
    assert len(trials[0].intermediate_values) == 15  # one report per boosting round
    assert set(trials[0].params) >= {"num_leaves", "bagging_freq", "lambda_l2"}
    assert trials[0].user_attrs["kubetune.device"] == "cpu"

    best = json.loads((models / "best.json").read_text())
    assert best["trial"] == run.study.best_trial.number
    assert best["value"] == pytest.approx(run.study.best_value)
    assert best["metric"] == "logloss" and best["file"] == "model.txt"
    import lightgbm
    from sklearn.datasets import load_breast_cancer

    booster = lightgbm.Booster(model_file=str(models / "model.txt"))
    predictions = booster.predict(load_breast_cancer().data[:5])
    assert predictions.shape == (5,) and np.all((predictions >= 0) & (predictions <= 1))


def test_lightgbm_kfold_keeps_only_the_best_artifact(run_builtin, tmp_path: Path) -> None:
    store = tmp_path / "artifacts"
    spec = builtin_spec(
        {
            "model": "lightgbm",
            "data": {"dataset": "sklearn:wine"},
            "validation": {"kind": "kfold", "folds": 3},
            "maxEpochs": 10,
            "params": {"num_threads": 1},
            "saveModel": {"artifactStore": str(store)},
        },
        objective={"direction": "maximize", "metric": "accuracy"},
        pruner={"name": "none"},
    )
    run = run_builtin(spec, enqueue=[{"learning_rate": 0.01}, {"learning_rate": 0.3}])
    assert run.returncode == 0, run.output
    assert run.states() == ["COMPLETE"] * 3
    best = run.study.best_trial
    # lgb.cv reports the mean over the folds once per round.
    assert len(best.intermediate_values) == 10
    artifact = best.user_attrs["kubetune.model_artifact"]
    record = best.user_attrs["kubetune.model_info_artifact"]  # best.json's content
    assert sorted(p.name for p in store.iterdir()) == sorted([artifact, record])
    info = json.loads((store / record).read_text())
    assert info["trial"] == best.number and info["classes"] == ["0", "1", "2"]
    assert info["features"][0] == "alcohol" and info["categories"] == {}

    import lightgbm
    from sklearn.datasets import load_wine

    refit = lightgbm.Booster(model_file=str(store / artifact))  # refit on every row
    assert refit.predict(load_wine().data[:3]).shape == (3, 3)


def test_xgboost_holdout_prunes_and_cv_completes(start_builtin, tmp_path: Path) -> None:
    holdout = builtin_spec(
        {
            "model": "xgboost",
            "data": {"dataset": "sklearn:breast_cancer"},
            "maxEpochs": 10,
            "params": {"nthread": 1},
            "saveModel": {"path": str(tmp_path / "xgb")},
        },
        objective={"direction": "minimize", "metric": "logloss"},
        pruner=PRUNER,
        sampler={"name": "tpe", "seed": 0},
        budget={"maxTrials": 2},
    )
    regression = builtin_spec(
        {
            "model": "xgboost",
            "task": "regression",
            "data": {"dataset": "sklearn:diabetes"},
            "validation": {"kind": "kfold", "folds": 3},
            "maxEpochs": 8,
            "params": {"nthread": 1},
        },
        objective={"direction": "maximize", "metric": "r2"},
        budget={"maxTrials": 2},
    )
    holdout_worker = start_builtin(
        holdout, enqueue=[{"learning_rate": 0.3}, {"learning_rate": 0.01}]
    )
    regression_worker = start_builtin(regression)

    run = holdout_worker.wait()
    assert run.returncode == 0, run.output
    assert run.states() == ["COMPLETE", "PRUNED"], run.output
    import xgboost

    booster = xgboost.Booster(model_file=str(tmp_path / "xgb" / "model.json"))
    assert booster.num_boosted_rounds() == 10

    run = regression_worker.wait()
    assert run.returncode == 0, run.output
    assert run.states() == ["COMPLETE", "COMPLETE"]
    # xgb.cv reports the mean over the folds once per round.
    assert all(len(t.intermediate_values) == 8 for t in run.study.trials)
    assert -1.0 < run.study.best_value < 1.0


def test_data_from_a_parquet_file(run_builtin, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2))
    label = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    colour = rng.choice(["red", "green", None], size=120)
    table = pa.table({"a": x[:, 0], "b": x[:, 1], "colour": colour, "y": label})
    pyarrow.parquet.write_table(table, tmp_path / "data.parquet")
    spec = builtin_spec(
        {
            "model": "lightgbm",
            "data": {"path": str(tmp_path / "data.parquet"), "target": "y"},
            "maxEpochs": 5,
            "params": {"num_threads": 1, "min_child_samples": 5},
            # Only the learning rate is tuned, so the one trial learns the easy boundary.
            "defaultSearchSpace": False,
        },
        objective={"direction": "maximize", "metric": "auc"},
        budget={"maxTrials": 1},
        searchSpace={"learning_rate": {"type": "float", "low": 0.2, "high": 0.3}},
    )
    run = run_builtin(spec)
    assert run.returncode == 0, run.output
    assert run.study.best_value > 0.8, run.output
