"""Names and labels of the objects the operator makes for a study.

The names a client also needs (``<study>-best-params``, ``<study>-storage``, the
study label) are defined once in :mod:`kubetune.study.names`; this module adds the
operator's own.
"""

from __future__ import annotations

from kubetune.study.names import (
    BEST_PARAMS_KEY,
    MANAGED_BY_LABEL,
    STUDY_LABEL,
    TRIAL_LABEL,
    best_params_configmap,
    fit,
    storage_secret,
    study_selector,
)
from kubetune.study.spec import API_GROUP

__all__ = [
    "BEST_PARAMS_KEY",
    "COMPONENT_LABEL",
    "HANDLED_ANNOTATION",
    "MANAGED_BY_LABEL",
    "STUDY_LABEL",
    "STUDY_UID_LABEL",
    "TRIAL_LABEL",
    "best_params_configmap",
    "optuna_study_name",
    "pod_prefix",
    "storage_secret",
    "study_selector",
]

STUDY_UID_LABEL = f"{API_GROUP}/study-uid"
COMPONENT_LABEL = "app.kubernetes.io/component"
#: Set on a failed pod once its trials have been dealt with.
HANDLED_ANNOTATION = f"{API_GROUP}/handled"


def optuna_study_name(namespace: str, name: str, uid: str) -> str:
    """The Optuna study of a Study object: a re-created Study gets a new uid, so a new study."""
    return f"{namespace}.{name}.{uid}"


def pod_prefix(study: str) -> str:
    """``generateName`` for trial pods: the server adds 5 characters, within 63 in all."""
    return f"{fit(study, 50)}-trial-"
