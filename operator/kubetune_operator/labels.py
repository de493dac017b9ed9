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
    "GANG_LABEL",
    "HANDLED_ANNOTATION",
    "KUEUE_ADMISSION_GATE",
    "KUEUE_POD_GROUP_LABEL",
    "KUEUE_POD_GROUP_TOTAL_ANNOTATION",
    "KUEUE_PRIORITY_CLASS_LABEL",
    "KUEUE_QUEUE_LABEL",
    "KUEUE_RETRIABLE_IN_GROUP_ANNOTATION",
    "MANAGED_BY_LABEL",
    "NODE_RANK_LABEL",
    "STUDY_LABEL",
    "STUDY_UID_LABEL",
    "TRIAL_LABEL",
    "best_params_configmap",
    "gang_name",
    "optuna_study_name",
    "pod_prefix",
    "storage_secret",
    "study_selector",
]

STUDY_UID_LABEL = f"{API_GROUP}/study-uid"
COMPONENT_LABEL = "app.kubernetes.io/component"
#: Set on a failed pod once its trials have been dealt with.
HANDLED_ANNOTATION = f"{API_GROUP}/handled"
#: The pods of one multi-node trial: their gang's name, and each one's place in it.
GANG_LABEL = f"{API_GROUP}/gang"
NODE_RANK_LABEL = f"{API_GROUP}/node-rank"

# Kueue's pod integration (https://kueue.sigs.k8s.io/docs/tasks/run/plain_pods/): the
# names are Kueue's own (sigs.k8s.io/kueue pkg/controller/constants and
# pkg/controller/jobs/pod/constants).
#: The LocalQueue a pod waits in.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: A WorkloadPriorityClass: the pod's priority inside its queue.
KUEUE_PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
#: The scheduling gate Kueue removes when it admits the pod (its webhook adds it too).
KUEUE_ADMISSION_GATE = "kueue.x-k8s.io/admission"
#: Pods admitted together as one workload: the same name on each, and their count.
KUEUE_POD_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_POD_GROUP_TOTAL_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
#: "false": the group's workload is finished once all its pods have ended, instead of
#: holding its quota for replacement pods.
KUEUE_RETRIABLE_IN_GROUP_ANNOTATION = "kueue.x-k8s.io/retriable-in-group"


def optuna_study_name(namespace: str, name: str, uid: str) -> str:
    """The Optuna study of a Study object: a re-created Study gets a new uid, so a new study."""
    return f"{namespace}.{name}.{uid}"


def gang_name(study: str, suffix: str) -> str:
    """A multi-node trial's gang: its pods are ``<gang>-<rank>``, within 63 characters
    for up to 100 pods (and the gang name is its Kueue pod group's)."""
    return f"{fit(study, 44)}-trial-{suffix}"


def pod_prefix(study: str) -> str:
    """``generateName`` for trial pods: the server adds 5 characters, within 63 in all."""
    return f"{fit(study, 50)}-trial-"
