"""Optuna's Terminator for ``spec.budget.stopWhen.terminator``: should the study stop?

The Terminator fits a Gaussian process to the trials (Optuna's ``_gp``, on torch)
and bounds the regret: how much better than the best trial the rest of the
search could still get. When that bound is below the statistical error of the
best trial's own value (the variance of its cross-validation folds, reported by
the objective with ``optuna.terminator.report_cross_validation_scores``, or the
rule's fixed ``minError``), more trials would be chasing noise.

It runs in the trial runner after each trial, not in the operator: the trial
image has torch, the operator's image does not (and should not carry it to
watch Studies). A worker that finds the bound below the error asks the study to
stop (:func:`kubetune.engine.bridge.request_stop`, with
:data:`kubetune.engine.budget.TERMINATOR_PREFIX` before its reason), and every
claim, the operator and ``kubetune run`` stop it with ``StopReason.TERMINATOR``;
the running trials finish.

Optuna deprecated ``optuna.terminator`` in 4.9 (to be removed in 6.0 and moved to
OptunaHub's ``callbacks/terminator``); kubetune pins Optuna 5, where it works. When it
goes, this module is the one place to change.

Example:
    >>> verdict = terminator_verdict(study, spec)  # doctest: +SKIP
    >>> verdict  # doctest: +SKIP
    "the regret bound 0.0021 is below the best trial's cross-validation error 0.0134 ..."
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

from kubetune.study.spec import StudySpec

if TYPE_CHECKING:
    import optuna

_logger = logging.getLogger("kubetune.terminator")


def terminator_verdict(study: optuna.Study, spec: StudySpec) -> str | None:
    """Why the Terminator would stop ``study`` now, or None while it sees room to improve
    (or the rule is off, or fewer than ``minTrials`` trials completed)."""
    rule = spec.budget.stop_when.terminator if spec.budget.stop_when else None
    if rule is None:
        return None
    from optuna.terminator import (
        CrossValidationErrorEvaluator,
        RegretBoundEvaluator,
        StaticErrorEvaluator,
    )
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = sum(1 for t in trials if t.state == TrialState.COMPLETE)
    if complete < rule.min_trials:
        return None
    with warnings.catch_warnings():
        # Optuna marks the Terminator experimental; the warning says nothing to our users.
        warnings.simplefilter("ignore")
        if rule.min_error is not None:
            error_evaluator = StaticErrorEvaluator(rule.min_error)
            error_source = "minError"
        else:
            error_evaluator = CrossValidationErrorEvaluator()
            error_source = "the best trial's cross-validation error"
        try:
            error = error_evaluator.evaluate(trials, study.direction)
        except ValueError:
            _logger.warning(
                "stopWhen.terminator: the best trial reported no cross-validation scores "
                "(optuna.terminator.report_cross_validation_scores(trial, scores) in the "
                "objective) and the rule gives no minError; the Terminator cannot decide"
            )
            return None
        bound = RegretBoundEvaluator().evaluate(trials, study.direction)
    if bound >= error:
        return None
    return (
        f"the regret bound {bound:.4g} is below {error_source} {error:.4g} after "
        f"{complete} complete trials: more trials would not beat the best by more than "
        "its own noise"
    )
