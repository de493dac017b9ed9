"""End-to-end fixtures: a real ``kopf run`` of the product operator against the
emulated API server, a fake kubelet running trial pods as local processes, and
a real PostgreSQL."""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.fixtures import *  # noqa: F403
from harness.fixtures import harness_env

SUPPORT = Path(__file__).resolve().parents[1] / "integration" / "support"
TRIAL_IMAGE = "ghcr.io/kubetune/trial"


@pytest.fixture
def pod_env(storage_url: str) -> dict[str, str]:
    """What a trial container's process sees besides its pod env: our test objectives
    importable, the venv's ``kubetune-trial`` on PATH. No storage URL: that comes
    from the pod's secretKeyRef."""
    return harness_env(pythonpath=[SUPPORT])


@pytest.fixture
def cluster(
    start_kubelet: Callable[..., Any],
    start_operator: Callable[..., Any],
    pod_env: dict[str, str],
    storage_url: str,
) -> Callable[..., Any]:
    """Start the fake kubelet and the operator; returns the operator (call again to restart)."""
    start_kubelet(base_env=pod_env, entrypoints={TRIAL_IMAGE: ["kubetune-trial"]})

    def start(**env: str) -> Any:
        operator_env = harness_env(
            {"KUBETUNE_STORAGE_URL": storage_url, "KUBETUNE_RECONCILE_SECONDS": "0.5", **env},
            pythonpath=[SUPPORT],
        )
        return start_operator("kubetune_operator.handlers", env=operator_env)

    return start


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
