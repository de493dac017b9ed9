"""What a fleet of Studies costs one operator.

A team keeps its Studies: most are finished or suspended, a few run. For each
fleet size, one operator (a real ``kopf run`` in the e2e harness, default
1 s reconcile period) gets that many Studies: 60 % finished (their Optuna
study already holds the budget), the rest suspended but two, which run trials of
0.5-1.5 s. Measured once every Study has its phase, over a window while the two
run:

- operator CPU (user + system of its process, as a fraction of one core) and
  resident memory, and its thread count;
- connections to the database (``pg_stat_activity``), with and without the running
  Studies' pods;
- latency from a trial's end (``datetime_complete``) to the first status that
  counts it, p50 / p95 (the Study object polled every 50 ms);
- how long the operator took to give every Study its first phase.

``python benchmarks/fleet.py [--quick | --full]``  (sizes 20 / 50, 50 / 200, 50 / 200 / 500)
"""

from __future__ import annotations

import threading
import time
from typing import Any

import optuna
import psutil
from _bench import (
    TRIAL_IMAGE,
    Cluster,
    Postgres,
    cluster,
    environment_block,
    markdown_table,
    options,
    percentile,
    print_table,
    record,
)

SIZES = {"quick": (20, 50), "default": (50, 200), "full": (50, 200, 500)}
RUNNING = 2
#: Seconds of steady state measured per fleet (the running Studies' trials end in it).
WINDOW = {"quick": 20.0, "default": 40.0, "full": 60.0}
POLL_SECONDS = 0.05


def _seed_finished(storage: optuna.storages.BaseStorage, name: str) -> None:
    study = optuna.create_study(study_name=name, storage=storage)
    study.add_trial(
        optuna.trial.create_trial(
            params={"x": 0.0},
            distributions={"x": optuna.distributions.FloatDistribution(-10, 10)},
            value=4.0,
        )
    )


def _spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "objective": {"direction": "minimize"},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": {"maxTrials": 1, "parallelism": 1},
        "trial": {"python": "bench_objectives:sleep_jitter", "image": TRIAL_IMAGE},
    }
    spec.update(changes)
    return spec


def _connections(url: str) -> int:
    """Connections to the benchmark's database other than this one."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    sqlalchemy.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def measure(url: str, size: int, window: float) -> dict[str, float]:
    storage = optuna.storages.RDBStorage(url)
    finished = [f"done-{i:04d}" for i in range(int(size * 0.6))]
    suspended = [f"paused-{i:04d}" for i in range(size - len(finished) - RUNNING)]
    running = [f"busy-{i}" for i in range(RUNNING)]
    for name in finished:
        _seed_finished(storage, f"fleet-{name}")
    with cluster(url) as fleet:
        started = time.monotonic()
        for name in finished:
            fleet.study(name, _spec(storage={"studyName": f"fleet-{name}"}))
        for name in suspended:
            fleet.study(name, _spec(suspend=True))
        _wait_all_phased(fleet, set(finished + suspended))
        settled = time.monotonic() - started

        process = psutil.Process(fleet.operator.pid)
        idle_cpu = _cpu_share(process, 10.0)
        idle_connections = _connections(url)
        for name in running:
            trials = 10_000  # more than the window holds: the Study runs throughout
            fleet.study(
                name,
                _spec(
                    budget={"maxTrials": trials, "parallelism": 1},
                    trial={
                        "python": "bench_objectives:sleep_jitter",
                        "image": TRIAL_IMAGE,
                        "trialsPerPod": trials,
                    },
                ),
            )
        for name in running:
            fleet.wait_phase(name, ("Running",), timeout=120)
        seen = {name: [] for name in running}  # (time, finished count) at each change
        stop = threading.Event()

        def poll() -> None:
            last = dict.fromkeys(running, -1)
            while not stop.is_set():
                for name in running:
                    counts = fleet.status(name).get("trials") or {}
                    done = sum(counts.get(k, 0) for k in ("complete", "pruned", "failed"))
                    if done != last[name]:
                        seen[name].append((time.time(), done))
                        last[name] = done
                time.sleep(POLL_SECONDS)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        window_start = time.time()
        busy_cpu = _cpu_share(process, window)
        memory = process.memory_info().rss / 2**20
        threads = process.num_threads()
        connections = _connections(url)
        window_end = time.time()
        time.sleep(3.0)  # the last trials of the window reach the status
        stop.set()
        poller.join()
        latencies = []
        for name in running:
            status = fleet.status(name)
            study = optuna.load_study(study_name=str(status["studyName"]), storage=storage)
            ends = sorted(
                t.datetime_complete.timestamp()
                for t in study.get_trials(deepcopy=False)
                if t.datetime_complete
            )
            for k, ended in enumerate(ends, start=1):
                if not window_start <= ended <= window_end:
                    continue
                shown = next((when for when, count in seen[name] if count >= k), None)
                if shown is not None:
                    latencies.append(max(0.0, shown - ended))
    return {
        "settle": settled,
        "idle_cpu": idle_cpu,
        "cpu": busy_cpu,
        "memory": memory,
        "threads": threads,
        "connections": connections,
        "idle_connections": idle_connections,
        "trials": len(latencies),
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
    }


def _wait_all_phased(fleet: Cluster, names: set[str], timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while True:
        phased = {
            obj["metadata"]["name"]
            for obj in fleet.kube.list("studies", "default")
            if (obj.get("status") or {}).get("phase") in ("Succeeded", "Suspended")
        }
        if names <= phased:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(names - phased)} Studies still have no phase")
        time.sleep(1.0)


def _cpu_share(process: psutil.Process, seconds: float) -> float:
    """The process's CPU use over ``seconds``, as a fraction of one core."""
    before = process.cpu_times()
    time.sleep(seconds)
    after = process.cpu_times()
    return (after.user + after.system - before.user - before.system) / seconds


