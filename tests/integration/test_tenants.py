"""Tenants on a real PostgreSQL that asks for passwords: each namespace's role and
database, what its URL can and cannot do, and what survives an operator restart;
and the same through a real PgBouncer that looks the tenants up as the chart's does.

(The operator handing these URLs to trial pods, end to end: tests/e2e/test_tenant_pods.py,
and through the chart's PgBouncer: tests/e2e/test_pooler.py.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import optuna
import psycopg2
import pytest
from harness.db_probe import TENANT_MAY, connect_args, tenant_attempts
from kubetune_operator.tenants import (
    POOLER_SCHEMA,
    Pooler,
    Tenants,
    TenantUnavailable,
    tenant_name,
    tenant_secret,
)
from pgbouncer_server import PgBouncer, free_tcp_port, pgbouncer_binary
from sqlalchemy.engine import make_url

OPERATOR_NAMESPACE = "kubetune-system"


class SecretStore:
    """The two Kubernetes calls tenants make, over Secrets kept in memory."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        return (self.secrets.get((namespace, name)) or {}).get("stringData", {}).get(key)

    def ensure_secret(self, namespace: str, body: Mapping[str, Any]) -> None:
        self.secrets.setdefault((namespace, body["metadata"]["name"]), dict(body))


@pytest.fixture
def admin_url(password_storage_url: str) -> str:
    return password_storage_url


def test_each_namespace_reaches_its_own_studies_and_nothing_else(admin_url: str) -> None:
    secrets = SecretStore()
    tenants = Tenants(admin_url, secrets, OPERATOR_NAMESPACE)  # type: ignore[arg-type]
    team_a, team_b = tenants.tenant("team-a"), tenants.tenant("team-b")
    admin_database = str(make_url(admin_url).database)
    assert team_a.database == f"{admin_database}_team_a"
    assert make_url(team_a.url).username == team_a.database
    assert make_url(team_a.url).password != make_url(team_b.url).password

    optuna.create_study(study_name="a-study", storage=team_a.url).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2
    )
    optuna.create_study(study_name="b-study", storage=team_b.url)
    assert optuna.get_all_study_names(storage=team_a.url) == ["a-study"]
    assert optuna.get_all_study_names(storage=team_b.url) == ["b-study"]

    assert (
        tenant_attempts(
            team_a.url,
            other=team_b.database,
            other_user=team_b.database,
            admin_database=admin_database,
        )
        == TENANT_MAY
    )
    # The credentials live in the operator's namespace, one Secret per tenant.
    assert set(secrets.secrets) == {
        (OPERATOR_NAMESPACE, tenant_secret("team-a")),
        (OPERATOR_NAMESPACE, tenant_secret("team-b")),
    }


def test_the_probe_sees_what_a_superuser_may_do(admin_url: str) -> None:
    """The attempts above are real: with the administrative URL they succeed."""
    admin_database = str(make_url(admin_url).database)
    other = Tenants(admin_url, SecretStore(), OPERATOR_NAMESPACE).tenant("other")  # type: ignore[arg-type]
    seen = tenant_attempts(
        admin_url, other=other.database, other_user="postgres", admin_database=admin_database
    )
    try:
        assert seen["connect to the other tenant's database"] == "allowed"
        assert seen["create a role"] == "allowed"
        assert seen["create a database"] == "allowed"
        assert seen["run a program (COPY FROM PROGRAM)"] == "allowed"
    finally:
        import psycopg2

        connection = psycopg2.connect(**connect_args(admin_url))
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS intruder")
            cursor.execute("DROP ROLE IF EXISTS intruder")
        connection.close()


def test_a_restarted_operator_keeps_each_tenants_credentials(admin_url: str) -> None:
    secrets = SecretStore()
    first = Tenants(admin_url, secrets, OPERATOR_NAMESPACE).tenant("team-a")  # type: ignore[arg-type]
    optuna.create_study(study_name="kept", storage=first.url)
    again = Tenants(admin_url, secrets, OPERATOR_NAMESPACE).tenant("team-a")  # type: ignore[arg-type]
    assert again == first
    assert optuna.get_all_study_names(storage=again.url) == ["kept"]


def test_a_tenant_that_cannot_be_made_names_no_password(admin_url: str) -> None:
    """An administrative URL without the right to create roles: a clear error, and
    neither password in it."""
    tenant = Tenants(admin_url, SecretStore(), OPERATOR_NAMESPACE).tenant("team-a")  # type: ignore[arg-type]
    weak = Tenants(tenant.url, SecretStore(), OPERATOR_NAMESPACE)  # type: ignore[arg-type]
    with pytest.raises(TenantUnavailable) as raised:
        weak.tenant("team-b")
    message = str(raised.value)
    assert "cannot make the tenant" in message and "permission denied" in message
    assert str(make_url(tenant.url).password) not in message
    assert str(make_url(admin_url).password) not in message


def test_long_namespaces_get_distinct_names_within_postgresqls_limit() -> None:
    first = tenant_name("kubetune", "a" * 60 + "-one")
    second = tenant_name("kubetune", "a" * 60 + "-two")
    assert first != second
    assert len(first) <= 63 and len(second) <= 63
    assert tenant_name("kubetune", "team-a") == "kubetune_team_a"


# ----------------------------------------------------------- through the pooler


