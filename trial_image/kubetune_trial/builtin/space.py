"""Each built-in model's default search space, and how ``spec.searchSpace`` changes it.

The rule, applied once when the objective loads:

1. start from the model's default space below, or from nothing when the
   builtin says ``defaultSearchSpace: false``;
2. every parameter in ``spec.searchSpace`` replaces the default of the same
   name (to narrow or widen its range, or change its type), or adds a new one
   (passed straight to LightGBM or XGBoost; the MLP refuses names it lacks);
3. every name fixed in ``builtin.params`` is taken out: it is not tuned.

The trial runner has already suggested ``spec.searchSpace`` on the trial when
the objective runs; the objective suggests the rest with the same calls, so
a parameter is suggested once with one distribution.

Example:
    >>> from kubetune.spec import validate_spec
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

from kubetune.spec import CategoricalParam, FloatParam, IntParam, StudySpec

from kubetune_trial.objectives import ObjectiveNotLoadable

Param = FloatParam | IntParam | CategoricalParam


def _float(low: float, high: float, log: bool = False) -> FloatParam:
    return FloatParam(type="float", low=low, high=high, log=log)


def _int(low: int, high: int, log: bool = False) -> IntParam:
    return IntParam(type="int", low=low, high=high, log=log)


#: Ranges follow optuna-integration's LightGBM tuner, plus the learning rate.
LIGHTGBM_SPACE: dict[str, Param] = {
    "learning_rate": _float(0.01, 0.3, log=True),
    "num_leaves": _int(4, 256, log=True),
    "min_child_samples": _int(5, 100, log=True),
    "feature_fraction": _float(0.4, 1.0),
    "bagging_fraction": _float(0.4, 1.0),
    "bagging_freq": _int(1, 7),
    "lambda_l1": _float(1e-8, 10.0, log=True),
    "lambda_l2": _float(1e-8, 10.0, log=True),
}

XGBOOST_SPACE: dict[str, Param] = {
    "learning_rate": _float(0.01, 0.3, log=True),
    "max_depth": _int(2, 10),
    "min_child_weight": _float(0.1, 20.0, log=True),
    "subsample": _float(0.5, 1.0),
    "colsample_bytree": _float(0.5, 1.0),
    "lambda": _float(1e-8, 10.0, log=True),
    "alpha": _float(1e-8, 10.0, log=True),
    "gamma": _float(1e-8, 1.0, log=True),
}

LIGHTNING_SPACE: dict[str, Param] = {
    "lr": _float(1e-4, 1e-1, log=True),
    "hidden_size": _int(16, 256, log=True),
    "n_layers": _int(1, 3),
    "dropout": _float(0.0, 0.5),
    "weight_decay": _float(1e-8, 1e-2, log=True),
    "batch_size": CategoricalParam(type="categorical", choices=[32, 64, 128, 256]),
}

#: The MLP's hyperparameters and their values when neither tuned nor fixed.
LIGHTNING_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "hidden_size": 64,
    "n_layers": 2,
    "dropout": 0.1,
    "weight_decay": 0.0,
    "batch_size": 64,
}

DEFAULT_SPACES: dict[str, dict[str, Param]] = {
    "lightgbm": LIGHTGBM_SPACE,
    "xgboost": XGBOOST_SPACE,
    "lightning": LIGHTNING_SPACE,
}


def effective_space(spec: StudySpec) -> dict[str, Param]:
    """The parameters a built-in objective tunes (see the module's rule)."""
    builtin = spec.trial.builtin
    assert builtin is not None
    for name in builtin.params:
        if name in spec.search_space:
            raise ObjectiveNotLoadable(
                f"spec.trial.builtin.params.{name}",
                "is also in spec.searchSpace: fix it here or tune it there, not both",
            )
    space: dict[str, Param] = (
        dict(DEFAULT_SPACES[builtin.model]) if builtin.default_search_space else {}
    )
    space.update(spec.search_space)
    for name in builtin.params:
        space.pop(name, None)
    if builtin.model == "lightning":
        # LightGBM and XGBoost take any parameter; the MLP has a fixed set.
        _check_mlp_names(list(spec.search_space), "spec.searchSpace")
        _check_mlp_names(list(builtin.params), "spec.trial.builtin.params")
    return space


def _check_mlp_names(names: list[str], field: str) -> None:
    for name in names:
        if name not in LIGHTNING_DEFAULTS:
            raise ObjectiveNotLoadable(
                f"{field}.{name}",
                f"the lightning MLP has no hyperparameter {name!r} "
                f"(it has: {', '.join(LIGHTNING_DEFAULTS)})",
            )


def suggest_all(trial: Any, spec: StudySpec, space: dict[str, Param]) -> dict[str, Any]:
    """Suggest every parameter of ``space`` on ``trial`` (those the runner already
    suggested come back unchanged) and return the values."""
    from kubetune import bridge

    return bridge.suggest(trial, spec.model_copy(update={"search_space": space}))
