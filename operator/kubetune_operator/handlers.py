"""The Kopf handlers: what the operator does, wired to Study events.

- each Study has an async daemon that reconciles it every few seconds (see
  :mod:`kubetune_operator.reconciler`) while there is something to do, and rests
  (costing nothing but a look at its generation) once the Study is finished,
  suspended or invalid, until its spec changes;
- deleting a Study stops its pods and cleans up (a finalizer makes sure it runs);
- start-up sets where Kopf keeps its own state (annotations, so the status
  stays ours) and the peering priority of this replica.

Why async daemons feeding one bounded pool: a sync daemon would hold one of
Kopf's executor threads for as long as its Study exists, finished or not, so
the 65th Study would wait for a free thread forever and ``kubectl delete``
(a sync handler on the same executor) behind it. Here a Study holds a thread
only while a tick runs, ticks share :data:`TICKS`, and deletions use Kopf's own
executor, which nothing else occupies.

Run with ``kubetune-operator`` or ``kopf run -m kubetune_operator.handlers``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubetune.engine.storage import scrub
from kubetune.engine.trial_ends import TrialEndListener, Wake
from kubetune.study.spec import API_GROUP, API_VERSION, PLURAL

from kubetune_operator import kube
from kubetune_operator.config import OperatorConfig
from kubetune_operator.reconciler import StudyReconciler
from kubetune_operator.tenants import Pooler, Tenants

CONFIG = OperatorConfig.from_env()
#: Each namespace's database and role, when the operator gives them out; trial pods
#: reach theirs through the pooler when the chart deploys one.
TENANTS = (
    Tenants(
        CONFIG.storage_url,
        kube,
        CONFIG.namespace,
        pooler=Pooler(
            CONFIG.trial_storage_host,
            CONFIG.trial_storage_port or 5432,
            CONFIG.pooler_auth_user,
            CONFIG.pooler_auth_password,
        )
        if CONFIG.trial_storage_host
        else None,
    )
    if CONFIG.storage_tenants and CONFIG.storage_url
    else None
)
#: Trial ends pushed by PostgreSQL: a running Study looks again as soon as one ends.
TRIAL_ENDS = TrialEndListener()
#: How soon a Study looks again when a tick left pods exiting by themselves (their workers
#: ran all they were made for, or found nothing left): the pods' ends are not pushed.
POD_EXIT_LOOK_SECONDS = 1.0
#: Set by ``kubetune-operator --namespace``: Kopf then needs no cluster-wide namespace reads.
NAMESPACED_ENV = "KUBETUNE_NAMESPACED"
#: The threads every Study's ticks share (a tick waits on the API server and the database).
TICKS = ThreadPoolExecutor(max_workers=CONFIG.reconcile_workers, thread_name_prefix="tick")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    prefix = API_GROUP
    settings.persistence.finalizer = f"{prefix}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    # Handler log lines become Events only from warnings up; our own Events say the rest.
    settings.posting.level = logging.WARNING
    # Replicas at equal priority all pause; a random one lets exactly one lead.
    settings.peering.priority = random.randint(1, 2**15)
    # Only deletions run on Kopf's executor now; a few threads serve many at once.
    settings.execution.max_workers = 16
    if os.environ.get(NAMESPACED_ENV):
        settings.scanning.disabled = True


def _emitter(body: kopf.Body, reconciler: StudyReconciler) -> Any:
    def emit(type_: str, reason: str, message: str) -> None:
        safe = scrub(scrub(message, CONFIG.storage_url or ""), reconciler._url or "")
        kopf.event(body, type=type_, reason=reason, message=safe)

    return emit


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, cancellation_backoff=5.0, cancellation_timeout=10.0)
async def reconcile_study(
    stopped: kopf.DaemonStopped, body: kopf.Body, logger: logging.Logger, **_: Any
) -> None:
    """Keep the study's pods, trials and status in line until it is deleted; rest while
    nothing can change but its spec."""
    reconciler = StudyReconciler(
        CONFIG, emit=lambda *_args: None, stopping=lambda: bool(stopped), tenants=TENANTS
    )
    reconciler.emit = _emitter(body, reconciler)
    loop = asyncio.get_running_loop()
    resting_at: int | None = None  # the generation at which the last tick said "nothing to do"
    trial_ended = asyncio.Event()
    wake = functools.partial(loop.call_soon_threadsafe, trial_ended.set)
    listening: tuple[str, str] | None = None  # (storage URL, Optuna study) subscribed to
    try:
        while not stopped:
            if body.metadata.get("deletionTimestamp"):
                return
            if resting_at is not None and body.metadata.get("generation") == resting_at:
                listening = _listen(listening, None, wake)
                await stopped.wait(CONFIG.reconcile_seconds)
                continue
            resting_at = await _reconcile_once(loop, reconciler, body, logger)
            if resting_at is None:
                listening = _listen(listening, _listened_study(reconciler), wake)
                period = CONFIG.reconcile_seconds
                if reconciler.pods_exiting:  # a pod's end is not announced: look soon
                    period = min(period, POD_EXIT_LOOK_SECONDS)
                await _pause(stopped, trial_ended, period)
    finally:
        _listen(listening, None, wake)


async def _reconcile_once(
    loop: asyncio.AbstractEventLoop,
    reconciler: StudyReconciler,
    body: kopf.Body,
    logger: logging.Logger,
) -> int | None:
    """One tick on the shared pool; the generation it rests at, or None to go on."""
    generation = body.metadata.get("generation")
    # In this task's context: kopf.event() finds the operator's settings there.
    in_context = functools.partial(contextvars.copy_context().run, _tick)
    tick = loop.run_in_executor(TICKS, in_context, reconciler, body, logger)
    try:
        # Shielded: a tick half done in its thread must end before the daemon does
        # (cancelling does not stop a thread, and the deletion cleans up after it).
        resting = await asyncio.shield(tick)
    except asyncio.CancelledError:
        await asyncio.wait([tick])
        raise
    return generation if resting else None


def _listened_study(reconciler: StudyReconciler) -> tuple[str, str] | None:
    """What to listen to for a running Study: its storage and Optuna study."""
    if not CONFIG.trial_end_push or reconciler._url is None or reconciler._study is None:
        return None
    return reconciler._url, reconciler._study.study_name


def _listen(
    current: tuple[str, str] | None, wanted: tuple[str, str] | None, wake: Wake
) -> tuple[str, str] | None:
    """Move the Study's subscription from ``current`` to ``wanted``."""
    if current != wanted:
        if current is not None:
            TRIAL_ENDS.unsubscribe(*current, wake)
        if wanted is not None:
            TRIAL_ENDS.subscribe(*wanted, wake)
    return wanted


