"""pytest fixtures for e2e tests: ``from harness.fixtures import *`` in a conftest.py.

Function-scoped (every test gets a fresh API server, so tests cannot leak objects):

* ``emulator_options`` -- ``{}``: keyword arguments for the :class:`KubeEmulator`; override
  it in a test module to change them (e.g. ``crds=[...]`` or a rule switched off).
* ``emulator_server`` -- a started :class:`EmulatorServer` (``.url``, ``.https_url``,
  ``.ca_path``, ``.emulator``, ``.call(fn, ...)``, ``.wait_for_watch(resource)``,
  ``.issue_token(ns, sa)``, ``.kubeconfig_for(path, ns, sa, https=False)``).
* ``emulator`` -- its :class:`KubeEmulator` (``.objects``, ``.request_log``, ...).
* ``kubeconfig`` -- a kubeconfig file for it (``Path``).
* ``kube`` -- a :class:`KubeClient` on that kubeconfig (the superuser, ``system:masters``).
* ``kube_as(namespace, service_account, https=False)`` -- a :class:`KubeClient` acting as
  a ServiceAccount (authorized by RBAC), with a token from TokenRequest.
* ``start_kubelet(**kwargs)`` -- start a :class:`FakeKubelet` (kwargs as its constructor;
  default ``base_env`` is :func:`harness_env`, ``token`` the superuser's, logs under
  ``tmp_path/pods``); stopped at
  teardown. Pod logs and the kubelet's log are printed at teardown (pytest shows them
  for failed tests only).
* ``kubelet`` -- ``start_kubelet()`` with the defaults (no GPUs).
* ``start_operator(target, *, watching=('studies',), ready=True, **kwargs)`` -- start a
  :class:`KopfOperator` (``kopf run --standalone -A --liveness=... --verbose``) and wait
  until its liveness probe answers and it watches every resource in ``watching``;
  stopped (SIGTERM, then SIGKILL) at teardown, its log printed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .apiserver import (
    SUPERUSER_TOKEN,
    EmulatorServer,
    KubeClient,
    KubeEmulator,
    write_kubeconfig,
)
from .kubelet import FakeKubelet
from .operator import KopfOperator

__all__ = [
    "REPO",
    "emulator",
    "emulator_options",
    "emulator_server",
    "harness_env",
    "kube",
    "kube_as",
    "kubeconfig",
    "kubelet",
    "start_kubelet",
    "start_operator",
]

REPO = Path(__file__).resolve().parents[2]


def harness_env(
    extra: Mapping[str, str] | None = None, pythonpath: Iterable[str | os.PathLike[str]] = ()
) -> dict[str, str]:
    """``os.environ`` + the repo (and ``pythonpath``) on PYTHONPATH + this venv's bin on PATH."""
    env = dict(os.environ)
    paths = [str(p) for p in pythonpath] + [str(REPO)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("KUBECONFIG", None)
    env.update(extra or {})
    return env


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    """Keyword arguments for the :class:`KubeEmulator` of ``emulator_server`` (override this
    fixture in a test module to, e.g., switch a rule off: ``{"pod_security": False}``)."""
    return {}


@pytest.fixture
def emulator_server(emulator_options: dict[str, Any]) -> Iterator[EmulatorServer]:
    server = EmulatorServer(KubeEmulator(**emulator_options))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        errors = server.emulator.server_errors()
        if errors:
            print(f"\n----- the emulated API server answered {len(errors)} requests with 5xx -----")
            for entry in errors[:20]:
                print(entry)
        for title, entries in (
            ("refused (401/403/422)", server.emulator.refusals()),
            ("answered with warnings", server.emulator.warnings()),
        ):
            if entries:
                print(f"\n----- the emulated API server {title}: {len(entries)} requests -----")
                for entry in entries[:20]:
                    brief = {k: entry.get(k) for k in ("method", "path", "user", "status")}
                    print(brief, entry.get("warnings") or entry.get("response", ""))


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> KubeEmulator:
    return emulator_server.emulator


@pytest.fixture
def kubeconfig(emulator_server: EmulatorServer, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", emulator_server.url)


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[KubeClient]:
    client = KubeClient(kubeconfig)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def kube_as(emulator_server: EmulatorServer, tmp_path: Path) -> Iterator[Callable[..., KubeClient]]:
    """``kube_as(namespace, service_account, https=False)``: a :class:`KubeClient` acting as
    the ServiceAccount (which must exist), with a token from TokenRequest."""
    clients: list[KubeClient] = []

    def _make(namespace: str, service_account: str, *, https: bool = False) -> KubeClient:
        path = tmp_path / f"kubeconfig-{namespace}-{service_account}-{len(clients)}"
        emulator_server.kubeconfig_for(path, namespace, service_account, https=https)
        client = KubeClient(path, default_namespace=namespace)
        clients.append(client)
        return client

    try:
        yield _make
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def start_kubelet(
    emulator_server: EmulatorServer, tmp_path: Path
) -> Iterator[Callable[..., FakeKubelet]]:
    kubelets: list[FakeKubelet] = []

    def _start(**kwargs: Any) -> FakeKubelet:
        kwargs.setdefault("log_dir", tmp_path / "pods")
        kwargs.setdefault("base_env", harness_env())
        kwargs.setdefault("token", SUPERUSER_TOKEN)  # a kubelet may read every pod's secrets
        kubelet = FakeKubelet(emulator_server.url, **kwargs)
        kubelets.append(kubelet)
        kubelet.start()
        emulator_server.emulator.log_provider = kubelet.read_log
        return kubelet

    try:
        yield _start
    finally:
        for kubelet in kubelets:
            kubelet.stop()
            print(f"\n----- fake kubelet logs ({kubelet.log_dir}) -----")
            print(kubelet.all_logs())


@pytest.fixture
def kubelet(start_kubelet: Callable[..., FakeKubelet]) -> FakeKubelet:
    return start_kubelet()


@pytest.fixture
def start_operator(
    emulator_server: EmulatorServer, kubeconfig: Path, tmp_path: Path
) -> Iterator[Callable[..., KopfOperator]]:
    operators: list[KopfOperator] = []

    def _start(
        target: str | os.PathLike[str],
        *,
        watching: Iterable[str] = ("studies",),
        ready: bool = True,
        ready_timeout: float = 30.0,
        **kwargs: Any,
    ) -> KopfOperator:
        kwargs.setdefault("env", harness_env())
        kwargs.setdefault("log_path", tmp_path / f"operator-{len(operators)}.log")
        operator = KopfOperator(target, kubeconfig=kubeconfig, **kwargs)
        operators.append(operator)
        operator.start()
        if ready:
            resources = list(watching)
            emulator = emulator_server.emulator

            def _watching() -> bool:
                return all(emulator_server.call(emulator.watch_count, r) > 0 for r in resources)

            operator.wait_ready(ready_timeout, condition=_watching)
        return operator

    try:
        yield _start
    finally:
        for operator in operators:
            code = operator.stop()
            print(f"\n----- operator log ({operator.log_path}, exit code {code}) -----")
            print(operator.log_tail(200))
