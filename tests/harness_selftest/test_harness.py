"""Self-tests of the e2e harness: the emulated API server, the fake kubelet, a real kopf."""

from __future__ import annotations

import json
import re
import signal
import textwrap
import threading
import time
from pathlib import Path

import kubernetes
import pytest
from harness import (
    ApiError,
    EmulatorServer,
    FakeKubelet,
    KubeClient,
    KubeEmulator,
    ResourceSpec,
    write_kubeconfig,
)

STUDY = "kubetune.io/v1alpha1/studies"
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"

#: These self-tests use Study as a free-form custom resource (what the real CRD's schema
#: refuses and prunes is tested in test_admission.py): a CRD whose schema keeps any field.
FREE_FORM_STUDY_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "studies.kubetune.io"},
    "spec": {
        "group": "kubetune.io",
        "scope": "Namespaced",
        "names": {"kind": "Study", "plural": "studies", "singular": "study"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def emulator_options() -> dict:
    return {"crds": [FREE_FORM_STUDY_CRD]}


def study_body(name: str, **spec: object) -> dict:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": dict(spec),
    }


def pod_body(name: str, command: list[str], **extra: object) -> dict:
    container = {"name": "main", "image": "kubetune/trial:dev", "command": command}
    container.update(extra.pop("container", {}))  # type: ignore[arg-type]
    spec = {"restartPolicy": "Never", "containers": [container]}
    spec.update(extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def phase_is(*phases: str):
    return lambda pod: (pod.get("status") or {}).get("phase") in phases


def terminated(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


# ----------------------------------------------------------------------------------------------
# The API server
# ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_discovery_works_for_the_official_client(kube: KubeClient) -> None:
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(kube.api_client)
    studies = dynamic.resources.get(api_version="kubetune.io/v1alpha1", kind="Study")
    assert studies.namespaced and studies.name == "studies"
    assert "status" in studies.subresources
    pods = dynamic.resources.get(api_version="v1", kind="Pod")
    assert pods.namespaced
    namespaces = [ns.metadata.name for ns in kube.core.list_namespace().items]
    assert {"default", "kube-system"} <= set(namespaces)
    core = kube.session.get(kube.host + "/api/v1", timeout=5).json()
    assert core["groupVersion"] == "v1"


@pytest.mark.timeout(30)
def test_metadata_is_filled_in_and_resource_versions_change(kube: KubeClient) -> None:
    created = kube.create(STUDY, study_body("s1", x=1), "ns1")
    meta = created["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["generation"] == 1 and meta["namespace"] == "ns1"
    rv1 = int(meta["resourceVersion"])

    # a missing namespace is created on the fly (auto_namespaces=True)
    assert kube.get("namespaces", "ns1")["status"]["phase"] == "Active"

    patched = kube.patch(STUDY, "s1", {"spec": {"x": 2}}, "ns1")
    assert int(patched["metadata"]["resourceVersion"]) > rv1
    assert patched["metadata"]["generation"] == 2
    assert patched["metadata"]["uid"] == meta["uid"]

    # a no-op write changes nothing, as in Kubernetes
    same = kube.patch(STUDY, "s1", {"spec": {"x": 2}}, "ns1")
    assert same["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]

    # metadata-only changes do not bump the generation
    labelled = kube.patch(STUDY, "s1", {"metadata": {"labels": {"extra": "yes"}}}, "ns1")
    assert labelled["metadata"]["generation"] == 2
    assert int(labelled["metadata"]["resourceVersion"]) > int(
        patched["metadata"]["resourceVersion"]
    )

    with pytest.raises(ApiError) as e:
        kube.create(STUDY, study_body("s1"), "ns1")
    assert e.value.status == 409 and e.value.reason == "AlreadyExists"
    with pytest.raises(ApiError) as e:
        kube.get(STUDY, "nope", "ns1")
    assert e.value.status == 404
    with pytest.raises(ApiError) as e:
        kube.create("configmaps", {"metadata": {"name": "Bad_Name"}}, "ns1")
    assert e.value.status == 422
    with pytest.raises(ApiError) as e:
        kube.create("configmaps", {"metadata": {"name": "ok", "labels": {"a": "x" * 64}}}, "ns1")
    assert e.value.status == 422

    # a stale resourceVersion in a merge patch or an update is a conflict
    with pytest.raises(ApiError) as e:
        kube.patch(
            STUDY, "s1", {"metadata": {"resourceVersion": str(rv1)}, "spec": {"x": 3}}, "ns1"
        )
    assert e.value.status == 409
    stale = dict(created, spec={"x": 9})
    with pytest.raises(ApiError) as e:
        kube.replace(STUDY, stale, "ns1")
    assert e.value.status == 409
    fresh = kube.get(STUDY, "s1", "ns1")
    replaced = kube.replace(STUDY, dict(fresh, spec={"x": 9}), "ns1")
    assert replaced["spec"] == {"x": 9} and replaced["metadata"]["generation"] == 3


@pytest.mark.timeout(30)
def test_generate_name(kube: KubeClient) -> None:
    names = set()
    for _ in range(5):
        obj = kube.create(
            "configmaps", {"metadata": {"generateName": "trial-"}, "data": {"a": "b"}}, "ns1"
        )
        names.add(obj["metadata"]["name"])
    assert len(names) == 5
    assert all(re.fullmatch(r"trial-[a-z0-9]{5}", name) for name in names)
    with pytest.raises(ApiError) as e:
        kube.create("configmaps", {"metadata": {}}, "ns1")
    assert e.value.status == 422


@pytest.mark.timeout(30)
def test_status_subresource(kube: KubeClient) -> None:
    kube.create(STUDY, dict(study_body("s1", x=1), status={"ignored": True}), "ns1")
    assert "status" not in kube.get(STUDY, "s1", "ns1")  # dropped on create

    after = kube.patch_status(STUDY, "s1", {"phase": "Running"}, "ns1")
    assert after["status"] == {"phase": "Running"}
    assert after["metadata"]["generation"] == 1

    # /status changes nothing but the status
    after = kube.patch(
        STUDY, "s1", {"spec": {"x": 100}, "status": {"phase": "Done"}}, "ns1", subresource="status"
    )
    assert after["spec"] == {"x": 1} and after["status"] == {"phase": "Done"}

    # a normal patch ignores status changes
    after = kube.patch(STUDY, "s1", {"spec": {"x": 2}, "status": {"phase": "Hacked"}}, "ns1")
    assert after["spec"] == {"x": 2} and after["status"] == {"phase": "Done"}

    # the official client's status API goes through the same subresource
    kube.custom.patch_namespaced_custom_object_status(
        "kubetune.io", "v1alpha1", "ns1", "studies", "s1", {"status": {"best": 0.5}}
    )
    assert kube.get(STUDY, "s1", "ns1")["status"] == {"phase": "Done", "best": 0.5}


@pytest.mark.timeout(30)
def test_json_patch_and_its_failed_test_op(kube: KubeClient) -> None:
    obj = kube.create(STUDY, study_body("s1", x=1), "ns1")
    rv = obj["metadata"]["resourceVersion"]
    ok = kube.patch(
        STUDY,
        "s1",
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/metadata/finalizers", "value": ["a/b"]},
        ],
        "ns1",
    )
    assert ok["metadata"]["finalizers"] == ["a/b"]
    with pytest.raises(ApiError) as e:
        kube.patch(
            STUDY,
            "s1",
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": rv},  # stale now
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ],
            "ns1",
        )
    assert e.value.status == 422 and e.value.reason == "Invalid"
    with pytest.raises(ApiError) as e:
        kube.patch(STUDY, "s1", [{"op": "remove", "path": "/spec/nope"}], "ns1")
    assert e.value.status == 422


@pytest.mark.timeout(30)
def test_strategic_merge_and_apply_patches(
    kube: KubeClient, emulator_server: EmulatorServer
) -> None:
    kube.create("pods", pod_body("p", ["true"]), "ns1")
    kube.patch("pods", "p", {"metadata": {"finalizers": ["x/a"]}}, "ns1")
    # the official client sends dicts to core resources as strategic merge patches
    kube.core.patch_namespaced_pod(
        "p",
        "ns1",
        {
            "metadata": {"finalizers": ["x/b"]},
            "spec": {"containers": [{"name": "main", "image": "kubetune/trial:v2"}]},
        },
    )
    pod = kube.get("pods", "p", "ns1")
    assert pod["metadata"]["finalizers"] == ["x/a", "x/b"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["true"] and container["image"] == "kubetune/trial:v2"
    kube.patch(
        "pods",
        "p",
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x/a"]}},
        "ns1",
        patch_type="strategic",
    )
    assert kube.get("pods", "p", "ns1")["metadata"]["finalizers"] == ["x/b"]
    with pytest.raises(ApiError) as e:  # a pod's spec is immutable but for images (& a few)
        kube.patch("pods", "p", {"spec": {"containers": [{"name": "main", "env": []}]}}, "ns1")
    assert e.value.status == 422 and "pod updates may not change fields" in e.value.message

    # lists of objects merge by their key (env by name) -- in a Deployment's pod template
    deployments = ResourceSpec("apps", "v1", "deployments", "Deployment", True, ("status",))
    emulator_server.call(emulator_server.emulator.register_resource, deployments)
    kube.register(deployments)
    template_container = {
        "name": "main",
        "image": "kubetune/trial:dev",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    }
    kube.create(
        deployments,
        {
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [template_container]},
                },
            },
        },
        "ns1",
    )
    env_patch = [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]
    patched = kube.patch(
        deployments,
        "d",
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "env": env_patch}]}}}},
        "ns1",
        patch_type="strategic",
    )
    assert patched["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]

    kube.create(STUDY, study_body("s1", x=1), "ns1")
    with pytest.raises(ApiError) as e:  # custom resources do not take strategic merge patches
        kube.patch(STUDY, "s1", {"spec": {"x": 2}}, "ns1", patch_type="strategic")
    assert e.value.status == 415

    # server-side apply, approximated: create if missing, else merge
    applied = kube.patch(STUDY, "s2", study_body("s2", x=1), "ns1", patch_type="apply")
    assert applied["metadata"]["uid"] and applied["spec"] == {"x": 1}
    applied = kube.patch(
        STUDY,
        "s2",
        {"apiVersion": "kubetune.io/v1alpha1", "kind": "Study", "spec": {"y": 2}},
        "ns1",
        patch_type="apply",
    )
    assert applied["spec"] == {"x": 1, "y": 2}


@pytest.mark.timeout(30)
def test_label_and_field_selectors(kube: KubeClient) -> None:
    for name, labels in [
        ("a", {"app": "x", "tier": "1"}),
        ("b", {"app": "x"}),
        ("c", {"app": "y", "tier": "2"}),
        ("d", {}),
    ]:
        kube.create("configmaps", {"metadata": {"name": name, "labels": labels}}, "ns1")
    kube.create("configmaps", {"metadata": {"name": "e", "labels": {"app": "x"}}}, "ns2")

    def names(selector: str, **kwargs: object) -> list[str]:
        items = kube.list("configmaps", "ns1", label_selector=selector, **kwargs)
        return sorted(item["metadata"]["name"] for item in items)

    assert names("app=x") == ["a", "b"]
    assert names("app==x,tier") == ["a"]
    assert names("app=x,!tier") == ["b"]
    assert names("app!=x") == ["c", "d", "kube-root-ca.crt"]  # every namespace has it
    assert names("tier") == ["a", "c"]
    assert names("app in (x, y),tier notin (1)") == ["b", "c"]
    assert names("app=x", all_namespaces=True) == ["a", "b", "e"]
    by_field = kube.list("configmaps", "ns1", field_selector="metadata.name=c")
    assert [item["metadata"]["name"] for item in by_field] == ["c"]
    # the official client passes selectors the same way
    listed = kube.core.list_namespaced_config_map("ns1", label_selector="app=x,tier=1")
    assert [cm.metadata.name for cm in listed.items] == ["a"]
    with pytest.raises(ApiError) as e:
        names("app=(")
    assert e.value.status == 400


@pytest.mark.timeout(30)
def test_watch_resumes_from_a_resource_version(kube: KubeClient) -> None:
    kube.create("configmaps", {"metadata": {"name": "before", "labels": {"w": "1"}}}, "ns1")
    listing = kube.core.list_namespaced_config_map("ns1", label_selector="w=1")
    rv = listing.metadata.resource_version
    kube.create("configmaps", {"metadata": {"name": "after", "labels": {"w": "1"}}}, "ns1")
    kube.create("configmaps", {"metadata": {"name": "other"}}, "ns1")
    kube.patch("configmaps", "after", {"data": {"k": "v"}}, "ns1")
    kube.patch("configmaps", "before", {"metadata": {"labels": {"w": "2"}}}, "ns1")
    kube.delete("configmaps", "after", "ns1")

    seen, versions = [], []
    watch = kubernetes.watch.Watch()
    for event in watch.stream(
        kube.core.list_namespaced_config_map,
        "ns1",
        label_selector="w=1",
        resource_version=rv,
        timeout_seconds=2,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        versions.append(int(event["object"].metadata.resource_version))
        if len(seen) == 4:
            watch.stop()
    # every event carries the object as of that event, with its own resourceVersion
    assert versions == sorted(set(versions)) and versions[0] > int(rv)
    # "before" left the selector: a watch sees that as DELETED, as in Kubernetes
    assert seen == [
        ("ADDED", "after"),
        ("MODIFIED", "after"),
        ("DELETED", "before"),
        ("DELETED", "after"),
    ]

    # without a resourceVersion: the current state first
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in kubernetes.watch.Watch().stream(
            kube.core.list_namespaced_config_map, "ns1", timeout_seconds=1
        )
    ]
    assert seen == [("ADDED", "before"), ("ADDED", "kube-root-ca.crt"), ("ADDED", "other")]


@pytest.mark.timeout(30)
def test_watch_streams_live_events(kube: KubeClient, emulator_server: EmulatorServer) -> None:
    url = kube.url("configmaps", "ns1")
    kube.create("namespaces", {"metadata": {"name": "ns1"}})  # its kube-root-ca.crt before rv
    rv = kube.core.list_namespaced_config_map("ns1").metadata.resource_version
    events: list[dict] = []

    def reader() -> None:
        with kube.session.get(
            url,
            params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "5"},
            stream=True,
            timeout=10,
        ) as r:
            for line in r.iter_lines():
                if line:
                    events.append(json.loads(line))
                    return

    thread = threading.Thread(target=reader)
    thread.start()
    emulator_server.wait_for_watch("configmaps")
    kube.create("configmaps", {"metadata": {"name": "live"}}, "ns1")
    thread.join(10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "live")]


