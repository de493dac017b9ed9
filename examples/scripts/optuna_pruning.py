"""Pruning unpromising trials, as Optuna's tutorial does it: an SGD classifier reports
its validation error after each epoch and the median pruner stops weak trials.
`kubetune run examples/scripts/optuna_pruning.py` runs it on parallel workers."""

import numpy as np
import optuna
from sklearn import datasets, linear_model, model_selection

X, y = datasets.load_breast_cancer(return_X_y=True)
X = (X - X.mean(axis=0)) / X.std(axis=0)
X_train, X_valid, y_train, y_valid = model_selection.train_test_split(
    X, y, test_size=0.3, random_state=0
)
classes = np.unique(y)


def objective(trial):
    alpha = trial.suggest_float("alpha", 1e-6, 1e-1, log=True)
    loss = trial.suggest_categorical("loss", ["hinge", "log_loss", "modified_huber"])
    clf = linear_model.SGDClassifier(alpha=alpha, loss=loss, random_state=0)
    for step in range(20):
        clf.partial_fit(X_train, y_train, classes=classes)
        error = 1.0 - clf.score(X_valid, y_valid)
        trial.report(error, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return error


study = optuna.create_study(
    direction="minimize",
    sampler=optuna.samplers.TPESampler(seed=1),
    pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3),
)
study.optimize(objective, n_trials=30, n_jobs=2)

pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
print("pruned trials:", len(pruned))
print("best params:", study.best_params)
print("best value:", study.best_value)
