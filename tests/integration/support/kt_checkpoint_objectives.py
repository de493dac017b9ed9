"""A deterministic objective that checkpoints every round, for the resume tests (local
workers and trial pods): each round it runs is logged, so a test counts them."""

from __future__ import annotations

import os
import time

import optuna
from kubetune import checkpoint
from kubetune.engine.checkpoints import RESUMED_FROM_ATTR, run_number

ROUNDS = 8


def step(value: float, x: float, round_number: int) -> float:
    """One round of "training": deterministic in its inputs."""
    return value * 0.5 + (x - 0.3) ** 2 + 1.0 / (round_number + 1)


def log_round(run: int, round_number: int) -> None:
    """With ``$KT_ROUNDS_LOG``, note a round run (``RUN ROUND``) there for a test to count."""
    log = os.environ.get("KT_ROUNDS_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{run} {round_number}\n")


def rounds(trial: optuna.Trial) -> float:
    """Runs ROUNDS rounds from the last checkpoint, saving after each. With
    ``$KT_ROUNDS_LOG`` each round run is appended there (``RUN ROUND``: the run is the
    number of its first trial); with ``$KT_PAUSE_AFTER`` the first trial that gets there
    (not a resumed one) writes its pid to ``$KT_PAUSED_MARKER`` after that round's
    checkpoint and waits to be killed; with ``$KT_CRASH_AFTER`` the worker exits with
    code 7 after that round's checkpoint."""
    x = trial.suggest_float("x", 0, 1)
    state = checkpoint.load(trial, {"round": 0, "value": 0.0})
    pause_after = os.environ.get("KT_PAUSE_AFTER")
    for round_number in range(state["round"], ROUNDS):
        log_round(run_number(trial), round_number)
        value = step(state["value"], x, round_number)
        state = {"round": round_number + 1, "value": value}
        checkpoint.save(trial, state)
        trial.report(value, round_number)
        if trial.should_prune():
            raise optuna.TrialPruned()
        if os.environ.get("KT_CRASH_AFTER") == str(round_number):
            os._exit(7)  # the worker dies of its own accord: a failure, not a loss
        if (
            pause_after is not None
            and int(pause_after) == round_number
            and RESUMED_FROM_ATTR not in trial.user_attrs
            and not os.path.exists(os.environ["KT_PAUSED_MARKER"])
        ):
            with open(os.environ["KT_PAUSED_MARKER"], "w") as handle:
                handle.write(f"{os.getpid()}\n")
            time.sleep(600)
    return state["value"]
