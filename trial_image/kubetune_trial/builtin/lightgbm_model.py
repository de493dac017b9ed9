"""LightGBM as a built-in model: ``lgb.train`` on a holdout split or ``lgb.cv``
over the folds, pruned per boosting round.

The spec's metric is computed by a custom ``feval`` (LightGBM's own metrics
are switched off), so intermediate values are the study's metric, in the
study's direction, and ``LightGBMPruningCallback`` accepts them. Under k-fold
``lgb.cv`` trains the folds in lock step and the pruner sees the mean over
folds at each round.

With ``spec.trial.checkpoints`` a holdout trial checkpoints its booster every
``everyRounds`` rounds, and a trial whose pod was lost goes on from the last one
(``lgb.train``'s ``init_model``) instead of boosting again from the first round. (k-fold
``lgb.cv`` takes one ``init_model`` for all folds, so it cannot go on per fold: it starts
over.)

Example:
    >>> outcome = train(trial, {"num_leaves": 15, "learning_rate": 0.1}, problem)  # doctest: +SKIP
    >>> outcome.value
    0.991
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
from optuna_integration.lightgbm import LightGBMPruningCallback

from kubetune_trial.builtin.problem import Outcome, Problem
from kubetune_trial.builtin.resuming import Rounds

MODEL_FILE = "model.txt"
DEFAULT_ROUNDS = 100


def base_params(problem: Problem) -> dict[str, Any]:
    """Parameters every trial gets before ``builtin.params`` and the sampled ones."""
    if problem.task == "regression":
        objective: dict[str, Any] = {"objective": "regression"}
    elif problem.binary:
        objective = {"objective": "binary"}
    else:
        objective = {"objective": "multiclass", "num_class": problem.table.n_classes}
    return {
        **objective,
        "verbosity": -1,
        "seed": problem.seed,
        "deterministic": True,
        # min_child_samples is tuned: the Dataset must not drop features for one value of it.
        "feature_pre_filter": False,
        **problem.device.params,
    }


def trial_params(params: dict[str, Any], problem: Problem) -> dict[str, Any]:
    merged = {**base_params(problem), **problem.fixed, **params}
    merged["metric"] = "None"  # only the spec's metric, through feval
    return merged


def _feval(problem: Problem) -> Callable[[np.ndarray, lgb.Dataset], tuple[str, float, bool]]:
    metric = problem.metric

    def evaluate(predictions: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
        return metric.name, metric.compute(data.get_label(), predictions), metric.higher_is_better

    return evaluate


def train(trial: optuna.Trial, params: dict[str, Any], problem: Problem) -> Outcome:
    full = trial_params(params, problem)
    pruning = LightGBMPruningCallback(trial, problem.metric.name, valid_name="valid")
    if problem.is_cv:
        results = lgb.cv(
            full,
            dataset(problem, problem.table.features, problem.table.target),
            num_boost_round=problem.rounds,
            folds=problem.folds,
            feval=_feval(problem),
            callbacks=[pruning],
        )
        value = float(results[f"valid {problem.metric.name}-mean"][-1])

        def refit(path: Path) -> None:
            fit(full, problem, np.arange(len(problem.table.target))).save_model(str(path))

        return Outcome(value, refit)
    train_rows, valid_rows = problem.folds[0]
    x_valid, y_valid = problem.rows(valid_rows)
    x_train, y_train = problem.rows(train_rows)
    training = dataset(problem, x_train, y_train)
    resumed, keeping = _checkpointing(trial)
    done = 0 if resumed is None else resumed.current_iteration()
    booster = lgb.train(
        full,
        training,
        num_boost_round=problem.rounds - done,
        valid_sets=[dataset(problem, x_valid, y_valid, reference=training)],
        valid_names=["valid"],
        feval=_feval(problem),
        init_model=resumed,
        callbacks=[pruning, *keeping],
    )
    value = problem.metric.compute(y_valid, booster.predict(x_valid))
    return Outcome(value, lambda path: booster.save_model(str(path)))


def _checkpointing(trial: optuna.Trial) -> tuple[lgb.Booster | None, list[Callable[..., None]]]:
    """The booster of the trial's last checkpoint (None: none, start from round 0), and
    the callback that checkpoints every ``everyRounds`` rounds (none without
    ``spec.trial.checkpoints``)."""
    rounds = Rounds.of(trial)
    if rounds is None:
        return None, []
    saved = rounds.saved()
    resumed = None if saved is None else lgb.Booster(model_str=saved)
    if resumed is not None:
        rounds.resuming(resumed.current_iteration())

    def keep(env: lgb.callback.CallbackEnv) -> None:
        if rounds.due(env.iteration + 1, env.end_iteration):
            rounds.save(env.model.model_to_string())

    keep.order = 40  # type: ignore[attr-defined]  # after the pruner's check of the round
    return resumed, [keep]


def fit(params: dict[str, Any], problem: Problem, rows: np.ndarray) -> lgb.Booster:
    """A booster trained on ``rows`` for the full number of rounds, without validation."""
    features, target = problem.rows(rows)
    return lgb.train(params, dataset(problem, features, target), num_boost_round=problem.rounds)


def dataset(
    problem: Problem, features: np.ndarray, target: np.ndarray, **kwargs: Any
) -> lgb.Dataset:
    """A Dataset whose features carry the data's column names (so model.txt names them)."""
    return lgb.Dataset(
        features, label=target, feature_name=problem.table.model_feature_names, **kwargs
    )