async def _pause(stopped: kopf.DaemonStopped, trial_ended: asyncio.Event, seconds: float) -> None:
    """Until the next look: ``seconds``, or less when a trial of the Study ends."""
    waiting = asyncio.ensure_future(trial_ended.wait())
    try:
        await asyncio.wait(
            [waiting, asyncio.ensure_future(stopped.wait(seconds))],
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        waiting.cancel()
        trial_ended.clear()


def _tick(reconciler: StudyReconciler, body: kopf.Body, logger: logging.Logger) -> bool:
    """One reconcile; an unexpected error is logged (without credentials) and retried."""
    try:
        return reconciler.tick(body)
    except Exception as error:
        text = scrub(
            scrub(f"{type(error).__name__}: {error}", CONFIG.storage_url or ""),
            reconciler._url or "",
        )
        logger.error("reconciling failed, will retry: %s", text)
        return False


@kopf.on.delete(API_GROUP, API_VERSION, PLURAL)
def delete_study(body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
    """Stop the pods (failing their running trials), remove what the operator made,
    and drop the Optuna study if ``spec.storage.onDelete`` is ``delete``."""
    reconciler = StudyReconciler(CONFIG, emit=lambda *_args: None, tenants=TENANTS)
    reconciler.delete(body.metadata, dict(body.spec), dict(body.status))
    logger.info("study %s deleted", body.metadata.name)
