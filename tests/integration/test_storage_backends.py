"""README, Local mode: "Any Optuna RDB URL works (``postgresql://…``, ``mysql://…``,
``sqlite:///study.db``)", and ``spec.storage.url`` is used when no ``--storage`` is given.

Each backend has its own claim lock branch (``kubetune.engine.storage.ClaimLock``): four
workers whose first trials end together all reach for the last trial of the budget at
once, so a lock that does not hold shows as an overrun every time.

MySQL runs on a private MariaDB server (Debian's ``mariadb-server``) started by the
test on a Unix socket, with the ``pymysql`` driver; without either the test skips,
saying which is missing (neither is a dependency of kubetune).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from kubetune.engine import bridge
from kubetune.engine.storage import open_storage
from kubetune.study.spec import validate_spec
from optuna.trial import TrialState
from test_local import SPEC, run_cli, write_study

pytestmark = pytest.mark.timeout(240)

WORKERS = 4


@pytest.fixture
def cli_env(runner_env: dict[str, str]) -> dict[str, str]:
    """The CLI's environment with no storage URL of its own: the study says where."""
    env = dict(runner_env)
    env.pop("KUBETUNE_STORAGE_URL")
    env["COLUMNS"] = "160"
    return env


def race_spec(storage: dict[str, Any] | None = None, history: int = 0) -> dict[str, Any]:
    """``WORKERS`` workers whose first trials end together; one trial of the budget
    left (after ``history`` trials that finished before)."""
    spec = dict(
        SPEC,
        searchSpace={},
        budget={"maxTrials": history + WORKERS + 1, "parallelism": WORKERS},
        trial={"python": "kt_race_objectives:meets_the_others"},
    )
    if storage is not None:
        spec["storage"] = storage
    return spec


def add_history(url: str, spec: dict[str, Any], count: int) -> None:
    """Study ``local`` with ``count`` finished trials. Each claim reads every trial, so
    with a history that read takes long enough for the racing workers' claims to meet:
    SQLite answers a small study so fast that one worker could read and claim before
    the next one reads, even with no lock."""
    study = bridge.prepare_study(open_storage(url), "local", validate_spec(spec))
    finished = optuna.trial.create_trial(params={}, distributions={}, value=0.0)
    study.add_trials([finished] * count)


def run_the_race(
    env: dict[str, str], tmp_path: Path, spec: dict[str, Any], *storage_args: str
) -> subprocess.CompletedProcess[str]:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**env, "KT_BARRIER_DIR": str(barrier), "KT_BARRIER_SIZE": str(WORKERS)}
    result = run_cli(env, tmp_path, "run", str(write_study(tmp_path, spec)), *storage_args)
    assert len(list(barrier.iterdir())) == WORKERS, result.stdout + result.stderr
    return result


def assert_exact_budget(url: str, history: int = 0) -> None:
    study = optuna.load_study(study_name="local", storage=url)
    raced = study.trials[history:]
    assert [t.state for t in raced] == [TrialState.COMPLETE] * (WORKERS + 1), [
        (t.number, t.state.name, t.user_attrs) for t in raced
    ]
    assert len({t.user_attrs["kubetune.worker"] for t in raced}) == WORKERS


def test_sqlite_url_from_the_spec_runs_the_exact_budget(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """``spec.storage.url: sqlite:///study.db``, relative to where the command runs."""
    history = 3000
    spec = race_spec({"url": "sqlite:///study.db"}, history)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    add_history(url, spec, history)
    result = run_the_race(cli_env, tmp_path, spec)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded PostgreSQL" not in result.stdout
    assert_exact_budget(url, history)
    assert f"{history + WORKERS + 1} complete" in result.stdout


def test_postgresql_url_from_the_spec_is_used(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    spec = dict(SPEC, budget={"maxTrials": 3, "parallelism": 2}, storage={"url": storage_url})
    result = run_cli(cli_env, tmp_path, "run", str(write_study(tmp_path, spec)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded PostgreSQL" not in result.stdout
    study = optuna.load_study(study_name="local", storage=storage_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3


@pytest.fixture(scope="module")
def mariadb_socket() -> Iterator[Path]:
    """A private MariaDB server on a Unix socket (no TCP), for this module's tests."""
    server = shutil.which("mariadbd") or shutil.which("mysqld", path="/usr/sbin:/usr/bin")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if server is None or install is None:
        pytest.skip("no MariaDB server here (Debian: apt-get install mariadb-server)")
    if importlib.util.find_spec("pymysql") is None:
        pytest.skip("no MySQL driver: pip install pymysql (not a kubetune dependency)")
    root = Path(tempfile.mkdtemp(prefix="kubetune-tests-mariadb-"))
    data, socket = root / "data", root / "mysqld.sock"
    subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [
            server,
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={socket}",
            "--skip-networking",
            "--user=root",
            f"--pid-file={root / 'mysqld.pid'}",
            f"--log-error={root / 'error.log'}",
        ]
    )
    try:
        deadline = time.monotonic() + 60
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                log = (root / "error.log").read_text(errors="replace")
                pytest.fail(f"MariaDB did not start:\n{log[-3000:]}")
            time.sleep(0.1)
        yield socket
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def mysql_url(socket: Path, database: str) -> str:
    import pymysql

    connection = pymysql.connect(user="root", unix_socket=str(socket))
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {database}")
    connection.close()
    return f"mysql+pymysql://root@localhost/{database}?unix_socket={socket}"


def test_mysql_url_runs_the_exact_budget(
    cli_env: dict[str, str], mariadb_socket: Path, tmp_path: Path
) -> None:
    url = mysql_url(mariadb_socket, f"kt_{tmp_path.name.replace('-', '_')}")
    result = run_the_race(cli_env, tmp_path, race_spec(), "--storage", url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_exact_budget(url)
