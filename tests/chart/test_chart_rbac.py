"""The operator's RBAC: exactly the API calls of its contract, in the right scope for each way
of running it, and (when recorded) exactly the calls its e2e tests make.

The recorded calls live in ``tests/chart/operator_api_calls.json``, written by whoever records
them from the e2e tests.  Either a list of calls, or an object that also gives the chart values
matching how the recorded operator ran (the default: ``{}``, all namespaces, standalone)::

    [["kubetune.io", "studies", "watch"], ["", "pods", "create"], ...]
    {"values": {"operator": {"replicas": 2}}, "calls": [{"apiGroup": "", "resource": "pods",
     "verb": "create"}, ...]}

A call is (API group, resource, verb): the core group is "", a subresource is written
``studies/status``, and the verb is Kubernetes' (GET of one object: get; GET of a collection:
list; ``?watch=true``: watch; POST: create; PUT: update; PATCH: patch; DELETE: delete).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chart_support import NAMESPACE, VALUE_SETS, Rendered

Permission = tuple[str, str, str]  # (apiGroup, resource, verb)

RECORDED_CALLS = Path(__file__).resolve().parent / "operator_api_calls.json"


def _expand(rules: dict[tuple[str, str], str]) -> set[Permission]:
    return {(group, res, verb) for (group, res), verbs in rules.items() for verb in verbs.split()}


#: The operator's contract: what it calls in every namespace it serves.
SERVED_NAMESPACE = _expand(
    {
        ("kubetune.io", "studies"): "list watch patch",
        ("kubetune.io", "studies/status"): "patch",
        ("", "pods"): "list create delete patch",
        ("", "configmaps"): "create patch delete",
        ("", "secrets"): "get create delete",
        ("", "events"): "create",
        ("", "serviceaccounts"): "create",
    }
)
#: Needed though never called: the API server checks it when the operator sets
#: ``blockOwnerDeletion`` on the pods, Secrets and ConfigMaps a Study owns.
OWNER_REFERENCES = _expand({("kubetune.io", "studies/finalizers"): "update"})
#: Kopf's resource scanning, always cluster-wide.
CRD_SCANNING = _expand({("apiextensions.k8s.io", "customresourcedefinitions"): "list watch"})
CLUSTER_PEERING = _expand({("kopf.dev", "clusterkopfpeerings"): "list watch patch"})
NAMESPACED_PEERING = _expand({("kopf.dev", "kopfpeerings"): "list watch patch"})


def _permissions(rules: list[dict[str, Any]]) -> set[Permission]:
    found = set()
    for rule in rules:
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    found.add((group, resource, verb))
    return found


def _bound_to_operator(
    rendered: Rendered, kind: str, name: str, namespace: str | None, account: str
) -> bool:
    binding_kind = "ClusterRoleBinding" if kind == "ClusterRole" else "RoleBinding"
    for binding in rendered.of_kind(binding_kind):
        doc = binding.doc
        if binding.namespace != namespace or doc["roleRef"] != {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": kind,
            "name": name,
        }:
            continue
        assert doc["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
        return True
    return False


def _aggregated(role: dict[str, Any]) -> bool:
    labels = role["metadata"].get("labels") or {}
    return any(key.startswith("rbac.authorization.k8s.io/aggregate-to-") for key in labels)


RoleKey = tuple[str, str, str | None]  # (kind, name, namespace)
CLUSTER_ROLE: RoleKey = ("ClusterRole", "kubetune-operator", None)


def _roles(
    rendered: Rendered, account: str = "kubetune-operator"
) -> dict[RoleKey, list[dict[str, Any]]]:
    """The rules of every (Cluster)Role, each checked to be bound to the operator; the
    roles aggregated into Kubernetes' user roles are for people, bound to nobody."""
    roles = {}
    for kind in ("ClusterRole", "Role"):
        for role in rendered.of_kind(kind):
            if _aggregated(role.doc):
                continue
            assert _bound_to_operator(rendered, kind, role.name, role.namespace, account), role.name
            roles[(kind, role.name, role.namespace)] = role.doc["rules"]
    return roles


