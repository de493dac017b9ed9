"""A PostgreSQL claim (``kubetune.engine.claims.TransactionClaim``) against the real server:
one transaction under the study's transaction-scoped lock, committed whole or not at
all, made again when it was cut off."""

from __future__ import annotations

from typing import Any

import optuna
import psycopg2
import pytest
import sqlalchemy
from kubetune.engine import bridge
from kubetune.engine.claims import PG_LOCK_NAMESPACE, TransactionClaim, claim_lock
from kubetune.engine.storage import ClaimLock, StorageUnavailable, open_storage
from kubetune.study.spec import validate_spec

pytestmark = pytest.mark.timeout(120)

SPEC = {
    "objective": {"direction": "minimize"},
    "budget": {"maxTrials": 10},
    "sampler": {"name": "random", "seed": 1},
    "trial": {"python": "kt_test_objectives:quadratic"},
}


@pytest.fixture
def study(storage_url: str) -> optuna.Study:
    return bridge.prepare_study(open_storage(storage_url), "s", validate_spec(SPEC))


def admin(postgres_server: Any) -> Any:
    connection = psycopg2.connect(postgres_server.get_uri())
    connection.autocommit = True
    return connection


def claim_pid(study: optuna.Study) -> int:
    """The server process of the session Optuna's next call in this thread uses."""
    session = study._storage._backend.scoped_session()  # type: ignore[attr-defined]
    return int(session.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar())


def lock_holders(postgres_server: Any, study_id: int) -> list[int]:
    connection = admin(postgres_server)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = %s AND objid = %s",
                (PG_LOCK_NAMESPACE, study_id),
            )
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def test_postgres_claims_in_a_transaction_and_other_databases_keep_their_lock(
    study: optuna.Study, storage_url: str, tmp_path: Any
) -> None:
    assert isinstance(claim_lock(storage_url, 1, study._storage), TransactionClaim)
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    assert isinstance(claim_lock(sqlite, 1, study._storage), ClaimLock)


def test_a_claim_is_one_transaction_holding_the_study_lock(
    study: optuna.Study, storage_url: str, postgres_server: Any
) -> None:
    claim = TransactionClaim(study._storage, study._study_id)
    seen: dict[str, Any] = {}

    def decide() -> optuna.Trial:
        seen["pid"] = claim_pid(study)
        study.get_trials(deepcopy=False)
        trial = study.ask()
        trial.set_user_attr("kubetune.worker", "w0")
        seen["same session"] = claim_pid(study) == seen["pid"]
        seen["holders"] = lock_holders(postgres_server, study._study_id)
        # Not committed yet: another connection does not see the trial.
        seen["visible"] = len(optuna.load_study(study_name="s", storage=storage_url).trials)
        return trial

    trial = claim.claim(decide)
    assert seen["holders"] == [seen["pid"]]
    assert seen["same session"]
    assert seen["visible"] == 0
    assert lock_holders(postgres_server, study._study_id) == [], "released at commit"
    stored = optuna.load_study(study_name="s", storage=storage_url).trials
    assert [(t.number, t.user_attrs) for t in stored] == [(trial.number, {"kubetune.worker": "w0"})]
    # After the claim, calls use the pool again, one transaction each.
    study.tell(trial, 1.0)
    assert optuna.load_study(study_name="s", storage=storage_url).trials[0].value == 1.0


def test_a_claim_rolled_back_inside_commits_nothing_unlocked_and_is_made_again(
    study: optuna.Study, storage_url: str
) -> None:
    """A failed statement inside the claim rolls its transaction back, and Optuna goes
    on (it ignores some errors): the next call must not commit on its own, without the
    lock. The claim is made again, and only its second attempt's trial is kept."""
    claim = TransactionClaim(study._storage, study._study_id)
    attempts: list[int] = []

    backend = study._storage._backend  # type: ignore[attr-defined]
    x = optuna.distributions.FloatDistribution(0, 1)

    def decide() -> int:
        attempts.append(len(attempts))
        first = study._storage.create_new_trial(study._study_id)
        if len(attempts) == 1:
            backend.set_trial_param(first, "x", 0.5, x)
            # The same parameter again: an IntegrityError, which Optuna rolls back and ignores.
            backend.set_trial_param(first, "x", 0.5, x)
            study._storage.create_new_trial(study._study_id)
        return first

    kept = claim.claim(decide)
    assert attempts == [0, 1]
    stored = optuna.load_study(study_name="s", storage=storage_url).trials
    assert [t._trial_id for t in stored] == [kept]
    assert [t._trial_id for t in study.get_trials()] == [kept], "the cache forgot the rest"


