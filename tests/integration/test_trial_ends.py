"""Trial ends pushed through PostgreSQL: what the trial runner announces reaches the
operator's listener at once, for the study it names only, and a listener whose
connection is cut opens it again and wakes everyone (they may have missed some)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import optuna
import pytest
import sqlalchemy
from kubetune.engine.storage import open_storage
from kubetune.engine.trial_ends import TrialEndListener, announce_trial_end
from runner_helpers import run_worker

WAIT = 20.0


@pytest.fixture
def listener() -> Iterator[TrialEndListener]:
    """A listener that lets go of the test's database when the test ends (its
    thread outlives the test; the database does not)."""
    made = TrialEndListener()
    yield made
    with made._lock:
        made._wakes.clear()


def test_an_announced_trial_end_wakes_its_study_only(
    storage_url: str, listener: TrialEndListener
) -> None:
    storage = open_storage(storage_url)
    ended, other = threading.Event(), threading.Event()
    listener.subscribe(storage_url, "mine", ended.set)
    listener.subscribe(storage_url, "theirs", other.set)
    # The first connection wakes everyone once (trials may have ended before it).
    assert ended.wait(WAIT) and other.wait(WAIT)
    ended.clear()
    other.clear()

    announce_trial_end(storage, "mine")
    assert ended.wait(WAIT)
    assert not other.is_set()

    listener.unsubscribe(storage_url, "mine", ended.set)
    ended.clear()
    announce_trial_end(storage, "mine")
    announce_trial_end(storage, "theirs")
    assert other.wait(WAIT)
    assert not ended.is_set()


def test_a_worker_announces_each_trial_with_its_tell(
    storage_url: str,
    listener: TrialEndListener,
    make_study: Callable[..., optuna.Study],
    runner_env: dict[str, str],
) -> None:
    """A real worker process announces every trial it ends, in the transaction of the
    tell: whoever is woken reads the trial already finished, never still running."""
    study = make_study(
        {
            "objective": {"direction": "minimize"},
            "budget": {"maxTrials": 3},
            "sampler": {"name": "random", "seed": 1},
            "trial": {"python": "kt_test_objectives:sleeps"},
        },
        name="told",
    )
    seen: list[list[str]] = []
    woken = threading.Event()

    def read_on_wake() -> None:
        seen.append([t.state.name for t in study.get_trials(deepcopy=False)])
        woken.set()

    listener.subscribe(storage_url, "told", read_on_wake)
    assert woken.wait(WAIT)  # the first connection wakes everyone once
    seen.clear()
    # Trials half a second apart: one wake each (wakes coming together are one).
    code, output = run_worker(runner_env, name="told", KT_SLEEP="0.5")
    assert code == 0, output
    deadline = time.monotonic() + WAIT
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(seen) >= 3, seen
    # The n-th wake sees at least n trials finished (a wake may also see the next
    # trial, claimed since, running).
    for number, states in enumerate(seen[:3], start=1):
        assert states.count("COMPLETE") >= number, seen


def test_a_cut_connection_is_opened_again_and_wakes_its_studies(
    storage_url: str, listener: TrialEndListener
) -> None:
    storage = open_storage(storage_url)
    woken = threading.Event()
    listener.subscribe(storage_url, "mine", woken.set)
    assert woken.wait(WAIT)
    woken.clear()
    engine = sqlalchemy.create_engine(storage_url.replace("postgresql:", "postgresql+psycopg2:", 1))
    with engine.begin() as connection:
        cut = connection.execute(
            sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN kubetune_trial_end%' AND datname = current_database()"
            )
        ).fetchall()
    engine.dispose()
    assert cut, "the listener's connection was not found"
    assert woken.wait(WAIT)  # opened again, and everyone woken once
    woken.clear()
    announce_trial_end(storage, "mine")
    assert woken.wait(WAIT)


def test_other_storages_are_not_listened_to(tmp_path: object) -> None:
    listener = TrialEndListener()
    listener.subscribe("sqlite:///nowhere.db", "mine", lambda: None)
    assert listener._thread is None
