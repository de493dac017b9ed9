"""Each built-in model's default search space, and how ``spec.searchSpace`` changes it.

The spaces and the rule live in the core (:mod:`kubetune.study.builtin_rules`), where
the spec's validation applies them; here the objective suggests them on a trial.
The rule, applied once when the objective loads:

1. start from the model's default space, or from nothing when the builtin
   says ``defaultSearchSpace: false``;
2. every parameter in ``spec.searchSpace`` replaces the default of the same
   name (to narrow or widen its range, or change its type), or adds a new one
   (passed straight to LightGBM or XGBoost; the MLP refuses names it lacks);
3. every name fixed in ``builtin.params`` is taken out: it is not tuned.

The trial runner has already suggested ``spec.searchSpace`` on the trial when
the objective runs; the objective suggests the rest with the same calls, so
a parameter is suggested once with one distribution.

Example:
    >>> from kubetune.study.spec import validate_spec
    >>> spec = validate_spec({
    ...     "searchSpace": {"num_leaves": {"type": "int", "low": 8, "high": 32}},
    ...     "trial": {"builtin": {"model": "lightgbm", "data": {"dataset": "sklearn:wine"},
    ...                           "params": {"bagging_freq": 1}}},
    ... })
    >>> space = effective_space(spec)
    >>> space["num_leaves"].high, "bagging_freq" in space, "learning_rate" in space
    (32, False, True)
"""

from __future__ import annotations

from typing import Any

from kubetune.study.builtin_rules import (
    DEFAULT_SPACES,
    LIGHTGBM_SPACE,
    LIGHTNING_DEFAULTS,
    LIGHTNING_SPACE,
    XGBOOST_SPACE,
    Param,
    effective_space,
)
from kubetune.study.spec import StudySpec

__all__ = [
    "DEFAULT_SPACES",
    "LIGHTGBM_SPACE",
    "LIGHTNING_DEFAULTS",
    "LIGHTNING_SPACE",
    "XGBOOST_SPACE",
    "Param",
    "effective_space",
    "suggest_all",
]


def suggest_all(trial: Any, spec: StudySpec, space: dict[str, Param]) -> dict[str, Any]:
    """Suggest every parameter of ``space`` on ``trial`` (those the runner already
    suggested come back unchanged) and return the values."""
    from kubetune.engine import bridge

    return bridge.suggest(trial, spec.model_copy(update={"search_space": space}))
