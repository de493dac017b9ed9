"""The engine: what every process that works on a study shares.

Trial pods, local worker processes, the operator and the client all run a study
through these modules, so they agree on it: the Optuna objects built from a spec
(:mod:`~kubetune.engine.bridge`), the budget and its stop reasons
(:mod:`~kubetune.engine.budget`), storages and the claim lock
(:mod:`~kubetune.engine.storage`), the running totals of a study's trials
(:mod:`~kubetune.engine.ledger`), failing the trials of a lost worker
(:mod:`~kubetune.engine.recovery`), the supervision policy the operator and local
mode both follow (:mod:`~kubetune.engine.supervision`), trials as records
(:mod:`~kubetune.engine.trials`), warm starts (:mod:`~kubetune.engine.warmstart`)
and the contract between a supervisor and the workers it starts
(:mod:`~kubetune.engine.worker`). It builds on :mod:`kubetune.study` only.

Example:
    >>> from kubetune.engine import open_storage, redact
    >>> redact("postgresql://kt:secret@db/kubetune")
    'postgresql://kt:***@db/kubetune'
"""

from __future__ import annotations

from kubetune._lazy import exports

_NAMES = {
    "prepare_study": "kubetune.engine.bridge",
    "StopReason": "kubetune.engine.budget",
    "stop_reason": "kubetune.engine.budget",
    "TrialLedger": "kubetune.engine.ledger",
    "ClaimLock": "kubetune.engine.storage",
    "open_storage": "kubetune.engine.storage",
    "redact": "kubetune.engine.storage",
    "decide": "kubetune.engine.supervision",
    "Situation": "kubetune.engine.supervision",
    "Decision": "kubetune.engine.supervision",
    "TrialRecord": "kubetune.engine.trials",
    "WorkerConfig": "kubetune.engine.worker",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = exports(__name__, _NAMES)