@pytest.mark.timeout(30)
def test_watch_from_a_forgotten_resource_version_is_gone(tmp_path: Path) -> None:
    with EmulatorServer(KubeEmulator(event_log_size=5)) as server:
        kube = KubeClient(write_kubeconfig(tmp_path / "kubeconfig", server.url))
        for i in range(12):
            kube.create("configmaps", {"metadata": {"name": f"cm{i}"}}, "ns1")
        response = kube.session.get(
            kube.url("configmaps", "ns1"),
            params={"watch": "1", "resourceVersion": "2", "timeoutSeconds": "1"},
            timeout=5,
        )
        event = json.loads(response.text.splitlines()[0])
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
        with pytest.raises(kubernetes.client.ApiException) as e:
            for _ in kubernetes.watch.Watch().stream(
                kube.core.list_namespaced_config_map, "ns1", resource_version="2"
            ):
                pass
        assert e.value.status == 410
        kube.close()


@pytest.mark.timeout(30)
def test_deletion_with_finalizers(kube: KubeClient) -> None:
    kube.create(
        STUDY, dict(study_body("s1"), metadata={"name": "s1", "finalizers": ["x/y", "x/z"]}), "ns1"
    )
    deleted = kube.delete(STUDY, "s1", "ns1")
    assert deleted["metadata"]["deletionTimestamp"]
    still = kube.get(STUDY, "s1", "ns1")
    assert still["metadata"]["deletionTimestamp"] and still["metadata"]["finalizers"]
    with pytest.raises(ApiError) as e:  # no new finalizers on a deleted object
        kube.patch(STUDY, "s1", {"metadata": {"finalizers": ["x/y", "x/z", "new"]}}, "ns1")
    assert e.value.status == 422
    kube.patch(STUDY, "s1", {"metadata": {"finalizers": ["x/z"]}}, "ns1")
    assert kube.get(STUDY, "s1", "ns1")["metadata"]["finalizers"] == ["x/z"]
    kube.patch(STUDY, "s1", [{"op": "remove", "path": "/metadata/finalizers/0"}], "ns1")
    assert kube.get(STUDY, "s1", "ns1", missing_ok=True) is None


