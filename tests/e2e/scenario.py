"""Small helpers the e2e scenarios share."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import optuna

IMAGE = "ghcr.io/kubetune/trial:test"


def study_document(name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def secret_document(name: str, url: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }


def spec(function: str, **changes: Any) -> dict[str, Any]:
    """A study spec running ``kt_test_objectives.<function>`` in trial pods."""
    base: dict[str, Any] = {
        "objective": {"direction": "minimize"},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"maxTrials": 4, "parallelism": 2},
        "trial": {"python": f"kt_test_objectives:{function}", "image": IMAGE},
    }
    for key, value in changes.items():
        if key in ("budget", "trial"):  # merged; everything else is replaced
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def create(kube: Any, name: str, study_spec: dict[str, Any], namespace: str = "default") -> None:
    kube.create("studies", study_document(name, study_spec, namespace), namespace)


def status(kube: Any, name: str, namespace: str = "default") -> dict[str, Any]:
    return dict(kube.get("studies", name, namespace).get("status") or {})


def wait_phase(
    kube: Any, name: str, phase: str, namespace: str = "default", timeout: float = 120
) -> dict[str, Any]:
    study = kube.wait_for_object(
        "studies",
        name,
        lambda s: (s.get("status") or {}).get("phase") == phase,
        namespace,
        timeout=timeout,
    )
    return dict(study["status"])


def optuna_study(
    kube: Any, storage_url: str, name: str, namespace: str = "default"
) -> optuna.Study:
    study_name = kube.wait_for_object(
        "studies", name, lambda s: (s.get("status") or {}).get("studyName"), namespace, timeout=60
    )["status"]["studyName"]
    return optuna.load_study(study_name=study_name, storage=storage_url)


def live_pods(kube: Any, name: str, namespace: str = "default") -> list[dict[str, Any]]:
    pods = kube.list("pods", namespace, label_selector=f"kubetune.io/study={name}")
    return [
        p
        for p in pods
        if (p.get("status") or {}).get("phase", "Pending") in ("Pending", "Running")
        and not p["metadata"].get("deletionTimestamp")
    ]


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        time.sleep(every)


def running_trial_pod(kube: Any, name: str, namespace: str = "default") -> dict[str, Any]:
    """A pod of the study that has claimed a trial (the operator labels it with its number)."""

    def find() -> dict[str, Any] | None:
        for pod in live_pods(kube, name, namespace):
            if (pod["metadata"].get("labels") or {}).get("kubetune.io/trial") and (
                pod.get("status") or {}
            ).get("phase") == "Running":
                return pod
        return None

    return wait_until(find)


def condition(status_: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status_.get("conditions") or [] if c["type"] == type_), {})


def events(
    kube: Any, namespace: str = "default", reason: str | None = None
) -> list[dict[str, Any]]:
    found = kube.list("events", namespace)
    return [e for e in found if reason is None or e.get("reason") == reason]