def test_a_claim_cut_off_by_a_lost_connection_leaves_nothing_and_is_made_again(
    study: optuna.Study, storage_url: str, postgres_server: Any
) -> None:
    claim = TransactionClaim(study._storage, study._study_id)
    attempts: list[int] = []

    def decide() -> optuna.Trial:
        attempts.append(len(attempts))
        trial = study.ask()
        if len(attempts) == 1:
            connection = admin(postgres_server)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", (claim_pid(study),))
            connection.close()
        trial.set_user_attr("kubetune.worker", "w0")
        return trial

    trial = claim.claim(decide)
    assert attempts == [0, 1]
    stored = optuna.load_study(study_name="s", storage=storage_url).trials
    assert [(t._trial_id, t.state.name) for t in stored] == [(trial._trial_id, "RUNNING")]
    assert study.get_trials()[-1]._trial_id == trial._trial_id


def test_a_database_not_in_read_committed_is_refused(
    study: optuna.Study, storage_url: str, postgres_server: Any
) -> None:
    """Under REPEATABLE READ the claim's snapshot would predate the lock: it could miss
    the claim made just before, and overrun the budget."""
    database = sqlalchemy.engine.make_url(storage_url).database
    connection = admin(postgres_server)
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = 'repeatable read'"
        )
    connection.close()
    fresh = optuna.load_study(study_name="s", storage=open_storage(storage_url))
    claim = TransactionClaim(fresh._storage, fresh._study_id)
    with pytest.raises(StorageUnavailable, match=r"READ COMMITTED.*'repeatable read'"):
        claim.claim(fresh.ask)
    assert optuna.load_study(study_name="s", storage=storage_url).trials == []


