"""Trial ends, pushed: workers announce each trial they finish, supervisors listen.

A supervisor that only polls shows a finished trial one period late, and polling
faster costs every study a database round trip per period. On PostgreSQL the
trial runner instead sends ``NOTIFY kubetune_trial_end, '<study name>'`` after it
tells Optuna how a trial ended (:func:`announce_trial_end`), and the operator
holds one ``LISTEN`` connection per database (:class:`TrialEndListener`) that wakes
the study's reconcile at once. Polling stays, slower, for what is not announced
(pods that fail, a lost database connection): a missed notification costs one
period, never a trial.

NOTIFY is delivered when the sending transaction commits, through PgBouncer's
transaction pooling too; LISTEN needs a session of its own, which the operator
opens directly. Other storages announce nothing and are polled.

Example:
    >>> listener = TrialEndListener()
    >>> listener.subscribe(url, "team-a.lgbm.1234", lambda: print("ended"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubetune.engine.storage import engine_of, is_postgres, redact, sqlalchemy_url

if TYPE_CHECKING:
    import optuna

#: The PostgreSQL notification channel; the payload is the Optuna study's name.
CHANNEL = "kubetune_trial_end"
#: How long the listener waits before opening a lost connection again.
RECONNECT_SECONDS = 2.0

_logger = logging.getLogger(__name__)

Wake = Callable[[], None]


def announce_trial_end(storage: optuna.storages.BaseStorage, study_name: str) -> None:
    """Tell whoever listens on the study's database that one of its trials ended.

    Sent through the storage's own session: inside a transaction that a worker's
    claim lock opened (:meth:`kubetune.engine.claims.TransactionClaim.write`) it
    goes out with the tell when that commits, at no round trip of its own.
    Best effort: a failure is logged at debug level and costs the listener one
    polling period, nothing more.
    """
    engine = engine_of(storage)
    if engine is None or engine.dialect.name != "postgresql":
        return
    import sqlalchemy

    backend = getattr(storage, "_backend", storage)
    session = backend.scoped_session()
    try:
        session.execute(
            sqlalchemy.text("SELECT pg_notify(:channel, :study)"),
            {"channel": CHANNEL, "study": study_name},
        )
        session.commit()  # in a transaction of the claim lock's: leaves it open
    except sqlalchemy.exc.SQLAlchemyError as error:
        session.rollback()
        _logger.debug("could not announce a trial end: %s", type(error).__name__)
    finally:
        session.close()


class TrialEndListener:
    """One thread, one LISTEN connection per database, calling each study's ``wake``
    when one of its trials ends (and every study of a database whose connection was
    lost and opened again, since it may have missed some)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wakes: dict[tuple[str, str], set[Wake]] = {}
        self._connections: dict[str, Any] = {}
        self._failed_at: dict[str, float] = {}
        self._thread: threading.Thread | None = None

    def subscribe(self, url: str, study_name: str, wake: Wake) -> None:
        """Call ``wake`` (from the listener's thread) when a trial of ``study_name``
        in the database at ``url`` ends. A URL that is not PostgreSQL is ignored."""
        if not is_postgres(url):
            return
        with self._lock:
            self._wakes.setdefault((url, study_name), set()).add(wake)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="kubetune-trial-ends", daemon=True
                )
                self._thread.start()

    def unsubscribe(self, url: str, study_name: str, wake: Wake) -> None:
        with self._lock:
            wakes = self._wakes.get((url, study_name))
            if wakes is not None:
                wakes.discard(wake)
                if not wakes:
                    del self._wakes[(url, study_name)]

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            connections = self._connect_wanted()
            if not connections:
                time.sleep(0.2)
                continue
            try:
                ready, _, _ = select.select(list(connections.values()), [], [], 0.5)
            except (OSError, ValueError):  # a connection closed under select
                ready = []
                for url, connection in connections.items():
                    if connection.closed:
                        self._lost(url)
            for connection in ready:
                url = next(u for u, c in connections.items() if c is connection)
                self._deliver(url, connection)

    def _connect_wanted(self) -> dict[str, Any]:
        """Open the connections of databases with subscribers; close the others."""
        with self._lock:
            wanted = {url for url, _ in self._wakes}
            for url in list(self._connections):
                if url not in wanted:
                    self._close(self._connections.pop(url))
            missing = [u for u in wanted if u not in self._connections]
        for url in missing:
            if time.monotonic() - self._failed_at.get(url, -RECONNECT_SECONDS) < RECONNECT_SECONDS:
                continue
            connection = self._listen(url)
            if connection is None:
                self._failed_at[url] = time.monotonic()
                continue
            self._failed_at.pop(url, None)
            with self._lock:
                self._connections[url] = connection
            self._wake_all(url)  # trials may have ended while nobody listened
        with self._lock:
            return dict(self._connections)

    def _listen(self, url: str) -> Any | None:
        from sqlalchemy.engine import make_url

        parsed = make_url(sqlalchemy_url(url))
        try:
            # The driver's own connection, as SQLAlchemy would open it (a Unix socket's
            # ?host= included): LISTEN needs a session that no pool takes back.
            args, options = parsed.get_dialect()().create_connect_args(parsed)
            connection = parsed.get_dialect().import_dbapi().connect(*args, **options)
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
            if url in self._failed_at:
                _logger.info("listening for trial ends on %s again", redact(url))
                del self._failed_at[url]
            return connection
        except Exception as error:
            # Once per outage: the next attempts (every RECONNECT_SECONDS) stay quiet.
            log = _logger.debug if url in self._failed_at else _logger.warning
            log(
                "not listening for trial ends on %s (polling instead): %s",
                redact(url),
                type(error).__name__,
            )
            return None

    def _deliver(self, url: str, connection: Any) -> None:
        try:
            connection.poll()
        except Exception:
            self._lost(url)
            return
        names = set()
        while connection.notifies:
            names.add(connection.notifies.pop(0).payload)
        with self._lock:
            wakes = [w for name in names for w in self._wakes.get((url, name), ())]
        for wake in wakes:
            wake()

    def _lost(self, url: str) -> None:
        with self._lock:
            connection = self._connections.pop(url, None)
        if connection is not None:
            self._close(connection)
        # Opened again at once; its first failure to open is the one logged.
        self._failed_at.pop(url, None)

    def _wake_all(self, url: str) -> None:
        with self._lock:
            wakes = [w for (u, _), ws in self._wakes.items() if u == url for w in ws]
        for wake in wakes:
            wake()

    @staticmethod
    def _close(connection: Any) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection may raise
            connection.close()
