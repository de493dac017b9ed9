"""Fixtures for the SDK and CLI tests.

The cluster tests reuse the e2e fixtures (an emulated API server, a fake kubelet
and a real ``kopf run`` of the operator, see tests/e2e/conftest.py): they are
imported from there under another module name (every conftest is "conftest").
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
SDK_TESTS = Path(__file__).resolve().parent


def _load_e2e_conftest() -> Any:
    name = "kubetune_e2e_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "e2e" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_e2e = _load_e2e_conftest()
# The fixtures pytest should see here: the harness's and the e2e ones built on them.
from harness.fixtures import *  # noqa: E402, F403

# Only these two: the e2e conftest's autouse fixtures (its API-call recording) stay there.
cluster = _e2e.cluster
pod_env = _e2e.pod_env


@pytest.fixture
def client(kubeconfig: Path) -> Iterator[Any]:
    """A kubetune.Client on the emulated cluster, namespace ``default``."""
    from kubetune import Client

    with Client(kubeconfig=kubeconfig) as c:
        yield c