HEADERS = [
    "Studies",
    "first phase for all s",
    "CPU idle fleet",
    "CPU with 2 running",
    "RSS MiB",
    "threads",
    "DB conns idle fleet",
    "DB conns with 2 running",
    "trials",
    "status p50 s",
    "status p95 s",
]


def main() -> None:
    args = options(__doc__.splitlines()[0])
    t0 = time.time()
    rows = []
    with Postgres() as pg:
        version = pg.version()
        for size in SIZES[args.mode]:
            result = measure(pg.database("fleet"), size, WINDOW[args.mode])
            rows.append(
                [
                    str(size),
                    f"{result['settle']:.0f}",
                    f"{result['idle_cpu']:.2f}",
                    f"{result['cpu']:.2f}",
                    f"{result['memory']:.0f}",
                    f"{result['threads']:.0f}",
                    f"{result['idle_connections']:.0f}",
                    f"{result['connections']:.0f}",
                    f"{result['trials']:.0f}",
                    f"{result['p50']:.2f}",
                    f"{result['p95']:.2f}",
                ]
            )
            print_table("fleet", HEADERS, rows[-1:])
    print_table("one operator, many Studies", HEADERS, rows)
    if args.no_record:
        return
    command = "python benchmarks/fleet.py" + ("" if args.mode == "default" else f" --{args.mode}")
    body = f"""
One operator (default 1 s reconcile period) with N Studies: 60 % finished, the rest
suspended but {RUNNING} running trials of 0.5-1.5 s. CPU is the operator process's
user + system time as a fraction of one core: "idle fleet" over 10 s before the
running Studies start, "with 2 running" over a {WINDOW[args.mode]:g} s window; RSS and
threads at the window's end. Database connections (pg_stat_activity) count every
client of the database: "idle fleet" the operator's and the benchmark's own (2),
"with 2 running" also the two trial pods' (2 each: the storage's and the claim
lock's). Status latency: a trial's `datetime_complete` to the first status
counting it (Study polled every {POLL_SECONDS * 1000:.0f} ms), for trials ending in
the window.

{markdown_table(HEADERS, rows)}

{environment_block(args.mode, version, time.time() - t0, command)}
"""
    record("fleet", "One operator, many Studies (fleet.py)", body, args.mode)


if __name__ == "__main__":
    main()
