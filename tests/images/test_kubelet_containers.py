"""The fake kubelet's container mode (``runtime="podman"``): pods of the emulated API server
run from their images as a real kubelet runs them (env, volumes, user, read-only root,
memory limit, ServiceAccount token), against the images ``make images`` built."""

from __future__ import annotations

import subprocess
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest
from harness.apiserver import EmulatorServer, KubeClient
from harness.images import Images
from harness.kubelet import CONTAINER_LABEL, FakeKubelet

pytestmark = [pytest.mark.slow(seconds=15), pytest.mark.timeout(300)]


@pytest.fixture
def start_podman_kubelet(
    images: Images, emulator_server: EmulatorServer, start_kubelet: Callable[..., FakeKubelet]
) -> Callable[..., FakeKubelet]:
    def start(**kwargs: Any) -> FakeKubelet:
        return start_kubelet(
            runtime="podman",
            in_cluster_host="127.0.0.1",
            in_cluster_port=emulator_server.https_port,
            **kwargs,
        )

    return start


@pytest.fixture
def podman_kubelet(start_podman_kubelet: Callable[..., FakeKubelet]) -> FakeKubelet:
    return start_podman_kubelet()


def pod_body(name: str, image: str, command: list[str] | None = None, **extra: Any) -> dict:
    container: dict[str, Any] = {"name": "main", "image": image}
    if command is not None:
        container["command"] = command
    container.update(extra.pop("container", {}))
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    spec.update(extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def finished(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def terminated(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


def run_pod(kube: KubeClient, kubelet: FakeKubelet, body: dict, timeout: float = 120) -> dict:
    name = body["metadata"]["name"]
    kube.create("pods", body)
    return kube.wait_for_object("pods", name, finished, timeout=timeout)


def containers_of(kubelet: FakeKubelet) -> list[str]:
    done = subprocess.run(
        [
            "podman",
            "ps",
            "--all",
            "--quiet",
            "--filter",
            f"label={CONTAINER_LABEL}={kubelet.instance_id}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_env_volumes_user_and_groups(
    kube: KubeClient, podman_kubelet: FakeKubelet, images: Images
) -> None:
    kube.create("secrets", {"metadata": {"name": "creds"}, "stringData": {"x": "s3cret"}})
    kube.create("configmaps", {"metadata": {"name": "cfg"}, "data": {"mode": "fast"}})
    script = textwrap.dedent(
        """
        echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
        echo "X=$X URL=$URL HOSTNAME=$HOSTNAME PWD=$(pwd)"
        echo "mode=$(cat /etc/cfg/mode)"
        touch /etc/cfg/new 2>/dev/null || echo "configmap is read-only"
        echo data > /scratch/file && echo "scratch group=$(stat -c %g /scratch/file)"
        echo "shm=$(df -k /dev/shm | awk 'NR==2 {print $2}')"
        echo "service=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"
        """
    )
    body = pod_body(
        "env",
        images.trial,
        ["sh", "-c", script],
        container={
            "workingDir": "/scratch",
            "env": [
                {"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "x"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "URL", "value": "http://$(POD):80"},
            ],
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "shm", "mountPath": "/dev/shm"},
            ],
        },
        securityContext={"runAsUser": 4242, "runAsGroup": 4343, "fsGroup": 5000},
        volumes=[
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "96Mi"}},
        ],
    )
    done = run_pod(kube, podman_kubelet, body)
    log = podman_kubelet.pod_log("default", "env")
    assert done["status"]["phase"] == "Succeeded", log
    assert terminated(done)["reason"] == "Completed"
    assert terminated(done)["containerID"].startswith("podman://")
    assert "uid=4242 gid=4343 groups=4343 5000" in log
    assert "X=s3cret URL=http://env:80 HOSTNAME=env PWD=/scratch" in log
    assert "mode=fast" in log and "configmap is read-only" in log
    assert "scratch group=5000" in log
    assert f"shm={96 * 1024}" in log
    assert "service=127.0.0.1:" in log
    # pods/log through the API, as `kubectl logs` reads it
    assert "X=s3cret" in kube.core.read_namespaced_pod_log("env", "default")
    assert containers_of(podman_kubelet) == []  # removed once reported


def test_read_only_root_and_the_image_user(
    kube: KubeClient, podman_kubelet: FakeKubelet, images: Images
) -> None:
    script = (
        "id -u; touch /work/x 2>/dev/null || echo 'root is read-only'; "
        "touch /tmp/x 2>/dev/null || echo 'no tmpfs on /tmp'; touch /cache/x && echo cache-ok"
    )
    body = pod_body(
        "ro",
        images.trial,
        ["sh", "-c", script],
        container={
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "runAsNonRoot": True,
            },
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
        },
        volumes=[{"name": "cache", "emptyDir": {}}],
    )
    done = run_pod(kube, podman_kubelet, body)
    log = podman_kubelet.pod_log("default", "ro")
    assert done["status"]["phase"] == "Succeeded", log
    assert log.split()[:1] == ["10001"]  # the image's USER, as no runAsUser is set
    assert "root is read-only" in log and "no tmpfs on /tmp" in log and "cache-ok" in log

    # runAsNonRoot with an image that runs as root: refused before it starts.
    root = pod_body(
        "root",
        images.base,
        ["true"],
        container={"securityContext": {"runAsNonRoot": True}},
    )
    kube.create("pods", root)
    pending = kube.wait_for_object(
        "pods",
        "root",
        lambda p: (
            "waiting" in (p.get("status", {}).get("containerStatuses") or [{}])[0].get("state", {})
        ),
    )
    waiting = pending["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "runAsNonRoot and image will run as root" in waiting["message"]


def test_memory_limit_exceeded_is_an_oom_kill(
    kube: KubeClient, podman_kubelet: FakeKubelet, images: Images
) -> None:
    body = pod_body(
        "hungry",
        images.trial,
        ["python", "-c", "x = bytearray(512 * 1024 * 1024); print('survived')"],
        container={"resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}}},
    )
    done = run_pod(kube, podman_kubelet, body)
    log = podman_kubelet.pod_log("default", "hungry")
    assert done["status"]["phase"] == "Failed", log
    assert terminated(done)["exitCode"] == 137, log
    assert terminated(done)["reason"] == "OOMKilled", log
    assert "survived" not in log


def test_no_command_runs_the_image_entrypoint(
    kube: KubeClient, podman_kubelet: FakeKubelet, images: Images
) -> None:
    body = pod_body("entry", images.trial, container={"args": ["--help"]})
    done = run_pod(kube, podman_kubelet, body)
    log = podman_kubelet.pod_log("default", "entry")
    assert done["status"]["phase"] == "Succeeded", log
    assert "usage: kubetune-trial" in log

    # An image that is not on this node: the pod waits, as with an image it cannot pull.
    kube.create("pods", pod_body("absent", "ghcr.io/kubetune/nothing:0", ["true"]))
    pending = kube.wait_for_object(
        "pods",
        "absent",
        lambda p: (
            "waiting" in (p.get("status", {}).get("containerStatuses") or [{}])[0].get("state", {})
        ),
    )
    assert pending["status"]["phase"] == "Pending"
    waiting = pending["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ErrImageNeverPull"


def test_deletion_stops_the_container_and_stop_removes_leftovers(
    kube: KubeClient, start_podman_kubelet: Callable[..., FakeKubelet], images: Images
) -> None:
    kubelet = start_podman_kubelet()
    script = textwrap.dedent(
        """
        import signal, sys, time
        def stop(*_):
            print("got SIGTERM", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(300)
        """
    )
    kube.create("pods", pod_body("sleeper", images.trial, ["python", "-c", script]))
    # sleep as PID 1 ignores SIGTERM: killed when the grace period is over
    kube.create("pods", pod_body("stubborn", images.trial, ["sleep", "300"]))
    kube.create("pods", pod_body("leftover", images.trial, ["sleep", "300"]))
    for name in ("sleeper", "stubborn", "leftover"):
        kube.wait_for_object("pods", name, lambda p: p["status"]["phase"] == "Running")
    kube.wait_for(lambda: "ready" in kubelet.pod_log("default", "sleeper"), timeout=60)
    assert len(containers_of(kubelet)) == 3

    kube.delete("pods", "sleeper")
    kube.wait_gone("pods", "sleeper", timeout=60)
    assert "got SIGTERM" in kubelet.pod_log("default", "sleeper")
    assert len(containers_of(kubelet)) == 2

    started = time.monotonic()
    kube.delete("pods", "stubborn", grace_period_seconds=2)
    kube.wait_gone("pods", "stubborn", timeout=60)
    assert time.monotonic() - started >= 2
    assert len(containers_of(kubelet)) == 1

    kubelet.stop()  # `leftover` is still running: its container goes with the kubelet
    assert containers_of(kubelet) == []


def test_service_account_token_is_mounted_for_in_cluster_clients(
    kube: KubeClient, podman_kubelet: FakeKubelet, images: Images
) -> None:
    script = textwrap.dedent(
        """
        import json, os, ssl, urllib.error, urllib.request
        folder = "/var/run/secrets/kubernetes.io/serviceaccount"
        token = open(f"{folder}/token").read()
        namespace = open(f"{folder}/namespace").read()
        context = ssl.create_default_context(cafile=f"{folder}/ca.crt")
        base = "https://%s:%s" % (
            os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        )
        def get(path):
            request = urllib.request.Request(
                base + path, headers={"Authorization": "Bearer " + token}
            )
            try:
                with urllib.request.urlopen(request, context=context) as answer:
                    return answer.status
            except urllib.error.HTTPError as error:
                return error.code
        print("namespace", namespace)
        print("version", get("/version"))
        print("pods", get(f"/api/v1/namespaces/{namespace}/pods"))
        """
    )
    done = run_pod(kube, podman_kubelet, pod_body("client", images.trial, ["python", "-c", script]))
    log = podman_kubelet.pod_log("default", "client")
    assert done["status"]["phase"] == "Succeeded", log
    assert "namespace default" in log
    assert "version 200" in log  # authenticated as system:serviceaccount:default:default
    assert "pods 403" in log  # ... which RBAC does not let list pods

    # automountServiceAccountToken: false, on the pod or on its ServiceAccount
    kube.create(
        "serviceaccounts", {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False}
    )
    check = ["sh", "-c", "ls /var/run/secrets/kubernetes.io/serviceaccount || echo no-token"]
    for name, extra in (
        ("pod-off", {"automountServiceAccountToken": False}),
        ("account-off", {"serviceAccountName": "quiet"}),
    ):
        done = run_pod(kube, podman_kubelet, pod_body(name, images.trial, check, **extra))
        assert "no-token" in podman_kubelet.pod_log("default", name)


def test_a_missing_service_account_or_root_ca_keeps_the_pod_pending(
    kube: KubeClient,
    start_podman_kubelet: Callable[..., FakeKubelet],
    images: Images,
) -> None:
    kube.create("serviceaccounts", {"metadata": {"name": "robot"}})
    kube.create("pods", pod_body("robot", images.trial, ["true"], serviceAccountName="robot"))
    kube.delete("serviceaccounts", "robot")  # before any kubelet saw the pod
    kubelet = start_podman_kubelet()

    def waiting(pod: dict) -> dict:
        state = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0].get("state", {})
        return state.get("waiting") or {}

    pending = kube.wait_for_object("pods", "robot", lambda p: bool(waiting(p)))
    assert pending["status"]["phase"] == "Pending"
    assert waiting(pending)["reason"] == "CreateContainerConfigError"
    assert 'serviceaccounts "robot" not found' in waiting(pending)["message"]
    kube.create("serviceaccounts", {"metadata": {"name": "robot"}})
    done = kube.wait_for_object("pods", "robot", finished, timeout=60)
    assert done["status"]["phase"] == "Succeeded", kubelet.pod_log("default", "robot")

    # The namespace's CA ConfigMap is gone: no token volume can be made either.
    kube.delete("configmaps", "kube-root-ca.crt")
    kube.create("pods", pod_body("no-ca", images.trial, ["true"]))
    pending = kube.wait_for_object("pods", "no-ca", lambda p: bool(waiting(p)))
    assert waiting(pending)["reason"] == "CreateContainerConfigError"
    assert 'configmap "kube-root-ca.crt" not found' in waiting(pending)["message"]
