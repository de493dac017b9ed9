"""The chart's connection pooler: PgBouncer in transaction pooling mode in front of the
chart's PostgreSQL, the operator told to give trial pods its address (and to make its
lookup role), and the NetworkPolicies that let trial pods reach it and it reach
PostgreSQL. Rendered by Helm's own engine; pgbouncer.ini read as PgBouncer reads it.

(PgBouncer run from this very configuration, with a Study's pods going through it:
tests/e2e/test_pooler.py.)
"""

from __future__ import annotations

import base64
import configparser
from typing import Any

import pytest
from chart_support import NAMESPACE, container, env_of, pod_spec, refusal
from kubetune_operator.config import OperatorConfig
from kubetune_operator.tenants import POOLER_AUTH_QUERY
from test_chart_tenants import a_trial_pod, admits

POOLER = "kubetune-pooler"


def pgbouncer_ini(rendered: Any) -> configparser.ConfigParser:
    """The rendered pgbouncer.ini, parsed (PgBouncer's own format: ini, ';' comments)."""
    parser = configparser.ConfigParser(
        comment_prefixes=(";", "#"), interpolation=None, strict=True, delimiters=("=",)
    )
    parser.read_string(rendered.one("ConfigMap", POOLER)["data"]["pgbouncer.ini"])
    return parser


