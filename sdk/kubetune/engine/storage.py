"""Storage URLs: opening Optuna storages, keeping passwords out of every message,
and the lock that makes trial claims atomic across processes and pods.

Example:
    >>> redact("postgresql://tuner:s3cret@db:5432/optuna")
    'postgresql://tuner:***@db:5432/optuna'
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from kubetune.errors import KubetuneError, NotFound

if TYPE_CHECKING:
    import optuna
    import sqlalchemy

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^/:@\s]*:)(?P<password>[^@/\s]+)(?=@)")

#: How long a worker keeps trying to reach a database that went away (a restart, say);
#: ``$KUBETUNE_RECONNECT_SECONDS`` changes it.
RECONNECT_SECONDS = float(os.environ.get("KUBETUNE_RECONNECT_SECONDS") or 60.0)


class StorageUnavailable(KubetuneError, RuntimeError):
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


def sqlalchemy_url(url: str) -> str:
    """The URL as SQLAlchemy must read it to reach the database with what is installed.

    ``postgres://`` (Heroku, many charts) means ``postgresql://``. A PostgreSQL URL
    that names no driver gets psycopg2, the driver kubetune depends on: SQLAlchemy
    2.1 would pick psycopg 3 and fail with "Failed to import DB access module"
    when it is not installed.

    Example:
        >>> sqlalchemy_url("postgres://tuner@db/optuna")  # doctest: +SKIP
        'postgresql+psycopg2://tuner@db/optuna'
    """
    import importlib.util

    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def open_storage(
    url: str, *, retry_seconds: float = RECONNECT_SECONDS
) -> optuna.storages.BaseStorage:
    """Open an Optuna RDB storage, waiting out a short outage of the database.

    ``retry_seconds`` bounds the wait for the first connection (a command a user
    just typed wants a quick answer; a pod starting beside its database may wait
    longer). Once open, every new connection — after a database restart, say —
    is retried for :data:`RECONNECT_SECONDS` before the operation fails with
    :class:`StorageUnavailable`.

    Raises :class:`StorageUnavailable` with a redacted message when it cannot.
    """
    import optuna

    url = sqlalchemy_url(url)
    # No pool_pre_ping (a round trip per session, 10-20 % of a short trial's cost):
    # after a database restart a pooled connection fails its first statement,
    # SQLAlchemy then drops the whole pool, and the reconnecting storage runs the call
    # again on a new connection. Nothing had run on the dead one, so nothing runs twice.
    engine_kwargs = pooler_safe_engine_kwargs(url)
    deadline = time.monotonic() + retry_seconds
    storage_class = (
        optuna.storages.RDBStorage if url.startswith("sqlite") else _reconnecting_storage_class()
    )
    while True:
        try:
            storage = storage_class(url, engine_kwargs=engine_kwargs, skip_compatibility_check=True)
            _check_schema_version(storage)
            break
        except Exception as error:
            # Optuna wraps some of its first queries' errors in StorageInternalError:
            # what counts is whether a connection was refused or lost underneath.
            if not is_connection_error(error):
                raise StorageUnavailable(
                    f"cannot open the storage at {redact(url)}: {scrub(_first_line(error), url)}"
                ) from None
            if time.monotonic() + 1.0 > deadline:
                why = scrub(_first_line_of_cause(error), url)
                raise StorageUnavailable(
                    f"cannot reach the storage at {redact(url)}: {why}"
                ) from None
            time.sleep(1.0)
    if not url.startswith("sqlite"):
        _retry_new_connections(storage.engine, url)
    return storage


def _check_schema_version(storage: optuna.storages.RDBStorage) -> None:
    """Optuna's check that the tables match its version, one connection at a time.

    Optuna's own check holds a connection in a transaction while it opens a second
    one: through a transaction-pooling PgBouncer, as many workers starting at once as
    the pool has server connections each hold one and wait for another, for ever.
    """
    manager = storage._version_manager
    if manager.get_current_version() != manager.get_head_version():
        manager.check_table_schema_compatibility()  # raises, with Optuna's advice


def pooler_safe_engine_kwargs(url: str) -> dict[str, object]:
    """SQLAlchemy engine arguments that keep a connection usable through a PgBouncer
    in transaction pooling mode, where consecutive transactions may run on different
    server connections, so nothing may outlive a transaction on the server.

    psycopg2, the driver kubetune installs, keeps nothing there (it prepares no
    statements, and SQLAlchemy sets no session parameters on it). psycopg 3 prepares
    a statement on the server once it ran five times; the next transaction may land
    on a server connection that never saw it ("prepared statement ... does not
    exist", PgBouncer before 1.21): ``prepare_threshold=None`` turns that off.

    Example:
        >>> pooler_safe_engine_kwargs("postgresql+psycopg://tuner@pgbouncer/optuna")
        {'connect_args': {'prepare_threshold': None}}
        >>> pooler_safe_engine_kwargs("postgresql+psycopg2://tuner@pgbouncer/optuna")
        {}
    """
    import sqlalchemy.engine

    if not is_postgres(url):
        return {}
    try:
        driver = sqlalchemy.engine.make_url(url).get_driver_name()
    except Exception:  # an unknown driver: create_engine will say so
        return {}
    return {"connect_args": {"prepare_threshold": None}} if driver == "psycopg" else {}


def _retry_new_connections(engine: sqlalchemy.engine.Engine, url: str) -> None:
    """Make each new connection of ``engine`` wait for the database for up to
    :data:`RECONNECT_SECONDS`, instead of failing the operation at once.

    A call that found its pooled connection dead is run again (see
    :func:`_reconnecting_storage_class`); the connection that replaces it is made
    here, and while the server restarts ("the database system is shutting down",
    "connection refused") it keeps trying. Only the connect is retried, never a
    statement, so nothing runs twice.
    """
    import sqlalchemy

    dbapi_error = engine.dialect.loaded_dbapi.OperationalError

    @sqlalchemy.event.listens_for(engine, "do_connect")
    def _connect(
        dialect: sqlalchemy.engine.Dialect,
        _record: object,
        cargs: tuple[object, ...],
        cparams: dict[str, object],
    ) -> object:
        deadline = time.monotonic() + RECONNECT_SECONDS
        attempts = 0
        while True:
            try:
                return dialect.connect(*cargs, **cparams)
            except dbapi_error as error:
                if time.monotonic() > deadline:
                    raise StorageUnavailable(
                        f"lost the storage at {redact(url)}: {scrub(_first_line(error), url)}"
                    ) from None
                if not attempts:
                    _logger.warning(
                        "the storage at %s does not answer (%s); retrying for %.0f s",
                        redact(url),
                        scrub(_first_line(error), url),
                        RECONNECT_SECONDS,
                    )
                attempts += 1
                time.sleep(1.0)


def is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a lost or refused database
    connection — worth trying again — rather than a problem with the data."""
    import sqlalchemy.exc

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageUnavailable):
            return False  # the retries already ran out
        if isinstance(
            current,
            sqlalchemy.exc.OperationalError
            | sqlalchemy.exc.InterfaceError
            | sqlalchemy.exc.PendingRollbackError,
        ):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


