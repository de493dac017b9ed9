"""Built-in objectives vary their seed by themselves in verification repeats (spec.verify):
a repeat trains and validates on folds drawn with its own seed, the study's trials on
the spec's."""

from __future__ import annotations

import numpy as np
import optuna
from builtin_helpers import builtin_spec
from kubetune.engine.verify import REPEAT_ATTR
from kubetune.study.spec import validate_spec
from kubetune_trial.builtin.objective import BuiltinTrialObjective


def test_a_repeat_draws_its_own_folds_and_a_study_trial_keeps_the_spec_s() -> None:
    spec = validate_spec(
        builtin_spec(
            {
                "model": "lightgbm",
                "data": {"dataset": "sklearn:breast_cancer"},
                "validation": {"kind": "kfold", "folds": 3},
                "seed": 5,
            },
            objective={"direction": "minimize", "metric": "logloss"},
        )
    )
    objective = BuiltinTrialObjective(spec, "s")
    study = optuna.create_study()
    study.enqueue_trial({}, user_attrs={REPEAT_ATTR: 2})
    own, repeat = study.ask(), study.ask()
    if REPEAT_ATTR in own.user_attrs:
        own, repeat = repeat, own

    assert objective._problem_of(own) is objective.problem
    varied = objective._problem_of(repeat)
    assert varied.seed == 7  # the spec's seed 5, repeat 2
    first_fold = np.sort(varied.folds[0][1])
    assert not np.array_equal(first_fold, np.sort(objective.problem.folds[0][1]))