def secret_data(rendered: Any, name: str) -> dict[str, str]:
    data = rendered.one("Secret", name)["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def resolved_env(rendered: Any, c: dict[str, Any]) -> dict[str, str]:
    """A container's env as its process sees it: literal values, and Secret keys of the
    same render (what the kubelet would read)."""
    env = {}
    for name, item in env_of(c).items():
        if "value" in item:
            env[name] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            if any(m.name == ref["name"] for m in rendered.of_kind("Secret")):
                env[name] = secret_data(rendered, ref["name"])[ref["key"]]
    return env


def test_the_default_install_pools_trial_pods_transactions_for_a_thousand_clients(
    render: Any,
) -> None:
    rendered = render({})
    ini = pgbouncer_ini(rendered)
    pgbouncer = ini["pgbouncer"]
    assert pgbouncer["pool_mode"] == "transaction"
    assert int(pgbouncer["max_client_conn"]) >= 1000
    # 1,000 pods of one namespace within 50 server connections: its pool, plus the
    # lookups' pool in its database (at most as many again).
    assert 2 * int(pgbouncer["default_pool_size"]) <= 50
    assert pgbouncer["reserve_pool_size"] == "0"
    # Every database of the chart's PostgreSQL, under its own name.
    assert ini["databases"]["*"] == "host=kubetune-postgresql.kubetune.svc port=5432"

    deployment = rendered.one("Deployment", POOLER)
    pgb = container(deployment, "pgbouncer")
    assert pgb["image"] == "ghcr.io/cloudnative-pg/pgbouncer:1.25.2"
    assert pgb["command"] == ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
    mounts = {m["mountPath"]: m["name"] for m in pgb["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes[mounts["/etc/pgbouncer"]]["configMap"]["name"] == POOLER
    assert pgb["ports"] == [
        {"name": "pgbouncer", "containerPort": int(pgbouncer["listen_port"]), "protocol": "TCP"}
    ]
    service = rendered.one("Service", POOLER)
    assert service["spec"]["ports"][0]["port"] == int(pgbouncer["listen_port"]) == 6432
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # Runs as the image's non-root user on a read-only root (no Unix socket, no pidfile).
    assert pod_spec(deployment)["securityContext"]["runAsUser"] == 998
    assert pgb["securityContext"]["readOnlyRootFilesystem"] is True
    assert pgbouncer["unix_socket_dir"] == ""
    assert "pidfile" not in pgbouncer and "logfile" not in pgbouncer
    assert pod_spec(deployment)["automountServiceAccountToken"] is False


def test_pgbouncer_looks_tenants_up_with_the_operators_lookup(render: Any) -> None:
    rendered = render({})
    pgbouncer = pgbouncer_ini(rendered)["pgbouncer"]
    assert pgbouncer["auth_type"] == "scram-sha-256"
    assert pgbouncer["auth_query"] == POOLER_AUTH_QUERY
    assert pgbouncer["auth_user"] == pgbouncer["stats_users"] == "kubetune-pooler"
    # auth_file is the Secret's userlist.txt, mounted where the config says.
    deployment = rendered.one("Deployment", POOLER)
    mounts = {m["name"]: m["mountPath"] for m in container(deployment, "pgbouncer")["volumeMounts"]}
    [auth] = [v for v in pod_spec(deployment)["volumes"] if "secret" in v]
    assert auth["secret"]["secretName"] == POOLER
    [item] = auth["secret"]["items"]
    assert pgbouncer["auth_file"] == f"{mounts[auth['name']]}/{item['path']}"
    secret = secret_data(rendered, POOLER)
    assert len(secret["password"]) >= 32
    assert secret[item["key"]] == f'"kubetune-pooler" "{secret["password"]}"\n'


def test_the_operator_gives_trial_pods_the_poolers_address_and_makes_its_role(
    render: Any,
) -> None:
    rendered = render({})
    operator = container(rendered.one("Deployment", "kubetune-operator"), "operator")
    env = env_of(operator)
    assert env["KUBETUNE_POOLER_AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": POOLER,
        "key": "password",
    }
    config = OperatorConfig.from_env(resolved_env(rendered, operator))
    service = rendered.one("Service", POOLER)
    assert config.trial_storage_host == f"{service['metadata']['name']}.{NAMESPACE}.svc"
    assert config.trial_storage_port == service["spec"]["ports"][0]["port"]
    assert config.pooler_auth_user == pgbouncer_ini(rendered)["pgbouncer"]["auth_user"]
    assert config.pooler_auth_password == secret_data(rendered, POOLER)["password"]
    # The operator's own URL stays the direct one (its LISTEN needs a session).
    assert env["KUBETUNE_STORAGE_URL"]["valueFrom"]["secretKeyRef"]["name"] == (
        "kubetune-postgresql"
    )
    assert config.storage_tenants is True


def test_the_values_shape_the_pooler(render: Any) -> None:
    rendered = render(
        {
            "pooler": {
                "image": {"repository": "registry.example.com/mirror/pgbouncer", "tag": "1.24.1"},
                "replicas": 2,
                "port": 7432,
                "poolSize": 10,
                "maxClientConnections": 5000,
                "serverIdleTimeout": 30,
                "queryWaitTimeout": 300,
                "auth": {"username": "tuning-pooler"},
                "extraSettings": {"log_connections": 0, "server_tls_sslmode": "require"},
                "resources": {"limits": {"memory": "128Mi", "cpu": "1"}},
                "nodeSelector": {"kubernetes.io/os": "linux"},
            },
            "postgresql": {"service": {"port": 5433}},
        }
    )
    pgbouncer = pgbouncer_ini(rendered)["pgbouncer"]
    assert pgbouncer["listen_port"] == "7432"
    assert pgbouncer["default_pool_size"] == "10"
    assert pgbouncer["max_client_conn"] == "5000"
    assert pgbouncer["server_idle_timeout"] == "30"
    assert pgbouncer["query_wait_timeout"] == "300"
    assert pgbouncer["auth_user"] == "tuning-pooler"
    assert pgbouncer["log_connections"] == "0"
    assert pgbouncer["server_tls_sslmode"] == "require"
    assert pgbouncer_ini(rendered)["databases"]["*"].endswith("port=5433")
    deployment = rendered.one("Deployment", POOLER)
    assert deployment["spec"]["replicas"] == 2
    pgb = container(deployment, "pgbouncer")
    assert pgb["image"] == "registry.example.com/mirror/pgbouncer:1.24.1"
    assert pgb["resources"]["limits"] == {"memory": "128Mi", "cpu": "1"}
    assert pod_spec(deployment)["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert rendered.one("Service", POOLER)["spec"]["ports"][0]["port"] == 7432
    env = env_of(container(rendered.one("Deployment", "kubetune-operator"), "operator"))
    assert env["KUBETUNE_TRIAL_STORAGE_PORT"]["value"] == "7432"
    assert env["KUBETUNE_POOLER_AUTH_USER"]["value"] == "tuning-pooler"
    assert secret_data(rendered, POOLER)["userlist.txt"].startswith('"tuning-pooler" ')


def test_a_changed_configuration_rolls_the_pooler(render: Any) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = render(values).one("Deployment", POOLER)
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) != checksum({"pooler": {"poolSize": 5}})


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"pooler": {"enabled": False}}, None),
        ({"tenants": {"enabled": False}}, "it needs tenants.enabled"),
        (
            {"postgresql": {"enabled": False}, "externalDatabase": {"existingSecret": "db"}},
            "set pooler.server.host",
        ),
    ],
)
def test_without_the_pooler_trial_pods_connect_directly(
    render: Any, values: dict[str, Any], why: str | None
) -> None:
    rendered = render(values)
    assert not [m for m in rendered.manifests if POOLER in m.name]
    env = env_of(container(rendered.one("Deployment", "kubetune-operator"), "operator"))
    assert not {k for k in env if "POOLER" in k or "TRIAL_STORAGE" in k}
    if why:
        assert why in rendered.notes
    else:
        assert "PgBouncer" not in rendered.notes


