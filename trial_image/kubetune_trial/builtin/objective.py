"""The built-in objective: everything checked and loaded once per worker, then
one model trained per trial.

Checked before any trial (each problem raises :class:`ObjectiveNotLoadable`
naming the spec field, and the worker exits with code 3): the rules of
:mod:`kubetune.study.builtin_rules` (metric and direction, stepwise, search space,
data source), which the spec's validation applies before any worker starts
and which are applied again here for a spec that skipped it; then what only
the worker can see: the data and its target, the device, the model's library.

Example:
    >>> objective = BuiltinTrialObjective(spec, "cancer")   # doctest: +SKIP
    >>> objective(trial)                                     # doctest: +SKIP
    0.993
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from kubetune.engine.verify import seed
from kubetune.study import builtin_rules
from kubetune.study.spec import StudySpec

from kubetune_trial.builtin.data import load_table, split
from kubetune_trial.builtin.device import decide, probe
from kubetune_trial.builtin.metrics import METRICS, Metric
from kubetune_trial.builtin.problem import Problem, Trainer
from kubetune_trial.builtin.saving import ModelKeeper
from kubetune_trial.builtin.space import Param, effective_space, suggest_all
from kubetune_trial.errors import ObjectiveNotLoadable

#: The trial user attribute recording where the model trained ("cuda" or "cpu").
DEVICE_ATTR = "kubetune.device"

T = TypeVar("T")

_MODULES = {
    "lightgbm": ("kubetune_trial.builtin.lightgbm_model", "lightgbm"),
    "xgboost": ("kubetune_trial.builtin.xgboost_model", "xgboost"),
    "lightning": ("kubetune_trial.builtin.lightning_model", "lightning"),
}


def resolve_metric(spec: StudySpec) -> Metric:
    """The spec's metric (checked by :func:`kubetune.study.builtin_rules.resolve_metric`)."""
    return METRICS[_ruled(builtin_rules.resolve_metric, spec).name]


def check_stepwise(spec: StudySpec) -> None:
    """Refuse what stepwise tuning cannot honour (see
    :func:`kubetune.study.builtin_rules.check_stepwise`)."""
    _ruled(builtin_rules.check_stepwise, spec)


def _ruled(check: Callable[[StudySpec], T], spec: StudySpec) -> T:
    """``check(spec)``, its :class:`~kubetune.study.builtin_rules.RuleBroken` as the worker's error.

    A validated spec passes these already; a worker still applies them, so a spec
    that skipped validation cannot start trials that would all fail.
    """
    try:
        return check(spec)
    except builtin_rules.RuleBroken as broken:
        raise ObjectiveNotLoadable(broken.field, broken.reason) from None


def _trainer_module(model: str) -> Trainer:
    module_name, package = _MODULES[model]
    try:
        return importlib.import_module(module_name)  # type: ignore[return-value]
    except ImportError as error:
        raise ObjectiveNotLoadable(
            "spec.trial.builtin.model",
            f"{model} cannot be imported here ({error}); use the kubetune trial image or "
            f"pip install 'kubetune[{package}]'",
        ) from None


class BuiltinTrialObjective:
    """A ready-made objective for ``spec.trial.builtin`` (see :mod:`kubetune_trial.builtin`)."""

    def __init__(self, spec: StudySpec, study_name: str) -> None:
        builtin = spec.trial.builtin
        assert builtin is not None
        self.spec = spec
        # Cheap checks first, so a typo is reported before a library takes seconds to import.
        metric = resolve_metric(spec)
        if builtin.tuner == "stepwise":
            check_stepwise(spec)
            self.space: dict[str, Param] = {}
        else:
            self.space = _ruled(effective_space, spec)
        table = load_table(builtin.data, builtin.task)
        folds = split(table, builtin.validation, builtin.seed)
        module = _trainer_module(builtin.model)
        device = decide(builtin.model, builtin.device, probe(builtin.model))
        self.problem = Problem(
            table=table,
            task=builtin.task,
            metric=metric,
            folds=folds,
            rounds=builtin.max_epochs or module.DEFAULT_ROUNDS,
            seed=builtin.seed,
            device=device,
            fixed=dict(builtin.params),
        )
        self.trainer: Trainer = module
        if builtin.tuner == "stepwise":
            from kubetune_trial.builtin import stepwise

            self.trainer = stepwise.StepwiseTrainer(self.problem)
        self.keeper = (
            ModelKeeper(
                builtin.save_model,
                study_name,
                maximize=metric.higher_is_better,
                model_file=self.trainer.MODEL_FILE,
            )
            if builtin.save_model is not None
            else None
        )

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest_all(trial, self.spec, self.space)
        trial.set_user_attr(DEVICE_ATTR, self.problem.device.device)
        outcome = self.trainer.train(trial, params, self._problem_of(trial))
        if self.keeper is not None:
            info: dict[str, Any] = {
                "metric": self.problem.metric.name,
                "model": self.spec.trial.builtin.model if self.spec.trial.builtin else "",
                "features": self.problem.table.feature_names,
                "classes": self.problem.table.classes,
                # How text columns became numbers, so new rows can be encoded the same way.
                "categories": self.problem.table.categories,
            }
            self.keeper.offer(trial, outcome.value, outcome.write, info)
        return outcome.value

    def _problem_of(self, trial: optuna.Trial) -> Problem:
        """The problem as the trial sees it: a verification repeat (spec.verify) trains
        with its own seed on folds split with it, so its value is a new draw."""
        builtin = self.spec.trial.builtin
        assert builtin is not None
        trial_seed = seed(trial, base=builtin.seed)
        if trial_seed == self.problem.seed:
            return self.problem
        folds = split(self.problem.table, builtin.validation, trial_seed)
        return dataclasses.replace(self.problem, seed=trial_seed, folds=folds)


def study_name_from_env() -> str:
    return os.environ.get("KUBETUNE_STUDY_NAME", "") or "study"
