"""What a database URL lets its holder do, tried for real against PostgreSQL.

For the tenancy tests: trial code holds exactly its pod's storage URL, and these
are the things it must and must not manage with it. Each attempt is made on a new
connection and reported as ``"allowed"`` or ``"refused"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def connect_args(url: str) -> dict[str, Any]:
    """psycopg2's keyword arguments for a SQLAlchemy URL (a Unix socket's ``?host=``
    included), as SQLAlchemy itself would connect."""
    from sqlalchemy.dialects.postgresql.psycopg2 import dialect
    from sqlalchemy.engine import make_url

    _args, options = dialect().create_connect_args(make_url(url))
    return dict(options)


def _connect(url: str, **override: Any) -> Any:
    import psycopg2

    options = connect_args(url)
    options["connect_timeout"] = 10
    options.update(override)
    connection = psycopg2.connect(**options)
    connection.autocommit = True
    return connection


def _attempt(action: Callable[[], None]) -> str:
    import psycopg2

    try:
        action()
    except psycopg2.Error:
        return "refused"
    return "allowed"


def _run(url: str, sql: str, **override: Any) -> None:
    connection = _connect(url, **override)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


def tenant_attempts(
    url: str, *, other: str, other_user: str, admin_database: str
) -> dict[str, str]:
    """What ``url``'s holder manages: its own database, and the attacks on ``other``
    (another tenant's database and role) and the server."""
    return {
        "use its own database": _attempt(
            lambda: _run(url, "CREATE TABLE IF NOT EXISTS probe(x int)")
        ),
        "connect to the other tenant's database": _attempt(
            lambda: _run(url, "SELECT 1", dbname=other)
        ),
        "connect to the administrative database": _attempt(
            lambda: _run(url, "SELECT 1", dbname=admin_database)
        ),
        "log in as the other tenant": _attempt(
            lambda: _run(url, "SELECT 1", user=other_user, dbname=other)
        ),
        "log in as postgres": _attempt(
            lambda: _run(url, "SELECT 1", user="postgres", dbname="postgres")
        ),
        "create a role": _attempt(lambda: _run(url, "CREATE ROLE intruder LOGIN")),
        "create a database": _attempt(lambda: _run(url, "CREATE DATABASE intruder")),
        "run a program (COPY FROM PROGRAM)": _attempt(
            lambda: _run(url, "CREATE TEMP TABLE out(x text); COPY out FROM PROGRAM 'id'")
        ),
        "read the server's files": _attempt(lambda: _run(url, "SELECT pg_read_file('PG_VERSION')")),
    }


#: What a tenant must manage (its own database) and nothing else.
TENANT_MAY = {
    "use its own database": "allowed",
    "connect to the other tenant's database": "refused",
    "connect to the administrative database": "refused",
    "log in as the other tenant": "refused",
    "log in as postgres": "refused",
    "create a role": "refused",
    "create a database": "refused",
    "run a program (COPY FROM PROGRAM)": "refused",
    "read the server's files": "refused",
}
