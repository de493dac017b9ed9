"""End-to-end fixtures: a real ``kopf run`` of the product operator against the
emulated API server, a fake kubelet running trial pods as local processes, and
a real PostgreSQL."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.fixtures import *  # noqa: F403
from harness.fixtures import harness_env
from harness.studies import TRIAL_IMAGE

SUPPORT = Path(__file__).resolve().parents[1] / "integration" / "support"


@pytest.fixture
def pod_env(storage_url: str) -> dict[str, str]:
    """What a trial container's process sees besides its pod env: our test objectives
    importable, the venv's ``kubetune-trial`` on PATH. No storage URL: that comes
    from the pod's secretKeyRef."""
    return harness_env(pythonpath=[SUPPORT])


class Cluster:
    """The fake kubelet, and the operator (started, restarted, killed on demand)."""

    def __init__(self, kubelet: Any, start_operator: Callable[..., Any], env: dict[str, str]):
        self.kubelet = kubelet
        self._start_operator = start_operator
        self._env = env
        self.operator: Any = None

    def start(self, *, options: dict[str, Any] | None = None, **env: str) -> Any:
        """Start an operator (``options`` go to the harness's KopfOperator)."""
        self.operator = self._start_operator(
            "kubetune_operator.handlers", env={**self._env, **env}, **(options or {})
        )
        return self.operator

    @property
    def env(self) -> dict[str, str]:
        return dict(self._env)


@pytest.fixture
def cluster(
    start_kubelet: Callable[..., Any],
    start_operator: Callable[..., Any],
    pod_env: dict[str, str],
    storage_url: str,
) -> Cluster:
    """A fake kubelet running trial pods; ``cluster.start()`` starts the operator."""
    kubelet = start_kubelet(base_env=pod_env, entrypoints={TRIAL_IMAGE: ["kubetune-trial"]})
    operator_env = harness_env(
        {
            "KUBETUNE_STORAGE_URL": storage_url,
            "KUBETUNE_RECONCILE_SECONDS": "0.5",
            # As the chart sets it: trial pods run as this account, made where needed.
            "KUBETUNE_TRIAL_SERVICE_ACCOUNT": "kubetune-trial",
        },
        pythonpath=[SUPPORT],
    )
    return Cluster(kubelet, start_operator, operator_env)


_SESSION_CALLS: set[tuple[str, str, str]] = set()


@pytest.fixture(autouse=True)
def _record_operator_calls(emulator_server: Any, request: pytest.FixtureRequest) -> Any:
    """Collect the operator's API calls of every e2e test (see api_calls.py) that runs
    it the chart's default way (all namespaces, one replica)."""
    yield
    if request.node.get_closest_marker("other_operator_mode"):
        return
    from api_calls import operator_calls

    _SESSION_CALLS.update(operator_calls(list(emulator_server.emulator.request_log)))


@pytest.fixture(scope="session", autouse=True)
def _check_operator_calls_against_rbac() -> Any:
    yield
    import json
    import os

    from api_calls import RECORDED

    if not _SESSION_CALLS:
        return
    if os.environ.get("KUBETUNE_RECORD_API_CALLS"):
        assert not os.environ.get("PYTEST_XDIST_WORKER"), (
            "record in one process (-n 0): each xdist worker sees only some tests"
        )
        RECORDED.write_text(json.dumps(sorted(_SESSION_CALLS), indent=1) + "\n")
        return
    recorded = {tuple(c) for c in json.loads(RECORDED.read_text())}
    missing = sorted(_SESSION_CALLS - recorded)
    assert not missing, (
        f"the operator made API calls its RBAC does not list: {missing}; re-record with "
        "KUBETUNE_RECORD_API_CALLS=1 pytest tests/e2e and update the chart's rules"
    )