@pytest.fixture
def pooled(admin_url: str, password_postgres: str) -> Iterator[tuple[Tenants, PgBouncer]]:
    """Tenants whose pods' URLs name a real PgBouncer (TCP on 127.0.0.1), which knows no
    role but its own and looks each tenant up with the operator's lookup."""
    if pgbouncer_binary() is None:
        pytest.skip("no pgbouncer here (Debian: apt-get install pgbouncer; scripts/test-host.sh)")
    # A role of its own per test database: tests share the server.
    auth_user = f"{make_url(admin_url).database}-pooler"
    with PgBouncer(
        password_postgres,
        auth_user=auth_user,
        auth_password="lookup-" + auth_user,
        tcp_port=free_tcp_port(),
        pool_size=4,
    ) as bouncer:
        pooler = Pooler("127.0.0.1", bouncer.port, auth_user, bouncer.auth_password)
        yield Tenants(admin_url, SecretStore(), OPERATOR_NAMESPACE, pooler=pooler), bouncer  # type: ignore[arg-type]


def test_through_the_pooler_each_namespace_still_reaches_only_its_own_studies(
    admin_url: str, pooled: tuple[Tenants, PgBouncer]
) -> None:
    tenants, bouncer = pooled
    team_a, team_b = tenants.tenant("team-a"), tenants.tenant("team-b")
    pod_url = make_url(team_a.pod_url)
    assert (pod_url.host, pod_url.port) == ("127.0.0.1", bouncer.port)
    assert (pod_url.username, pod_url.database) == (team_a.database, team_a.database)
    assert "host" not in pod_url.query  # the direct URL's socket folder is gone
    assert tenants.pod_url(team_a.url) == team_a.pod_url
    assert tenants.pod_url(admin_url) == admin_url  # not a tenant's: as it is

    optuna.create_study(study_name="a-study", storage=team_a.pod_url).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=3
    )
    assert optuna.get_all_study_names(storage=team_a.pod_url) == ["a-study"]
    assert len(optuna.load_study(study_name="a-study", storage=team_a.url).trials) == 3
    admin_database = str(make_url(admin_url).database)
    assert (
        tenant_attempts(
            team_a.pod_url,
            other=team_b.database,
            other_user=team_b.database,
            admin_database=admin_database,
        )
        == TENANT_MAY
    )
    # It went through PgBouncer, as team-a's role; the attempt on team-b's role (with
    # team-a's password) got a pool entry but never a server connection.
    pools = {(p["database"], p["user"]): p for p in bouncer.show("POOLS")}
    assert (team_a.database, team_a.database) in pools
    stats = {s["database"]: s for s in bouncer.show("STATS")}
    assert int(stats[team_a.database]["total_xact_count"]) > 0  # type: ignore[call-overload]
    opened = ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
    b_pool = pools.get((team_b.database, team_b.database), {})
    assert all(b_pool.get(k, 0) == 0 for k in opened)


def test_the_pooler_role_learns_one_verifier_per_database_and_reads_no_data(
    admin_url: str, pooled: tuple[Tenants, PgBouncer]
) -> None:
    """What PgBouncer's own credentials could do if they leaked: in a tenant's database,
    look up that tenant's password verifier (not the password) and nothing else."""
    tenants, bouncer = pooled
    team_a, team_b = tenants.tenant("team-a"), tenants.tenant("team-b")
    optuna.create_study(study_name="a-study", storage=team_a.url)
    admin = make_url(admin_url)
    as_pooler = make_url(team_a.url).set(username=bouncer.auth_user, password=bouncer.auth_password)

    def lookup(role: str) -> list[tuple[Any, ...]]:
        connection = psycopg2.connect(**connect_args(as_pooler.render_as_string(False)))
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT * FROM {POOLER_SCHEMA}.lookup(%s)", (role,))
                return cursor.fetchall()
        finally:
            connection.close()

    [(user, verifier)] = lookup(team_a.database)
    assert user == team_a.database and verifier.startswith("SCRAM-SHA-256$")
    assert str(make_url(team_a.url).password) not in verifier
    assert lookup(team_b.database) == []  # another tenant's role: not here
    assert lookup(str(admin.username)) == []  # a superuser: never
    assert lookup(str(bouncer.auth_user)) == []

    connection = psycopg2.connect(**connect_args(as_pooler.render_as_string(False)))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cursor.execute("SELECT count(*) FROM studies")
    finally:
        connection.close()
    with pytest.raises(psycopg2.OperationalError, match="permission denied"):
        psycopg2.connect(
            **connect_args(as_pooler.set(database=str(admin.database)).render_as_string(False))
        )


def test_a_schema_the_tenant_made_in_the_lookups_place_is_refused(
    pooled: tuple[Tenants, PgBouncer], password_postgres: str
) -> None:
    """A tenant owns its database, so it could make the lookup's schema first (after its
    database was made by an operator without the pooler): the operator will not put a
    SECURITY DEFINER function in it."""
    tenants, _bouncer = pooled
    admin_url = tenants._admin_url
    before = Tenants(admin_url, SecretStore(), OPERATOR_NAMESPACE).tenant("team-c")  # type: ignore[arg-type]
    connection = psycopg2.connect(**connect_args(before.url))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {POOLER_SCHEMA}")
    connection.close()
    with pytest.raises(TenantUnavailable, match="belongs to another role"):
        tenants.tenant("team-c")


def test_the_pooler_lookup_needs_a_superuser_operator(
    admin_url: str, pooled: tuple[Tenants, PgBouncer]
) -> None:
    tenants, bouncer = pooled
    weak_admin = tenants.tenant("team-a").url  # a tenant's URL: no superuser
    weak = Tenants(
        weak_admin,
        SecretStore(),  # type: ignore[arg-type]
        OPERATOR_NAMESPACE,
        pooler=Pooler("127.0.0.1", bouncer.port, bouncer.auth_user, bouncer.auth_password),
    )
    with pytest.raises(TenantUnavailable) as raised:
        weak.tenant("team-d")
    assert str(bouncer.auth_password) not in str(raised.value)
