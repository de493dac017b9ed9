"""What one trial costs one worker, trivial objective, no competition.

In one process, side by side on one embedded PostgreSQL: (a) plain Optuna's
``study.optimize`` and (b) kubetune's trial runner (``kubetune_trial.runner.Worker``,
which claims each trial in one transaction under the study's advisory lock, checks
the budget, records its worker, and tells). Both use the random sampler and no
pruner, the same trivial objective, so what differs is the per-trial machinery.
Counted: wall time per trial, storage sessions per trial (connections checked out
of SQLAlchemy's pool: one per transaction) and statements per trial (what SQLAlchemy
sends; psycopg2 adds a BEGIN per transaction), alternating runs to even out drift.

``python benchmarks/claim.py [--quick | --full]``
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import optuna
from _bench import Postgres, environment_block, markdown_table, options, print_table, record

TRIALS = {"quick": 100, "default": 150, "full": 300}
#: Many short rounds, each runner first in every other one: on a shared machine the
#: load moves, and a pair of runs next to each other sees about the same load.
ROUNDS = {"quick": 4, "default": 10, "full": 20}

SPEC: dict[str, Any] = {
    "objective": {"direction": "minimize"},
    "searchSpace": {"x": {"type": "float", "low": -10, "high": 10}},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none"},
    "trial": {"python": "bench_objectives:trivial"},
}


def _count_sessions(engine: Any) -> list[int]:
    """[sessions, statements], counted as they happen."""
    import sqlalchemy

    count = [0, 0]

    @sqlalchemy.event.listens_for(engine, "checkout")
    def _checked_out(*_args: Any) -> None:
        count[0] += 1

    @sqlalchemy.event.listens_for(engine, "before_cursor_execute")
    def _executed(*_args: Any) -> None:
        count[1] += 1

    return count


def run_plain(url: str, trials: int) -> tuple[float, float, float]:
    import bench_objectives

    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(
        study_name=f"plain-{time.monotonic_ns()}",
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(),
    )
    sessions = _count_sessions(storage.engine)
    started = time.perf_counter()
    study.optimize(bench_objectives.trivial, n_trials=trials)
    return (time.perf_counter() - started) / trials, sessions[0] / trials, sessions[1] / trials


def run_kubetune(url: str, trials: int) -> tuple[float, float, float]:
    from kubetune.engine import bridge
    from kubetune.engine.storage import engine_of, open_storage
    from kubetune.engine.worker import WorkerConfig
    from kubetune.study.spec import validate_spec
    from kubetune_trial.runner import Worker

    name = f"kubetune-{time.monotonic_ns()}"
    spec = validate_spec({**SPEC, "budget": {"maxTrials": trials}})
    bridge.prepare_study(open_storage(url), name, spec)
    worker = Worker(WorkerConfig(study_name=name, worker_name="bench"), url)
    engine = engine_of(worker.study._storage)
    sessions = _count_sessions(engine)
    started = time.perf_counter()
    summary = worker.run()
    seconds = time.perf_counter() - started
    if summary.total != trials:
        raise RuntimeError(f"the worker ran {summary.total} trials, not {trials}")
    return seconds / trials, sessions[0] / trials, sessions[1] / trials


def _pairwise(
    results: list[tuple[float, float, float]], plain: list[tuple[float, float, float]]
) -> str:
    """Each round's time over plain Optuna's in the same round."""
    ratios = sorted(ours[0] / base[0] for ours, base in zip(results, plain, strict=True))
    return f"{statistics.median(ratios):.2f} [{ratios[0]:.2f}, {ratios[-1]:.2f}]"


def main() -> None:
    args = options(__doc__.splitlines()[0])
    trials, rounds = TRIALS[args.mode], ROUNDS[args.mode]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.time()
    plain: list[tuple[float, float, float]] = []
    ours: list[tuple[float, float, float]] = []
    with Postgres() as pg:
        version = pg.version()
        url = pg.database("claim")
        run_plain(url, 20)  # warm up imports and the server
        for round_number in range(rounds):
            if round_number % 2:
                ours.append(run_kubetune(url, trials))
                plain.append(run_plain(url, trials))
            else:
                plain.append(run_plain(url, trials))
                ours.append(run_kubetune(url, trials))
    headers = [
        "run by",
        "trials x rounds",
        "ms/trial (median)",
        "÷ (a)",
        "÷ (a) pair by pair: median [min, max]",
        "sessions/trial",
        "statements/trial",
    ]
    base = statistics.median(ms for ms, _, _ in plain)
    rows = []
    for label, results in (("(a) plain Optuna", plain), ("(b) kubetune runner", ours)):
        ms = statistics.median(seconds for seconds, _, _ in results)
        rows.append(
            [
                label,
                f"{trials} x {rounds}",
                f"{1000 * ms:.1f}",
                f"{ms / base:.2f}",
                _pairwise(results, plain),
                f"{statistics.median(s for _, s, _ in results):.1f}",
                f"{statistics.median(n for _, _, n in results):.1f}",
            ]
        )
    print_table("one worker, trivial trials", headers, rows)
    if args.no_record:
        return
    command = "python benchmarks/claim.py" + ("" if args.mode == "default" else f" --{args.mode}")
    body = f"""
One worker in one process, trivial trials, random sampler, no pruner, one embedded
PostgreSQL over a Unix socket; {rounds} rounds of {trials} trials each, the two runners
one after the other in each round, each first in every other round. "pair by pair" is
each round's time over plain Optuna's in the same round (the figure to read on a
loaded machine). Sessions are connections checked out of SQLAlchemy's pool per trial
(one per transaction; kubetune's claim is one transaction, its lock inside it, and the
tell another, its trial-end NOTIFY inside it); statements are what SQLAlchemy sent.

{markdown_table(headers, rows)}

{environment_block(args.mode, version, time.time() - t0, command)}
"""
    record("claim", "What one trial costs one worker (claim.py)", body, args.mode)


if __name__ == "__main__":
    main()