@pytest.mark.timeout(30)
def test_garbage_collection_of_owned_objects(kube: KubeClient) -> None:
    owner = kube.create(STUDY, study_body("s1"), "ns1")
    ref = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "name": "s1",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    kube.create("configmaps", {"metadata": {"name": "owned", "ownerReferences": [ref]}}, "ns1")
    kube.create(
        "pods",
        dict(
            pod_body("owned-pod", ["true"]),
            metadata={"name": "owned-pod", "ownerReferences": [ref]},
        ),
        "ns1",
    )
    kube.create("configmaps", {"metadata": {"name": "free"}}, "ns1")
    kube.delete(STUDY, "s1", "ns1")
    assert kube.get("configmaps", "owned", "ns1", missing_ok=True) is None
    assert kube.get("pods", "owned-pod", "ns1", missing_ok=True) is None
    assert kube.get("configmaps", "free", "ns1") is not None


@pytest.mark.timeout(30)
def test_crd_registration_through_the_api(kube: KubeClient) -> None:
    crd = textwrap.dedent("""
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: widgets.example.com}
        spec:
          group: example.com
          scope: Namespaced
          names: {kind: Widget, plural: widgets, singular: widget}
          versions:
          - {name: v1, served: true, storage: true, subresources: {status: {}}}
    """)
    kube.apply_yaml(crd)
    kube.create("example.com/v1/widgets", {"metadata": {"name": "w"}, "spec": {"a": 1}}, "ns1")
    assert kube.get("widgets", "w", "ns1")["kind"] == "Widget"
    repo_crd = Path(__file__).resolve().parents[2] / "crds" / "study.yaml"
    if repo_crd.exists():  # the real CRD loads too (it is already registered by default)
        kube.apply_yaml(repo_crd)


