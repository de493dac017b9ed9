"""Objectives that misbehave on purpose, one way per trial number, so that one
study shows every bad return value a python objective can give."""

from __future__ import annotations

import math
import os
from typing import Any

import optuna

#: What trial number N returns (the last entry is a good value).
BAD_RETURNS: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    None,
    "0.5 but as text",
    (1.0, 2.0),
    0.25,
]


def misbehaves(trial: optuna.Trial) -> Any:
    """Returns ``BAD_RETURNS[trial.number]``."""
    trial.suggest_float("x", 0, 1)
    return BAD_RETURNS[trial.number % len(BAD_RETURNS)]


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


def leaks_the_url(trial: optuna.Trial) -> float:
    """Fails with the storage URL (and its password) in the exception message, as a
    library that connects to the same database might; kubetune must not repeat it."""
    x = trial.suggest_float("x", 0, 1)
    if trial.number % 2:
        url = os.environ.get("KUBETUNE_STORAGE_URL", "")
        raise ConnectionError(f"could not use {url} for caching")
    return x
