"""XGBoost as a built-in model: ``xgb.train`` on a holdout split or ``xgb.cv``
over the folds, pruned per boosting round with ``XGBoostPruningCallback``.

The spec's metric is a ``custom_metric`` (XGBoost's default metric is
switched off), so the pruner sees exactly the value the study optimizes.

With ``spec.trial.checkpoints`` a holdout trial checkpoints its booster every
``everyRounds`` rounds, and a trial whose pod was lost goes on from the last one
(``xgb.train``'s ``xgb_model``). k-fold ``xgb.cv`` starts over.

Example:
    >>> outcome = train(trial, {"max_depth": 4, "learning_rate": 0.1}, problem)  # doctest: +SKIP
    >>> outcome.value
    0.988
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import xgboost as xgb
from optuna_integration.xgboost import XGBoostPruningCallback

from kubetune_trial.builtin.problem import Outcome, Problem
from kubetune_trial.builtin.resuming import Rounds

MODEL_FILE = "model.json"
DEFAULT_ROUNDS = 100


def base_params(problem: Problem) -> dict[str, Any]:
    """Parameters every trial gets before ``builtin.params`` and the sampled ones."""
    if problem.task == "regression":
        objective: dict[str, Any] = {"objective": "reg:squarederror"}
    elif problem.binary:
        objective = {"objective": "binary:logistic"}
    else:
        objective = {"objective": "multi:softprob", "num_class": problem.table.n_classes}
    return {**objective, "seed": problem.seed, "verbosity": 0, **problem.device.params}


def trial_params(params: dict[str, Any], problem: Problem) -> dict[str, Any]:
    merged = {**base_params(problem), **problem.fixed, **params}
    merged["disable_default_eval_metric"] = 1  # only the spec's metric, through custom_metric
    return merged


def _custom_metric(problem: Problem) -> Callable[[np.ndarray, xgb.DMatrix], tuple[str, float]]:
    metric = problem.metric

    def evaluate(predictions: np.ndarray, data: xgb.DMatrix) -> tuple[str, float]:
        return metric.name, metric.compute(data.get_label(), predictions)

    return evaluate


def train(trial: optuna.Trial, params: dict[str, Any], problem: Problem) -> Outcome:
    full = trial_params(params, problem)
    name = problem.metric.name
    if problem.is_cv:
        results = xgb.cv(
            full,
            _matrix(problem, problem.table.features, problem.table.target),
            num_boost_round=problem.rounds,
            folds=problem.folds,
            custom_metric=_custom_metric(problem),
            callbacks=[XGBoostPruningCallback(trial, f"test-{name}")],
            as_pandas=False,
        )
        value = float(results[f"test-{name}-mean"][-1])

        def refit(path: Path) -> None:
            fit(full, problem, np.arange(len(problem.table.target))).save_model(str(path))

        return Outcome(value, refit)
    train_rows, valid_rows = problem.folds[0]
    x_valid, y_valid = problem.rows(valid_rows)
    valid = _matrix(problem, x_valid, y_valid)
    rounds = Rounds.of(trial)
    saved = None if rounds is None else rounds.saved()
    resumed = None if saved is None else xgb.Booster(model_file=bytearray(saved))
    done = 0 if resumed is None else resumed.num_boosted_rounds()
    keeping = [] if rounds is None else [_Checkpoints(rounds, problem.rounds)]
    if rounds is not None and resumed is not None:
        rounds.resuming(done)
    booster = xgb.train(
        full,
        _matrix(problem, *problem.rows(train_rows)),
        num_boost_round=problem.rounds - done,
        evals=[(valid, "valid")],
        custom_metric=_custom_metric(problem),
        xgb_model=resumed,
        # xgb.train counts a resumed booster's rounds from 0 again: the callbacks see
        # the trial's own round numbers.
        callbacks=[
            _Shifted(callback, done)
            for callback in [XGBoostPruningCallback(trial, f"valid-{name}"), *keeping]
        ],
        verbose_eval=False,
    )
    value = problem.metric.compute(y_valid, booster.predict(valid))
    return Outcome(value, lambda path: booster.save_model(str(path)))


class _Checkpoints(xgb.callback.TrainingCallback):
    """Checkpoints the booster every ``everyRounds`` rounds (its raw UBJSON bytes)."""

    def __init__(self, rounds: Rounds, total: int) -> None:
        super().__init__()
        self.rounds, self.total = rounds, total

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
        if self.rounds.due(epoch + 1, self.total):
            self.rounds.save(bytes(model.save_raw("ubj")))
        return False  # go on


class _Shifted(xgb.callback.TrainingCallback):
    """``callback`` seeing rounds ``shift`` later than ``xgb.train`` counts them."""

    def __init__(self, callback: xgb.callback.TrainingCallback, shift: int) -> None:
        super().__init__()
        self.callback, self.shift = callback, shift

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
        return self.callback.after_iteration(model, epoch + self.shift, evals_log)


def fit(params: dict[str, Any], problem: Problem, rows: np.ndarray) -> xgb.Booster:
    """A booster trained on ``rows`` for the full number of rounds, without validation."""
    return xgb.train(params, _matrix(problem, *problem.rows(rows)), num_boost_round=problem.rounds)


def _matrix(problem: Problem, features: np.ndarray, target: np.ndarray) -> xgb.DMatrix:
    """A DMatrix whose features carry the data's column names (so the model names them)."""
    return xgb.DMatrix(features, label=target, feature_names=problem.table.model_feature_names)
