"""Objectives for many workers sharing a small connection pool."""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna

_met = False


def meets_the_fleet(trial: optuna.Trial) -> float:
    """Each worker's first trial waits until ``KT_BARRIER_SIZE`` first trials run at
    once (files in ``KT_BARRIER_DIR``), and fails if they never do: with more workers
    than server connections, that shows no worker holds a connection while its
    objective runs. Later trials take ``KT_TRIAL_SECONDS`` (default 0.005)."""
    global _met
    x = trial.suggest_float("x", -10, 10)
    if not _met:
        size = int(os.environ["KT_BARRIER_SIZE"])
        folder = Path(os.environ["KT_BARRIER_DIR"])
        (folder / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(folder.iterdir())) < size:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {len(list(folder.iterdir()))} of {size} trials ran at once"
                )
            time.sleep(0.01)
        _met = True
    else:
        time.sleep(float(os.environ.get("KT_TRIAL_SECONDS", "0.005")))
    return (x - 2) ** 2
