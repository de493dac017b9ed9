"""Names and labels of the objects the operator makes for a study."""

from __future__ import annotations

import hashlib

from kubetune.spec import API_GROUP

STUDY_LABEL = f"{API_GROUP}/study"
STUDY_UID_LABEL = f"{API_GROUP}/study-uid"
TRIAL_LABEL = f"{API_GROUP}/trial"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
#: Set on a failed pod once its trials have been dealt with.
HANDLED_ANNOTATION = f"{API_GROUP}/handled"

BEST_PARAMS_KEY = "best_params.json"


def optuna_study_name(namespace: str, name: str, uid: str) -> str:
    """The Optuna study of a Study object: a re-created Study gets a new uid, so a new study."""
    return f"{namespace}.{name}.{uid}"


def pod_prefix(study: str) -> str:
    """``generateName`` for trial pods: the server adds 5 characters, within 63 in all."""
    return f"{_fit(study, 50)}-trial-"


def best_params_configmap(study: str) -> str:
    return f"{_fit(study, 50)}-best-params"


def storage_secret(study: str) -> str:
    return f"{_fit(study, 50)}-storage"


def _fit(name: str, length: int) -> str:
    if len(name) <= length:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"{name[: length - 7]}-{digest}"


def study_selector(name: str) -> str:
    return f"{STUDY_LABEL}={name}"