# ----------------------------------------------------------------------------------------------
# The fake kubelet
# ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_kubelet_runs_a_pod_with_env_from_the_api(
    kube: KubeClient, kubelet: FakeKubelet, tmp_path: Path
) -> None:
    kube.create("secrets", {"metadata": {"name": "creds"}, "stringData": {"x": "s3cret"}}, "ns1")
    kube.create("configmaps", {"metadata": {"name": "cfg"}, "data": {"MODE": "fast"}}, "ns1")
    script = (
        "import os; print('X=' + os.environ['X']); print('POD=' + os.environ['POD']); "
        "print('UID=' + os.environ['UID']); print('NODE=' + os.environ['NODE']); "
        "print('MODE=' + os.environ['CFG_MODE']); print('URL=' + os.environ['URL']); "
        "print('CWD=' + os.getcwd())"
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    pod = kube.create(
        "pods",
        pod_body(
            "p1",
            ["python", "-c", script],
            container={
                "workingDir": str(workdir),
                "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "x"}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "URL", "value": "http://$(POD):80"},
                ],
            },
        ),
        "ns1",
    )
    assert pod["status"]["phase"] == "Pending"
    done = kube.wait_for_object("pods", "p1", phase_is("Succeeded", "Failed"), "ns1")
    assert done["status"]["phase"] == "Succeeded", kubelet.pod_log("ns1", "p1")
    assert done["spec"]["nodeName"] == "fake-node"
    assert terminated(done)["exitCode"] == 0 and terminated(done)["reason"] == "Completed"
    assert done["status"]["startTime"] and terminated(done)["finishedAt"]
    log = kubelet.pod_log("ns1", "p1")
    for line in [
        "X=s3cret",
        "POD=p1",
        f"UID={pod['metadata']['uid']}",
        "NODE=fake-node",
        "MODE=fast",
        "URL=http://p1:80",
        f"CWD={workdir}",
    ]:
        assert line in log
    # pods/log through the API, as `kubectl logs` would read it
    assert "X=s3cret" in kube.core.read_namespaced_pod_log("p1", "ns1")


