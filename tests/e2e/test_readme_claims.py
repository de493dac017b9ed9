"""README claims about a cluster study that no other test checked: ``kubetune logs
--tail``, and reading a study's trials through a forwarded port
(``--storage-host`` / ``Client(storage_host=)``).

Editing ``timeout`` and the pod settings while a study runs, and a pod that cannot
pull its image, are reconcile rules: tests/unit/test_reconciler_rules.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubetune_cli
import pytest
from scenario import (
    create,
    optuna_study,
    running_trial_pod,
    spec,
    wait_phase,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FAKE_TRAIN = str(Path(__file__).resolve().parents[1] / "integration" / "support" / "fake_train.py")


def kubetune(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, against the emulated cluster."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "COLUMNS": "160"}
    return kubetune_cli.kubetune(env, Path.cwd(), *args, timeout=120)


def test_logs_tail_shows_the_last_lines_of_a_trial_pod(
    cluster: Any, kube: Any, kubeconfig: Path
) -> None:
    cluster.start()
    chatty = spec("quadratic", budget={"maxTrials": 1, "parallelism": 1})
    chatty["objective"] = {"direction": "minimize", "metric": "loss"}
    chatty["searchSpace"] = {"x": {"type": "float", "low": 0, "high": 1}}
    chatty["trial"] = {
        "image": chatty["trial"]["image"],
        "command": ["python", FAKE_TRAIN, "--x", "{x}", "--steps", "400", "--step-seconds", "0.1"],
    }
    create(kube, "chatty", chatty)
    running_trial_pod(kube, "chatty")

    def steps(text: str) -> list[int]:
        return [int(w.split("=")[1]) for w in text.split() if w.startswith("step=")]

    wait_until(
        lambda: len(steps(kubetune(kubeconfig, "logs", "chatty", "--trial", "0").stdout)) > 10,
        timeout=60,
    )
    tail = kubetune(kubeconfig, "logs", "chatty", "--trial", "0", "--tail", "3")
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.strip().splitlines()
    assert len(lines) == 3, tail.stdout
    full = kubetune(kubeconfig, "logs", "chatty", "--trial", "0")
    assert len(full.stdout.strip().splitlines()) > 10
    assert lines[0] in full.stdout.splitlines()
    kube.delete("studies", "chatty", "default")


@pytest.fixture
def forwarded_port(storage_url: str) -> Iterator[tuple[int, list[int]]]:
    """What ``kubectl port-forward svc/kubetune-postgresql`` gives: a TCP port on this
    machine that reaches the database (here its Unix socket). Yields the port and a
    list that counts the connections made through it."""
    socket_dir = storage_url.split("host=", 1)[1]
    target = f"{socket_dir}/.s.PGSQL.5432"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    connections: list[int] = []

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            server.connect(target)
            connections.append(1)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1], connections
    finally:
        listener.close()


def test_storage_host_reads_trials_through_a_forwarded_port(
    cluster: Any,
    kube: Any,
    kubeconfig: Path,
    storage_url: str,
    forwarded_port: tuple[int, list[int]],
    tmp_path: Path,
) -> None:
    """The study's Secret holds the in-cluster URL (here a Unix socket); with
    ``--storage-host`` / ``Client(storage_host=)`` the client goes through the port."""
    port, connections = forwarded_port
    cluster.start()
    create(kube, "hosted", spec("quadratic", budget={"maxTrials": 3}))
    final = wait_phase(kube, "hosted", "Succeeded")
    expected = [t.number for t in optuna_study(kube, storage_url, "hosted").trials]
    assert expected == [0, 1, 2]

    listed = kubetune(
        kubeconfig, "trials", "hosted", "-o", "json", "--storage-host", f"127.0.0.1:{port}"
    )
    assert listed.returncode == 0, listed.stderr
    assert [r["number"] for r in json.loads(listed.stdout)] == expected
    through_cli = len(connections)
    assert through_cli > 0, "the CLI did not use the forwarded port"

    script = tmp_path / "read_trials.py"
    script.write_text(
        "import json, sys\n"
        "from kubetune import Client\n"
        "client = Client(storage_host=sys.argv[1])\n"
        "study = client.optuna_study('hosted')\n"
        "print(json.dumps([t.number for t in study.trials]))\n"
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    result = kubetune_cli.python_script(env, Path.cwd(), str(script), f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
    assert len(connections) > through_cli, "Client(storage_host=) did not use the port"
    assert final["trials"]["complete"] == 3