def test_budget_state_counts_as_the_ledger_does(study: optuna.Study) -> None:
    """Started trials count, waiting ones and retried attempts do not (as
    ``TrialLedger.spending.trials``); the first waiting trial is the lowest number; the
    study attributes asked for come back as stored (raw JSON), unset ones left out."""
    from kubetune.engine.budget import RETRIED_ATTR
    from kubetune.engine.claims import budget_state
    from kubetune.engine.ledger import TrialLedger

    study._storage.set_study_system_attr(study._study_id, "kubetune.deadline", 1234.5)
    empty = budget_state(study._storage, study._study_id, ("kubetune.deadline", "unset"))
    assert (empty.counted, empty.first_waiting) == (0, None)
    assert empty.study_attrs == {"kubetune.deadline": "1234.5"}
    done = study.ask()
    study.tell(done, 1.0)
    running = study.ask()
    retried = study.ask()
    study._storage.set_trial_user_attr(retried._trial_id, RETRIED_ATTR, True)
    study.tell(retried, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({"x": 0.5})
    study.enqueue_trial({"x": 0.7})
    first_waiting = next(t for t in study.get_trials() if t.state.name == "WAITING")
    state = budget_state(study._storage, study._study_id)
    counted, waiting = state.counted, state.first_waiting
    assert state.study_attrs == {}
    assert counted == 2 == TrialLedger.of(study.get_trials(), ["minimize"]).spending.trials
    assert waiting == first_waiting._trial_id
    assert running.number == 1


def test_a_trial_that_finished_while_a_supervisor_failed_it_still_counts(
    study: optuna.Study,
) -> None:
    """The race a suspend can meet: the supervisor marks a running trial stopped and
    retried, then its worker tells Optuna COMPLETE before the supervisor fails it (so no
    retry is queued). The trial stands, and counts against maxTrials: counting it out
    would let one more trial run than the budget allows."""
    from kubetune.engine.budget import RETRIED_ATTR
    from kubetune.engine.claims import budget_state
    from kubetune.engine.ledger import TrialLedger
    from kubetune.engine.recovery import STOPPED_ATTR, fail_lost_trials

    raced = study.ask()
    study._storage.set_trial_user_attr(raced._trial_id, STOPPED_ATTR, "the Study was suspended")
    study._storage.set_trial_user_attr(raced._trial_id, RETRIED_ATTR, True)
    study.tell(raced, 1.0)  # the worker got there first
    snapshot = study.get_trials()
    assert (
        fail_lost_trials(study, snapshot, "the Study was suspended", retries=0, requeue=True) == []
    )
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"]  # no retry queued
    ledger = TrialLedger.of(trials, ["minimize"])
    assert ledger.spending.trials == 1
    state = budget_state(study._storage, study._study_id)
    assert (state.counted, state.first_waiting) == (1, None)


def test_a_write_is_one_transaction_without_the_lock_and_is_made_again(
    study: optuna.Study, storage_url: str, postgres_server: Any
) -> None:
    """How a worker ends a trial: its tell in one transaction with no study lock (other
    workers claim meanwhile); cut off by a lost connection, it is made again and the
    trial ends once."""
    from optuna.study._tell import _tell_with_warning

    claim = TransactionClaim(study._storage, study._study_id)
    trial = claim.claim(study.ask)
    assert trial is not None
    attempts: list[int] = []

    def tell(attempt: int) -> None:
        attempts.append(attempt)
        assert lock_holders(postgres_server, study._study_id) == []
        _tell_with_warning(study, trial, 2.0, skip_if_finished=attempt > 0)
        # Not committed yet: another connection still sees the trial running.
        seen = optuna.load_study(study_name="s", storage=storage_url).trials
        assert [t.state.name for t in seen] == ["RUNNING"]
        if attempt == 0:
            connection = admin(postgres_server)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", (claim_pid(study),))
            connection.close()

    claim.write(tell)
    assert attempts == [0, 1]
    stored = optuna.load_study(study_name="s", storage=storage_url).trials
    assert [(t.state.name, t.value) for t in stored] == [("COMPLETE", 2.0)]


def test_a_claim_numbers_its_trial_as_optuna_does_while_others_add_trials(
    storage_url: str,
) -> None:
    """A claim creates its trial in one statement (``create_running_trial``). Claims
    from three workers race Optuna's own trial creation (an enqueue, a plain
    ``study.ask()``: neither takes the claim lock): every trial still gets its own
    number, 0 to n-1 with no gap, each claimed trial carries its worker, and Optuna's
    cache in the claiming worker knows the trial (a parameter can be suggested in it).
    Run without the study row lock (``lock_study_row=False``), numbers repeat."""
    import threading

    from kubetune.engine.claims import budget_state, create_running_trial

    bridge.prepare_study(open_storage(storage_url), "s", validate_spec(SPEC))
    per_thread = 25
    errors: list[BaseException] = []

    def claim_trials(worker: str) -> None:
        try:
            study = optuna.load_study(study_name="s", storage=open_storage(storage_url))
            claim = TransactionClaim(study._storage, study._study_id)
            for _ in range(per_thread):

                def create() -> int:
                    budget_state(study._storage, study._study_id, lock_study_row=True)
                    return create_running_trial(study._storage, study._study_id, "worker", worker)

                trial_id = claim.claim(create)
                assert trial_id is not None
                trial = optuna.Trial(study, trial_id)
                trial.suggest_float("x", 0, 1)
                study.tell(trial, 1.0)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    def add_trials_as_optuna_does() -> None:
        try:
            study = optuna.load_study(study_name="s", storage=open_storage(storage_url))
            for number in range(per_thread):
                if number % 2:
                    study.enqueue_trial({"x": 0.5}, skip_if_exists=False)
                else:  # what study.ask() does when no trial waits
                    study._storage.create_new_trial(study._study_id)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=claim_trials, args=(f"w{i}",)) for i in range(3)]
    threads.append(threading.Thread(target=add_trials_as_optuna_does))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    trials = optuna.load_study(study_name="s", storage=storage_url).get_trials()
    assert sorted(t.number for t in trials) == list(range(4 * per_thread))
    claimed = [t for t in trials if "worker" in t.user_attrs]
    assert len(claimed) == 3 * per_thread
    assert {t.user_attrs["worker"] for t in claimed} == {"w0", "w1", "w2"}
    assert all(t.state.name == "COMPLETE" and "x" in t.params for t in claimed)
