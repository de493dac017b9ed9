"""Trial pods: building them from the spec, and reading why one ended.

Example:
    >>> pod = trial_pod(study_meta, spec, config, optuna_name="ns.s.uid", secret=("pg", "url"),
    ...                 worker_index=3)                                  # doctest: +SKIP
    >>> pod["spec"]["restartPolicy"]                                      # doctest: +SKIP
    'Never'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetune.engine.gang import (
    GANG_LEADER_ENV,
    NODE_RANK_ENV,
    NODES_ENV,
    POD_IP_ENV,
    PROCESSES_PER_NODE_ENV,
)
from kubetune.engine.worker import (
    MAX_TRIALS_ENV,
    STORAGE_URL_ENV,
    STUDY_NAME_ENV,
    WORKER_INDEX_ENV,
    WORKER_NAME_ENV,
)
from kubetune.study.spec import API_VERSION_FULL, KIND, StudySpec, TrialTemplate

from kubetune_operator.config import OperatorConfig
from kubetune_operator.labels import (
    COMPONENT_LABEL,
    GANG_LABEL,
    KUEUE_ADMISSION_GATE,
    KUEUE_POD_GROUP_LABEL,
    KUEUE_POD_GROUP_TOTAL_ANNOTATION,
    KUEUE_PRIORITY_CLASS_LABEL,
    KUEUE_QUEUE_LABEL,
    KUEUE_RETRIABLE_IN_GROUP_ANNOTATION,
    MANAGED_BY_LABEL,
    NODE_RANK_LABEL,
    STUDY_LABEL,
    STUDY_UID_LABEL,
    pod_prefix,
)

#: The resource GPU node pools are tainted for (GKE, AKS, the NVIDIA GPU operator).
GPU_RESOURCE = "nvidia.com/gpu"
#: Given to a pod asking for a GPU, unless the Study's tolerations already tolerate the key.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
SHM_VOLUME = "dshm"


@dataclass(frozen=True)
class GangPlace:
    """A pod's place in a multi-node trial's gang (see :mod:`kubetune.engine.gang`)."""

    gang: str
    rank: int
    nodes: int

    @property
    def pod_name(self) -> str:
        return f"{self.gang}-{self.rank}"

    @property
    def leader(self) -> str:
        """Pod 0: it claims the trials; the others follow it."""
        return f"{self.gang}-0"


def owner_reference(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Makes an object belong to the Study (deleted with it where garbage collection runs)."""
    return {
        "apiVersion": API_VERSION_FULL,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def trial_pod(
    meta: Mapping[str, Any],
    spec: StudySpec,
    config: OperatorConfig,
    *,
    optuna_name: str,
    secret: tuple[str, str],
    worker_index: int,
    gang: GangPlace | None = None,
) -> dict[str, Any]:
    """A pod that runs ``spec.trial.trialsPerPod`` trials of the study, then exits.

    With ``gang`` it is one node of a multi-node trial: named for its place, told
    the gang's size and leader; the gang is one Kueue pod group.

    The storage URL reaches it only through a ``secretKeyRef``. With
    ``spec.trial.queueName`` it carries what Kueue's pod integration reads (the
    queue's label, the admission gate: it waits until Kueue admits it).
    """
    trial = spec.trial
    secret_name, secret_key = secret
    env: list[dict[str, Any]] = [
        {"name": STUDY_NAME_ENV, "value": optuna_name},
        {"name": WORKER_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": WORKER_INDEX_ENV, "value": str(worker_index)},
        {"name": MAX_TRIALS_ENV, "value": str(trial.trials_per_pod)},
        {
            "name": STORAGE_URL_ENV,
            "valueFrom": {"secretKeyRef": {"name": secret_name, "key": secret_key}},
        },
        {"name": PROCESSES_PER_NODE_ENV, "value": str(trial.processes_per_node)},
    ]
    if gang is not None:
        env += [
            {"name": NODES_ENV, "value": str(gang.nodes)},
            {"name": NODE_RANK_ENV, "value": str(gang.rank)},
            {"name": GANG_LEADER_ENV, "value": gang.leader},
            # Where the other nodes reach node 0's rendezvous: pod addresses are routable.
            {"name": POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ]
    env += [variable.model_dump(exclude_none=True) for variable in trial.env]
    container: dict[str, Any] = {
        "name": "trial",
        "image": trial.image or config.trial_image,
        "command": list(config.trial_command),
        "env": env,
        "resources": _resources(trial),
        "securityContext": trial.container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if trial.image_pull_policy:
        container["imagePullPolicy"] = trial.image_pull_policy
    if trial.working_dir:
        container["workingDir"] = trial.working_dir
    volumes, mounts = _volumes(trial)
    if mounts:
        container["volumeMounts"] = mounts
    labels = {
        **trial.labels,
        STUDY_LABEL: meta["name"],
        STUDY_UID_LABEL: meta["uid"],
        COMPONENT_LABEL: "trial",
        MANAGED_BY_LABEL: "kubetune",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "automountServiceAccountToken": False,
        "securityContext": trial.pod_security(),
    }
    optional = {
        "nodeSelector": trial.node_selector,
        "tolerations": _tolerations(trial, container["resources"]),
        "affinity": trial.affinity,
        "volumes": volumes,
        "imagePullSecrets": [ref.model_dump() for ref in trial.image_pull_secrets],
        "activeDeadlineSeconds": trial.deadline_seconds,
        "serviceAccountName": trial.service_account_name or config.trial_service_account,
        "priorityClassName": trial.priority_class_name,
    }
    pod_spec.update({key: value for key, value in optional.items() if value})
    if trial.queue_name:
        labels[KUEUE_QUEUE_LABEL] = trial.queue_name
        if trial.workload_priority_class_name:
            labels[KUEUE_PRIORITY_CLASS_LABEL] = trial.workload_priority_class_name
        # Kueue's webhook adds the gate to the pods it manages; setting it here too keeps
        # a pod from starting before admission when the webhook's selector missed it.
        pod_spec["schedulingGates"] = [{"name": KUEUE_ADMISSION_GATE}]
    annotations = dict(trial.annotations)
    metadata: dict[str, Any] = {"generateName": pod_prefix(meta["name"])}
    if gang is not None:
        labels[GANG_LABEL] = gang.gang
        labels[NODE_RANK_LABEL] = str(gang.rank)
        metadata = {"name": gang.pod_name}
        if trial.queue_name:
            # The gang is admitted as one workload, or not at all.
            labels[KUEUE_POD_GROUP_LABEL] = gang.gang
            annotations[KUEUE_POD_GROUP_TOTAL_ANNOTATION] = str(gang.nodes)
            # A gang is never mended in place (a lost trial runs on a new gang): Kueue
            # must free its quota when its pods end, not wait for replacements.
            annotations[KUEUE_RETRIABLE_IN_GROUP_ANNOTATION] = "false"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **metadata,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(meta)],
        },
        "spec": pod_spec,
    }


def _resources(trial: TrialTemplate) -> dict[str, dict[str, str]]:
    """Requests and limits; quantities are strings in the API ("1", "500m"), whatever YAML gave."""
    return {
        kind: {name: str(amount) for name, amount in amounts.items()}
        for kind, amounts in trial.resources.model_dump(exclude_defaults=True).items()
        if amounts
    }


def _volumes(trial: TrialTemplate) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the container's mounts: the spec's, and /dev/shm if sized."""
    volumes, mounts = list(trial.volumes), list(trial.volume_mounts)
    if trial.shm_size is not None:
        volumes.append(
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": str(trial.shm_size)}}
        )
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    return volumes, mounts


def _tolerates(toleration: Mapping[str, Any], key: str) -> bool:
    """True when ``toleration`` tolerates a NoSchedule taint with ``key``, whatever its value."""
    if toleration.get("effect") not in (None, "", "NoSchedule"):
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"  # an empty key with Exists matches all
    return bool(toleration["key"] == key)


def _tolerations(
    trial: TrialTemplate, resources: Mapping[str, Mapping[str, str]]
) -> list[dict[str, Any]]:
    """The spec's tolerations, and the GPU taint's when the pod asks for a GPU."""
    tolerations = list(trial.tolerations)
    if GPU_RESOURCE in resources.get("limits", {}) and not any(
        _tolerates(toleration, GPU_RESOURCE) for toleration in tolerations
    ):
        tolerations.append(dict(GPU_TOLERATION))
    return tolerations


def is_live(pod: Mapping[str, Any]) -> bool:
    """Pending or running, and not being deleted."""
    phase = pod.get("status", {}).get("phase", "Pending")
    return phase in ("Pending", "Running") and not pod["metadata"].get("deletionTimestamp")


def trials_per_pod(pod: Mapping[str, Any]) -> int | None:
    """How many trials the pod's worker runs before it exits, as the pod was made
    (``spec.trial.trialsPerPod`` then: an edit since does not change a running pod)."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for variable in container.get("env") or []:
            if variable.get("name") == MAX_TRIALS_ENV:
                try:
                    return int(variable.get("value"))
                except (TypeError, ValueError):
                    return None
    return None


def has_ended(pod: Mapping[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def exit_code(pod: Mapping[str, Any]) -> int | None:
    terminated = _terminated(pod)
    return None if terminated is None else terminated.get("exitCode")


def _terminated(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None


#: Pod conditions saying something outside the pod stopped it: Kubernetes' own
#: (preemption by the scheduler, an eviction or drain, node shutdown) and Kueue's.
DISRUPTION_CONDITIONS = ("DisruptionTarget", "TerminationTarget")


def disruption(pod: Mapping[str, Any]) -> str | None:
    """``reason: message`` when the pod was preempted or evicted to make room (Kueue's
    ``StoppedByKueue``, the scheduler's ``PreemptionByScheduler``...), else None."""
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") in DISRUPTION_CONDITIONS and condition.get("status") == "True":
            reason = condition.get("reason") or condition["type"]
            message = (condition.get("message") or "").strip()
            return f"{reason}: {message}" if message else reason
    return None


def taken_away(pod: Mapping[str, Any]) -> bool:
    """The cluster stopped the pod (evicted, preempted, deleted, its node drained or
    gone) rather than its container failing (an exit code, OOMKilled): its trial did
    not fail, and with checkpoints goes on in a new pod."""
    if pod.get("status", {}).get("reason") in ("Evicted", "NodeLost", "Terminated", "Shutdown"):
        return True
    if disruption(pod) is not None:
        return True
    return bool(pod["metadata"].get("deletionTimestamp")) and not has_ended(pod)


def end_reason(pod: Mapping[str, Any]) -> str:
    """Why a pod is gone or failed, in words for a trial's fail reason.

    Reads eviction, OOM kills, exit codes and the container's termination message.
    """
    name = pod["metadata"]["name"]
    status = pod.get("status", {})
    if status.get("reason") == "Evicted":
        return f"pod {name} was evicted: {status.get('message', '').strip()}".rstrip(": ")
    disrupted = disruption(pod)
    if disrupted is not None:
        return f"pod {name} was preempted ({disrupted})"
    if pod["metadata"].get("deletionTimestamp") and not has_ended(pod):
        return f"pod {name} was deleted while its trial was running"
    terminated = _terminated(pod)
    if terminated is None:
        return f"pod {name} ended ({status.get('phase', 'unknown phase')})"
    reason = terminated.get("reason") or ""
    code = terminated.get("exitCode")
    if reason == "OOMKilled":
        text = f"pod {name} was OOMKilled (exit code {code}); raise its memory limit"
    else:
        text = f"pod {name} exited with code {code}" + (f" ({reason})" if reason else "")
    message = (terminated.get("message") or "").strip()
    return f"{text}: {message[-1500:]}" if message else text


def termination_message(pod: Mapping[str, Any]) -> str:
    terminated = _terminated(pod) or {}
    return str(terminated.get("message") or "").strip()


def queue_wait(pod: Mapping[str, Any]) -> str | None:
    """Why a live pod waits its turn, when it does: scheduling gates not yet removed
    (Kueue's admission gate until the queue admits it). None for any other pod.

    A waiting pod is not stuck: it is neither a start problem nor a crash.
    """
    if has_ended(pod) or (pod.get("spec") or {}).get("nodeName"):
        return None
    gates = [gate.get("name", "") for gate in (pod.get("spec") or {}).get("schedulingGates") or []]
    if gates:
        return "held by the scheduling gate(s) " + ", ".join(gates)
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            return condition.get("message") or "held by a scheduling gate"
    return None


def waiting_problem(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when a live pod cannot start: unschedulable, image pull errors.

    A pod waiting in a queue (:func:`queue_wait`) has no problem."""
    if queue_wait(pod) is not None:
        return None
    status = pod.get("status", {})
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            # Just admitted: bound already, the gated condition not yet replaced.
            and condition.get("reason") != "SchedulingGated"
        ):
            return (
                condition.get("reason") or "Unschedulable",
                condition.get("message") or "the pod cannot be scheduled",
            )
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in (
            "ErrImagePull",
            "ImagePullBackOff",
            # imagePullPolicy: Never and the image is not on the node (kind, air-gapped).
            "ErrImageNeverPull",
            "InvalidImageName",
            "CreateContainerConfigError",
            "CrashLoopBackOff",
        ):
            return waiting["reason"], waiting.get("message") or waiting["reason"]
    return None