def effective_permissions(
    rendered: Rendered, account: str = "kubetune-operator"
) -> set[Permission]:
    """Everything the operator's ServiceAccount may do, wherever."""
    return set().union(*(_permissions(rules) for rules in _roles(rendered, account).values()))


# ------------------------------------------------------------------------ the contract


@pytest.mark.parametrize("replicas", [1, 2])
def test_all_namespaces_cluster_role_is_the_contract(render: Any, replicas: int) -> None:
    rendered = render({"operator": {"replicas": replicas}})
    roles = _roles(rendered)
    assert set(roles) == {CLUSTER_ROLE}, "serving all namespaces needs no Role"
    expected = (
        SERVED_NAMESPACE
        | OWNER_REFERENCES
        | CRD_SCANNING
        | (CLUSTER_PEERING if replicas > 1 else set())
    )
    granted = _permissions(roles[CLUSTER_ROLE])
    assert granted == expected, (
        f"missing: {sorted(expected - granted)}; not in the contract: {sorted(granted - expected)}"
    )
    assert not any("resourceNames" in rule for rule in roles[CLUSTER_ROLE])


@pytest.mark.parametrize("replicas", [1, 2])
def test_namespaced_roles_are_the_contract(render: Any, replicas: int) -> None:
    rendered = render({"watchNamespaces": ["team-a", "team-b"], "operator": {"replicas": replicas}})
    roles = _roles(rendered)
    assert set(roles) == {
        CLUSTER_ROLE,
        ("Role", "kubetune-operator", "team-a"),
        ("Role", "kubetune-operator", "team-b"),
    }
    assert _permissions(roles[CLUSTER_ROLE]) == CRD_SCANNING
    expected = SERVED_NAMESPACE | OWNER_REFERENCES | (NAMESPACED_PEERING if replicas > 1 else set())
    for namespace in ("team-a", "team-b"):
        assert _permissions(roles[("Role", "kubetune-operator", namespace)]) == expected


def test_served_release_namespace_needs_no_extra_role(render: Any) -> None:
    rendered = render(VALUE_SETS["namespaced-with-release-namespace"])
    assert set(_roles(rendered)) == {
        CLUSTER_ROLE,
        ("Role", "kubetune-operator", NAMESPACE),
        ("Role", "kubetune-operator", "team-a"),
    }


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_no_value_set_grants_more_than_the_contract(render: Any, value_set: str) -> None:
    values = VALUE_SETS[value_set]
    account = values.get("serviceAccount", {}).get("name") or (
        f"{values.get('fullnameOverride', 'kubetune')}-operator"
    )
    everything = (
        SERVED_NAMESPACE | OWNER_REFERENCES | CRD_SCANNING | CLUSTER_PEERING | NAMESPACED_PEERING
    )
    assert effective_permissions(render(values), account) <= everything


def test_rbac_can_be_left_to_the_cluster_admin(render: Any) -> None:
    rendered = render({"rbac": {"create": False}})
    assert not [m for m in rendered.manifests if m.doc["apiVersion"].startswith("rbac.")]


def test_studies_join_the_built_in_edit_admin_and_view_roles(render: Any) -> None:
    """Users of the SDK and CLI get Studies through the roles they already have."""
    roles = {m.name: m.doc for m in render().of_kind("ClusterRole")}
    edit, view = roles["kubetune-edit"], roles["kubetune-view"]
    aggregated = "rbac.authorization.k8s.io/aggregate-to-"
    assert edit["metadata"]["labels"][aggregated + "edit"] == "true"
    assert edit["metadata"]["labels"][aggregated + "admin"] == "true"
    assert view["metadata"]["labels"][aggregated + "view"] == "true"
    assert aggregated + "edit" not in view["metadata"]["labels"]
    assert {
        ("kubetune.io", "studies", verb)
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
    } <= _permissions(edit["rules"])
    assert _permissions(view["rules"]) == {
        ("kubetune.io", resource, verb)
        for resource in ("studies", "studies/status")
        for verb in ("get", "list", "watch")
    }
    # Nobody is bound to them directly: Kubernetes folds them into edit/admin/view.
    for binding in render().of_kind("RoleBinding") + render().of_kind("ClusterRoleBinding"):
        assert binding.doc["roleRef"]["name"] not in ("kubetune-edit", "kubetune-view")
    names = {m.name for m in render({"rbac": {"aggregateToDefaultRoles": False}}).manifests}
    assert not {"kubetune-edit", "kubetune-view"} & names