#: RDBStorage methods run again when the connection breaks during the call. Reads,
#: and writes that give the same result when repeated. ``create_new_trial`` and
#: ``set_trial_state_values`` are included: a statement cut off by a lost
#: connection was rolled back by the server, so running it again is right —
#: except in the rare case where the connection died while the COMMIT's answer was
#: on its way (then a trial may be created twice; the extra one, running with no
#: worker, is failed by the operator after ``recovery.UNCLAIMED_GRACE``).
#: Creating and deleting studies are not retried. The private names are what
#: Optuna's trial cache (``_CachedStorage``) calls.
_RETRIED_METHODS = (
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "get_trial",
    "get_all_trials",
    "_get_trials",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id",
    "get_trial_param",
    "get_trial_params",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_best_trial",
    "_get_best_trial_id",
    "get_n_trials",
    "_get_stale_trial_ids",
    "set_study_user_attr",
    "set_study_system_attr",
    "set_trial_param",
    "_set_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "set_trial_state_values",
    "create_new_trial",
    "_create_new_trial",
    "record_heartbeat",
)


#: ``active`` while a thread is inside a storage call that retries (or must not retry).
_CALL_RETRIES = threading.local()


@contextlib.contextmanager
def calls_not_retried() -> Iterator[None]:
    """Inside, a storage call whose connection breaks fails at once instead of being
    run again: for a caller that runs several calls in one transaction (a claim, see
    :mod:`kubetune.engine.claims`) and must retry them all together, on a new connection."""
    outer = getattr(_CALL_RETRIES, "active", False)
    _CALL_RETRIES.active = True
    try:
        yield
    finally:
        _CALL_RETRIES.active = outer


