"""The Kopf handlers: what the operator does, wired to Study events.

- a daemon per Study reconciles it every few seconds (see
  :mod:`kubetune_operator.reconciler`) until it is finished;
- deleting a Study stops its pods and cleans up (a finalizer makes sure it runs);
- start-up sets where Kopf keeps its own state (annotations, so the status
  stays ours) and the peering priority of this replica.

Run with ``kubetune-operator`` or ``kopf run -m kubetune_operator.handlers``.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import kopf
from kubetune.spec import API_GROUP, API_VERSION, PLURAL
from kubetune.storage import scrub

from kubetune_operator.config import OperatorConfig
from kubetune_operator.reconciler import StudyReconciler

CONFIG = OperatorConfig.from_env()
#: Set by ``kubetune-operator --namespace``: Kopf then needs no cluster-wide namespace reads.
NAMESPACED_ENV = "KUBETUNE_NAMESPACED"


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
    settings.execution.max_workers = 64
    if os.environ.get(NAMESPACED_ENV):
        settings.scanning.disabled = True


def _emitter(body: kopf.Body, reconciler: StudyReconciler) -> Any:
    def emit(type_: str, reason: str, message: str) -> None:
        safe = scrub(scrub(message, CONFIG.storage_url or ""), reconciler._url or "")
        kopf.event(body, type=type_, reason=reason, message=safe)

    return emit


# A tick in progress finishes before the daemon exits (cancelling does not stop a thread).
@kopf.daemon(API_GROUP, API_VERSION, PLURAL, cancellation_backoff=5.0, cancellation_timeout=10.0)
def reconcile_study(
    stopped: kopf.DaemonStopped, body: kopf.Body, logger: logging.Logger, **_: Any
) -> None:
    """Keep the study's pods, trials and status in line, until it is finished or deleted."""
    reconciler = StudyReconciler(CONFIG, emit=lambda *_args: None)
    reconciler.emit = _emitter(body, reconciler)
    while not stopped:
        if body.metadata.get("deletionTimestamp"):
            return
        done = False
        try:
            done = reconciler.tick(body)
        except Exception as error:
            text = scrub(
                scrub(f"{type(error).__name__}: {error}", CONFIG.storage_url or ""),
                reconciler._url or "",
            )
            logger.error("reconciling failed, will retry: %s", text)
        # A finished study is only looked at now and then (its spec may be edited).
        stopped.wait(CONFIG.reconcile_seconds * (5 if done else 1))


@kopf.on.delete(API_GROUP, API_VERSION, PLURAL)
def delete_study(body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
    """Stop the pods (failing their running trials), remove what the operator made,
    and drop the Optuna study if ``spec.storage.onDelete`` is ``delete``."""
    reconciler = StudyReconciler(CONFIG, emit=lambda *_args: None)
    reconciler.delete(body.metadata, dict(body.spec))
    logger.info("study %s deleted", body.metadata.name)
