"""Objectives for client.tune(): plain Optuna code, shipped to the trial pods by kubetune.

They are not on the trial pods' path: the pods find them only in the ConfigMap
that tune() mounts.
"""

from __future__ import annotations

import optuna
import tune_helpers

STEPS = 5


def objective(trial: optuna.Trial) -> float:
    """Reports a learning curve; the median pruner stops the trials that lag behind."""
    x = trial.params["x"]  # suggested from the search space before the call
    trial.set_user_attr("source", __file__)  # where this copy of the code was imported from
    for step in range(STEPS):
        trial.report(tune_helpers.curve(x, step), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return tune_helpers.curve(x, STEPS)


def two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0, 1)
    return x, (1 - x) ** 2
