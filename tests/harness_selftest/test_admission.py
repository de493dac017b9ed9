"""The emulated API server refuses what a real one refuses: each rule's refusal (status and
Kubernetes' message) and the allowed case.

1. authentication (tokens, TokenRequest) and RBAC authorization;
2. ServiceAccount admission (and every namespace's ``default`` ServiceAccount and
   ``kube-root-ca.crt``);
3. custom resources against their CRD's openAPIV3Schema (validation, pruning, defaults);
4. pod validation (extended resources, names and images, decoding);
5. Pod Security admission from namespace labels;
6. OwnerReferencesPermissionEnforcement (``blockOwnerDeletion``);
7. HTTPS for in-cluster clients (the official client's in-cluster configuration).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import requests
import yaml
from harness import ApiError, EmulatorServer, KubeClient, KubeEmulator

REPO = Path(__file__).resolve().parents[2]
STUDY = "kubetune.io/v1alpha1/studies"
RBAC = "rbac.authorization.k8s.io/v1"
SA_USER = "system:serviceaccount:team:robot"

KubeAs = Callable[..., KubeClient]


def pod(name: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "trial", "image": "kubetune/trial:dev", "command": ["true"]}
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def study(name: str, **spec: Any) -> dict[str, Any]:
    body = {"trial": {"python": "examples.objectives:quadratic"}, "budget": {"maxTrials": 2}}
    body.update(spec)
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name},
        "spec": body,
    }


def refused(call: Callable[[], Any], status: int) -> ApiError:
    with pytest.raises(ApiError) as e:
        call()
    assert e.value.status == status, e.value
    return e.value


def make_robot(kube: KubeClient, namespace: str = "team", name: str = "robot") -> None:
    kube.create("serviceaccounts", {"metadata": {"name": name}}, namespace)


def grant(
    kube: KubeClient,
    namespace: str | None,
    rules: list[dict[str, Any]],
    *,
    name: str = "robot",
    subject: tuple[str, str] = ("team", "robot"),
) -> None:
    """A Role + RoleBinding in ``namespace`` (None: ClusterRole + ClusterRoleBinding)."""
    ref_kind = "Role" if namespace else "ClusterRole"
    kube.create(
        f"{RBAC}/{ref_kind.lower()}s", {"metadata": {"name": name}, "rules": rules}, namespace
    )
    binding = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "namespace": subject[0], "name": subject[1]}],
    }
    kube.create(f"{RBAC}/{ref_kind.lower()}bindings", binding, namespace)


# ----------------------------------------------------------------------------------------------
# 1. Authentication and RBAC
# ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_tokens_unknown_is_401_anonymous_reads_only_version(kube: KubeClient) -> None:
    bad = requests.get(kube.url("pods", "default"), headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["reason"] == "Unauthorized"
    assert requests.get(kube.host + "/version").status_code == 200  # system:public-info-viewer
    anonymous = requests.get(kube.url("pods", "default"))
    assert anonymous.status_code == 403
    assert anonymous.json()["message"] == (
        'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group '
        '"" in the namespace "default"'
    )
    discovery = requests.get(kube.host + "/api")
    assert discovery.status_code == 403
    assert discovery.json()["message"] == (
        'forbidden: User "system:anonymous" cannot get path "/api"'
    )
    # the kubeconfig's token is a superuser: anything goes
    assert kube.list("pods", "default") == []


@pytest.mark.timeout(30)
def test_token_request_gives_a_service_account_token(kube: KubeClient, kube_as: KubeAs) -> None:
    error = refused(
        lambda: kube.request(
            "POST", kube.url("serviceaccounts", "team", "robot", "token"), json_body={}
        ),
        404,
    )
    assert error.message == 'serviceaccounts "robot" not found'
    make_robot(kube)
    answer = kube.core.create_namespaced_service_account_token(
        "robot",
        "team",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    token = answer.status.token
    assert token.count(".") == 2 and answer.status.expiration_timestamp
    headers = {"Authorization": f"Bearer {token}"}
    # any authenticated user may discover the API (system:discovery), nothing more
    assert requests.get(kube.host + "/apis", headers=headers).status_code == 200
    listing = requests.get(kube.url("pods", "team"), headers=headers)
    assert listing.status_code == 403
    assert listing.json()["message"] == (
        f'pods is forbidden: User "{SA_USER}" cannot list resource "pods" in API group "" '
        'in the namespace "team"'
    )
    assert listing.json()["details"] == {"group": "", "kind": "pods"}
    # the token dies with its ServiceAccount
    kube.delete("serviceaccounts", "robot", "team")
    assert requests.get(kube.host + "/apis", headers=headers).status_code == 401


@pytest.mark.timeout(30)
def test_role_and_role_binding_allow_in_their_namespace_only(
    kube: KubeClient, kube_as: KubeAs
) -> None:
    make_robot(kube)
    kube.create("pods", pod("p"), "team")
    kube.create("pods", pod("p"), "other")
    kube.create("configmaps", {"metadata": {"name": "allowed"}}, "team")
    kube.create("configmaps", {"metadata": {"name": "secret-ish"}}, "team")
    grant(
        kube,
        "team",
        [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["allowed"],
                "verbs": ["get", "patch"],
            },
        ],
    )
    robot = kube_as("team", "robot")
    assert [p["metadata"]["name"] for p in robot.list("pods")] == ["p"]
    assert robot.get("pods", "p")["metadata"]["namespace"] == "team"
    error = refused(lambda: robot.list("pods", "other"), 403)
    assert error.message == (
        f'pods is forbidden: User "{SA_USER}" cannot list resource "pods" in API group "" in '
        'the namespace "other"'
    )
    error = refused(lambda: robot.create("pods", pod("q")), 403)
    assert error.message == (
        f'pods is forbidden: User "{SA_USER}" cannot create resource "pods" in API group "" '
        'in the namespace "team"'
    )
    error = refused(lambda: robot.delete("pods", "p"), 403)
    assert error.message.startswith('pods "p" is forbidden: User')
    # a subresource is a resource of its own: "pods/log" is not granted by "pods"
    error = refused(lambda: robot.request("GET", robot.url("pods", "team", "p", "log")), 403)
    assert 'cannot get resource "pods/log" in API group ""' in error.message
    # resourceNames: that object only, and never list
    robot.patch("configmaps", "allowed", {"data": {"k": "v"}})
    error = refused(lambda: robot.get("configmaps", "secret-ish"), 403)
    assert error.message == (
        f'configmaps "secret-ish" is forbidden: User "{SA_USER}" cannot get resource '
        '"configmaps" in API group "" in the namespace "team"'
    )
    refused(lambda: robot.list("configmaps"), 403)
    # cluster scope needs a ClusterRoleBinding
    error = refused(lambda: robot.list("pods", all_namespaces=True), 403)
    assert error.message.endswith(
        'cannot list resource "pods" in API group "" at the cluster scope'
    )


@pytest.mark.timeout(30)
def test_cluster_roles_wildcards_subresources_and_missing_roles(
    kube: KubeClient, kube_as: KubeAs
) -> None:
    make_robot(kube)
    kube.create(STUDY, study("s"), "team")
    grant(
        kube,
        None,
        [
            {"apiGroups": ["kubetune.io"], "resources": ["studies"], "verbs": ["list", "watch"]},
            {"apiGroups": ["kubetune.io"], "resources": ["*/status"], "verbs": ["patch"]},
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]},
        ],
    )
    robot = kube_as("team", "robot")
    assert [s["metadata"]["name"] for s in robot.list(STUDY, all_namespaces=True)] == ["s"]
    assert robot.get("namespaces", "team")["metadata"]["name"] == "team"
    assert robot.patch_status(STUDY, "s", {"phase": "Running"})["status"]["phase"] == "Running"
    error = refused(lambda: robot.patch(STUDY, "s", {"spec": {"suspend": True}}), 403)
    assert error.message == (
        f'studies.kubetune.io "s" is forbidden: User "{SA_USER}" cannot patch resource '
        '"studies" in API group "kubetune.io" in the namespace "team"'
    )
    error = refused(lambda: robot.delete("namespaces", "team"), 403)
    assert error.message == (  # for namespaces, the namespace is the name
        f'namespaces "team" is forbidden: User "{SA_USER}" cannot delete resource "namespaces" '
        'in API group "" in the namespace "team"'
    )
    # a binding to a role that does not exist says so
    binding = {
        "metadata": {"name": "dangling"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot"}],  # namespace: the binding's
    }
    kube.create(f"{RBAC}/rolebindings", binding, "team")
    error = refused(lambda: robot.create("configmaps", {"metadata": {"name": "c"}}), 403)
    assert error.message.endswith(': RBAC: role.rbac.authorization.k8s.io "gone" not found')


@pytest.mark.timeout(30)
def test_cluster_role_bound_in_a_namespace_and_aggregated_roles(
    kube: KubeClient, kube_as: KubeAs
) -> None:
    make_robot(kube)
    # the chart's way: a ClusterRole labelled to join Kubernetes' "edit" (aggregation)
    kube.create(
        f"{RBAC}/clusterroles",
        {
            "metadata": {
                "name": "kubetune-edit",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"},
            },
            "rules": [
                {
                    "apiGroups": ["kubetune.io"],
                    "resources": ["studies"],
                    "verbs": ["get", "list", "create", "delete"],
                }
            ],
        },
    )
    edit = kube.get(f"{RBAC}/clusterroles", "edit")
    assert {"apiGroups": ["kubetune.io"], "resources": ["studies"],
            "verbs": ["get", "list", "create", "delete"]} in edit["rules"]  # fmt: skip
    admin = kube.get(f"{RBAC}/clusterroles", "admin")  # admin aggregates edit's rules too
    assert all(rule in admin["rules"] for rule in edit["rules"])
    binding = {
        "metadata": {"name": "robot-edits"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "namespace": "team", "name": "robot"}],
    }
    kube.create(f"{RBAC}/rolebindings", binding, "team")
    robot = kube_as("team", "robot")
    robot.create(STUDY, study("mine"))
    robot.create("pods", pod("p"))  # from Kubernetes' own edit rules
    error = refused(lambda: robot.create(STUDY, study("theirs"), "other"), 403)
    assert 'in the namespace "other"' in error.message
    # a ClusterRole of one's own with an aggregationRule, filled as labels match
    kube.create(
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": "collector"},
            "aggregationRule": {
                "clusterRoleSelectors": [
                    {"matchExpressions": [{"key": "collect", "operator": "Exists"}]}
                ]
            },
        },
    )
    assert kube.get(f"{RBAC}/clusterroles", "collector").get("rules", []) == []
    rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}
    kube.create(
        f"{RBAC}/clusterroles",
        {"metadata": {"name": "piece", "labels": {"collect": "yes"}}, "rules": [rule]},
    )
    assert kube.get(f"{RBAC}/clusterroles", "collector")["rules"] == [rule]
    kube.delete(f"{RBAC}/clusterroles", "piece")
    assert kube.get(f"{RBAC}/clusterroles", "collector").get("rules", []) == []


# ----------------------------------------------------------------------------------------------
# 2. ServiceAccount admission
# ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_every_namespace_has_a_default_service_account_and_the_root_ca(
    kube: KubeClient, emulator_server: EmulatorServer
) -> None:
    kube.create("namespaces", {"metadata": {"name": "made"}})
    kube.create("configmaps", {"metadata": {"name": "c"}}, "auto-made")  # auto-created namespace
    ca = emulator_server.ca_path.read_text()
    for namespace in ("default", "kube-system", "kube-public", "made", "auto-made"):
        assert kube.get("serviceaccounts", "default", namespace)
        assert kube.get("configmaps", "kube-root-ca.crt", namespace)["data"] == {"ca.crt": ca}


@pytest.mark.timeout(30)
def test_pods_need_an_existing_service_account(kube: KubeClient) -> None:
    created = kube.create("pods", pod("plain"), "team")
    assert created["spec"]["serviceAccountName"] == "default"
    error = refused(
        lambda: kube.create("pods", pod("p", serviceAccountName="kubetune-trial"), "team"), 403
    )
    assert error.reason == "Forbidden"
    assert error.message == (
        'pods "p" is forbidden: error looking up service account team/kubetune-trial: '
        'serviceaccount "kubetune-trial" not found'
    )
    generated = dict(pod(""), metadata={"generateName": "trial-"})
    generated["spec"]["serviceAccountName"] = "kubetune-trial"
    error = refused(lambda: kube.create("pods", generated, "team"), 403)
    assert error.message.startswith("pods is forbidden: error looking up service account")
    make_robot(kube, "team", "kubetune-trial")
    assert kube.create("pods", pod("p", serviceAccountName="kubetune-trial"), "team")


@pytest.mark.timeout(30)
def test_service_account_token_volume_when_switched_on(tmp_path: Path) -> None:
    with EmulatorServer(KubeEmulator(mount_service_account_token=True)) as server:
        kube = KubeClient(server.write_kubeconfig(tmp_path / "kubeconfig"))
        created = kube.create("pods", pod("p"), "team")
        volume = created["spec"]["volumes"][0]
        assert volume["name"].startswith("kube-api-access-")
        sources = volume["projected"]["sources"]
        assert sources[0]["serviceAccountToken"]["path"] == "token"
        assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
        mount = created["spec"]["containers"][0]["volumeMounts"][0]
        assert mount == {
            "name": volume["name"],
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": True,
        }
        opted_out = kube.create("pods", pod("q", automountServiceAccountToken=False), "team")
        assert "volumes" not in opted_out["spec"]
        kube.close()


# ----------------------------------------------------------------------------------------------
# 3. Custom resources against the CRD's schema
# ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_study_schema_refusals(kube: KubeClient) -> None:
    bad = study("x", budget={"maxTrials": 0})
    error = refused(lambda: kube.create(STUDY, bad), 422)
    assert error.reason == "Invalid"
    assert error.message == (
        'Study.kubetune.io "x" is invalid: spec.budget.maxTrials: Invalid value: 0: '
        "spec.budget.maxTrials in body should be greater than or equal to 1"
    )
    assert error.details == {
        "name": "x",
        "group": "kubetune.io",
        "kind": "Study",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: 0: spec.budget.maxTrials in body should be "
                "greater than or equal to 1",
                "field": "spec.budget.maxTrials",
            }
        ],
    }
    several = study("x", sampler={"name": "bayes"}, budget={"maxTrials": "many"})
    del several["spec"]["trial"]
    error = refused(lambda: kube.create(STUDY, several), 422)
    assert error.message.startswith('Study.kubetune.io "x" is invalid: [')
    assert {c["field"]: c["message"] for c in error.details["causes"]} == {
        "spec.trial": "Required value",
        "spec.sampler.name": 'Unsupported value: "bayes": supported values: "tpe", "random", '
        '"cmaes", "gp", "qmc", "grid", "nsgaii", "bruteforce"',
        "spec.budget.maxTrials": 'Invalid value: "string": spec.budget.maxTrials in body must '
        'be of type integer: "string"',
    }
    for spec, field in [
        ({"objective": {"metric": ""}}, "spec.objective.metric"),  # minLength
        ({"objective": {"directions": []}}, "spec.objective.directions"),  # minItems
        ({"budget": {"maxTrials": 2, "timeout": 1.5}}, "spec.budget.timeout"),  # int-or-string
        ({"budget": {"maxTrials": 2, "parallelism": 1001}}, "spec.budget.parallelism"),  # max
        ({"suspend": None}, "spec.suspend"),  # not nullable... but pruned, see below
    ]:
        if field == "spec.suspend":
            assert "suspend" not in kube.create(STUDY, study("n", **spec))["spec"]
            continue
        error = refused(lambda spec=spec: kube.create(STUDY, study("x", **spec)), 422)
        assert [c["field"] for c in error.details["causes"]] == [field], error.message
    # nullable fields take null; int-or-string takes both
    kube.create(
        STUDY, study("ok", objective={"direction": None}, budget={"maxTrials": 1, "timeout": "1h"})
    )


@pytest.mark.timeout(30)
def test_study_schema_on_update_patch_and_status(kube: KubeClient) -> None:
    kube.create(STUDY, study("s"), "ns1")
    for patch in (
        {"spec": {"budget": {"maxTrials": -1}}},  # merge patch, checked after applying it
        [{"op": "replace", "path": "/spec/budget/maxTrials", "value": 0}],  # JSON patch
    ):
        error = refused(lambda patch=patch: kube.patch(STUDY, "s", patch, "ns1"), 422)
        assert error.details["causes"][0]["field"] == "spec.budget.maxTrials"
    current = kube.get(STUDY, "s", "ns1")
    replaced = copy.deepcopy(current)
    replaced["spec"]["sampler"] = {"name": "nope"}
    refused(lambda: kube.replace(STUDY, replaced, "ns1"), 422)
    error = refused(lambda: kube.patch_status(STUDY, "s", {"phase": "Done"}, "ns1"), 422)
    assert error.message == (
        'Study.kubetune.io "s" is invalid: status.phase: Unsupported value: "Done": supported '
        'values: "Pending", "Running", "Suspended", "Succeeded", "Failed"'
    )
    front = [{"number": i} for i in range(11)]
    error = refused(lambda: kube.patch_status(STUDY, "s", {"paretoFront": front}, "ns1"), 422)
    assert error.message.endswith("status.paretoFront: Too many: 11: must have at most 10 items")
    assert kube.patch_status(STUDY, "s", {"phase": "Running"}, "ns1")["status"] == {
        "phase": "Running"
    }


@pytest.mark.timeout(30)
def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(
    kube: KubeClient,
) -> None:
    body = study("s", maxTrials=5)  # snake/camel mistakes and misplaced fields vanish
    body["spec"]["trial"]["snake_case"] = True
    body["metadata"]["bogus"] = 1
    response = kube.session.post(kube.url(STUDY, "ns1"), json=body)
    assert response.status_code == 201
    created = response.json()
    assert "maxTrials" not in created["spec"] and "snake_case" not in created["spec"]["trial"]
    assert "bogus" not in created["metadata"] and created["metadata"]["name"] == "s"
    assert created["apiVersion"] == "kubetune.io/v1alpha1" and created["kind"] == "Study"
    warnings = response.headers["Warning"]
    assert 'unknown field \\"spec.maxTrials\\"' in warnings
    assert 'unknown field \\"spec.trial.snake_case\\"' in warnings
    # status fields the schema lacks are pruned too (e.g. kopf's handler results)
    after = kube.patch_status(STUDY, "s", {"phase": "Running", "kopf": {"x": 1}}, "ns1")
    assert after["status"] == {"phase": "Running"}
    # preserved subtrees keep anything
    kept = kube.patch(
        STUDY, "s", {"spec": {"sampler": {"name": "tpe", "args": {"x": {"y": 1}}}}}, "ns1"
    )
    assert kept["spec"]["sampler"]["args"] == {"x": {"y": 1}}
    strict = kube.session.post(
        kube.url(STUDY, "ns1"), json=study("t", maxTrials=5), params={"fieldValidation": "Strict"}
    )
    assert strict.status_code == 400
    assert strict.json()["message"] == (
        'Study in version "v1alpha1" cannot be handled as a Study: strict decoding error: '
        'unknown field "spec.maxTrials"'
    )


WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              code: {type: string, pattern: '^[a-z]+$', maxLength: 5}
              ratio: {type: number, minimum: 0, exclusiveMinimum: true, maximum: 1,
                      exclusiveMaximum: true}
              size: {type: integer, default: 3}
              mode: {type: string, enum: [a, b], default: a}
              labels:
                type: object
                minProperties: 1
                maxProperties: 2
                additionalProperties: {type: string}
              tags: {type: array, items: {type: string}, x-kubernetes-list-type: set}
              free: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


@pytest.mark.timeout(30)
def test_schema_keywords_and_defaults_on_a_crd_applied_through_the_api(kube: KubeClient) -> None:
    kube.apply_yaml(WIDGET_CRD)
    widgets = "example.com/v1/widgets"
    created = kube.create(widgets, {"metadata": {"name": "w"}, "spec": {"free": {"a": [1]}}})
    assert created["spec"] == {"free": {"a": [1]}, "size": 3, "mode": "a"}  # defaults
    cases = {
        "code": ("ABC", 'spec.code: Invalid value: "ABC": spec.code in body should match '
                        "'^[a-z]+$'"),
        "ratio": (1, "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"),
        "ratio ": (0, "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"),
        "tags ": (["x", None], 'spec.tags[1]: Invalid value: "null": spec.tags[1] in body must '
                               'be of type string: "null"'),
        "labels": ({}, "spec.labels: Invalid value: 0: spec.labels in body should have at least "
                       "1 properties"),
        "tags": (["x", "x"], 'spec.tags[1]: Duplicate value: "x"'),
    }  # fmt: skip
    for field, (value, message) in cases.items():
        body = {"metadata": {"name": "bad"}, "spec": {field.strip(): value}}
        error = refused(lambda body=body: kube.create(widgets, body), 422)
        assert error.message == f'Widget.example.com "bad" is invalid: {message}'
    error = refused(
        lambda: kube.create(
            widgets,
            {"metadata": {"name": "bad"}, "spec": {"labels": {"a": "1", "b": "2", "c": "3"}}},
        ),
        422,
    )
    assert error.message.endswith("spec.labels: Too many: 3: must have at most 2 items")
    error = refused(
        lambda: kube.create(widgets, {"metadata": {"name": "bad"}, "spec": {"code": "abcdef"}}),
        422,
    )
    assert error.message.endswith("spec.code: Too long: may not be more than 5 bytes")
    error = refused(
        lambda: kube.create(widgets, {"metadata": {"name": "bad"}, "spec": {"labels": {"a": 1}}}),
        422,
    )
    assert "spec.labels.a in body must be of type string" in error.message


# ----------------------------------------------------------------------------------------------
# 4. Pod validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_extended_resources_belong_in_limits(kube: KubeClient) -> None:
    def with_resources(name: str, resources: dict[str, Any]) -> dict[str, Any]:
        return pod(name, container={"resources": resources})

    error = refused(
        lambda: kube.create("pods", with_resources("g", {"requests": {"nvidia.com/gpu": 1}})), 422
    )
    assert error.message == (
        'Pod "g" is invalid: spec.containers[0].resources.limits: Required value: Limit must '
        "be set for non overcommitable resources"
    )
    unequal = {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "1"}}
    error = refused(lambda: kube.create("pods", with_resources("g", unequal)), 422)
    assert error.message == (
        'Pod "g" is invalid: spec.containers[0].resources.requests: Invalid value: "2": must '
        "be equal to nvidia.com/gpu limit of 1"
    )
    half = {"limits": {"nvidia.com/gpu": "0.5"}}
    error = refused(lambda: kube.create("pods", with_resources("g", half)), 422)
    assert 'resources.limits[nvidia.com/gpu]: Invalid value: "0.5": must be an integer' in (
        error.message
    )
    over = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    error = refused(lambda: kube.create("pods", with_resources("c", over)), 422)
    assert "must be less than or equal to cpu limit of 1" in error.message
    kube.create("pods", with_resources("a", {"limits": {"nvidia.com/gpu": 1}}))
    kube.create(
        "pods",
        with_resources("b", {"requests": {"nvidia.com/gpu": 1, "cpu": "500m"},
                             "limits": {"nvidia.com/gpu": 1}}),
    )  # fmt: skip


@pytest.mark.timeout(30)
def test_pod_fields_names_images_and_decoding(kube: KubeClient) -> None:
    nameless = pod("p", container={"name": ""})
    error = refused(lambda: kube.create("pods", nameless), 422)
    assert "spec.containers[0].name: Required value" in error.message
    imageless = pod("p")
    del imageless["spec"]["containers"][0]["image"]
    error = refused(lambda: kube.create("pods", imageless), 422)
    assert error.message == 'Pod "p" is invalid: spec.containers[0].image: Required value'
    error = refused(lambda: kube.create("pods", pod("p", restartPolicy="Sometimes")), 422)
    assert error.message == (
        'Pod "p" is invalid: spec.restartPolicy: Unsupported value: "Sometimes": supported '
        'values: "Always", "OnFailure", "Never"'
    )
    mounted = pod("p", container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]})
    error = refused(lambda: kube.create("pods", mounted), 422)
    assert 'spec.containers[0].volumeMounts[0].name: Not found: "data"' in error.message
    wrong_type = pod("p", container={"ports": [{"containerPort": "80"}]})
    error = refused(lambda: kube.create("pods", wrong_type), 400)
    assert error.message.startswith('Pod in version "v1" cannot be handled as a Pod: json: ')
    # unknown fields: dropped with a warning, or 400 when strict
    typo = pod("p", container={"imagePullPolicyy": "Always"})
    response = kube.session.post(kube.url("pods", "default"), json=typo)
    assert response.status_code == 201
    assert "imagePullPolicyy" not in response.json()["spec"]["containers"][0]
    assert "spec.containers[0].imagePullPolicyy" in response.headers["Warning"]
    strict = kube.session.post(
        kube.url("pods", "default"), json=pod("q", oops=1), params={"fieldValidation": "Strict"}
    )
    assert strict.status_code == 400
    assert strict.json()["message"].endswith('strict decoding error: unknown field "spec.oops"')


# ----------------------------------------------------------------------------------------------
# 5. Pod Security admission
# ----------------------------------------------------------------------------------------------

RESTRICTED_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.timeout(30)
def test_pod_security_restricted(kube: KubeClient) -> None:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    kube.create("namespaces", {"metadata": {"name": "locked", "labels": labels}})
    error = refused(lambda: kube.create("pods", pod("x"), "locked"), 403)
    assert error.message == (
        'pods "x" is forbidden: violates PodSecurity "restricted:latest": '
        'allowPrivilegeEscalation != false (container "trial" must set '
        "securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "
        '"trial" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true '
        '(pod or container "trial" must set securityContext.runAsNonRoot=true), seccompProfile '
        '(pod or container "trial" must set securityContext.seccompProfile.type to '
        '"RuntimeDefault" or "Localhost")'
    )
    kube.create("pods", pod("ok", container={"securityContext": RESTRICTED_CONTEXT}), "locked")
    # pod-level settings count for every container
    pod_level = pod(
        "ok2",
        securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        container={
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            }
        },
    )
    kube.create("pods", pod_level, "locked")
    root = pod("r", container={"securityContext": {**RESTRICTED_CONTEXT, "runAsUser": 0}})
    error = refused(lambda: kube.create("pods", root, "locked"), 403)
    assert error.message.endswith('runAsUser=0 (container "trial" must not set runAsUser=0)')


@pytest.mark.timeout(30)
def test_pod_security_baseline(kube: KubeClient) -> None:
    labels = {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "v1.30",
    }
    kube.create("namespaces", {"metadata": {"name": "base", "labels": labels}})
    kube.create("pods", pod("plain"), "base")  # baseline lets an ordinary pod in
    risky = pod(
        "x",
        hostNetwork=True,
        volumes=[{"name": "h", "hostPath": {"path": "/"}}],
        container={"securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}},
    )
    error = refused(lambda: kube.create("pods", risky, "base"), 403)
    assert error.message == (
        'pods "x" is forbidden: violates PodSecurity "baseline:v1.30": non-default capabilities '
        '(container "trial" must not include "SYS_ADMIN" in securityContext.capabilities.add), '
        'host namespaces (hostNetwork=true), hostPath volumes (volume "h"), privileged '
        '(container "trial" must not set securityContext.privileged=true)'
    )


# ----------------------------------------------------------------------------------------------
# 6. OwnerReferencesPermissionEnforcement
# ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_block_owner_deletion_needs_update_on_the_owners_finalizers(
    kube: KubeClient, kube_as: KubeAs
) -> None:
    make_robot(kube)
    owner = kube.create(STUDY, study("s"), "team")
    ref = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "name": "s",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "update", "patch"]}
    ]
    grant(kube, "team", rules)
    robot = kube_as("team", "robot")

    def owned(name: str, **changes: Any) -> dict[str, Any]:
        return {"metadata": {"name": name, "ownerReferences": [dict(ref, **changes)]}}

    error = refused(lambda: robot.create("configmaps", owned("c")), 403)
    assert error.message == (
        'configmaps "c" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers '
        "to a resource you can't set finalizers on: , <nil>"
    )
    robot.create("configmaps", owned("no-block", blockOwnerDeletion=False))
    # changing ownerReferences on update needs delete on the object itself
    error = refused(
        lambda: robot.patch("configmaps", "no-block", {"metadata": {"ownerReferences": None}}), 403
    )
    assert error.message == (
        'configmaps "no-block" is forbidden: cannot set an ownerRef on a resource you can\'t '
        "delete: , <nil>"
    )
    kube.create(
        f"{RBAC}/roles",
        {
            "metadata": {"name": "finalizers"},
            "rules": [
                {
                    "apiGroups": ["kubetune.io"],
                    "resources": ["studies/finalizers"],
                    "verbs": ["update"],
                }
            ],
        },
        "team",
    )
    kube.create(
        f"{RBAC}/rolebindings",
        {
            "metadata": {"name": "finalizers"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "finalizers",
            },
            "subjects": [{"kind": "ServiceAccount", "namespace": "team", "name": "robot"}],
        },
        "team",
    )
    robot.create("configmaps", owned("c"))
    kube.create("configmaps", owned("by-admin"), "team")  # a superuser always may


# ----------------------------------------------------------------------------------------------
# 7. HTTPS for in-cluster clients
# ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_in_cluster_client_over_https(
    kube: KubeClient, emulator_server: EmulatorServer, tmp_path: Path
) -> None:
    make_robot(kube)
    grant(kube, "team", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
    kube.create("pods", pod("p"), "team")
    # what a kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount, fetched as it
    # does (with the superuser token): a TokenRequest and the kube-root-ca.crt ConfigMap
    token = kube.core.create_namespaced_service_account_token(
        "robot", "team", {"spec": {"audiences": ["https://kubernetes.default.svc"]}}
    ).status.token
    ca = kube.core.read_namespaced_config_map("kube-root-ca.crt", "team").data["ca.crt"]
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_text(ca)
    assert ca == emulator_server.ca_path.read_text()

    configuration = kubernetes.client.Configuration()
    kubernetes.config.incluster_config.InClusterConfigLoader(
        token_filename=str(tmp_path / "token"),
        cert_filename=str(tmp_path / "ca.crt"),
        environ={
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(emulator_server.https_port),
        },
    ).load_and_set(configuration)
    assert configuration.host == emulator_server.https_url
    with kubernetes.client.ApiClient(configuration) as api_client:
        core = kubernetes.client.CoreV1Api(api_client)
        assert [p.metadata.name for p in core.list_namespaced_pod("team").items] == ["p"]
        with pytest.raises(kubernetes.client.ApiException) as e:
            core.list_namespaced_pod("default")
        assert e.value.status == 403
        with pytest.raises(kubernetes.client.ApiException) as e:
            core.list_namespaced_secret("team")
        assert e.value.status == 403
    # https needs the CA; a kubeconfig written for it works like the http one
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(emulator_server.https_url + "/version")
    https = KubeClient(emulator_server.write_kubeconfig(tmp_path / "kc", https=True))
    assert https.host.startswith("https://") and https.get("pods", "p", "team")
    https.close()
    assert yaml.safe_load((tmp_path / "kc").read_text())["clusters"][0]["cluster"][
        "certificate-authority"
    ] == str(emulator_server.ca_path)
