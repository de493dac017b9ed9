"""Names and labels of the objects that belong to a Study.

The one definition: the operator (``kubetune_operator.labels``) imports these
for the objects it makes (``<study>-best-params``, ``<study>-storage``), and the
client uses them to find those objects. ``<study>-code`` (the ConfigMap of
``client.tune``) is the client's own.

Example:
    >>> best_params_configmap("lgbm")
    'lgbm-best-params'
"""

from __future__ import annotations

import hashlib

from kubetune.study.spec import API_GROUP

STUDY_LABEL = f"{API_GROUP}/study"
TRIAL_LABEL = f"{API_GROUP}/trial"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
#: ``best_params.json`` in the ``<study>-best-params`` ConfigMap.
BEST_PARAMS_KEY = "best_params.json"
#: Where ``client.tune`` mounts the shipped source in a trial pod.
CODE_MOUNT_PATH = "/kubetune/code"
CODE_VOLUME = "kubetune-code"
#: The sha256 of the shipped source, on the Study and its ConfigMap.
CODE_DIGEST_ANNOTATION = f"{API_GROUP}/code-digest"


def fit(name: str, length: int) -> str:
    """``name`` cut to ``length`` characters, with a hash so that cut names stay distinct."""
    if len(name) <= length:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"{name[: length - 7]}-{digest}"


def best_params_configmap(study: str) -> str:
    return f"{fit(study, 50)}-best-params"


def storage_secret(study: str) -> str:
    return f"{fit(study, 50)}-storage"


def code_configmap(study: str) -> str:
    return f"{fit(study, 50)}-code"


def study_selector(study: str) -> str:
    return f"{STUDY_LABEL}={study}"
