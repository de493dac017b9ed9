"""Tenants: a database and a role of its own for each namespace's Studies.

The operator holds the only administrative database URL (the chart's Secret, in the
operator's namespace). A Study that names no storage of its own gets its
namespace's tenant: a PostgreSQL role that may log in and nothing more (no
superuser, no CREATEDB, no CREATEROLE), owning a database that no other role may
connect to. The Study's trial pods are given that role's URL only, so user code in
namespace A cannot read or change namespace B's studies, cannot create roles or
databases, and cannot run ``COPY ... FROM PROGRAM`` (which needs a superuser or
``pg_execute_server_program``).

The tenant's credentials are kept in a Secret ``kubetune-tenant-<namespace>`` in the
operator's namespace (its source of truth: a restarted operator reuses them) and
copied into each Study's ``<study>-storage`` Secret, as the shared URL was before.
Database and role share one name, ``<admin database>_<namespace>`` (``-`` made
``_``; cut and suffixed with a digest past PostgreSQL's 63 characters), so two
installs on one server, or two test databases, never share a tenant.

The administrative role must be a superuser or hold CREATEDB and CREATEROLE (on
PostgreSQL 16 and later, with ``createrole_self_grant = 'set'`` so that it may make
the new role a database's owner). The chart's PostgreSQL user is its superuser.

Example:
    >>> tenant_name("kubetune", "team-a")
    'kubetune_team_a'
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubetune.engine.storage import password_of, redact, sqlalchemy_url
from kubetune.study.names import MANAGED_BY_LABEL

if TYPE_CHECKING:
    from kubetune_operator.kube import KubeCalls

#: PostgreSQL's longest identifier, in bytes (the names are ASCII).
MAX_IDENTIFIER = 63
#: The Secret in the operator's namespace holding a namespace's tenant URL.
TENANT_SECRET_PREFIX = "kubetune-tenant-"
#: The label naming the namespace a tenant Secret serves.
TENANT_NAMESPACE_LABEL = "kubetune.io/tenant-namespace"


class TenantUnavailable(Exception):
    """The tenant could not be made; the message names no password."""


@dataclass(frozen=True)
class Tenant:
    """A namespace's database and role (``database`` names both) and its URL."""

    namespace: str
    database: str
    url: str


def tenant_name(admin_database: str, namespace: str) -> str:
    """The database and role name of ``namespace``'s tenant."""
    name = f"{admin_database}_{namespace}".replace("-", "_").lower()
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_IDENTIFIER - 9]}_{digest}"


def tenant_secret(namespace: str) -> str:
    return f"{TENANT_SECRET_PREFIX}{namespace}"


class Tenants:
    """The tenants of the database at ``admin_url``, made on first use and kept in
    Secrets in ``operator_namespace``."""

    def __init__(self, admin_url: str, kube: KubeCalls, operator_namespace: str) -> None:
        from sqlalchemy.engine import make_url

        self._admin_url = sqlalchemy_url(admin_url)
        parsed = make_url(self._admin_url)
        if not parsed.get_backend_name().startswith("postgresql") or not parsed.database:
            raise ValueError(
                f"tenants need a PostgreSQL URL naming a database, not {redact(admin_url)}"
            )
        self._admin = parsed
        self._kube = kube
        self._namespace = operator_namespace
        self._known: dict[str, Tenant] = {}
        self._lock = threading.Lock()

    @property
    def admin_database(self) -> str:
        return str(self._admin.database)

    def tenant(self, namespace: str) -> Tenant:
        """``namespace``'s tenant, made (role, database, Secret) if it does not exist."""
        with self._lock:
            known = self._known.get(namespace)
            if known is not None:
                return known
            name = tenant_name(self.admin_database, namespace)
            url = self._kube.read_secret_value(self._namespace, tenant_secret(namespace), "url")
            password = password_of(url) if url else None
            if not password:
                password = secrets.token_urlsafe(24)
                url = self._url_of(name, password)
            assert url is not None
            # Every time the operator starts: the role and database exist with this
            # password even if the server's data was replaced since.
            self._provision(name, password)
            self._kube.ensure_secret(
                self._namespace,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": tenant_secret(namespace),
                        "labels": {
                            MANAGED_BY_LABEL: "kubetune",
                            TENANT_NAMESPACE_LABEL: namespace,
                        },
                    },
                    "type": "Opaque",
                    "stringData": {"url": url},
                },
            )
            tenant = Tenant(namespace=namespace, database=name, url=url)
            self._known[namespace] = tenant
            return tenant

    def _url_of(self, name: str, password: str) -> str:
        url = self._admin.set(username=name, password=password, database=name)
        return url.render_as_string(hide_password=False)

    def _provision(self, name: str, password: str) -> None:
        """Create (or repair) the role and its database; only the role may connect."""
        import sqlalchemy

        # AUTOCOMMIT: CREATE DATABASE cannot run inside a transaction. hide_parameters:
        # the password is a parameter, and an error must not print it.
        engine = sqlalchemy.create_engine(
            self._admin_url,
            isolation_level="AUTOCOMMIT",
            poolclass=sqlalchemy.pool.NullPool,
            hide_parameters=True,
        )
        role = _quoted(name)
        try:
            with engine.connect() as db:
                exists = db.execute(
                    sqlalchemy.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": name}
                ).first()
                verb = "ALTER" if exists else "CREATE"
                db.execute(
                    sqlalchemy.text(
                        f"{verb} ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                        "NOREPLICATION NOBYPASSRLS NOINHERIT PASSWORD :password"
                    ),
                    {"password": password},
                )
                has_database = db.execute(
                    sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                    {"name": name},
                ).first()
                if not has_database:
                    db.execute(sqlalchemy.text(f"CREATE DATABASE {role} OWNER {role}"))
                db.execute(sqlalchemy.text(f"REVOKE ALL ON DATABASE {role} FROM PUBLIC"))
                # Studies from before tenants stay in the administrative database:
                # no tenant may connect to it.
                db.execute(
                    sqlalchemy.text(
                        f"REVOKE ALL ON DATABASE {_quoted(self.admin_database)} FROM PUBLIC"
                    )
                )
        except sqlalchemy.exc.SQLAlchemyError as error:
            reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
            raise TenantUnavailable(
                f"cannot make the tenant {name!r} on {redact(self._admin_url)}: "
                f"{reason.replace(password, '***')}"
            ) from None
        finally:
            engine.dispose()


def _quoted(identifier: str) -> str:
    """A PostgreSQL identifier in double quotes (tenant names are [a-z0-9_])."""
    return '"' + identifier.replace('"', '""') + '"'
