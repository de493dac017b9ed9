"""The objectives the benchmarks run: unchanged Optuna objectives, importable by
plain Optuna processes, ``kubetune run`` workers and trial pods alike."""

from __future__ import annotations

import math
import time

import optuna


def sleep1(trial: optuna.Trial) -> float:
    """A trial that takes one second (waiting, not computing)."""
    x = trial.suggest_float("x", -10, 10)
    time.sleep(1.0)
    return (x - 2) ** 2


def trivial(trial: optuna.Trial) -> float:
    """A trial that costs nothing: what is left is the framework's own cost."""
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


def rosenbrock(values: list[float]) -> float:
    """The Rosenbrock function; its minimum is 0 at (1, ..., 1)."""
    return sum(
        100.0 * (values[i + 1] - values[i] ** 2) ** 2 + (1.0 - values[i]) ** 2
        for i in range(len(values) - 1)
    )


#: Hartmann-6 constants (Dixon and Szegő, 1978); minimum -3.32237 at
#: (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573).
_ALPHA = (1.0, 1.2, 3.0, 3.2)
_A = (
    (10, 3, 17, 3.5, 1.7, 8),
    (0.05, 10, 17, 0.1, 8, 14),
    (3, 3.5, 1.7, 10, 17, 8),
    (17, 8, 0.05, 10, 0.1, 14),
)
_P = (
    (1312, 1696, 5569, 124, 8283, 5886),
    (2329, 4135, 8307, 3736, 1004, 9991),
    (2348, 1451, 3522, 2883, 3047, 6650),
    (4047, 8828, 8732, 5743, 1091, 381),
)
HARTMANN6_MINIMUM = -3.32237


def hartmann6(values: list[float]) -> float:
    """The 6-dimensional Hartmann function on [0, 1]^6."""
    total = 0.0
    for alpha, a_row, p_row in zip(_ALPHA, _A, _P, strict=True):
        inner = sum(a * (x - p * 1e-4) ** 2 for a, x, p in zip(a_row, values, p_row, strict=True))
        total -= alpha * math.exp(-inner)
    return total


def hartmann6_objective(trial: optuna.Trial) -> float:
    return hartmann6([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(6)])


def sleep_jitter(trial: optuna.Trial) -> float:
    """A trial of 0.5 to 1.5 s (spread by trial number), so trials end at scattered times."""
    x = trial.suggest_float("x", -10, 10)
    time.sleep(0.5 + ((trial.number * 0.618034) % 1.0))
    return (x - 2) ** 2
