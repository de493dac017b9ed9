"""Issue 15, point 2: many trial workers share a few server connections through
PgBouncer in transaction pooling mode, and the budget stays exact.

A real PgBouncer (Debian's ``pgbouncer``, installed by ``scripts/test-host.sh``; the
test skips without it) pools the session's real PostgreSQL with ``POOL_SIZE``
server connections. ``WORKERS`` trial runner processes, more than the pool, claim
trials of one study through it. Their first trials wait for each other, so all of
them run an objective at the same moment: only possible if a worker holds no server
connection while its objective runs. Then they all reach for the rest of the budget.

What a user would notice is asserted: exactly maxTrials trials, all COMPLETE, no
connection error in any worker's output, and never more than ``POOL_SIZE`` server
connections to the study's database (``pg_stat_activity``, sampled throughout).

A session-level claim lock (``pg_advisory_lock`` on a connection of its own, what the
runner used before) does not survive transaction pooling: the lock stays on whichever
server connection ran the statement, the unlock runs on another one, and workers
either wait for ever or take the lock together. This test fails with it.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
import psycopg2
import pytest
from kubetune.engine import bridge
from kubetune.engine.recovery import WORKER_ATTR
from kubetune.engine.storage import engine_of, open_storage
from kubetune.study.spec import validate_spec
from optuna.trial import TrialState
from pgbouncer_server import PgBouncer, pgbouncer_binary
from runner_helpers import start_worker

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow(seconds=45)]

POOL_SIZE = 10
WORKERS = 16
MAX_TRIALS = 120


@pytest.fixture(scope="module")
def pgbouncer(postgres_server: Any) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        pytest.skip("no pgbouncer here (Debian: apt-get install pgbouncer; scripts/test-host.sh)")
    with PgBouncer(postgres_server.get_uri(), pool_size=POOL_SIZE) as bouncer:
        yield bouncer


class ConnectionSampler(threading.Thread):
    """Counts the server connections to one database every few milliseconds (client
    backends: an autovacuum worker names the database too)."""

    def __init__(self, admin_uri: str, database: str) -> None:
        super().__init__(daemon=True)
        self._admin_uri = admin_uri
        self._database = database
        self._done = threading.Event()
        self.samples: list[int] = []

    def run(self) -> None:
        connection = psycopg2.connect(self._admin_uri)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while not self._done.is_set():
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                        " AND backend_type = 'client backend'",
                        (self._database,),
                    )
                    row = cursor.fetchone()
                    self.samples.append(int(row[0]) if row else 0)
                    time.sleep(0.005)
        finally:
            connection.close()

    def stop(self) -> int:
        self._done.set()
        self.join(timeout=10)
        return max(self.samples, default=0)


def create_study(url: str, spec: dict[str, Any]) -> None:
    """The study, created through the bouncer, its connections closed afterwards."""
    storage = open_storage(url)
    bridge.prepare_study(storage, "s", validate_spec(spec))
    engine = engine_of(storage)
    assert engine is not None
    engine.dispose()


def test_many_workers_share_a_small_pool_with_an_exact_budget(
    pgbouncer: PgBouncer,
    postgres_server: Any,
    storage_url: str,
    runner_env: dict[str, str],
    tmp_path: Path,
) -> None:
    database = urlsplit(storage_url).path.lstrip("/")
    url = pgbouncer.url(database)
    create_study(
        url,
        {
            "objective": {"direction": "minimize"},
            "budget": {"maxTrials": MAX_TRIALS, "parallelism": WORKERS},
            "sampler": {"name": "random", "seed": 1},
            "trial": {"python": "kt_pool_objectives:meets_the_fleet"},
        },
    )
    sampler = ConnectionSampler(postgres_server.get_uri(), database)
    sampler.start()
    env = {**runner_env, "KUBETUNE_STORAGE_URL": url}
    barrier = {"KT_BARRIER_DIR": str(tmp_path), "KT_BARRIER_SIZE": str(WORKERS)}
    workers = [
        start_worker(env, worker=f"w{i}", KUBETUNE_WORKER_INDEX=str(i), **barrier)
        for i in range(WORKERS)
    ]
    deadline = time.monotonic() + 150
    try:
        outputs = [w.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] for w in workers]
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"workers still running after 150 s (claims waiting for a lock that never comes?); "
            f"PgBouncer's log ends:\n{pgbouncer.log()[-2000:]}"
        )
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        most_connections = sampler.stop()
    everything = "\n".join(outputs)
    assert [w.returncode for w in workers] == [0] * WORKERS, everything[-5000:]
    for sign in ("Traceback", "retrying", "too many", "does not answer", "lost the storage"):
        assert sign not in everything, everything[-5000:]

    trials = optuna.load_study(study_name="s", storage=storage_url).trials
    assert len(trials) == MAX_TRIALS, [(t.number, t.state.name) for t in trials]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * MAX_TRIALS, [
        (t.number, t.state.name, t.user_attrs) for t in trials if t.state != TrialState.COMPLETE
    ]
    assert len({t.user_attrs[WORKER_ATTR] for t in trials}) == WORKERS
    assert len(list(tmp_path.iterdir())) == WORKERS, "every worker ran its first trial"

    assert len(sampler.samples) > 50, "the sampler saw the run"
    assert 0 < most_connections <= POOL_SIZE, most_connections
    assert os.environ.get("KUBETUNE_STORAGE_URL") != url  # the workers' own, not ours


def test_workers_starting_together_do_not_deadlock_a_small_pool(
    postgres_server: Any, storage_url: str
) -> None:
    """Optuna's schema check holds one connection while it opens another: workers
    starting at once through a pool of two server connections would each hold one and
    wait for a second for ever. ``open_storage`` checks one connection at a time."""
    database = urlsplit(storage_url).path.lstrip("/")
    open_storage(storage_url)  # the tables, once
    with PgBouncer(postgres_server.get_uri(), pool_size=2) as bouncer:
        url = bouncer.url(database)
        start = threading.Barrier(12)
        opened: list[object] = []
        errors: list[BaseException] = []

        def open_one() -> None:
            start.wait()
            try:
                opened.append(open_storage(url, retry_seconds=0))
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=open_one, daemon=True) for _ in range(12)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        for thread in threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), "deadlocked"
        assert errors == []
        assert len(opened) == 12
        for storage in opened:
            engine = engine_of(storage)  # type: ignore[arg-type]
            assert engine is not None
            engine.dispose()
