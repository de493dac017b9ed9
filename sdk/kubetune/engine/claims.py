"""Claiming a trial: deciding that the budget allows one more and creating it,
atomically across every worker of a study.

On PostgreSQL a claim is one transaction that starts by taking the study's
transaction-scoped advisory lock (``pg_advisory_xact_lock``); everything the
worker reads and writes to decide and create the trial — Optuna's own storage
calls, unchanged — runs in that transaction, which releases the lock when it
commits. So:

- the claim needs no connection of its own: a worker uses one connection, for
  the length of one transaction at a time;
- it works through PgBouncer in transaction pooling mode, where a session lock
  (``pg_advisory_lock``) stays on whichever server connection ran it and is
  released, or not, on another;
- it commits whole or not at all: a claim cut off by a lost connection (a
  database restart) leaves nothing behind, and is simply made again — there is
  no "lock lost while held" case to repair afterwards;
- it costs fewer round trips than a session lock (no lock and unlock
  statements of their own, one commit instead of one per storage call).

SQLite and MySQL keep :class:`kubetune.engine.storage.ClaimLock` (a file lock,
``GET_LOCK``); :func:`claim_lock` picks one.

Example:
    >>> claim = claim_lock(url, study._study_id, study._storage)  # doctest: +SKIP
    >>> trial = claim.claim(lambda: None if spent() else study.ask())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from kubetune.engine.budget import RETRIED_ATTR
from kubetune.engine.storage import (
    RECONNECT_SECONDS,
    ClaimLock,
    StorageUnavailable,
    _first_line_of_cause,
    calls_not_retried,
    is_connection_error,
    is_postgres,
    redact,
    scrub,
)
from kubetune.errors import KubetuneError

if TYPE_CHECKING:
    import optuna

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

#: The first key of PostgreSQL's two-key advisory lock: "kt" (the second is the study id).
PG_LOCK_NAMESPACE = 0x6B74


class ClaimRolledBack(KubetuneError, RuntimeError):
    """The claim's transaction was rolled back before it ended (a statement inside it
    failed and Optuna went on); nothing of it was committed, and it is made again."""


class TransactionClaim:
    """A PostgreSQL claim: one transaction under the study's transaction-scoped lock.

    ``storage`` is the study's Optuna storage (the RDB storage or Optuna's cache in
    front of it): its calls inside :meth:`claim` run in the claim's transaction.
    """

    #: A claim commits whole or not at all, so the lock is never lost while held.
    lost = False

    def __init__(self, storage: optuna.storages.BaseStorage, study_id: int) -> None:
        import optuna

        backend = getattr(storage, "_backend", storage)
        if not isinstance(backend, optuna.storages.RDBStorage):
            raise TypeError(f"a PostgreSQL claim needs an RDB storage, not {type(backend)}")
        self._storage = storage
        self._backend = backend
        self._study_id = study_id
        self._url = str(backend.url)

    def claim(
        self, decide: Callable[[], _T], before: Callable[[], bool] | None = None
    ) -> _T | None:
        """``decide()`` in one transaction holding the study's lock; committed when it
        returns. ``before()``, if given, runs first in the same transaction but before
        the lock is taken (reads that need no lock share the transaction, a round trip
        less each); when it returns False, the claim ends there and gives None.

        A transaction cut off by a lost connection is made again, for up to
        :data:`~kubetune.engine.storage.RECONNECT_SECONDS`; ``before`` and ``decide`` must be
        safe to run again (nothing they wrote was kept)."""
        return self._made_again("a claim", lambda: self._once(decide, before, locked=True))

    def write(self, work: Callable[[int], _T]) -> _T | None:
        """``work(attempt)`` in one transaction, without the lock: storage calls that
        belong together (a trial's tell and its announcement) cost one round trip to
        begin and one to commit, not one each. Made again like a claim when the
        connection is lost; ``attempt`` (0 first) lets ``work`` allow for a first attempt
        whose commit reached the database before the connection went."""
        attempt = -1

        def once() -> _T | None:
            nonlocal attempt
            attempt += 1
            return self._once(lambda: work(attempt), None, locked=False)

        return self._made_again("a write", once)

    def _made_again(self, what: str, once: Callable[[], _T | None]) -> _T | None:
        deadline = time.monotonic() + RECONNECT_SECONDS
        attempts = 0
        while True:
            try:
                return once()
            except Exception as error:
                if not (_rolled_back(error) or is_connection_error(error)):
                    raise
                self._forget_cached_trials()
                why = scrub(_first_line_of_cause(error), self._url)
                if time.monotonic() > deadline:
                    raise StorageUnavailable(
                        f"lost the storage at {redact(self._url)}: {why}"
                    ) from None
                if not attempts:
                    _logger.warning(
                        "%s at %s was cut off (%s); making it again", what, redact(self._url), why
                    )
                attempts += 1
                time.sleep(min(0.2 * attempts, 1.0))

    def _once(
        self, decide: Callable[[], _T], before: Callable[[], bool] | None, *, locked: bool
    ) -> _T | None:
        import sqlalchemy
        import sqlalchemy.orm

        registry = self._backend.scoped_session.registry
        with calls_not_retried(), self._backend.engine.connect() as connection:
            transaction = connection.begin()

            def no_second_transaction(_connection: Any) -> None:
                # Optuna went on after a failed statement rolled the claim back; without
                # this its next call would commit a transaction of its own, unlocked.
                raise ClaimRolledBack("the claim's transaction was rolled back")

            sqlalchemy.event.listen(connection, "begin", no_second_transaction)
            # Optuna's calls take their session from the registry: this thread's is
            # bound to the claim's connection. A session's commit leaves the claim's
            # transaction open; its rollback (a failed call) ends it.
            session = sqlalchemy.orm.Session(bind=connection, join_transaction_mode="rollback_only")
            registry.set(session)
            try:
                if before is not None and not before():
                    return None
                if locked:
                    self._lock(connection)
                result = decide()
                registry.clear()
                session.close()
                if not transaction.is_active:
                    raise ClaimRolledBack("the claim's transaction was rolled back")
                transaction.commit()
                return result
            finally:
                registry.clear()
                session.close()
                sqlalchemy.event.remove(connection, "begin", no_second_transaction)
                if transaction.is_active:
                    with contextlib.suppress(Exception):  # a lost connection: nothing to undo
                        transaction.rollback()

    def _lock(self, connection: Any) -> None:
        """Wait for the study's lock, held until the transaction ends."""
        import sqlalchemy

        isolation = connection.execute(
            sqlalchemy.text(
                "SELECT current_setting('transaction_isolation'),"
                " pg_advisory_xact_lock(:namespace, :study)"
            ),
            {"namespace": PG_LOCK_NAMESPACE, "study": self._study_id},
        ).scalar()
        if isolation != "read committed":
            # A snapshot taken before the lock was granted would miss the claim
            # made just before: the budget could be overrun.
            raise StorageUnavailable(
                f"claims need the READ COMMITTED isolation level, and the storage at "
                f"{redact(self._url)} uses {isolation!r} (default_transaction_isolation)"
            )

    def _forget_cached_trials(self) -> None:
        """Empty Optuna's trial cache, which may hold a trial the failed claim created
        and rolled back (it would count against the budget for ever)."""
        cache = self._storage
        lock = getattr(cache, "_lock", None)
        if cache is self._backend or lock is None:
            return
        with lock:
            for name in (
                "_studies",
                "_trial_id_to_study_id_and_number",
                "_study_id_and_number_to_trial_id",
            ):
                table = getattr(cache, name, None)
                if isinstance(table, dict):
                    table.clear()

    def close(self) -> None:
        """Nothing to close: a claim holds no connection between claims."""


@dataclass(frozen=True)
class BudgetState:
    """What a claim decides on, read under the lock in one statement (:func:`budget_state`).

    ``counted``: the study's trials that count against ``maxTrials`` — started (not
    waiting) and not a retried attempt, as :attr:`kubetune.engine.ledger.TrialLedger.spending`
    counts them. ``first_waiting``: the id of its first waiting trial (a retry queued),
    or None. ``study_attrs``: the raw ``value_json`` of each study system attribute asked
    for that is set (the stored spec, the deadline: edits take effect at the next claim).
    """

    counted: int
    first_waiting: int | None
    study_attrs: dict[str, str]


def budget_state(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    study_attrs: Sequence[str] = (),
    *,
    lock_study_row: bool = False,
) -> BudgetState:
    """The study's :class:`BudgetState`, in one statement whatever the number of trials.

    Run under the claim lock, its count is the exact figure the budget is checked
    against, while the rest of the decision (failures, goal) reads the worker's ledger
    outside the lock.

    With ``lock_study_row`` (PostgreSQL only; ignored elsewhere), the same statement
    also locks the study's row until the transaction ends, as Optuna's
    ``create_new_trial`` does before it numbers a trial: :func:`create_running_trial`
    relies on it.
    """
    import sqlalchemy as sa
    from optuna.storages._rdb import models

    backend = getattr(storage, "_backend", storage)
    lock_study_row = lock_study_row and is_postgres(str(backend.url))
    session = backend.scoped_session()
    try:
        # Core, not the ORM: these read columns, and the claim is the hot path.
        connection = session.connection()
        number, waiting_number, *values = connection.execute(
            _budget_statement(tuple(study_attrs), lock_study_row), {"study_id": study_id}
        ).one()
        if lock_study_row:
            values.pop()  # the locked row's id
        first_waiting = None
        if waiting_number is not None:  # a retry queued: rare, one statement more
            trials = models.TrialModel.__table__
            first_waiting = connection.execute(
                sa.select(trials.c.trial_id).where(
                    trials.c.study_id == study_id, trials.c.number == waiting_number
                )
            ).scalar()
        session.commit()  # in a claim's transaction: leaves it open
    finally:
        session.close()
    return BudgetState(
        counted=int(number),
        first_waiting=first_waiting,
        study_attrs={k: v for k, v in zip(study_attrs, values, strict=True) if v is not None},
    )


@functools.cache
def _budget_statement(study_attrs: tuple[str, ...], lock_study_row: bool) -> Any:
    """:func:`budget_state`'s statement, built once (the study is a bound parameter)."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    trials = models.TrialModel.__table__
    attrs = models.TrialUserAttributeModel.__table__
    study_attr = models.StudySystemAttributeModel.__table__
    study_id = sa.bindparam("study_id", type_=sa.Integer)
    # One pass over the study's trials (as Optuna's own create_new_trial makes). A
    # retry mark is looked up, by its index, only for the trials it can matter to.
    is_retried = sa.exists().where(
        attrs.c.trial_id == trials.c.trial_id,
        attrs.c.key == RETRIED_ATTR,
        attrs.c.value_json == json.dumps(True),
    )
    counts = sa.case(
        (trials.c.state == TrialState.WAITING, 0),
        # A trial that finished COMPLETE or PRUNED counts even when marked retried:
        # its worker told Optuna before a supervisor failing it could (see was_retried).
        (trials.c.state.in_([TrialState.COMPLETE, TrialState.PRUNED]), 1),
        (is_retried, 0),
        else_=1,
    )
    first_waiting_number = sa.func.min(
        sa.case((trials.c.state == TrialState.WAITING, trials.c.number))
    )
    attr_values = [
        sa.select(study_attr.c.value_json)
        .where(study_attr.c.study_id == study_id, study_attr.c.key == key)
        .scalar_subquery()
        for key in study_attrs
    ]
    if lock_study_row:
        # Evaluated once (an aggregate gives one row), after the advisory lock taken by
        # the statement before: always the same order, so no two claims deadlock.
        studies = models.StudyModel.__table__
        attr_values.append(
            sa.select(studies.c.study_id)
            .where(studies.c.study_id == study_id)
            .with_for_update()
            .scalar_subquery()
        )
    return (
        sa.select(sa.func.coalesce(sa.func.sum(counts), 0), first_waiting_number, *attr_values)
        .select_from(trials)
        .where(trials.c.study_id == study_id)
    )


def create_running_trial(
    storage: optuna.storages.BaseStorage, study_id: int, attr_key: str, attr_value: object
) -> int:
    """Optuna's ``create_new_trial`` followed by ``set_trial_user_attr(attr_key,
    attr_value)``: a new RUNNING trial, numbered as Optuna numbers trials, with one user
    attribute; its id. Optuna's cache in front of ``storage`` learns of it as it does of
    a trial Optuna creates.

    On PostgreSQL, in one statement (Optuna's calls take five): it must run in a claim
    whose :func:`budget_state` locked the study's row (``lock_study_row``), so that the
    trial's number, the count of the study's trials, is read in a snapshot taken once
    no other writer can add a trial. Elsewhere, Optuna's calls.
    """
    import datetime

    from optuna.storages._cached_storage import _StudyInfo
    from optuna.trial import FrozenTrial, TrialState

    backend = getattr(storage, "_backend", storage)
    if not is_postgres(str(backend.url)):
        trial_id = storage.create_new_trial(study_id)
        record_new_trial_attr(storage, trial_id, attr_key, attr_value)
        return trial_id
    started = datetime.datetime.now()  # as Optuna stamps datetime_start
    session = backend.scoped_session()
    try:
        trial_id, number = (
            session.connection()
            .execute(
                _create_running_trial_statement(),
                {
                    "study_id": study_id,
                    "started": started,
                    "key": attr_key,
                    "value_json": json.dumps(attr_value),
                },
            )
            .one()
        )
        session.commit()  # in a claim's transaction: leaves it open
    finally:
        session.close()
    if storage is not backend:  # Optuna's cache in front of the RDB storage
        cache: Any = storage
        frozen = FrozenTrial(
            number=number,
            state=TrialState.RUNNING,
            value=None,
            values=None,
            datetime_start=started,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={attr_key: attr_value},
            system_attrs={},
            intermediate_values={},
            trial_id=trial_id,
        )
        with cache._lock:  # what Optuna's cache does when it creates a trial
            if study_id not in cache._studies:
                cache._studies[study_id] = _StudyInfo()
            cache._add_trials_to_cache(study_id, [frozen])
    return trial_id


@functools.cache
def _create_running_trial_statement() -> Any:
    import sqlalchemy as sa

    # Optuna's tables, as its models name them. Both inserts run, and only once, even
    # though the query reads only the first (PostgreSQL's data-modifying WITH).
    return sa.text(
        """
        WITH new_trial AS (
            INSERT INTO trials (number, study_id, state, datetime_start)
            SELECT count(*), :study_id, 'RUNNING', :started
            FROM trials WHERE study_id = :study_id
            RETURNING trial_id, number
        ), new_attr AS (
            INSERT INTO trial_user_attributes (trial_id, key, value_json)
            SELECT trial_id, :key, :value_json FROM new_trial
        )
        SELECT trial_id, number FROM new_trial
        """
    )


def record_new_trial_attr(
    storage: optuna.storages.BaseStorage, trial_id: int, key: str, value: object
) -> None:
    """Set a user attribute of a trial just created in this claim, in one statement
    (Optuna's ``set_trial_user_attr`` first checks the trial is still running: a second
    round trip a trial created a moment ago in the same transaction does not need)."""
    backend = getattr(storage, "_backend", storage)
    session = backend.scoped_session()
    try:
        session.connection().execute(
            _new_trial_attr_statement(),
            {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)},
        )
        session.commit()  # in a claim's transaction: leaves it open
    finally:
        session.close()


@functools.cache
def _new_trial_attr_statement() -> Any:
    import sqlalchemy as sa
    from optuna.storages._rdb import models

    return sa.insert(models.TrialUserAttributeModel.__table__)


def claim_lock(
    url: str, study_id: int, storage: optuna.storages.BaseStorage
) -> TransactionClaim | ClaimLock:
    """How workers of the study at ``url`` claim trials: a :class:`TransactionClaim`
    on PostgreSQL, a :class:`~kubetune.engine.storage.ClaimLock` elsewhere."""
    if is_postgres(url):
        return TransactionClaim(storage, study_id)
    return ClaimLock(url, study_id)


def _rolled_back(error: BaseException) -> bool:
    """Whether ``error`` is, or was caused by, a :class:`ClaimRolledBack`."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ClaimRolledBack):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
