"""Objectives for tests/integration/test_failure_reasons.py: one that fails deep in
the user's code, one that sleeps (to be interrupted), one that succeeds."""

from __future__ import annotations

import os
import time

import optuna


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    return (x - 0.3) ** 2


def raises_deep(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    return _load_batch(x)


def _load_batch(x: float) -> float:
    sizes, i = [-1], 0
    if sizes[i] <= 0:  # [i]: shown as written, not read as Rich markup (italic)
        raise ValueError(f"batch size must be positive, got {sizes[i]}")
    return x


def sleeps(trial: optuna.Trial) -> float:
    """Sleeps ``$KT_SLEEP`` seconds (0 when unset), then returns x."""
    x = trial.suggest_float("x", 0.0, 1.0)
    time.sleep(float(os.environ.get("KT_SLEEP", "0")))
    return x
