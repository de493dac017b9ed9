"""Tenants on a real PostgreSQL that asks for passwords: each namespace's role and
database, what its URL can and cannot do, and what survives an operator restart.

(The operator handing these URLs to trial pods, end to end: tests/e2e/test_tenant_pods.py.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
import pytest
from harness.db_probe import TENANT_MAY, connect_args, tenant_attempts
from kubetune_operator.tenants import Tenants, TenantUnavailable, tenant_name, tenant_secret
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
