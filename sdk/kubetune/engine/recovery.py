"""Trials whose worker is gone: fail them with a reason, and try their
parameters again when the spec allows.

Optuna only fails a stale trial when another worker happens to start one, and
only with heartbeats on. kubetune's supervisors (the operator for pods,
``kubetune run`` for processes) know when a worker dies, and call
:func:`fail_lost_trials` at once.

Example:
    >>> fail_lost_trials(study, lost, "pod OOMKilled (exit code 137)", retries=2)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from kubetune.engine.budget import RETRIED_ATTR
from kubetune.engine.checkpoints import carried_attrs

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

#: User attributes kubetune sets on every trial.
WORKER_ATTR = "kubetune.worker"
FAIL_REASON_ATTR = "kubetune.fail_reason"
RETRY_OF_ATTR = "kubetune.retry_of"
#: Marks a trial stopped on purpose (suspend, Ctrl-C, SIGTERM from its supervisor) and
#: handed back to run again: Optuna records it FAIL, but it did not fail, and counts
#: and summaries do not call it failed (see :class:`kubetune.engine.ledger.TrialLedger`).
STOPPED_ATTR = "kubetune.stopped"
ATTEMPT_ATTR = "kubetune.attempt"

#: A running trial with no worker recorded after this long was claimed by a
#: worker that died before it could say who it was.
UNCLAIMED_GRACE = dt.timedelta(seconds=60)


def fail_trial(storage: optuna.storages.BaseStorage, trial_id: int, reason: str) -> bool:
    """Mark a running trial FAIL with ``reason``; False if it had already finished."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason[-2000:])
        return storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False


def give_up_trial(storage: optuna.storages.BaseStorage, trial_id: int, reason: str) -> bool:
    """Fail a running trial that must not count against the budget (marked as a
    retried attempt), with ``reason``; False if it had already finished."""
    from optuna.exceptions import UpdateFinishedTrialError

    try:
        storage.set_trial_user_attr(trial_id, RETRIED_ATTR, True)
    except UpdateFinishedTrialError:
        return False
    return fail_trial(storage, trial_id, reason)


def fail_lost_trials(
    study: optuna.Study,
    trials: Sequence[FrozenTrial],
    reason: str,
    *,
    retries: int,
    requeue: bool = False,
    resume: bool = False,
    stopped: bool = False,
) -> list[int]:
    """Fail each running trial in ``trials`` with ``reason``, and queue its
    parameters again if it has attempts left (always, with ``requeue``: the
    trial was stopped on purpose, by suspend or Ctrl-C, and that costs no attempt).
    Returns the numbers of the trials failed.

    ``stopped``: the trial was cut off because its study ended (a timeout, a spent
    budget, a stop rule, the Study deleted), not by a fault of its own: it is marked
    stopped as a requeued trial is (counts show it stopped, not failed), and not queued.

    With ``resume`` (the study keeps checkpoints, and the worker was lost to the cluster
    or stopped, not failed: evicted, preempted, its node gone, SIGTERM) the trial is
    re-queued as with ``requeue`` and its copy goes on with the same run: the
    intermediate values reported so far and the checkpoint move to it (see
    :mod:`kubetune.engine.checkpoints` for why a copy rather than the same trial).

    Safe to call twice or from two supervisors: a trial already finished is left alone.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState, create_trial

    storage = study._storage
    failed: list[int] = []
    requeue = requeue or resume
    for trial in trials:
        attempt = int(trial.user_attrs.get(ATTEMPT_ATTR, 1))
        again = requeue or attempt <= retries
        if resume:
            # Read again: the worker may have reported and checkpointed since the
            # caller's snapshot, and the copy must carry the latest.
            trial = storage.get_trial(trial._trial_id)
        try:
            # Marked while still running: Optuna refuses attributes on finished trials.
            if requeue or stopped:
                storage.set_trial_user_attr(trial._trial_id, STOPPED_ATTR, reason)
            if again:
                storage.set_trial_user_attr(trial._trial_id, RETRIED_ATTR, True)
        except UpdateFinishedTrialError:
            continue
        if not fail_trial(storage, trial._trial_id, reason):
            continue
        failed.append(trial.number)
        if not again:
            continue
        attrs: dict[str, object] = {
            RETRY_OF_ATTR: trial.number,
            ATTEMPT_ATTR: attempt if requeue else attempt + 1,
        }
        if resume:
            attrs.update(carried_attrs(trial))
        # What study.enqueue_trial makes, with the run's reports when it goes on.
        study.add_trial(
            create_trial(
                state=TrialState.WAITING,
                system_attrs={"fixed_params": trial.params},
                user_attrs=attrs,
                intermediate_values=dict(trial.intermediate_values) if resume else None,
            )
        )
    return failed


def lost_trials(
    trials: Sequence[FrozenTrial],
    live_workers: Collection[str],
    *,
    now: dt.datetime | None = None,
) -> list[FrozenTrial]:
    """Running trials whose worker is not among ``live_workers``.

    A running trial that names no worker counts as lost once it is older than
    :data:`UNCLAIMED_GRACE`.
    """
    from optuna.trial import TrialState

    now = now or dt.datetime.now()
    lost: list[FrozenTrial] = []
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker is None:
            started = trial.datetime_start or now
            if now - started > UNCLAIMED_GRACE:
                lost.append(trial)
        elif worker not in live_workers:
            lost.append(trial)
    return lost