@pytest.mark.timeout(30)
def test_kubelet_reports_failures_and_kills(kube: KubeClient, kubelet: FakeKubelet) -> None:
    kube.create("pods", pod_body("fails", ["python", "-c", "import sys; sys.exit(3)"]), "ns1")
    kube.create("pods", pod_body("sleeps", ["python", "-c", "import time; time.sleep(60)"]), "ns1")
    kube.create("pods", pod_body("oom", ["python", "-c", "import time; time.sleep(60)"]), "ns1")
    kube.create("pods", pod_body("evicted", ["python", "-c", "import time; time.sleep(60)"]), "ns1")
    failed = kube.wait_for_object("pods", "fails", phase_is("Failed"), "ns1")
    assert terminated(failed)["exitCode"] == 3 and terminated(failed)["reason"] == "Error"

    for name in ("sleeps", "oom", "evicted"):
        running = kube.wait_for_object("pods", name, phase_is("Running"), "ns1")
        assert "running" in running["status"]["containerStatuses"][0]["state"]
    assert kubelet.kill_pod_process("ns1", "sleeps", signal.SIGKILL)
    killed = kube.wait_for_object("pods", "sleeps", phase_is("Failed"), "ns1")
    assert terminated(killed)["exitCode"] == 137 and terminated(killed)["reason"] == "Error"

    assert kubelet.oom_kill_pod("ns1", "oom")
    oom = kube.wait_for_object("pods", "oom", phase_is("Failed"), "ns1")
    assert terminated(oom)["exitCode"] == 137 and terminated(oom)["reason"] == "OOMKilled"

    kubelet.evict_pod("ns1", "evicted")
    evicted = kube.wait_for_object("pods", "evicted", phase_is("Failed"), "ns1")
    assert evicted["status"]["reason"] == "Evicted"
    assert not kubelet.kill_pod_process("ns1", "evicted")  # nothing runs any more


