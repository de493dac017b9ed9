"""A fleet of trial workers on one database: server connections, claim throughput,
failed claims and the budget, through PgBouncer and direct (issue 15, point 2).

N real trial runners (``kubetune_trial.runner.Worker``, the code a trial pod runs)
claim trivial trials of one study with a maxTrials budget against one embedded
PostgreSQL (``max_connections`` 100, its default, as a small managed database would
have), either through a real PgBouncer in transaction pooling mode
(``default_pool_size`` = ``max_db_connections`` = POOL) or directly. Recorded:

- server connections: the most seen in ``pg_stat_activity`` for the study's
  database, sampled every 10 ms from start to end;
- claims per second at the ceiling: trials started per second in the middle 80 % of
  the run (by ``datetime_start``), when every worker is claiming back to back (trivial
  trials: nothing else to do), so claims queue on the study's lock; with the time a
  claim waited (pool queue + lock) and held the lock (median, p95);
- failed claims (a claim that raised), connection errors (connects refused, "too
  many clients"; claims cut off and made again) and workers that failed;
- the study's final trial count and states against maxTrials.

Workers are processes, not threads: each is a separate Python process with its own
SQLAlchemy engine and connection, exactly like a pod (threads would share one
process's engine and pool, and the GIL would serialize their claims in the client,
hiding the database's part). The machine allows processes: they are forked from a
parent that has already imported Optuna, SQLAlchemy and kubetune, after
``gc.freeze()``, so they share those pages copy-on-write (about 25 MB of private
memory each, measured, instead of about 100 for a fresh process), and 300 of them fit
in 8 GB. Threads would fit more, but measure less. On 2 cores, 300 Python processes
are CPU-bound on the client side: the claim throughput measured here is a floor for
the database path; the time a claim holds the study's lock is what bounds one study.

``python benchmarks/fleet_storage.py [--quick | --full]``  (N = 100 / 300 / 300 and 600)
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
from _bench import (
    REPO,
    Postgres,
    environment_block,
    markdown_table,
    options,
    percentile,
    print_table,
    record,
)

sys.path.insert(0, str(REPO / "tests"))
from pgbouncer_server import PgBouncer

WORKERS = {"quick": (100,), "default": (300,), "full": (300, 600)}
TRIALS_PER_WORKER = {"quick": 8, "default": 4, "full": 4}
POOL = 20
SPEC: dict[str, Any] = {
    "objective": {"direction": "minimize"},
    "searchSpace": {"x": {"type": "float", "low": -10, "high": 10}},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none"},
    "trial": {"python": "bench_objectives:trivial"},
}


class Sampler(threading.Thread):
    """Server connections to one database, and PgBouncer's queue, every 10 ms."""

    def __init__(self, admin_uri: str, database: str, bouncer: PgBouncer | None) -> None:
        super().__init__(daemon=True)
        self._admin_uri, self._database, self._bouncer = admin_uri, database, bouncer
        self._done = threading.Event()
        self.connections: list[int] = []
        self.waiting_clients: list[int] = []
        self.max_wait_seconds = 0.0

    def run(self) -> None:
        import psycopg2

        server = psycopg2.connect(self._admin_uri)
        server.autocommit = True
        console = None
        if self._bouncer is not None:
            console = psycopg2.connect(self._bouncer.admin_dsn())
            console.autocommit = True
        try:
            while not self._done.is_set():
                with server.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                        " AND backend_type = 'client backend'",
                        (self._database,),
                    )
                    self.connections.append(int(cursor.fetchone()[0]))  # type: ignore[index]
                if console is not None:
                    with console.cursor() as cursor:
                        cursor.execute("SHOW POOLS")
                        names = [d[0] for d in cursor.description]  # type: ignore[union-attr]
                        for row in cursor.fetchall():
                            pool = dict(zip(names, row, strict=True))
                            if pool["database"] == self._database:
                                self.waiting_clients.append(int(pool["cl_waiting"]))
                                wait = pool["maxwait"] + pool["maxwait_us"] / 1e6
                                self.max_wait_seconds = max(self.max_wait_seconds, wait)
                time.sleep(0.01)
        finally:
            server.close()
            if console is not None:
                console.close()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def _worker(index: int, url: str, study: str, results: Path) -> None:
    """One trial pod's runner, in a forked child; writes what it saw to ``results``."""
    import logging

    import psycopg2
    from kubetune.engine.storage import scrub
    from kubetune.engine.worker import WorkerConfig
    from kubetune_trial.runner import Worker

    counts: Counter[str] = Counter()
    messages: list[str] = []
    waits: list[float] = []
    holds: list[float] = []

    class Counting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            counts[record.levelname] += 1
            if len(messages) < 3:
                messages.append(scrub(record.getMessage().splitlines()[0], url)[:200])

    handler = Counting(logging.WARNING)
    logging.getLogger("kubetune").addHandler(handler)
    logging.getLogger("kubetune").setLevel(logging.WARNING)
    real_connect = psycopg2.connect

    def counting_connect(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_connect(*args, **kwargs)
        except psycopg2.OperationalError:
            counts["connects refused"] += 1
            raise

    psycopg2.connect = counting_connect
    outcome, trials, failed_claims = "ok", 0, 0
    try:
        worker = Worker(WorkerConfig(study_name=study, worker_name=f"w{index}"), url)
        claim = worker.lock.claim

        def timed_claim(decide: Any, before: Any = None) -> Any:
            granted: list[float] = []

            def timed_decide() -> Any:
                granted.append(time.perf_counter())
                return decide()

            started = time.perf_counter()
            try:
                result = claim(timed_decide, before=before)
            except Exception:
                nonlocal failed_claims
                failed_claims += 1
                raise
            if granted:  # None before the lock: the budget was spent
                waits.append(granted[-1] - started)
                holds.append(time.perf_counter() - granted[-1])
            return result

        worker.lock.claim = timed_claim  # type: ignore[method-assign]
        summary = worker.run()
        trials = summary.total
    except Exception as error:
        outcome = scrub(f"{type(error).__name__}: {str(error).splitlines()[0]}", url)[:300]
    (results / f"{index}.json").write_text(
        json.dumps(
            {
                "outcome": outcome,
                "trials": trials,
                "failed_claims": failed_claims,
                "counts": counts,
                "messages": messages,
                "waits": waits,
                "holds": holds,
            }
        )
    )


def run_fleet(
    pg: Postgres, workers: int, per_worker: int, through: str, results_root: Path
) -> dict[str, Any]:
    from kubetune.engine import bridge
    from kubetune.engine.storage import engine_of, open_storage
    from kubetune.study.spec import validate_spec

    direct = pg.database(f"fleet_{through}_{workers}")
    database = urlsplit(direct).path.lstrip("/")
    max_trials = workers * per_worker
    bouncer = PgBouncer(pg._server.get_uri(), pool_size=POOL, max_clients=workers + 100)
    if through == "pgbouncer":
        bouncer.__enter__()
        url = bouncer.url(database)
    else:
        url = direct
    try:
        storage = open_storage(url)
        spec = validate_spec({**SPEC, "budget": {"maxTrials": max_trials, "parallelism": workers}})
        bridge.prepare_study(storage, "fleet", spec)
        engine = engine_of(storage)
        assert engine is not None
        engine.dispose()
        del storage
        results = results_root / f"{through}-{workers}"
        results.mkdir(parents=True)
        sampler = Sampler(
            pg._server.get_uri(), database, bouncer if through == "pgbouncer" else None
        )
        sampler.start()
        gc.collect()
        gc.freeze()
        started = time.monotonic()
        children = []
        for index in range(workers):
            pid = os.fork()
            if pid == 0:  # the child
                code = 0
                try:
                    _worker(index, url, "fleet", results)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            children.append(pid)
        exit_codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        seconds = time.monotonic() - started
        gc.unfreeze()
        sampler.stop()
    finally:
        if through == "pgbouncer":
            bouncer.__exit__()
        else:
            bouncer.folder.rmdir()
    reports = [json.loads(path.read_text()) for path in sorted(results.glob("*.json"))]
    trials = optuna.load_study(study_name="fleet", storage=direct).trials
    starts = sorted(t.datetime_start.timestamp() for t in trials if t.datetime_start)
    low, high = int(len(starts) * 0.1), int(len(starts) * 0.9)
    window = starts[high - 1] - starts[low] if high - 1 > low else float("nan")
    counts: Counter[str] = Counter()
    for report in reports:
        counts.update(report["counts"])
    waits = [w for report in reports for w in report["waits"]]
    holds = [h for report in reports for h in report["holds"]]
    failed_workers = [r["outcome"] for r in reports if r["outcome"] != "ok"]
    failed_workers += ["no report"] * (workers - len(reports))
    states = Counter(t.state.name for t in trials)
    return {
        "workers": workers,
        "through": through,
        "max_trials": max_trials,
        "seconds": seconds,
        "connections": max(sampler.connections, default=0),
        "samples": len(sampler.connections),
        "waiting_clients": max(sampler.waiting_clients, default=0),
        "max_wait": sampler.max_wait_seconds,
        "claims_per_second": (high - 1 - low) / window if window > 0 else float("nan"),
        "failed_claims": sum(r["failed_claims"] for r in reports),
        "refused": counts["connects refused"],
        "warnings": counts["WARNING"] + counts["ERROR"],
        "messages": sorted({m for r in reports for m in r["messages"]})[:5],
        "failed_workers": failed_workers,
        "nonzero_exits": sum(1 for code in exit_codes if code != 0),
        "trials": len(trials),
        "states": dict(states),
        "wait_p50": statistics.median(waits) if waits else float("nan"),
        "wait_p95": percentile(waits, 95),
        "hold_p50": statistics.median(holds) if holds else float("nan"),
        "hold_p95": percentile(holds, 95),
        "hold_mean": statistics.fmean(holds) if holds else float("nan"),
    }


def main() -> None:
    def extra(parser: Any) -> None:
        parser.add_argument("--workers", type=int, nargs="+", help="fleet sizes (not the mode's)")
        parser.add_argument("--per-worker", type=int, help="maxTrials per worker")
        parser.add_argument("--only", choices=("pgbouncer", "direct"), help="one path only")

    args = options(__doc__.splitlines()[0], extra)
    sizes = tuple(args.workers or WORKERS[args.mode])
    per_worker = args.per_worker or TRIALS_PER_WORKER[args.mode]
    paths = (args.only,) if args.only else ("pgbouncer", "direct")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Imported before forking, so the children share them.
    import kubetune_trial.runner  # noqa: F401
    import psycopg2  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg2  # noqa: F401

    t0 = time.time()
    rows: list[dict[str, Any]] = []
    results_root = Path(os.environ.get("TMPDIR", "/tmp")) / f"kubetune-fleet-{os.getpid()}"
    try:
        with Postgres() as pg:
            version = pg.version()
            for workers in sizes:
                for through in paths:
                    print(f"{workers} workers, {through} ...", flush=True)
                    row = run_fleet(pg, workers, per_worker, through, results_root)
                    print(json.dumps(row, default=str), flush=True)
                    rows.append(row)
    finally:
        shutil.rmtree(results_root, ignore_errors=True)
    headers = [
        "path",
        "workers",
        "server connections (max)",
        "claims/s",
        "claim wait p50 / p95 ms",
        "lock held p50 / p95 ms",
        "failed claims",
        "connection errors",
        "workers failed",
        "trials / maxTrials",
        "all COMPLETE",
        "took s",
    ]
    table = []
    for row in rows:
        path = f"PgBouncer (pool {POOL})" if row["through"] == "pgbouncer" else "direct"
        table.append(
            [
                path,
                row["workers"],
                row["connections"],
                f"{row['claims_per_second']:.0f}",
                f"{1000 * row['wait_p50']:.0f} / {1000 * row['wait_p95']:.0f}",
                f"{1000 * row['hold_p50']:.1f} / {1000 * row['hold_p95']:.1f}",
                row["failed_claims"],
                row["refused"] + row["warnings"],
                len(row["failed_workers"]),
                f"{row['trials']} / {row['max_trials']}",
                "yes" if row["states"] == {"COMPLETE": row["trials"]} else str(row["states"]),
                f"{row['seconds']:.0f}",
            ]
        )
    print_table("a fleet of workers on one database", headers, table)
    if args.no_record:
        return
    notes = []
    for row in rows:
        detail = []
        if row["failed_workers"]:
            detail.append(f"workers failed: {Counter(row['failed_workers']).most_common(2)}")
        if row["messages"]:
            detail.append(f"warnings seen: {row['messages']}")
        if row["through"] == "pgbouncer":
            detail.append(
                f"PgBouncer's queue: at most {row['waiting_clients']} clients waiting for a "
                f"server connection, the longest wait {row['max_wait']:.2f} s"
            )
        notes.append(
            f"- {row['through']}, {row['workers']} workers: {row['samples']} samples of "
            f"pg_stat_activity; connects refused {row['refused']}, warnings logged "
            f"{row['warnings']}. " + "; ".join(detail)
        )
    command = "python benchmarks/fleet_storage.py" + (
        "" if args.mode == "default" else f" --{args.mode}"
    )
    if args.workers:
        command += " --workers " + " ".join(str(n) for n in args.workers)
    if args.per_worker:
        command += f" --per-worker {args.per_worker}"
    if args.only:
        command += f" --only {args.only}"
    body = f"""
N trial runners (forked processes, each its own engine and connection, as pods are)
claim trivial trials of one study (maxTrials = {per_worker} x N) on one
embedded PostgreSQL (max_connections 100), through PgBouncer {_pgbouncer_version()} in
transaction pooling mode (default_pool_size = max_db_connections = {POOL}) or directly.
Server connections: the most seen in pg_stat_activity for the study's database (every
10 ms). Claims/s: trials started per second in the middle 80 % of the run. Claim wait:
from asking to holding the study's lock (the budget's reads, PgBouncer's queue, the
lock); lock held: from then to the claim's commit. Connection errors: connects refused
plus warnings the workers logged (a claim cut off and made again, a call retried).

{markdown_table(headers, table)}

{chr(10).join(notes)}

{environment_block(args.mode, version, time.time() - t0, command)}
"""
    record(
        "fleet-storage", "A fleet of workers on one database (fleet_storage.py)", body, args.mode
    )


def _pgbouncer_version() -> str:
    import subprocess

    from pgbouncer_server import pgbouncer_binary

    binary = pgbouncer_binary()
    if binary is None:
        return "?"
    output = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return output.split()[1] if output.split()[1:] else "?"


if __name__ == "__main__":
    main()
