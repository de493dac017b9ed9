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

Behind a connection pooler (the chart's PgBouncer, ``Pooler``), trial pods are given
the pooler's address instead of the database's (``Tenant.pod_url``), and PgBouncer,
which has no list of the tenants' roles, looks each one up when it logs in
(``auth_query`` as the role ``Pooler.auth_user``). PgBouncer before 1.19 runs that
query in the database the client asked for, so every tenant database gets the lookup,
a ``SECURITY DEFINER`` function owned by the operator's (superuser) role in a schema
the tenant does not own. It answers for one role only: the one owning the database
it runs in, never a superuser. So the pooler's role learns nothing but each tenant's
own password verifier, in that tenant's own database, and can read no table;
and a tenant's URL through the pooler opens its own database only, as it does direct.

Example:
    >>> tenant_name("kubetune", "team-a")
    'kubetune_team_a'
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubetune.engine.storage import password_of, redact, sqlalchemy_url
from kubetune.study.names import MANAGED_BY_LABEL

if TYPE_CHECKING:
    import sqlalchemy.engine

    from kubetune_operator.kube import KubeCalls

#: PostgreSQL's longest identifier, in bytes (the names are ASCII).
MAX_IDENTIFIER = 63
#: The Secret in the operator's namespace holding a namespace's tenant URL.
TENANT_SECRET_PREFIX = "kubetune-tenant-"
#: The label naming the namespace a tenant Secret serves.
TENANT_NAMESPACE_LABEL = "kubetune.io/tenant-namespace"


#: The schema in each tenant database holding the pooler's lookup (owned by the operator).
POOLER_SCHEMA = "kubetune_pooler"
#: PgBouncer's ``auth_query`` (the chart's pgbouncer.ini says the same; a chart test
#: checks): the tenant's password verifier, from the lookup in the database asked for.
POOLER_AUTH_QUERY = f"SELECT username, password FROM {POOLER_SCHEMA}.lookup($1)"


class TenantUnavailable(Exception):
    """The tenant could not be made; the message names no password."""


@dataclass(frozen=True)
class Pooler:
    """A PgBouncer in front of the tenants' databases.

    Trial pods reach it at ``host``:``port``; it looks tenants up as ``auth_user``
    (PgBouncer's ``auth_user``, whose password it holds in its ``auth_file``), a role
    the operator creates with ``auth_password``. ``auth_user`` None: the pooler knows
    the roles some other way, and nothing is installed.

    Example:
        >>> Pooler("kubetune-pooler.kubetune.svc", 6432, "kubetune-pooler", "s3cret")
        Pooler(host='kubetune-pooler.kubetune.svc', port=6432, auth_user='kubetune-pooler')
    """

    host: str
    port: int
    auth_user: str | None = None
    auth_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Tenant:
    """A namespace's database and role (``database`` names both) and its URLs: ``url``
    for the operator, ``pod_url`` for trial pods (through the pooler when there is one)."""

    namespace: str
    database: str
    url: str
    pod_url: str


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

    def __init__(
        self,
        admin_url: str,
        kube: KubeCalls,
        operator_namespace: str,
        *,
        pooler: Pooler | None = None,
    ) -> None:
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
        self._pooler = pooler
        self._pooler_role_ready = False

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
            if self._pooler is not None and name == self._pooler.auth_user:
                raise TenantUnavailable(
                    f"cannot make the tenant {name!r}: that is the pooler's lookup role "
                    "(KUBETUNE_POOLER_AUTH_USER); give the pooler another name"
                )
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
            tenant = Tenant(
                namespace=namespace, database=name, url=url, pod_url=self._through_pooler(url)
            )
            self._known[namespace] = tenant
            return tenant

    def pod_url(self, url: str) -> str:
        """The URL trial pods are given for ``url``: a tenant's through the pooler when
        there is one; any other URL (the shared database of Studies from before
        tenants, whose superuser the pooler will not look up) as it is."""
        with self._lock:
            for tenant in self._known.values():
                if tenant.url == url:
                    return tenant.pod_url
        return url

    def _through_pooler(self, url: str) -> str:
        from sqlalchemy.engine import make_url

        if self._pooler is None:
            return url
        pooled = (
            make_url(url)
            .difference_update_query(["host", "port"])
            .set(host=self._pooler.host, port=self._pooler.port)
        )
        return pooled.render_as_string(hide_password=False)

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
                if self._pooler is not None and self._pooler.auth_user:
                    self._provision_pooler_role(db)
                    db.execute(
                        sqlalchemy.text(
                            f"GRANT CONNECT ON DATABASE {role} TO {_quoted(self._pooler.auth_user)}"
                        )
                    )
            if self._pooler is not None and self._pooler.auth_user:
                self._install_pooler_lookup(name)
        except sqlalchemy.exc.SQLAlchemyError as error:
            reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
            for secret in (password, self._pooler.auth_password if self._pooler else None):
                if secret:
                    reason = reason.replace(secret, "***")
            raise TenantUnavailable(
                f"cannot make the tenant {name!r} on {redact(self._admin_url)}: {reason}"
            ) from None
        finally:
            engine.dispose()

    def _provision_pooler_role(self, db: sqlalchemy.engine.Connection) -> None:
        """The pooler's lookup role (once per operator start, so a changed password in
        the chart's Secret takes effect): it may log in, connect to the tenant
        databases it is granted, and call their lookup; nothing else."""
        import sqlalchemy

        assert self._pooler is not None and self._pooler.auth_user
        if self._pooler_role_ready:
            return
        is_superuser = db.execute(
            sqlalchemy.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar()
        if not is_superuser:
            # The lookup reads pg_authid, which only a superuser may; a function owned
            # by anyone else would install, then fail every pooled login.
            raise TenantUnavailable(
                "the pooler's password lookup (KUBETUNE_POOLER_AUTH_USER) reads pg_authid, "
                f"so the operator's database user on {redact(self._admin_url)} must be a "
                "superuser; it is not (turn the pooler off, or use a superuser)"
            )
        auth_user = self._pooler.auth_user
        exists = db.execute(
            sqlalchemy.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": auth_user}
        ).first()
        db.execute(
            sqlalchemy.text(
                f"{'ALTER' if exists else 'CREATE'} ROLE {_quoted(auth_user)} WITH LOGIN "
                "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT "
                "PASSWORD :password"
            ),
            {"password": self._pooler.auth_password},
        )
        self._pooler_role_ready = True

    def _install_pooler_lookup(self, name: str) -> None:
        """The pooler's lookup in the tenant database ``name``, in one transaction."""
        import sqlalchemy

        assert self._pooler is not None and self._pooler.auth_user
        tenant_admin = self._admin.set(database=name).render_as_string(hide_password=False)
        engine = sqlalchemy.create_engine(
            tenant_admin, poolclass=sqlalchemy.pool.NullPool, hide_parameters=True
        )
        schema, auth_user = _quoted(POOLER_SCHEMA), _quoted(self._pooler.auth_user)
        try:
            with engine.begin() as db:
                owner = db.execute(
                    sqlalchemy.text(
                        "SELECT pg_get_userbyid(nspowner) = current_user FROM pg_namespace "
                        "WHERE nspname = :schema"
                    ),
                    {"schema": POOLER_SCHEMA},
                ).first()
                if owner is None:
                    db.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
                elif not owner[0]:
                    # Made by the tenant (it owns the database): its functions would run
                    # as whoever it chose. Refuse rather than drop what may be its data.
                    raise TenantUnavailable(
                        f"cannot make the tenant {name!r}: the schema {POOLER_SCHEMA!r} in its "
                        "database belongs to another role, so the pooler's lookup cannot be "
                        "installed there; drop or rename that schema"
                    )
                db.execute(sqlalchemy.text(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"))
                db.execute(sqlalchemy.text(_LOOKUP_FUNCTION.format(schema=schema)))
                db.execute(
                    sqlalchemy.text(f"REVOKE ALL ON FUNCTION {schema}.lookup(text) FROM PUBLIC")
                )
                db.execute(sqlalchemy.text(f"GRANT USAGE ON SCHEMA {schema} TO {auth_user}"))
                db.execute(
                    sqlalchemy.text(
                        f"GRANT EXECUTE ON FUNCTION {schema}.lookup(text) TO {auth_user}"
                    )
                )
        finally:
            engine.dispose()


#: The pooler's lookup: the password verifier of ``role_name`` if, and only if, that
#: role owns the database it runs in, may log in, is no superuser and has not expired.
#: SECURITY DEFINER (pg_authid is for superusers) with a fixed search_path, so nothing
#: the tenant creates in its database is looked up in its place.
_LOOKUP_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.lookup(role_name text)
RETURNS TABLE (username text, password text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.rolname::text, a.rolpassword::text
    FROM pg_catalog.pg_authid AS a
    JOIN pg_catalog.pg_database AS d ON d.datdba = a.oid
    WHERE a.rolname = role_name
      AND d.datname = pg_catalog.current_database()
      AND a.rolcanlogin
      AND NOT a.rolsuper
      AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil > pg_catalog.now())
$$
"""


def _quoted(identifier: str) -> str:
    """A PostgreSQL identifier in double quotes (tenant names are [a-z0-9_])."""
    return '"' + identifier.replace('"', '""') + '"'
