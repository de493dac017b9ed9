"""The Study's status: counts, best trial, a short Pareto front, conditions.

Its size does not grow with the number of trials (Katib's does, and its
users complain): there is never a list of every trial.

Example:
    >>> set_condition([], "PodsReady", "False", "Unschedulable", "no GPU free")[0]["type"]
    'PodsReady'
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kubetune.budget import count_trials
from kubetune.spec import MAX_PARETO_FRONT, StudySpec, TrialSummary

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finite(trial: FrozenTrial) -> bool:
    return trial.values is not None and all(math.isfinite(v) for v in trial.values)


def _summary(trial: FrozenTrial) -> dict[str, Any]:
    values = list(trial.values)
    summary = TrialSummary(
        number=trial.number,
        value=values[0] if len(values) == 1 else None,
        values=values if len(values) > 1 else None,
        params=dict(trial.params),
    )
    return summary.to_dict()


def best_trials(study: optuna.Study, trials: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    """The best trial, or up to MAX_PARETO_FRONT Pareto-optimal trials, as status entries."""
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE and _finite(t)]
    if not complete:
        return []
    if len(study.directions) == 1:
        maximize = study.direction.name == "MAXIMIZE"
        best = (max if maximize else min)(complete, key=lambda t: t.values[0])
        return [_summary(best)]
    front = sorted(study.best_trials, key=lambda t: t.number)
    return [_summary(t) for t in front[:MAX_PARETO_FRONT] if _finite(t)]


def trial_status(
    study: optuna.Study, spec: StudySpec, trials: Sequence[FrozenTrial]
) -> dict[str, Any]:
    """The part of the status that comes from the storage."""
    counts = count_trials(trials)
    best = best_trials(study, trials)
    status: dict[str, Any] = {
        "trials": counts.to_dict(),
        "progress": f"{counts.finished}/{spec.budget.max_trials}",
    }
    if len(study.directions) == 1:
        status["bestTrial"] = best[0] if best else None
    else:
        status["paretoFront"] = best
    return status


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
) -> list[dict[str, Any]]:
    """``conditions`` with one condition set; its transition time changes only when
    its status does."""
    result = [dict(c) for c in conditions]
    for condition in result:
        if condition.get("type") == type_:
            if condition.get("status") != status:
                condition["lastTransitionTime"] = now_iso()
            condition.update(status=status, reason=reason, message=message[:1000])
            return result
    result.append(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message[:1000],
            "lastTransitionTime": now_iso(),
        }
    )
    return result


def condition_of(conditions: Sequence[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
