"""The metrics a built-in objective can optimize, and how to compute them.

One table says, for each name, the task it belongs to and whether higher is
better; the study's ``spec.objective.direction`` must agree with it. Every
model computes a metric the same way (with scikit-learn, on predicted
probabilities or values), so a value means the same whichever model made it.

Example:
    >>> import numpy as np
    >>> METRICS["accuracy"].compute(np.array([0, 1, 1]), np.array([0.2, 0.9, 0.4]))
    0.6666666666666666
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Metric:
    """One metric: its name, task, and whether a higher value is better.

    ``compute(y_true, predictions)`` takes class-index labels and either the
    positive-class probability (binary), a ``(n, classes)`` probability matrix
    (multi-class), or predicted values (regression).
    """

    name: str
    task: Task
    higher_is_better: bool

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if self.higher_is_better else "minimize"

    def compute(self, y_true: np.ndarray, predictions: np.ndarray) -> float:
        from sklearn import metrics as m

        predictions = np.asarray(predictions, dtype=float)
        if self.task == "regression":
            if self.name == "rmse":
                return float(np.sqrt(m.mean_squared_error(y_true, predictions)))
            if self.name == "mae":
                return float(m.mean_absolute_error(y_true, predictions))
            return float(m.r2_score(y_true, predictions))
        binary = predictions.ndim == 1
        n_classes = 2 if binary else predictions.shape[1]
        labels = np.arange(n_classes)
        if self.name == "auc":
            if binary:
                return float(m.roc_auc_score(y_true, predictions))
            return float(
                m.roc_auc_score(y_true, _normalized(predictions), multi_class="ovr", labels=labels)
            )
        if self.name == "logloss":
            probabilities = (
                np.column_stack([1 - predictions, predictions]) if binary else predictions
            )
            return float(m.log_loss(y_true, _normalized(probabilities), labels=labels))
        predicted = (predictions >= 0.5).astype(int) if binary else predictions.argmax(axis=1)
        if self.name == "accuracy":
            return float(m.accuracy_score(y_true, predicted))
        return float(
            m.f1_score(y_true, predicted, average="binary" if binary else "macro", zero_division=0)
        )


def _normalized(probabilities: np.ndarray) -> np.ndarray:
    """Rows that sum to one (float32 softmax outputs are off by a rounding error)."""
    clipped = np.clip(probabilities, 1e-15, 1.0)
    return clipped / clipped.sum(axis=1, keepdims=True)


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("auc", "classification", True),
        Metric("logloss", "classification", False),
        Metric("accuracy", "classification", True),
        Metric("f1", "classification", True),
        Metric("rmse", "regression", False),
        Metric("mae", "regression", False),
        Metric("r2", "regression", True),
    )
}

#: The metric used when ``spec.objective.metric`` is not set.
DEFAULT_METRIC: dict[Task, str] = {"classification": "logloss", "regression": "rmse"}
