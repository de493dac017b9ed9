"""What every trial of a built-in objective shares: the table, its splits, the
metric, the training length and the device; and what a trainer returns.

Example:
    >>> problem.is_cv, problem.metric.name          # doctest: +SKIP
    (True, 'auc')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import optuna

from kubetune_trial.builtin.data import Table
from kubetune_trial.builtin.device import DeviceSettings
from kubetune_trial.builtin.metrics import Metric, Task
from kubetune_trial.builtin.saving import WriteModel


@dataclass(frozen=True)
class Problem:
    """The fixed part of a built-in objective, built once per worker."""

    table: Table
    task: Task
    metric: Metric
    folds: list[tuple[np.ndarray, np.ndarray]]
    rounds: int
    seed: int
    device: DeviceSettings
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def is_cv(self) -> bool:
        return len(self.folds) > 1

    @property
    def binary(self) -> bool:
        return self.task == "classification" and self.table.n_classes == 2

    def rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.table.features[index], self.table.target[index]


@dataclass(frozen=True)
class Outcome:
    """A trained trial: its value, and how to write its model to a file.

    ``write`` is only called when the model is the best so far: for k-fold it
    refits on every row, which is wasted work for a trial that does not win.
    """

    value: float
    write: WriteModel


class Trainer(Protocol):
    """What a built-in model module provides."""

    MODEL_FILE: str
    DEFAULT_ROUNDS: int

    def train(self, trial: optuna.Trial, params: dict[str, Any], problem: Problem) -> Outcome: ...
