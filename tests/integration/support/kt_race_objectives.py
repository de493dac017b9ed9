"""Objectives that line workers up, so races between them show every time."""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna


def meets_the_others(trial: optuna.Trial) -> float:
    """The first ``KT_BARRIER_SIZE`` trials to start wait for each other (files in
    ``KT_BARRIER_DIR``) and end together: every worker then claims its next trial at
    the same moment. With one trial of the budget left, only the claim lock keeps
    all of them from taking it."""
    x = trial.suggest_float("x", -10, 10)
    size = int(os.environ["KT_BARRIER_SIZE"])
    folder = Path(os.environ["KT_BARRIER_DIR"])
    if len(list(folder.iterdir())) < size:
        (folder / str(trial.number)).touch()
        deadline = time.monotonic() + 60
        while len(list(folder.iterdir())) < size and time.monotonic() < deadline:
            time.sleep(0.002)
    return (x - 2) ** 2
