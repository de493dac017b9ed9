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

from kubetune.engine.spend import spend_of
from kubetune.engine.trials import effective_params
from kubetune.study.spec import MAX_PARETO_FRONT, StudySpec, TrialSummary, best_summary

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
    """The part of the status that comes from the storage: counts, progress, the spend
    so far, the best trial or the first MAX_PARETO_FRONT trials of the Pareto front, and
    the one-line ``best`` kubectl shows for either."""
    counts = ledger.counts
    best = [_summary(t) for t in ledger.best[:MAX_PARETO_FRONT]]
    status: dict[str, Any] = {
        "trials": counts.to_dict(),
        # What counts against maxTrials: a trial handed back to run again does not.
        "progress": f"{ledger.spending.settled}/{spec.budget.max_trials}",
        "spend": spend_of(spec, ledger.spending.trial_seconds).to_status().to_dict(),
    }
    if len(spec.objective.study_directions) == 1:
        status["bestTrial"] = best[0] if best else None
        status["best"] = best_summary(status["bestTrial"])
    else:
        status["paretoFront"] = best
        status["best"] = best_summary(None, len(ledger.best))
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


#: The condition saying a worker's import of the objective's module stopped at the
#: script's own ``study.optimize`` (its study never runs in a pod; kubetune runs the trials).
SCRIPT_NOTE_CONDITION = "ScriptStudyIntercepted"
#: Its reason, and the reason of the one Event that says it.
SCRIPT_NOTE_REASON = "OptimizeAtImport"


def with_script_note(
    conditions: list[dict[str, Any]], note: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """``conditions`` with :data:`SCRIPT_NOTE_CONDITION` once a worker noted ``note``
    ("train.py calls study.optimize at import; kubetune runs the trials instead"), and
    whether it is new (then the reconciler posts it as one Event too).

    >>> with_script_note([], "t.py calls study.optimize at import; ...")[0][0]["reason"]
    'OptimizeAtImport'
    """
    if not note or condition_of(conditions, SCRIPT_NOTE_CONDITION) is not None:
        return conditions, False
    return set_condition(conditions, SCRIPT_NOTE_CONDITION, "True", SCRIPT_NOTE_REASON, note), True


def condition_of(conditions: Sequence[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