@pytest.mark.timeout(30)
def test_kubelet_deletes_pods_gracefully(kube: KubeClient, kubelet: FakeKubelet) -> None:
    polite = (
        "import signal, sys, time\n"
        "def bye(*_):\n    print('got SIGTERM', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    stubborn = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    kube.create("pods", pod_body("polite", ["python", "-c", polite]), "ns1")
    kube.create(
        "pods",
        pod_body("stubborn", ["python", "-c", stubborn], terminationGracePeriodSeconds=1),
        "ns1",
    )
    for name in ("polite", "stubborn"):
        kube.wait_for_object("pods", name, phase_is("Running"), "ns1")
        kube.wait_for(lambda n=name: "ready" in kubelet.pod_log("ns1", n))

    start = time.monotonic()
    deleted = kube.delete("pods", "polite", "ns1")
    assert deleted["metadata"]["deletionTimestamp"]  # graceful: the pod is still there
    kube.wait_gone("pods", "polite", "ns1", timeout=10)
    assert "got SIGTERM" in kubelet.pod_log("ns1", "polite")
    assert time.monotonic() - start < 3

    start = time.monotonic()
    kube.delete("pods", "stubborn", "ns1")
    kube.wait_gone("pods", "stubborn", "ns1", timeout=10)
    assert 0.9 < time.monotonic() - start < 5  # SIGKILL after the 1 s grace period

    # a pod that never ran goes at once
    kubelet.mark_unschedulable(lambda pod: pod["metadata"]["name"] == "never")
    kube.create("pods", pod_body("never", ["true"]), "ns1")
    kube.delete("pods", "never", "ns1")
    assert kube.get("pods", "never", "ns1", missing_ok=True) is None


@pytest.mark.timeout(30)
def test_kubelet_scheduling_gpus_and_predicates(kube: KubeClient, kubelet: FakeKubelet) -> None:
    gpu_pod = pod_body(
        "gpu",
        ["python", "-c", "print('on gpu')"],
        container={"resources": {"limits": {"nvidia.com/gpu": "1"}}},
    )
    kube.create("pods", gpu_pod, "ns1")

    def unschedulable(pod: dict) -> bool:
        conditions = (pod.get("status") or {}).get("conditions") or []
        return any(c["type"] == "PodScheduled" and c["status"] == "False" for c in conditions)

    pending = kube.wait_for_object("pods", "gpu", unschedulable, "ns1")
    condition = pending["status"]["conditions"][0]
    assert condition["reason"] == "Unschedulable"
    assert condition["message"] == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    assert pending["status"]["phase"] == "Pending" and not pending["spec"].get("nodeName")

    kubelet.set_capacity("nvidia.com/gpu", 1)
    done = kube.wait_for_object("pods", "gpu", phase_is("Succeeded"), "ns1")
    assert done["spec"]["nodeName"] == "fake-node"

    kubelet.mark_unschedulable(
        lambda pod: pod["metadata"].get("labels", {}).get("hold") == "1",
        "0/1 nodes are available: 1 Too many pods.",
    )
    held = dict(pod_body("held", ["true"]), metadata={"name": "held", "labels": {"hold": "1"}})
    kube.create("pods", held, "ns1")
    pending = kube.wait_for_object("pods", "held", unschedulable, "ns1")
    message = pending["status"]["conditions"][0]["message"]
    assert message == "0/1 nodes are available: 1 Too many pods."
    kubelet.mark_unschedulable(None)
    kube.wait_for_object("pods", "held", phase_is("Succeeded"), "ns1")


@pytest.mark.timeout(30)
def test_kubelet_waits_for_secrets_restarts_and_start_errors(
    kube: KubeClient, kubelet: FakeKubelet
) -> None:
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "late", "key": "x"}}}]
    kube.create(
        "pods",
        pod_body(
            "waits", ["python", "-c", "import os; print(os.environ['X'])"], container={"env": env}
        ),
        "ns1",
    )

    def waiting_reason(pod: dict) -> str | None:
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting", {}).get("reason")

    pending = kube.wait_for_object("pods", "waits", waiting_reason, "ns1")
    assert waiting_reason(pending) == "CreateContainerConfigError"
    assert pending["status"]["phase"] == "Pending"
    kube.create("secrets", {"metadata": {"name": "late"}, "stringData": {"x": "finally"}}, "ns1")
    kube.wait_for_object("pods", "waits", phase_is("Succeeded"), "ns1")
    assert "finally" in kubelet.pod_log("ns1", "waits")

    # restartPolicy=OnFailure: the container restarts until it succeeds
    counter = (
        "import pathlib, sys; p = pathlib.Path('count'); "
        "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
        "print('attempt', n); sys.exit(0 if n >= 3 else 1)"
    )
    kube.create(
        "pods",
        dict(
            pod_body("flaky", ["python", "-c", counter]),
            spec={
                "restartPolicy": "OnFailure",
                "containers": [
                    {"name": "main", "image": "x", "command": ["python", "-c", counter]}
                ],
            },
        ),
        "ns1",
    )
    done = kube.wait_for_object("pods", "flaky", phase_is("Succeeded"), "ns1", timeout=20)
    status = done["status"]["containerStatuses"][0]
    assert status["restartCount"] == 2
    assert status["lastState"]["terminated"]["exitCode"] == 1

    # no command and no known entrypoint for the image
    kube.create(
        "pods",
        {
            "metadata": {"name": "nocmd"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}],
            },
        },
        "ns1",
    )
    failed = kube.wait_for_object("pods", "nocmd", phase_is("Failed"), "ns1")
    assert terminated(failed)["reason"] == "StartError"


