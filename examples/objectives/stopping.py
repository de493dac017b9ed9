"""Objectives for the spend and stopping examples (examples/spend-budget.yaml,
examples/stop-plateau.yaml, examples/stop-terminator.yaml)."""

import time

import optuna
from optuna.terminator import report_cross_validation_scores
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def timed_quadratic(trial: optuna.Trial) -> float:
    """The quadratic of examples/objectives/quadratic.py, with a second of "training"
    per trial, so that the trials spend measurable CPU-hours."""
    x = trial.params["x"]
    time.sleep(1.0)
    return (x - 2) ** 2


def cross_validated(trial: optuna.Trial) -> float:
    """A logistic regression's 5-fold accuracy on the breast cancer data, its folds'
    scores reported for Optuna's Terminator (stopWhen.terminator compares its regret
    bound with their spread)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=trial.params["C"], max_iter=500))
    data, target = load_breast_cancer(return_X_y=True)
    scores = cross_val_score(model, data, target, cv=5)
    report_cross_validation_scores(trial, list(scores))
    return float(scores.mean())
