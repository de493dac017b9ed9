"""The Study's status: counts, best trial, a short Pareto front, conditions.

Its size does not grow with the number of trials (Katib's does, and its
users complain): there is never a list of every trial.

Example:
    >>> set_condition([], "PodsReady", "False", "Unschedulable", "no GPU free")[0]["type"]
    'PodsReady'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kubetune.engine.trials import effective_params
from kubetune.study.spec import MAX_PARETO_FRONT, StudySpec, TrialSummary

if TYPE_CHECKING:
    from kubetune.engine.ledger import TrialLedger
    from optuna.trial import FrozenTrial


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summary(trial: FrozenTrial) -> dict[str, Any]:
    values = list(trial.values)
    summary = TrialSummary(
        number=trial.number,
        value=values[0] if len(values) == 1 else None,
        values=values if len(values) > 1 else None,
        params=effective_params(trial),
    )
    return summary.to_dict()


def trial_status(spec: StudySpec, ledger: TrialLedger) -> dict[str, Any]:
    """The part of the status that comes from the storage: counts, progress, and
    the best trial or the first MAX_PARETO_FRONT trials of the Pareto front."""
    counts = ledger.counts
    best = [_summary(t) for t in ledger.best[:MAX_PARETO_FRONT]]
    status: dict[str, Any] = {
        "trials": counts.to_dict(),
        "progress": f"{counts.finished}/{spec.budget.max_trials}",
    }
    if len(spec.objective.study_directions) == 1:
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