def test_trial_service_accounts_are_the_operators_to_make(render: Any) -> None:
    """The chart makes no trial ServiceAccount (the operator makes one in each Study's
    namespace), binds nothing to it, and hands the operator its settings."""
    values = {
        "watchNamespaces": ["team-a"],
        "trialServiceAccount": {
            "annotations": {"iam.gke.io/gcp-service-account": "trials@p.iam.gserviceaccount.com"},
            "imagePullSecrets": [{"name": "registry-a"}, {"name": "registry-b"}],
        },
    }
    rendered = render(values)
    assert not [m for m in rendered.of_kind("ServiceAccount") if m.name == "kubetune-trial"]
    for binding in rendered.of_kind("RoleBinding") + rendered.of_kind("ClusterRoleBinding"):
        assert all(s["name"] != "kubetune-trial" for s in binding.doc["subjects"])
    [deployment] = [m.doc for m in rendered.of_kind("Deployment") if m.name.endswith("operator")]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KUBETUNE_TRIAL_SERVICE_ACCOUNT"] == "kubetune-trial"
    assert json.loads(env["KUBETUNE_TRIAL_SERVICE_ACCOUNT_ANNOTATIONS"]) == {
        "iam.gke.io/gcp-service-account": "trials@p.iam.gserviceaccount.com"
    }
    assert env["KUBETUNE_TRIAL_IMAGE_PULL_SECRETS"] == "registry-a,registry-b"
    own = render({"trialServiceAccount": {"create": False, "name": "mine"}})
    [deployment] = [m.doc for m in own.of_kind("Deployment") if m.name.endswith("operator")]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KUBETUNE_TRIAL_SERVICE_ACCOUNT"] == "mine"
    assert env["KUBETUNE_TRIAL_SERVICE_ACCOUNT_CREATE"] == "false"
    default = render({"trialServiceAccount": {"create": False}})
    [deployment] = [m.doc for m in default.of_kind("Deployment") if m.name.endswith("operator")]
    names = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KUBETUNE_TRIAL_SERVICE_ACCOUNT" not in names


# ------------------------------------------------------------- the recorded e2e calls


def _recorded() -> tuple[dict[str, Any], set[Permission]]:
    data = json.loads(RECORDED_CALLS.read_text())
    values, calls = (
        ({}, data) if isinstance(data, list) else (data.get("values", {}), data["calls"])
    )
    recorded = set()
    for call in calls:
        if isinstance(call, dict):
            call = (call["apiGroup"], call["resource"], call["verb"])
        group, resource, verb = call
        recorded.add((group, resource, verb))
    return values, recorded


def test_rbac_is_exactly_the_calls_the_operator_makes_in_e2e(render: Any) -> None:
    if not RECORDED_CALLS.exists():
        pytest.skip(
            f"{RECORDED_CALLS.name} is not there yet: record the (apiGroup, resource, verb) of "
            "every API call the operator makes in the e2e tests into it (format in this "
            "module's docstring) to compare the chart's RBAC with them"
        )
    values, recorded = _recorded()
    granted = effective_permissions(render(values))
    missing = sorted(recorded - granted)
    unused = sorted(granted - recorded - OWNER_REFERENCES)
    assert not missing, f"the operator calls these, the chart does not allow them: {missing}"
    assert not unused, (
        f"the chart allows these, the operator never called them in e2e: {unused} "
        "(drop them from templates/_rbac.tpl, or cover them in the e2e tests)"
    )