def test_the_pooler_can_front_a_database_of_your_own(render: Any) -> None:
    rendered = render(
        {
            "postgresql": {"enabled": False},
            "externalDatabase": {"existingSecret": "db"},
            "pooler": {"server": {"host": "tuning-db.example.com", "port": 6543}},
        }
    )
    assert pgbouncer_ini(rendered)["databases"]["*"] == "host=tuning-db.example.com port=6543"
    assert "Trial pods reach PostgreSQL through PgBouncer" in rendered.notes
    assert not [m for m in rendered.of_kind("NetworkPolicy") if "postgresql" in m.name]


def test_only_trial_pods_reach_the_pooler_and_the_pooler_reaches_postgresql(
    render: Any,
) -> None:
    rendered = render({"dashboard": {"enabled": True}})

    def template_labels(kind: str, name: str) -> dict[str, str]:
        return rendered.one(kind, name)["spec"]["template"]["metadata"]["labels"]

    pooler_policy = rendered.one("NetworkPolicy", POOLER)
    database_policy = rendered.one("NetworkPolicy", "kubetune-postgresql")
    pooler_labels = template_labels("Deployment", POOLER)
    trial = a_trial_pod("team-a")["metadata"]["labels"]

    assert pooler_policy["spec"]["podSelector"]["matchLabels"].items() <= pooler_labels.items()
    assert [p["port"] for r in pooler_policy["spec"]["ingress"] for p in r["ports"]] == [6432]
    assert admits(pooler_policy, trial, "team-a")
    assert admits(pooler_policy, trial, NAMESPACE)
    assert not admits(pooler_policy, {"app": "web"}, "team-a")
    assert not admits(pooler_policy, template_labels("Deployment", "kubetune-dashboard"), NAMESPACE)

    assert admits(database_policy, pooler_labels, NAMESPACE)
    assert not admits(database_policy, pooler_labels, "team-a")  # the release's pooler only
    # Trial pods keep their direct way in: a Study started before the pooler keeps its URL.
    assert admits(database_policy, trial, "team-a")


def test_no_pooler_policy_when_policies_are_off(render: Any) -> None:
    rendered = render({"pooler": {"networkPolicy": {"enabled": False}}})
    assert [m.name for m in rendered.of_kind("NetworkPolicy")] == ["kubetune-postgresql"]
    assert rendered.one("Deployment", POOLER)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"pooler": {"poolSize": 0}}, ["/pooler/poolSize", "minimum"]),
        ({"pooler": {"maxClientConnections": "many"}}, ["/pooler/maxClientConnections"]),
        ({"pooler": {"auth": {"username": 'x" "y'}}}, ["/pooler/auth/username"]),
        ({"pooler": {"server": {"host": "db port=1"}}}, ["/pooler/server/host"]),
        ({"pooler": {"extraSettings": {"listen port": 1}}}, ["/pooler/extraSettings"]),
        ({"pooler": {"poolsize": 5}}, ["pooler", "poolsize"]),
    ],
    ids=lambda v: str(v)[:60] if isinstance(v, dict) else "",
)
def test_wrong_pooler_values_fail_naming_the_value(
    chart: Any, values: dict[str, Any], expected: list[str]
) -> None:
    message = refusal(chart, values)
    for part in expected:
        assert part in message, message


def test_the_lookup_roles_password_can_come_from_a_secret_of_your_own(render: Any) -> None:
    """For `helm template` (GitOps), where a generated password would change on every
    render while the running PgBouncer and operator kept the old one."""
    rendered = render({"pooler": {"auth": {"existingSecret": "pooler-auth"}}})
    assert not [m for m in rendered.of_kind("Secret") if m.name == POOLER]
    deployment = rendered.one("Deployment", POOLER)
    [auth] = [v for v in pod_spec(deployment)["volumes"] if "secret" in v]
    assert auth["secret"]["secretName"] == "pooler-auth"
    assert auth["secret"]["items"] == [{"key": "userlist.txt", "path": "userlist.txt"}]
    env = env_of(container(rendered.one("Deployment", "kubetune-operator"), "operator"))
    assert env["KUBETUNE_POOLER_AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "pooler-auth",
        "key": "password",
    }
