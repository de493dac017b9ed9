"""The pods: the operator as its contract says (args, env, probes, hardening), PostgreSQL with
its volume and Secret, the dashboard on the same storage, and no password outside the Secret."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from chart_support import NAMESPACE, VALUE_SETS, container, env_of, pod_spec

VALUE_SET_IDS = list(VALUE_SETS)
OPERATOR_CONFIG = Path(__file__).resolve().parents[2] / "operator/kubetune_operator/config.py"


def _operator(rendered: Any) -> dict[str, Any]:
    [deployment] = [m.doc for m in rendered.of_kind("Deployment") if m.name.endswith("-operator")]
    return deployment


def _hardened(c: dict[str, Any], pod: dict[str, Any]) -> None:
    security = c["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security.get("runAsNonRoot", pod["securityContext"].get("runAsNonRoot")) is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] != 0
    assert not security.get("privileged", False)


# ---------------------------------------------------------------------------- operator


@pytest.mark.parametrize("value_set", VALUE_SET_IDS)
def test_operator_pod_is_hardened(render: Any, value_set: str) -> None:
    deployment = _operator(render(VALUE_SETS[value_set]))
    pod = pod_spec(deployment)
    operator = container(deployment, "operator")
    _hardened(operator, pod)
    # Kopf gets a writable /tmp on the read-only root.
    mounts = {m["mountPath"]: m["name"] for m in operator["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert operator["resources"]["requests"] and operator["resources"]["limits"]["memory"]


@pytest.mark.parametrize("value_set", VALUE_SET_IDS)
def test_operator_probes_use_kopf_liveness_endpoint(render: Any, value_set: str) -> None:
    operator = container(_operator(render(VALUE_SETS[value_set])), "operator")
    args = operator["args"]
    assert args[args.index("--liveness") + 1] == "http://0.0.0.0:8080/healthz"
    assert operator["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "command" not in operator, "the command is the image's entrypoint, kubetune-operator"


@pytest.mark.parametrize(
    ("values", "expected_args", "strategy"),
    [
        ({}, ["--standalone", "--all-namespaces"], "Recreate"),
        (
            {"operator": {"replicas": 2}},
            ["--peering", "kubetune", "--all-namespaces"],
            "RollingUpdate",
        ),
        (
            {"watchNamespaces": ["team-a", "team-b"]},
            ["--standalone", "--namespace", "team-a", "--namespace", "team-b"],
            "Recreate",
        ),
        (
            {"watchNamespaces": ["team-a"], "operator": {"replicas": 3}},
            ["--peering", "kubetune", "--namespace", "team-a"],
            "RollingUpdate",
        ),
        (
            {"operator": {"peering": {"mode": "always", "name": "tuning"}}},
            ["--peering", "tuning", "--all-namespaces"],
            "RollingUpdate",
        ),
    ],
)
def test_operator_args_follow_replicas_and_namespaces(
    render: Any, values: dict[str, Any], expected_args: list[str], strategy: str
) -> None:
    deployment = _operator(render(values))
    args = container(deployment, "operator")["args"]
    assert args[: args.index("--liveness")] == expected_args
    assert deployment["spec"]["strategy"]["type"] == strategy
    assert deployment["spec"]["replicas"] == values.get("operator", {}).get("replicas", 1)


@pytest.mark.parametrize("value_set", VALUE_SET_IDS)
def test_operator_takes_the_deployments_args(render: Any, value_set: str) -> None:
    """The image's entrypoint, kubetune-operator, accepts what the Deployment passes
    (it once refused --standalone and crash-looped with the default values)."""
    from kubetune_operator.cli import _parser, kopf_arguments

    deployment = _operator(render(VALUE_SETS[value_set]))
    chart_args = container(deployment, "operator")["args"]
    kopf = kopf_arguments(_parser().parse_args(chart_args))
    peering = "--peering" in chart_args
    assert ("--standalone" in kopf) is not peering
    assert any(a.startswith("--peering=") for a in kopf) is peering
    assert "--liveness=http://0.0.0.0:8080/healthz" in kopf


@pytest.mark.parametrize(
    ("values", "kind", "namespaces"),
    [
        ({"operator": {"replicas": 2}}, "ClusterKopfPeering", [None]),
        (
            {"operator": {"replicas": 2}, "watchNamespaces": ["team-a", "team-b"]},
            "KopfPeering",
            ["team-a", "team-b"],
        ),
        ({}, None, []),
    ],
)
def test_peering_objects_exist_where_kopf_looks(
    render: Any, values: dict[str, Any], kind: str | None, namespaces: list[str | None]
) -> None:
    rendered = render(values)
    peerings = rendered.of_kind("ClusterKopfPeering") + rendered.of_kind("KopfPeering")
    assert sorted((p.kind, p.namespace or "") for p in peerings) == sorted(
        (kind, ns or "") for ns in namespaces
    )
    assert all(p.name == "kubetune" for p in peerings)


@pytest.mark.parametrize(
    ("value_set", "secret", "key"),
    [
        ("defaults", "kubetune-postgresql", "url"),
        ("external-database", "tuning-db", "dsn"),
        ("existing-postgres-secret", "my-postgres", "pg-url"),
    ],
)
def test_operator_env_is_the_contract(render: Any, value_set: str, secret: str, key: str) -> None:
    env = env_of(container(_operator(render(VALUE_SETS[value_set])), "operator"))
    assert env["KUBETUNE_STORAGE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": secret, "key": key}
    }
    assert env["KUBETUNE_TRIAL_IMAGE"]["value"] == "ghcr.io/kubetune/trial:0.1.0"
    assert env["KUBETUNE_TRIAL_SERVICE_ACCOUNT"]["value"] == "kubetune-trial"
    assert env["KUBETUNE_TRIAL_SERVICE_ACCOUNT_CREATE"]["value"] == "true"
    # Every variable the chart sets is one the operator reads.
    read = set(re.findall(r"KUBETUNE_[A-Z_]+", OPERATOR_CONFIG.read_text()))
    unread = {name for name in env if name.startswith("KUBETUNE_")} - read
    assert not unread, f"the operator reads none of {sorted(unread)}"
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_custom_images_reach_every_container(render: Any) -> None:
    rendered = render(VALUE_SETS["custom-images"])
    operator = container(_operator(rendered), "operator")
    assert operator["image"] == "registry.example.com/ml/kubetune-operator:1.2.3"
    assert operator["imagePullPolicy"] == "Always"
    assert env_of(operator)["KUBETUNE_TRIAL_IMAGE"]["value"] == (
        "registry.example.com/ml/trial-cuda@sha256:" + "ab" * 32
    )
    postgres = container(rendered.one("StatefulSet"), "postgresql")
    assert postgres["image"] == "registry.example.com/mirror/postgres:18.1-bookworm"
    dashboard = container(rendered.one("Deployment", "kubetune-dashboard"), "dashboard")
    assert dashboard["image"] == "registry.example.com/mirror/optuna-dashboard:v0.20.0"
    assert dashboard["imagePullPolicy"] == "Never"
    for workload in (
        _operator(rendered),
        rendered.one("StatefulSet"),
        rendered.one("Deployment", "kubetune-dashboard"),
    ):
        assert pod_spec(workload)["imagePullSecrets"] == [{"name": "registry-example"}]
    # The operator sets them on the trial ServiceAccounts it makes.
    assert env_of(operator)["KUBETUNE_TRIAL_IMAGE_PULL_SECRETS"]["value"] == "registry-example"


def test_default_images_are_pinned(render: Any) -> None:
    rendered = render({"dashboard": {"enabled": True}})
    assert container(_operator(rendered), "operator")["image"] == "ghcr.io/kubetune/operator:0.1.0"
    postgres = container(rendered.one("StatefulSet"), "postgresql")["image"]
    assert re.fullmatch(r"docker\.io/library/postgres:18\.\d+", postgres), postgres
    dashboard = container(rendered.one("Deployment", "kubetune-dashboard"), "dashboard")["image"]
    assert re.fullmatch(r"ghcr\.io/optuna/optuna-dashboard:v\d+\.\d+\.\d+", dashboard), dashboard


# -------------------------------------------------------------------------- PostgreSQL


def _secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_generated_secret_holds_password_and_url(render: Any) -> None:
    data = _secret_data(render({}).one("Secret", "kubetune-postgresql"))
    assert re.fullmatch(r"[A-Za-z0-9]{32}", data["password"])
    assert data["url"] == (
        f"postgresql://kubetune:{data['password']}@kubetune-postgresql.{NAMESPACE}.svc:5432/kubetune"
    )
    secret = render({}).one("Secret", "kubetune-postgresql")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_generated_password_reuses_the_live_secret() -> None:
    """Offline, ``lookup`` finds nothing; the template must still read the live Secret first."""
    from chart_support import CHART_DIR

    template = (CHART_DIR / "templates" / "postgresql-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in template
    assert template.index("lookup") < template.index("randAlphaNum")


@pytest.mark.parametrize("value_set", VALUE_SET_IDS)
def test_no_manifest_holds_a_password(render: Any, value_set: str) -> None:
    rendered = render(VALUE_SETS[value_set])
    secrets = rendered.of_kind("Secret")
    passwords = [_secret_data(s.doc)["password"] for s in secrets]
    for manifest in rendered.manifests:
        if manifest.kind == "Secret":
            continue
        text = repr(manifest.doc)
        for password in passwords:
            assert password not in text, f"{manifest.kind}/{manifest.name} holds the password"
        assert not re.search(r"postgres(ql)?(\+\w+)?://[^\s/]*:[^\s/@]+@", text), (
            f"{manifest.kind}/{manifest.name} holds a database URL with a password"
        )
    for password in passwords:
        assert password not in rendered.notes


def test_postgresql_statefulset(render: Any) -> None:
    rendered = render({})
    statefulset = rendered.one("StatefulSet", "kubetune-postgresql")
    pod = pod_spec(statefulset)
    postgres = container(statefulset, "postgresql")
    _hardened(postgres, pod)
    assert pod["securityContext"]["runAsUser"] == 999
    assert pod["securityContext"]["fsGroup"] == 999
    assert pod["automountServiceAccountToken"] is False
    env = env_of(postgres)
    assert env["POSTGRES_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "kubetune-postgresql", "key": "password"}
    }
    assert env["POSTGRES_USER"]["value"] == "kubetune" and env["POSTGRES_DB"]["value"] == "kubetune"
    # postgres 18 images keep PGDATA under /var/lib/postgresql/18/docker: mount the parent.
    mounts = {m["mountPath"]: m["name"] for m in postgres["volumeMounts"]}
    assert mounts["/var/lib/postgresql"] == "data"
    assert {"/var/run/postgresql", "/tmp"} <= set(mounts)
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert "storageClassName" not in claim["spec"]
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    assert statefulset["spec"]["serviceName"] == "kubetune-postgresql-hl"
    assert rendered.one("Service", "kubetune-postgresql-hl")["spec"]["clusterIP"] == "None"
    assert rendered.one("Service", "kubetune-postgresql")["spec"]["ports"][0]["port"] == 5432


def test_postgresql_volume_options(render: Any) -> None:
    custom = render(VALUE_SETS["everything-customised"]).one("StatefulSet")
    [claim] = custom["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert custom["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    assert "max_connections=500" in container(custom, "postgresql")["args"]
    ephemeral = render(VALUE_SETS["no-persistence"]).one("StatefulSet")
    assert "volumeClaimTemplates" not in ephemeral["spec"]
    volumes = {v["name"]: v for v in pod_spec(ephemeral)["volumes"]}
    assert "emptyDir" in volumes["data"]


def test_existing_postgres_secret_is_used_not_generated(render: Any) -> None:
    rendered = render(VALUE_SETS["existing-postgres-secret"])
    # Only the pooler's own Secret (its lookup role's password) is generated.
    assert [m.name for m in rendered.of_kind("Secret")] == ["kubetune-pooler"]
    env = env_of(container(rendered.one("StatefulSet"), "postgresql"))
    assert env["POSTGRES_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "my-postgres", "key": "pg-password"}
    }


def test_external_database_runs_no_postgresql(render: Any) -> None:
    rendered = render(VALUE_SETS["external-database"])
    assert not rendered.of_kind("StatefulSet") and not rendered.of_kind("Secret")
    assert [m.name for m in rendered.of_kind("Service")] == ["kubetune-dashboard"]


# --------------------------------------------------------------------------- dashboard


@pytest.mark.parametrize(
    ("value_set", "secret", "key"),
    [
        ("dashboard", "kubetune-postgresql", "url"),
        ("external-database", "tuning-db", "dsn"),
        ("existing-postgres-secret", "my-postgres", "pg-url"),
    ],
)
def test_dashboard_reads_the_storage_url_from_the_secret(
    render: Any, value_set: str, secret: str, key: str
) -> None:
    """Without tenants; with them, each namespace's own: test_chart_tenants.py."""
    rendered = render({**VALUE_SETS[value_set], "tenants": {"enabled": False}})
    deployment = rendered.one("Deployment", "kubetune-dashboard")
    dashboard = container(deployment, "dashboard")
    _hardened(dashboard, pod_spec(deployment))
    assert dashboard["args"][:3] == ["$(KUBETUNE_STORAGE_URL)", "--host", "0.0.0.0"]
    assert env_of(dashboard)["KUBETUNE_STORAGE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": secret, "key": key}
    }
    assert pod_spec(deployment)["automountServiceAccountToken"] is False
    service = rendered.one("Service", "kubetune-dashboard")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_dashboard_is_off_by_default(render: Any) -> None:
    assert [m.name for m in render({}).of_kind("Deployment")] == [
        "kubetune-operator",
        "kubetune-pooler",
    ]


@pytest.mark.parametrize("value_set", VALUE_SET_IDS)
def test_services_select_their_pods(render: Any, value_set: str) -> None:
    rendered = render(VALUE_SETS[value_set])
    workloads = rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")
    for service in rendered.of_kind("Service"):
        selector = service.doc["spec"]["selector"]
        matches = [
            w
            for w in workloads
            if selector.items() <= w.doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, f"Service {service.name} selects {len(matches)} workloads"
        ports = {p["name"] for c in pod_spec(matches[0].doc)["containers"] for p in c["ports"]}
        for port in service.doc["spec"]["ports"]:
            assert port["targetPort"] in ports
