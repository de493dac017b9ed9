"""The chart's side of tenants: the operator is told to give each namespace its own
database, the dashboard shows one namespace's, and a NetworkPolicy lets only
kubetune's pods reach PostgreSQL (checked against the labels the operator really
puts on a trial pod)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from chart_support import NAMESPACE, container, env_of, pod_spec
from kubetune.study.spec import validate_spec
from kubetune_operator.config import OperatorConfig
from kubetune_operator.pods import trial_pod


def _matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # the chart uses matchLabels only
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def admits(policy: Mapping[str, Any], labels: Mapping[str, str], namespace: str) -> bool:
    """Whether the policy's ingress lets a pod with ``labels`` in ``namespace`` in
    (NetworkPolicy's rules: a peer with only podSelector is in the policy's namespace)."""
    policy_namespace = policy["metadata"]["namespace"]
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            if "namespaceSelector" not in peer and namespace != policy_namespace:
                continue
            if "namespaceSelector" in peer and peer["namespaceSelector"] != {}:
                raise AssertionError("only the empty namespaceSelector (every namespace) is used")
            if _matches(peer.get("podSelector") or {}, labels):
                return True
    return False


def a_trial_pod(namespace: str) -> dict[str, Any]:
    spec = validate_spec(
        {"objective": {"direction": "minimize"}, "trial": {"python": "train:objective"}}
    )
    meta = {"name": "lgbm", "namespace": namespace, "uid": "0000-1111"}
    return trial_pod(
        meta,
        spec,
        OperatorConfig(),
        optuna_name="x",
        secret=("lgbm-storage", "url"),
        worker_index=0,
    )


def test_the_operator_gives_each_namespace_its_own_database_unless_told_not_to(
    render: Any,
) -> None:
    operator = render({}).one("Deployment", "kubetune-operator")
    env = env_of(container(operator, "operator"))
    assert env["KUBETUNE_STORAGE_TENANTS"]["value"] == "true"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    off = render({"tenants": {"enabled": False}}).one("Deployment", "kubetune-operator")
    assert env_of(container(off, "operator"))["KUBETUNE_STORAGE_TENANTS"]["value"] == "false"


def test_only_kubetunes_pods_reach_postgresql(render: Any) -> None:
    rendered = render({"dashboard": {"enabled": True}})
    policy = rendered.one("NetworkPolicy", "kubetune-postgresql")
    database = pod_spec(rendered.one("StatefulSet", "kubetune-postgresql"))
    database_labels = rendered.one("StatefulSet", "kubetune-postgresql")["spec"]["template"][
        "metadata"
    ]["labels"]
    assert database
    assert _matches(policy["spec"]["podSelector"], database_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [5432]

    def template_labels(kind: str, name: str) -> dict[str, str]:
        return rendered.one(kind, name)["spec"]["template"]["metadata"]["labels"]

    assert admits(policy, template_labels("Deployment", "kubetune-operator"), NAMESPACE)
    assert admits(policy, template_labels("Deployment", "kubetune-dashboard"), NAMESPACE)
    trial = a_trial_pod("team-a")
    assert admits(policy, trial["metadata"]["labels"], "team-a")
    # Anything else is kept out: another namespace's pods, and the release namespace's own.
    assert not admits(policy, {"app": "web"}, "team-a")
    assert not admits(policy, {"app": "web"}, NAMESPACE)
    assert not admits(policy, template_labels("Deployment", "kubetune-operator"), "team-a")


@pytest.mark.parametrize(
    ("values", "secret"),
    [
        ({}, f"kubetune-tenant-{NAMESPACE}"),
        ({"dashboard": {"namespace": "team-a"}}, "kubetune-tenant-team-a"),
        ({"tenants": {"enabled": False}}, "kubetune-postgresql"),
    ],
)
def test_the_dashboard_shows_one_namespaces_database(
    render: Any, values: dict[str, Any], secret: str
) -> None:
    dashboard_values = {"enabled": True, **values.get("dashboard", {})}
    rendered = render({**values, "dashboard": dashboard_values})
    env = env_of(container(rendered.one("Deployment", "kubetune-dashboard"), "dashboard"))
    assert env["KUBETUNE_STORAGE_URL"]["valueFrom"]["secretKeyRef"]["name"] == secret
    assert env["KUBETUNE_STORAGE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"


def test_no_policy_without_the_bundled_postgresql(render: Any) -> None:
    rendered = render(
        {"postgresql": {"enabled": False}, "externalDatabase": {"existingSecret": "db"}}
    )
    assert not rendered.of_kind("NetworkPolicy")