@pytest.mark.timeout(30)
def test_kubelet_mounts_configmap_secret_and_emptydir_volumes(
    kube: KubeClient, kubelet: FakeKubelet, tmp_path: Path
) -> None:
    if not kubelet.mount_volumes:
        pytest.skip("volumes need root and unshare")
    kube.create(
        "configmaps",
        {"metadata": {"name": "spec"}, "data": {"study.yaml": "name: demo\n", "other": "x"}},
        "ns1",
    )
    kube.create(
        "secrets", {"metadata": {"name": "db"}, "stringData": {"url": "postgres://"}}, "ns1"
    )
    mounts = tmp_path / "not" / "there"  # created for the mount, removed at kubelet stop
    script = textwrap.dedent(f"""
        import os, pathlib
        print(pathlib.Path('{mounts}/spec/study.yaml').read_text().strip())
        print(sorted(os.listdir('{mounts}/spec')))
        print(pathlib.Path('{mounts}/db-url').read_text())
        pathlib.Path('{mounts}/scratch/out').write_text('written')
        print(pathlib.Path('out').read_text())  # workingDir is inside the emptyDir
        try:
            pathlib.Path('{mounts}/spec/new').write_text('no')
        except OSError as e:
            print('read-only:', e.errno)
    """)
    kube.create(
        "pods",
        pod_body(
            "vols",
            ["python", "-c", script],
            volumes=[
                {
                    "name": "spec",
                    "configMap": {
                        "name": "spec",
                        "items": [{"key": "study.yaml", "path": "study.yaml"}],
                    },
                },
                {"name": "db", "secret": {"secretName": "db"}},
                {"name": "scratch", "emptyDir": {}},
            ],
            container={
                "workingDir": f"{mounts}/scratch",
                "volumeMounts": [
                    {"name": "spec", "mountPath": f"{mounts}/spec"},
                    {"name": "db", "mountPath": f"{mounts}/db-url", "subPath": "url"},
                    {"name": "scratch", "mountPath": f"{mounts}/scratch"},
                ],
            },
        ),
        "ns1",
    )
    done = kube.wait_for_object("pods", "vols", phase_is("Succeeded", "Failed"), "ns1")
    log = kubelet.pod_log("ns1", "vols")
    assert done["status"]["phase"] == "Succeeded", log
    assert log.splitlines() == [
        "name: demo",
        "['study.yaml']",
        "postgres://",
        "written",
        "read-only: 30",
    ]
    assert not list((mounts / "scratch").iterdir())  # the host saw nothing of it
    kubelet.stop()
    assert not (tmp_path / "not").exists()


# ----------------------------------------------------------------------------------------------
# A real kopf operator
# ----------------------------------------------------------------------------------------------

OPERATOR_SOURCE = """
import kopf
import kubernetes


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    kubernetes.config.load_kube_config()  # KUBECONFIG is set by the harness


@kopf.on.create("kubetune.io", "v1alpha1", "studies")
def create_fn(body, spec, name, namespace, logger, **_):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": {"kubetune.io/study": name}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "trial",
                "image": "kubetune/trial:dev",
                "command": ["python", "-c", spec["script"]],
                "env": [{"name": "X", "valueFrom": {
                    "secretKeyRef": {"name": spec["secret"], "key": "x"}}}],
            }],
        },
    }
    kopf.adopt(pod)  # ownerReferences, generateName "<study>-", namespace, labels
    created = kubernetes.client.CoreV1Api().create_namespaced_pod(namespace, pod)
    logger.info(f"created pod {created.metadata.name}")
    kopf.info(body, reason="PodCreated", message=f"created pod {created.metadata.name}")
    return {"pod": created.metadata.name}


@kopf.timer("kubetune.io", "v1alpha1", "studies", interval=0.2)
def sync_status(name, namespace, status, patch, **_):
    pods = kubernetes.client.CoreV1Api().list_namespaced_pod(
        namespace, label_selector=f"kubetune.io/study={name}").items
    phases = sorted(pod.status.phase or "" for pod in pods)
    if status.get("podPhases") != phases:
        patch.status["podPhases"] = phases


@kopf.on.delete("kubetune.io", "v1alpha1", "studies")
def delete_fn(name, logger, **_):
    logger.info(f"study {name} is being deleted")
"""


