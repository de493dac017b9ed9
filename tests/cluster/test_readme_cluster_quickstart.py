"""The README's "In a cluster" section, step by step, as a user runs it.

1. ``make images`` (the session's ``images`` fixture runs it once per test run);
2. ``helm install kubetune charts/kubetune --namespace kubetune --create-namespace``, by
   Helm's own engine (helm-python-sdk), with the test's database as the chart's external
   database (no postgres image can be pulled here);
3. the operator Deployment's pod, started as its ReplicaSet would start it, runs from the
   operator image with the Deployment's args, env and ServiceAccount (its token from the
   API server, in-cluster config over HTTPS), so every call it makes is authorized by the
   chart's own RBAC;
4. ``kubectl apply -f examples/quickstart-cluster.yaml`` into ``default``; the trial pods
   run from the trial image as the trial ServiceAccount the operator made there;
5. ``kubectl get study ... -o jsonpath='{.status.bestTrial.params}'`` and the ConfigMap.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.workloads import start_deployment_pods
from scenario import condition, wait_until

REPO = Path(__file__).resolve().parents[2]
KUBECTL = Path(__import__("sys").executable).parent / "kubectl"

pytestmark = [pytest.mark.e2e, pytest.mark.slow(seconds=240), pytest.mark.timeout(900)]

#: A Study a second team applies in its own namespace.
TEAM_STUDY = """
apiVersion: kubetune.io/v1alpha1
kind: Study
metadata: {name: keeps-model}
spec:
  objective: {direction: maximize, metric: auc}
  budget: {maxTrials: 3, parallelism: 1}
  trial:
    trialsPerPod: 3
    builtin:
      model: lightgbm
      data: {dataset: "sklearn:breast_cancer"}
      maxEpochs: 20
      params: {num_threads: 1}
      saveModel: {path: models/cancer}
"""

#: The test database's password: it must never show in a status, an event or a log.
DATABASE_PASSWORD = "s3cret-Pa55word"


@pytest.fixture
def tcp_database() -> Iterator[str]:
    """A PostgreSQL of the test's own, on 127.0.0.1 (pods run on the host network),
    with a password in its URL, as a database Service's Secret would hold it."""
    from scenario import OwnPostgres

    with OwnPostgres("kubetune") as postgres:
        yield postgres.listen_on_tcp(DATABASE_PASSWORD)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    """Run kubectl as the README does; its output, or the test fails with what it said."""
    result = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def helm_install(kubeconfig: Path, values: dict[str, Any]) -> dict[str, Any]:
    """``helm install kubetune charts/kubetune --namespace kubetune --create-namespace``.

    The release record is kept in memory: Helm writes it as a protobuf-encoded Secret,
    which the emulated API server cannot read (every chart object is applied for real).
    """
    import helm_python

    with helm_python.Config(
        namespace="kubetune", kubeconfig_path=str(kubeconfig), storage_driver="memory"
    ) as helm:
        return helm.install(
            str(REPO / "charts" / "kubetune"),
            "kubetune",
            values,
            namespace="kubetune",
            create_namespace=True,
            timeout=120,
        )


def test_the_readme_cluster_quickstart_runs_on_the_chart_and_the_images(
    images: Any,
    emulator_server: Any,
    kube: Any,
    start_kubelet: Any,
    tcp_database: str,
    tmp_path: Path,
) -> None:
    # A cluster admin's kubeconfig, over TLS as a real cluster's (kubectl sends no
    # token over plain HTTP).
    kubeconfig = emulator_server.write_kubeconfig(tmp_path / "admin.kubeconfig", https=True)
    kubelet = start_kubelet(
        runtime="podman",
        in_cluster_host="127.0.0.1",
        in_cluster_port=emulator_server.https_port,
    )
    # The database: a Secret in the release namespace, named by the chart's values (the
    # test's setup, not a README step: the README installs the chart's own PostgreSQL).
    kube.create(
        "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubetune"}}
    )
    kube.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kubetune-db"},
            "stringData": {"url": tcp_database},
        },
        "kubetune",
    )
    release = helm_install(
        kubeconfig,
        {
            "postgresql": {"enabled": False},
            "externalDatabase": {"existingSecret": "kubetune-db", "existingSecretKey": "url"},
            # Pods share the host's network here: a port of its own for the probe.
            "operator": {"healthPort": _free_port()},
        },
    )
    assert release["status"] == "deployed", release.get("status")

    [operator_pod] = start_deployment_pods(kube, "kubetune", "kubetune-operator")
    operator_name = operator_pod["metadata"]["name"]
    wait_until(
        lambda: emulator_server.call(emulator_server.emulator.watch_count, "studies") > 0,
        timeout=120,
    )

    print(kubectl(kubeconfig, "apply", "-f", "examples/quickstart-cluster.yaml"))

    def finished(namespace: str, name: str) -> dict[str, Any] | None:
        study = kube.get("studies", name, namespace)
        status = study.get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_until(lambda: finished("default", "lgbm-breast-cancer"), timeout=600, every=2.0)
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    assert status["trials"]["complete"] + status["trials"]["pruned"] == 40
    assert condition(status, "Complete")["reason"] == "MaxTrialsReached"

    params = json.loads(
        kubectl(
            kubeconfig,
            "get",
            "study",
            "lgbm-breast-cancer",
            "-o",
            "jsonpath={.status.bestTrial.params}",
        )
    )
    assert set(params) == {
        "learning_rate",
        "num_leaves",
        "min_child_samples",
        "feature_fraction",
        "lambda_l2",
    }
    best_params = json.loads(
        kubectl(
            kubeconfig,
            "get",
            "configmap",
            "lgbm-breast-cancer-best-params",
            "-o",
            "jsonpath={.data.best_params\\.json}",
        )
    )
    assert best_params == params

    # Another team's namespace, enforcing Pod Security "restricted", nothing made by hand:
    # a built-in objective that keeps its best model under the working directory, so
    # the trial image's user must be able to write there.
    kube.create(
        "namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "team-a",
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        },
    )
    kubectl(kubeconfig, "-n", "team-a", "apply", "-f", "-", stdin=TEAM_STUDY)
    team = wait_until(lambda: finished("team-a", "keeps-model"), timeout=300, every=2.0)
    assert team["phase"] == "Succeeded", json.dumps(team, indent=1)
    assert team["trials"] == {**team["trials"], "complete": 3, "failed": 0}
    assert kube.get("serviceaccounts", "kubetune-trial", "team-a")

    # The trial pods ran as the account the operator made in `default`, from the trial image.
    account = kube.get("serviceaccounts", "kubetune-trial", "default")
    assert account["automountServiceAccountToken"] is False
    # The operator ran from its image, as the chart's ServiceAccount: its calls were
    # authorized by the chart's RBAC, and none was refused.
    operator_user = "system:serviceaccount:kubetune:kubetune-operator"
    log = list(emulator_server.emulator.request_log)
    mine = [e for e in log if e.get("user") == operator_user]
    assert mine, "the operator never called the API server with its ServiceAccount's token"
    refused = [e for e in mine if e.get("status") in (401, 403)]
    assert not refused, refused[:5]
    # The password stays in the Secret: not in the status, the events or the operator's log.
    events = kube.list("events", "default")
    operator_log = kubelet.pod_log("kubetune", operator_name)
    for text in (json.dumps(status), json.dumps(events), operator_log):
        assert DATABASE_PASSWORD not in text