@functools.cache
def _reconnecting_storage_class() -> type[optuna.storages.RDBStorage]:
    """An RDBStorage that runs a call again when its database connection broke
    during it (a database restart), for up to :data:`RECONNECT_SECONDS`.

    Still an RDBStorage, so Optuna puts its trial cache in front of it as usual.
    """
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError

    state = _CALL_RETRIES

    def retrying(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: optuna.storages.RDBStorage, *args: Any, **kwargs: Any) -> Any:
            if getattr(state, "active", False):  # an outer call already retries
                return method(self, *args, **kwargs)
            state.active = True
            try:
                return _call_retrying(self, method, args, kwargs)
            finally:
                state.active = False

        return call

    def _call_retrying(
        storage: optuna.storages.RDBStorage,
        method: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        deadline = time.monotonic() + RECONNECT_SECONDS
        retried = False
        while True:
            try:
                return method(storage, *args, **kwargs)
            except UpdateFinishedTrialError:
                if retried and method.__name__ == "set_trial_state_values":
                    return True  # the first attempt was committed after all
                raise
            except Exception as error:
                if not is_connection_error(error):
                    raise
                url = str(storage.url)
                why = scrub(_first_line_of_cause(error), url)
                if time.monotonic() > deadline:
                    raise StorageUnavailable(f"lost the storage at {redact(url)}: {why}") from None
                if not retried:
                    _logger.warning(
                        "the connection to the storage at %s broke during %s (%s); retrying",
                        redact(url),
                        method.__name__,
                        why,
                    )
                retried = True
                time.sleep(0.5)

    namespace = {
        name: retrying(getattr(optuna.storages.RDBStorage, name))
        for name in _RETRIED_METHODS
        if hasattr(optuna.storages.RDBStorage, name)
    }
    # Importable by name (see the module's __getattr__), so that it pickles.
    namespace.update(__module__=__name__, __qualname__="ReconnectingRDBStorage")
    return type("ReconnectingRDBStorage", (optuna.storages.RDBStorage,), namespace)


def __getattr__(name: str) -> Any:
    if name == "ReconnectingRDBStorage":
        return _reconnecting_storage_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _first_line_of_cause(error: BaseException) -> str:
    """The first line of the database's own message (Optuna wraps it in a generic one)."""
    cause = error.__cause__ or error.__context__
    return _first_line(cause if cause is not None else error)


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


#: Seconds a MySQL/MariaDB worker waits for the claim lock: in effect, for ever.
MYSQL_LOCK_WAIT = 365 * 24 * 3600


class ClaimLock:
    """A lock per study, held while a worker decides whether the budget allows
    one more trial and creates it, so that several workers never overrun
    ``maxTrials``.

    SQLite: a file lock beside the database. MySQL: ``GET_LOCK`` on a dedicated
    connection. PostgreSQL claims take a transaction-scoped lock instead, inside
    the claim's own transaction (:class:`kubetune.engine.claims.TransactionClaim`), which
    works through a transaction-pooling PgBouncer; :func:`kubetune.engine.claims.claim_lock`
    picks the right one.

    Example:
        >>> with ClaimLock(url, study_id):   # doctest: +SKIP
        ...     trial = study.ask()
    """

    def __init__(self, url: str, study_id: int) -> None:
        self._url = sqlalchemy_url(url)
        self._study_id = study_id
        self._connection: sqlalchemy.engine.Connection | None = None
        self._file: object | None = None
        #: True when the last release found the lock gone: its connection broke while
        #: it was held (a database restart), so another worker may have claimed meanwhile.
        self.lost = False

    def _connect(self) -> sqlalchemy.engine.Connection:
        import sqlalchemy

        if self._connection is None or self._connection.closed:
            engine = sqlalchemy.create_engine(self._url, poolclass=sqlalchemy.pool.NullPool)
            self._connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def _run(self, sql: str, **params: object) -> object:
        """The first column of the statement's first row."""
        import sqlalchemy
        import sqlalchemy.exc

        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                return self._connect().execute(sqlalchemy.text(sql), params).scalar()
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
                self.close()
                if time.monotonic() > deadline:
                    raise StorageUnavailable(
                        f"lost the storage at {redact(self._url)}: "
                        f"{scrub(_first_line(error), self._url)}"
                    ) from None
                time.sleep(1.0)

    def claim(
        self, decide: Callable[[], _T], before: Callable[[], bool] | None = None
    ) -> _T | None:
        """``decide()``, under the lock; ``before()`` first, without it (False: None)."""
        if before is not None and not before():
            return None
        with self:
            return decide()

    def write(self, work: Callable[[int], _T]) -> _T:
        """``work(0)``, each storage call its own transaction (as
        :meth:`kubetune.engine.claims.TransactionClaim.write` is on PostgreSQL)."""
        return work(0)

    def acquire(self) -> None:
        if is_postgres(self._url):
            raise ValueError("PostgreSQL claims use kubetune.engine.claims.TransactionClaim")
        if self._url.startswith("mysql"):
            # A year, not -1 ("forever"): MariaDB refuses a negative timeout (NULL, no lock).
            got = self._run(
                "SELECT GET_LOCK(:name, :wait)", name=self._lock_name(), wait=MYSQL_LOCK_WAIT
            )
            if got != 1:
                raise StorageUnavailable(
                    f"the claim lock at {redact(self._url)} was not granted (GET_LOCK gave {got})"
                )
        elif self._url.startswith("sqlite"):
            path = Path(self._url.split("///", 1)[-1] or "optuna.db")
            handle = open(f"{path}.kubetune-lock", "a+")  # noqa: SIM115 - held until release
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._file = handle
        else:
            _logger.warning("no claim lock for %s; maxTrials may be overrun", redact(self._url))

    def release(self) -> None:
        held: object = True
        try:
            if self._url.startswith("mysql"):
                held = self._run("SELECT RELEASE_LOCK(:name)", name=self._lock_name()) == 1
        except Exception:
            held = False  # the server is gone, and a session lock with it
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)  # type: ignore[arg-type]
            self._file.close()  # type: ignore[attr-defined]
            self._file = None
        self.lost = held is False

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


def dispose(study: optuna.Study) -> None:
    """Close the database connections of ``study``'s storage (Optuna wraps an RDB
    storage in a cache, which holds the engine)."""
    storage = study._storage
    engine = getattr(storage, "engine", None) or getattr(
        getattr(storage, "_backend", None), "engine", None
    )
    if engine is not None:
        engine.dispose()


def load_stored_study(
    url: str | optuna.storages.BaseStorage, name: str, *, hint: str = ""
) -> optuna.Study:
    """The Optuna study ``name`` in the storage at ``url`` (or in an opened storage);
    NotFound names the studies the storage does hold."""
    import optuna

    storage = open_storage(url, retry_seconds=10) if isinstance(url, str) else url
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        held = sorted(s.study_name for s in storage.get_all_studies())
        shown = ", ".join(held[:10]) + (", …" if len(held) > 10 else "") if held else "none"
        hint = "; ".join(p for p in (hint, f"the storage holds: {shown}") if p)
        raise NotFound("optuna study", name, hint=hint) from None