@pytest.fixture
def operator_module(tmp_path: Path) -> Path:
    path = tmp_path / "selftest_operator.py"
    path.write_text(OPERATOR_SOURCE)
    return path


def _study_status(kube: KubeClient, name: str, namespace: str, phases: list[str]) -> dict:
    return kube.wait_for_object(
        STUDY, name, lambda s: (s.get("status") or {}).get("podPhases") == phases, namespace
    )


@pytest.mark.timeout(60)
def test_kopf_operator_end_to_end(
    kube: KubeClient, kubelet: FakeKubelet, start_operator, operator_module: Path
) -> None:
    kube.create(
        "secrets", {"metadata": {"name": "creds"}, "stringData": {"x": "hello-secret"}}, "team-a"
    )
    operator = start_operator(operator_module)  # cluster-wide (-A), standalone
    script = "import os,sys; print(os.environ['X']); sys.exit(0)"
    study = kube.create(STUDY, study_body("demo", secret="creds", script=script), "team-a")

    pods = kube.wait_for(
        lambda: kube.list("pods", "team-a", label_selector="kubetune.io/study=demo")
    )
    assert len(pods) == 1
    pod = pods[0]
    pod_name = pod["metadata"]["name"]
    assert re.fullmatch(r"demo-[a-z0-9]{5}", pod_name)  # kopf.adopt's generateName
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["uid"] == study["metadata"]["uid"] and owner["kind"] == "Study"
    assert pod["metadata"]["labels"]["team"] == "a"  # kopf.adopt copies the owner's labels

    done = kube.wait_for_object("pods", pod_name, phase_is("Succeeded", "Failed"), "team-a")
    assert done["status"]["phase"] == "Succeeded", kubelet.pod_log("team-a", pod_name)
    assert terminated(done)["exitCode"] == 0
    assert "hello-secret" in kubelet.pod_log("team-a", pod_name)

    # the operator wrote the status through the status subresource
    current = _study_status(kube, "demo", "team-a", ["Succeeded"])
    assert current["status"]["create_fn"] == {"pod": pod_name}  # kopf's handler result
    assert KOPF_FINALIZER in current["metadata"]["finalizers"]
    assert current["metadata"]["generation"] == 1
    assert int(current["metadata"]["resourceVersion"]) > int(study["metadata"]["resourceVersion"])

    # kopf.info() posts a Kubernetes Event about the study
    events = kube.wait_for(
        lambda: [e for e in kube.list("events", "team-a") if e.get("reason") == "PodCreated"]
    )
    assert events[0]["involvedObject"]["uid"] == study["metadata"]["uid"]
    assert events[0]["message"] == f"created pod {pod_name}"

    # deletion: kopf runs the delete handler and removes its finalizer; the pod is collected
    kube.delete(STUDY, "demo", "team-a")
    kube.wait_gone(STUDY, "demo", "team-a", timeout=15)
    kube.wait_gone("pods", pod_name, "team-a")
    assert "study demo is being deleted" in operator.log_text()
    assert operator.running


@pytest.mark.timeout(60)
def test_kopf_operator_in_one_namespace_sees_a_killed_pod(
    kube: KubeClient, kubelet: FakeKubelet, start_operator, operator_module: Path
) -> None:
    kube.create("secrets", {"metadata": {"name": "creds"}, "stringData": {"x": "y"}}, "team-b")
    start_operator(operator_module, namespaces=["team-b"])  # lists & watches namespaces
    script = "import time; print('sleeping', flush=True); time.sleep(60)"
    kube.create(STUDY, study_body("long", secret="creds", script=script), "team-b")
    # a study in another namespace is not served by this operator
    kube.create(STUDY, study_body("elsewhere", secret="creds", script=script), "team-c")

    _study_status(kube, "long", "team-b", ["Running"])
    pods = kube.list("pods", "team-b", label_selector="kubetune.io/study=long")
    pod_name = pods[0]["metadata"]["name"]
    kube.wait_for(lambda: "sleeping" in kubelet.pod_log("team-b", pod_name))
    assert kubelet.kill_pod_process("team-b", pod_name, signal.SIGKILL)
    failed = kube.wait_for_object("pods", pod_name, phase_is("Failed"), "team-b")
    assert terminated(failed)["exitCode"] == 137
    _study_status(kube, "long", "team-b", ["Failed"])

    assert kube.list("pods", "team-c") == []
    assert "finalizers" not in kube.get(STUDY, "elsewhere", "team-c")["metadata"]
