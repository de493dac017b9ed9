"""The harness's fixtures, for the harness's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.fixtures import *  # noqa: F403


@pytest.fixture(autouse=True)
def _no_harness_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a self-test if the API server answered a 5xx or the kubelet hit an error."""
    server = kubelet = None
    if "emulator_server" in request.fixturenames:
        server = request.getfixturevalue("emulator_server")
    if "kubelet" in request.fixturenames:
        kubelet = request.getfixturevalue("kubelet")
    yield
    if server is not None:
        assert server.emulator.server_errors() == []
    if kubelet is not None:
        assert kubelet.errors == []
