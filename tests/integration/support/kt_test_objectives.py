"""Objectives the runner tests run in real worker processes (unchanged Optuna code)."""

from __future__ import annotations

import os
import time

import optuna


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


def reports_steps(trial: optuna.Trial) -> float:
    """Reports x at steps 0..4; a ThresholdPruner(upper=...) prunes large x."""
    x = trial.suggest_float("x", 0, 10)
    trial.set_user_attr("seen_by", "objective")
    for step in range(5):
        trial.report(x + step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x


def raises(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    raise ValueError("boom: the objective broke")


def fails_two_ways(trial: optuna.Trial) -> float:
    """Fails for one of two reasons, or succeeds, by ``x``."""
    x = trial.suggest_float("x", 0, 1)
    if x < 0.4:
        raise ValueError(f"x={x:.3f} is too small for this model")
    if x < 0.7:
        return float("nan")
    return x


def returns_nan(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    return float("nan")


def sleeps(trial: optuna.Trial) -> float:
    """Sleeps as long as KT_SLEEP says (default 30 s), so a test can kill its worker."""
    x = trial.suggest_float("x", 0, 1)
    marker = os.environ.get("KT_STARTED_MARKER")
    if marker:
        with open(marker, "a") as handle:
            handle.write(f"{trial.number} {os.getpid()}\n")
    time.sleep(float(os.environ.get("KT_SLEEP", "30")))
    return x


def two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0, 1)
    return x, 1 - x


def by_parity(trial: optuna.Trial) -> float:
    """Odd-numbered trials report far worse values than even ones, step after step,
    so a median pruner fed by the other pods' trials prunes them."""
    trial.suggest_float("x", 0, 1)
    base = 100.0 if trial.number % 2 else 0.0
    for step in range(5):
        trial.report(base + step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
        time.sleep(float(os.environ.get("KT_STEP_SLEEP", "0.1")))
    return base


def changes_shape(trial: optuna.Trial) -> float:
    """Each trial is better than the last and names its parameter after its parity
    (``x_even`` / ``x_odd``), so the best trial's parameters change names (a conditional
    search space, as a user's `if model == ...:` branch gives)."""
    name = "x_odd" if trial.number % 2 else "x_even"
    trial.suggest_float(name, 0, 1)
    time.sleep(1.0)  # long enough for the operator to see each best trial in turn
    return -float(trial.number)
