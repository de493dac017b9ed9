"""LightGBM with Optuna's pruning callback, the shape of Optuna's LightGBM example:
each boosting round reports the validation AUC, and the median pruner stops weak
trials. `kubetune run examples/scripts/optuna_lightgbm.py` runs it on parallel workers
and then, below optimize, trains the final model with the best parameters."""

import lightgbm as lgb
import numpy as np
import optuna
import sklearn.datasets
import sklearn.metrics
from optuna_integration import LightGBMPruningCallback
from sklearn.model_selection import train_test_split

data, target = sklearn.datasets.load_breast_cancer(return_X_y=True)
train_x, valid_x, train_y, valid_y = train_test_split(data, target, test_size=0.25, random_state=0)


def objective(trial):
    dtrain = lgb.Dataset(train_x, label=train_y)
    dvalid = lgb.Dataset(valid_x, label=valid_y)
    param = {
        "objective": "binary",
        "metric": "auc",
        "verbosity": -1,
        "num_threads": 1,
        "lambda_l1": trial.suggest_float("lambda_l1", 1e-8, 10.0, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-8, 10.0, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 2, 256),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.4, 1.0),
        "bagging_freq": trial.suggest_int("bagging_freq", 1, 7),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 100),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
    }
    pruning_callback = LightGBMPruningCallback(trial, "auc")
    gbm = lgb.train(
        param, dtrain, num_boost_round=60, valid_sets=[dvalid], callbacks=[pruning_callback]
    )
    preds = gbm.predict(valid_x)
    return sklearn.metrics.roc_auc_score(valid_y, preds)


study = optuna.create_study(
    direction="maximize",
    sampler=optuna.samplers.TPESampler(seed=0),
    pruner=optuna.pruners.MedianPruner(n_warmup_steps=10),
)
study.optimize(objective, n_trials=30, n_jobs=2)

print("best params:", study.best_params)
print("best AUC:", study.best_value)
final = lgb.train(
    {"objective": "binary", "verbosity": -1, **study.best_params},
    lgb.Dataset(train_x, label=train_y),
    num_boost_round=60,
)
accuracy = sklearn.metrics.accuracy_score(valid_y, np.rint(final.predict(valid_x)))
print("final model accuracy:", round(accuracy, 4))
