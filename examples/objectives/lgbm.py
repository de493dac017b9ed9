"""LightGBM on scikit-learn's breast cancer data, pruned per boosting round.

The search space comes from the Study file (``spec.searchSpace``); kubetune
suggests it on the trial before calling this function, so the values are in
``trial.params``. Intermediate AUCs go to the pruner through
optuna-integration's ``LightGBMPruningCallback``.
"""

from __future__ import annotations

import lightgbm as lgb
import optuna
from optuna_integration import LightGBMPruningCallback
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split


def objective(trial: optuna.Trial) -> float:
    features, labels = load_breast_cancer(return_X_y=True)
    x_train, x_valid, y_train, y_valid = train_test_split(
        features, labels, test_size=0.25, random_state=0, stratify=labels
    )
    params = {
        "objective": "binary",
        "metric": "auc",
        "verbosity": -1,
        "n_jobs": 1,
        "seed": 0,
        **trial.params,
    }
    booster = lgb.train(
        params,
        lgb.Dataset(x_train, label=y_train),
        num_boost_round=200,
        valid_sets=[lgb.Dataset(x_valid, label=y_valid)],
        valid_names=["valid"],
        callbacks=[LightGBMPruningCallback(trial, "auc", valid_name="valid")],
    )
    return float(roc_auc_score(y_valid, booster.predict(x_valid)))
