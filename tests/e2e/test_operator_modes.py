"""How the operator is run: a namespace list, several replicas, its own command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
from scenario import create, spec, status, wait_phase, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.other_operator_mode, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_kubetune_operator_command_watches_only_its_namespaces(
    cluster: Any, kube: Any, kubeconfig: Path, tmp_path: Path
) -> None:
    port = _free_port()
    log = open(tmp_path / "operator.log", "wb")  # noqa: SIM115 - closed at the end
    operator = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "kubetune-operator"),
            "--namespace",
            "team-a",
            f"--liveness=http://127.0.0.1:{port}/healthz",
        ],
        env={**cluster.env, "KUBECONFIG": str(kubeconfig)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(healthy, timeout=30)
        create(kube, "mine", spec("quadratic", budget={"maxTrials": 2}), namespace="team-a")
        create(kube, "theirs", spec("quadratic", budget={"maxTrials": 2}), namespace="team-b")
        wait_phase(kube, "mine", "Succeeded", namespace="team-a")
        assert status(kube, "theirs", namespace="team-b") == {}
        assert not kube.list("pods", "team-b")
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            operator.kill()
        log.close()
        print((tmp_path / "operator.log").read_text()[-5000:])


def test_two_replicas_with_peering_run_a_study_once(
    cluster: Any, kube: Any, storage_url: str, emulator_server: Any
) -> None:
    """Two replicas run; only one serves. Each would run trial pods as its own
    ServiceAccount (and create it first), so the accounts show who served."""
    kube.apply_yaml(REPO / "charts" / "kubetune" / "crds" / "kopf-peering.yaml")
    kube.create(
        "kopf.dev/v1/clusterkopfpeerings",
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": "kubetune"},
        },
        None,
    )
    peered = {"standalone": False, "extra_args": ["--peering=kubetune"]}
    accounts = ("replica-a", "replica-b")
    first = cluster.start(options=peered, KUBETUNE_TRIAL_SERVICE_ACCOUNT=accounts[0])
    second = cluster.start(
        options={**peered, "ready": False}, KUBETUNE_TRIAL_SERVICE_ACCOUNT=accounts[1]
    )
    create(
        kube,
        "once",
        spec("quadratic", budget={"maxTrials": 6, "parallelism": 2}),
    )
    final = wait_phase(kube, "once", "Succeeded")
    study = optuna.load_study(study_name=final["studyName"], storage=storage_url)
    assert len(study.trials) == 6
    assert final["trials"]["complete"] == 6
    assert first.running and second.running, "both replicas stayed up"
    made = [a for a in accounts if kube.get("serviceaccounts", a, "default", missing_ok=True)]
    assert len(made) == 1, f"service accounts made by the replicas: {made}"
    requests = emulator_server.call(lambda: [dict(e) for e in emulator_server.emulator.request_log])
    pods_made = [
        json.loads(r["body"])
        for r in requests
        if r["method"] == "POST" and r["path"] == "/api/v1/namespaces/default/pods"
    ]
    assert len(pods_made) >= 3, "each pod runs one trial"
    assert {p["spec"]["serviceAccountName"] for p in pods_made} == set(made)
