"""A module that fails while it is imported, as a typo in a user's training code does."""

from __future__ import annotations

import optuna

raise RuntimeError("this module breaks on import (line 7)")


def objective(trial: optuna.Trial) -> float:  # pragma: no cover - never reached
    return 0.0
