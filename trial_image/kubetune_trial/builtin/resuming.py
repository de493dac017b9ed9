"""What the built-in boosters share to checkpoint every ``everyRounds`` rounds and go
on from the last checkpoint (see :mod:`kubetune.engine.checkpoints`).

Example:
    >>> rounds = Rounds.of(trial)  # doctest: +SKIP
    >>> saved = rounds.saved() if rounds else None  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import optuna
from kubetune.engine import checkpoints


@dataclass(frozen=True)
class Rounds:
    """A trial's checkpointing: every ``every`` rounds, through :mod:`kubetune.checkpoint`."""

    trial: optuna.Trial
    every: int

    @classmethod
    def of(cls, trial: optuna.Trial) -> Rounds | None:
        """None when the study has no ``spec.trial.checkpoints``."""
        settings = checkpoints.settings_of(trial)
        return None if settings is None else cls(trial, settings.every_rounds)

    def saved(self) -> Any:
        """The model state last saved for the trial's run, or None."""
        return checkpoints.load(self.trial)

    def resuming(self, done: int) -> None:
        """Say in the worker's log where the trial goes on."""
        logging.getLogger("kubetune.trial").info(
            "trial %d: resuming from its checkpoint at round %d", self.trial.number, done
        )

    def due(self, done: int, total: int) -> bool:
        """A checkpoint is due after ``done`` rounds of ``total`` (none after the last)."""
        return done % self.every == 0 and done < total

    def save(self, state: Any) -> None:
        checkpoints.save(self.trial, state)
