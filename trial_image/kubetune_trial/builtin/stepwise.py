"""LightGBM's stepwise tuner (optuna-integration's ``LightGBMTunerCV``, or
``LightGBMTuner`` on a holdout split), one kubetune trial at a time.

The tuner runs its own study loop: seven stages (feature_fraction,
num_leaves, bagging, feature_fraction_stage2, regularization_factors,
min_child_samples), each a ``study.optimize`` with the stage's own sampler,
resuming from the trials the study already holds. kubetune's runner instead
claims one trial and calls the objective with it. The two meet here:

- each call builds the tuner on the kubetune study (same storage), lets it
  work out which stage is next from the stored trials, and runs exactly one
  stage trial *on the trial the runner claimed*: the stage's ``optimize`` is
  replaced by "evaluate the claimed trial with the stage's sampler and stop".
  So every tuner trial is an ordinary kubetune trial: counted by the budget,
  shown in the status, retried on failure, with its parameters and the
  tuner's own system attributes (``lightgbm_tuner:step_name`` ...);
- once every stage is done (about 65-68 trials) and the budget allows more,
  further trials tune the seven parameters jointly with the study's sampler,
  starting from the tuner's best (step name ``joint``), so a study never
  spends its budget repeating itself;
- stages build on the best trial so far, so stepwise tuning is sequential:
  ``budget.parallelism`` must be 1, and ``spec.searchSpace`` must be empty
  (the tuner chooses the parameters).

There is no per-round pruning in this mode (the tuner has none), and the
metric must be one LightGBM computes itself: auc (binary), logloss, rmse, mae.

Example:
    >>> outcome = StepwiseTrainer(problem, lgbm_params).train(trial, {}, problem)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from kubetune.engine.trials import PARAMS_ATTR
from optuna_integration.lightgbm import LightGBMTuner, LightGBMTunerCV

from kubetune_trial.builtin import lightgbm_model
from kubetune_trial.builtin.problem import Outcome, Problem
from kubetune_trial.errors import ObjectiveNotLoadable

MODEL_FILE = lightgbm_model.MODEL_FILE
DEFAULT_ROUNDS = lightgbm_model.DEFAULT_ROUNDS

#: The system attribute where the tuner keeps a trial's full LightGBM parameters.
LGBM_PARAMS_KEY = "lightgbm_tuner:lgbm_params"
#: What the tuner tunes; the joint stage tunes them all at once.
TUNED = [
    "lambda_l1",
    "lambda_l2",
    "num_leaves",
    "feature_fraction",
    "bagging_fraction",
    "bagging_freq",
    "min_child_samples",
]
JOINT_STEP = "joint"


def lightgbm_metric(problem: Problem) -> str:
    """The LightGBM metric that computes the spec's metric."""
    name = problem.metric.name
    if name == "logloss":
        return "binary_logloss" if problem.binary else "multi_logloss"
    if name == "auc" and problem.binary:
        return "auc"
    mapping = {"rmse": "rmse", "mae": "l1"}
    if name not in mapping:
        raise ObjectiveNotLoadable(
            "spec.objective.metric",
            f"{name!r}{'' if problem.binary or name != 'auc' else ' for several classes'} "
            "is not available with tuner: stepwise (use auc for two classes, logloss, rmse or mae)",
        )
    return mapping[name]


class _StepDone(Exception):
    """One stage trial ran on the claimed trial: leave the tuner's loop with its value."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


class _OnClaimedTrial:
    """Makes each stage's ``study.optimize`` evaluate the runner's claimed trial once."""

    claimed_trial_id: int
    tpe_seed: int

    def _create_stepwise_study(self, study: optuna.Study, step_name: str) -> optuna.Study:
        stepwise: optuna.Study = super()._create_stepwise_study(study, step_name)  # type: ignore[misc]
        trial_id, tpe_seed = self.claimed_trial_id, self.tpe_seed

        def optimize(func: Any, *_args: Any, **_kwargs: Any) -> None:
            # The stage sets stepwise.sampler after this study is made. Each call makes a
            # fresh tuner, so a TPE stage's sampler is reseeded per trial (with one seed,
            # every random start-up trial of the stage would draw the same point); a grid
            # stage keeps the tuner's seed, which fixes the order of its grid points.
            if isinstance(stepwise.sampler, optuna.samplers.TPESampler):
                stepwise.sampler = optuna.samplers.TPESampler(seed=tpe_seed)
            # Trial() asks the sampler to prepare the trial (a grid stage picks its point).
            value = func(optuna.Trial(stepwise, trial_id))
            raise _StepDone(float(value))

        stepwise.optimize = optimize  # type: ignore[method-assign]
        return stepwise


class _Tuner(_OnClaimedTrial, LightGBMTuner):
    pass


class _TunerCV(_OnClaimedTrial, LightGBMTunerCV):
    pass


class StepwiseTrainer:
    """Trains one stepwise-tuner trial per call (see the module's docs)."""

    MODEL_FILE = MODEL_FILE
    DEFAULT_ROUNDS = DEFAULT_ROUNDS

    def __init__(self, problem: Problem) -> None:
        self.params = {
            **lightgbm_model.base_params(problem),
            **problem.fixed,
            "metric": lightgbm_metric(problem),
        }

    def _tuner(self, trial: optuna.Trial, problem: Problem) -> _Tuner | _TunerCV:
        common: dict[str, Any] = {
            "num_boost_round": problem.rounds,
            "study": trial.study,
            "show_progress_bar": False,
            "optuna_seed": problem.seed,
        }
        tuner: _Tuner | _TunerCV
        if problem.is_cv:
            data = lightgbm_model.dataset(problem, problem.table.features, problem.table.target)
            tuner = _TunerCV(dict(self.params), data, folds=problem.folds, **common)
        else:
            train_rows, valid_rows = problem.folds[0]
            training = lightgbm_model.dataset(problem, *problem.rows(train_rows))
            valid = lightgbm_model.dataset(problem, *problem.rows(valid_rows), reference=training)
            tuner = _Tuner(dict(self.params), training, valid_sets=[valid], **common)
        tuner.claimed_trial_id = trial._trial_id
        tuner.tpe_seed = problem.seed + trial.number
        return tuner

    def train(self, trial: optuna.Trial, params: dict[str, Any], problem: Problem) -> Outcome:
        tuner = self._tuner(trial, problem)
        try:
            tuner.run()
        except _StepDone as done:
            value = done.value
        else:
            # Every stage is done: tune the seven parameters together, from the best so far.
            tuner.lgbm_params.update(tuner.best_params)
            objective = tuner._create_objective(TUNED, tuner.train_set, JOINT_STEP, None)
            value = float(objective(trial))
        # Each stage tunes one group and carries the others over from the best trial so
        # far: the trial's value comes from all of them, so best_params.json must too.
        lgbm_params = json.loads(
            trial.storage.get_trial_system_attrs(trial._trial_id)[LGBM_PARAMS_KEY]
        )
        trial.set_user_attr(
            PARAMS_ATTR, {name: lgbm_params[name] for name in TUNED if name in lgbm_params}
        )

        def write(path: Path) -> None:
            attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
            params = json.loads(attrs[LGBM_PARAMS_KEY])
            rows = np.arange(len(problem.table.target)) if problem.is_cv else problem.folds[0][0]
            lightgbm_model.fit(params, problem, rows).save_model(str(path))

        return Outcome(value, write)
