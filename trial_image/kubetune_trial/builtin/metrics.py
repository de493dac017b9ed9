"""The metrics a built-in objective can optimize, and how to compute them.

The table (each name, its task, whether higher is better) is the core's
:data:`kubetune.study.builtin_rules.METRICS`, which the spec's validation checks
``spec.objective`` against; here each entry learns to compute itself. Every
model computes a metric the same way (with scikit-learn, on predicted
probabilities or values), so a value means the same whichever model made it.

Example:
    >>> import numpy as np
    >>> METRICS["accuracy"].compute(np.array([0, 1, 1]), np.array([0.2, 0.9, 0.4]))
    0.6666666666666666
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from kubetune.study.builtin_rules import DEFAULT_METRIC, MetricRule, Task
from kubetune.study.builtin_rules import METRICS as RULES

__all__ = ["DEFAULT_METRIC", "METRICS", "Metric", "Task"]


@dataclass(frozen=True)
class Metric(MetricRule):
    """One metric of :data:`kubetune.study.builtin_rules.METRICS`, and how to compute it.

    ``compute(y_true, predictions)`` takes class-index labels and either the
    positive-class probability (binary), a ``(n, classes)`` probability matrix
    (multi-class), or predicted values (regression).
    """

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
    name: Metric(rule.name, rule.task, rule.higher_is_better) for name, rule in RULES.items()
}
