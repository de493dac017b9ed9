"""Optuna's first tutorial, unchanged in shape: run it with `python optuna_simple.py`,
or distribute it with `kubetune run examples/scripts/optuna_simple.py`."""

import optuna


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_int("y", -5, 5)
    return (x - 2) ** 2 + (y + 1) ** 2


study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0))
study.optimize(objective, n_trials=40, n_jobs=2)

print("best params:", study.best_params)
print("best value:", study.best_value)
