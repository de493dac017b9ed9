"""Storage URLs: opening Optuna storages, keeping passwords out of every message,
and the lock that makes trial claims atomic across processes and pods.

Example:
    >>> redact("postgresql://tuner:s3cret@db:5432/optuna")
    'postgresql://tuner:***@db:5432/optuna'
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import re
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import optuna
    import sqlalchemy

_logger = logging.getLogger(__name__)

_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^/:@\s]*:)(?P<password>[^@/\s]+)(?=@)")

#: How long a worker keeps trying to reach a database that went away (a restart, say).
RECONNECT_SECONDS = 60.0


class StorageUnavailable(RuntimeError):
    """The storage could not be opened or reached; the message holds no password."""


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    return _PASSWORD.sub(r"\g<head>***", url)


def password_of(url: str) -> str | None:
    """The password in a URL, or None."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def scrub(text: str, url: str) -> str:
    """``text`` with the URL's password (and any URL password at all) removed."""
    secret = password_of(url)
    if secret:
        text = text.replace(secret, "***")
    return _PASSWORD.sub(r"\g<head>***", text)


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql", "postgres"))


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open an Optuna RDB storage, waiting out a short outage of the database.

    Raises :class:`StorageUnavailable` with a redacted message when it cannot.
    """
    import optuna
    import sqlalchemy.exc

    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    engine_kwargs: dict[str, object] = {}
    if not url.startswith("sqlite"):
        # Survive a database restart: check pooled connections before use.
        engine_kwargs["pool_pre_ping"] = True
    deadline = time.monotonic() + RECONNECT_SECONDS
    while True:
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
            if time.monotonic() > deadline:
                raise StorageUnavailable(
                    f"cannot reach the storage at {redact(url)}: {scrub(_first_line(error), url)}"
                ) from None
            time.sleep(1.0)
        except Exception as error:
            raise StorageUnavailable(
                f"cannot open the storage at {redact(url)}: {scrub(_first_line(error), url)}"
            ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def engine_of(storage: optuna.storages.BaseStorage) -> sqlalchemy.engine.Engine | None:
    """The SQLAlchemy engine behind an RDB storage (cached or not), else None."""
    import optuna

    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, optuna.storages.RDBStorage):
        return backend.engine
    return None


class ClaimLock:
    """A lock per study, held while a worker decides whether the budget allows
    one more trial and creates it, so that several workers never overrun
    ``maxTrials``.

    PostgreSQL: a session advisory lock on a dedicated connection (released by
    the server if the worker dies). SQLite: a file lock beside the database.
    MySQL: ``GET_LOCK``.

    Example:
        >>> with ClaimLock(url, study_id):   # doctest: +SKIP
        ...     trial = study.ask()
    """

    #: The first key of PostgreSQL's two-key advisory lock: "kt".
    _PG_NAMESPACE = 0x6B74

    def __init__(self, url: str, study_id: int) -> None:
        self._url = url
        self._study_id = study_id
        self._connection: sqlalchemy.engine.Connection | None = None
        self._file: object | None = None

    def _connect(self) -> sqlalchemy.engine.Connection:
        import sqlalchemy

        if self._connection is None or self._connection.closed:
            engine = sqlalchemy.create_engine(self._url, poolclass=sqlalchemy.pool.NullPool)
            self._connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def _run(self, sql: str, **params: object) -> None:
        import sqlalchemy
        import sqlalchemy.exc

        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                self._connect().execute(sqlalchemy.text(sql), params)
                return
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
                self.close()
                if time.monotonic() > deadline:
                    raise StorageUnavailable(
                        f"lost the storage at {redact(self._url)}: "
                        f"{scrub(_first_line(error), self._url)}"
                    ) from None
                time.sleep(1.0)

    def acquire(self) -> None:
        if is_postgres(self._url):
            self._run(
                "SELECT pg_advisory_lock(:ns, :study)", ns=self._PG_NAMESPACE, study=self._study_id
            )
        elif self._url.startswith("mysql"):
            self._run("SELECT GET_LOCK(:name, -1)", name=self._lock_name())
        elif self._url.startswith("sqlite"):
            path = Path(self._url.split("///", 1)[-1] or "optuna.db")
            handle = open(f"{path}.kubetune-lock", "a+")  # noqa: SIM115 - held until release
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._file = handle
        else:
            _logger.warning("no claim lock for %s; maxTrials may be overrun", redact(self._url))

    def release(self) -> None:
        if is_postgres(self._url):
            with contextlib.suppress(Exception):
                self._run(
                    "SELECT pg_advisory_unlock(:ns, :study)",
                    ns=self._PG_NAMESPACE,
                    study=self._study_id,
                )
        elif self._url.startswith("mysql"):
            with contextlib.suppress(Exception):
                self._run("SELECT RELEASE_LOCK(:name)", name=self._lock_name())
        elif self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)  # type: ignore[arg-type]
            self._file.close()  # type: ignore[attr-defined]
            self._file = None

    def _lock_name(self) -> str:
        digest = hashlib.sha1(f"{self._study_id}".encode()).hexdigest()[:16]
        return f"kubetune-{digest}"

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def __enter__(self) -> ClaimLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
