"""Does parallelism cost search quality, and does the constant liar help?

Hartmann-6 (minimum -3.32237 on [0, 1]^6), minimized with TPE built exactly as
kubetune builds it (``bridge.build_sampler``: each worker's seed is the study seed
plus its index), with ``constant_liar`` on (kubetune's default) and off, by 1 and
by 8 workers. The 8 workers are threads, each with its own study object and
sampler on the same PostgreSQL storage, and each evaluation takes a little time
(``--eval-seconds``, default 0.1 s) so that 8 trials really are in flight at once,
as with 8 pods. The budget is shared: N trials in all. Several seeds; the table
gives the median and the interquartile range of the best value found.

``python benchmarks/quality.py [--quick | --full] [--eval-seconds S]``
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import optuna
from _bench import (
    Postgres,
    environment_block,
    markdown_table,
    options,
    percentile,
    print_table,
    record,
)
from bench_objectives import HARTMANN6_MINIMUM, hartmann6
from kubetune.engine import bridge
from kubetune.study.spec import validate_spec

#: (trials per study, seeds) per mode.
SIZES = {"quick": (60, 3), "default": (100, 5), "full": (200, 10)}


def optimize(
    url: str, parallelism: int, liar: bool, seed: int, trials: int, pause: float
) -> tuple[float, float]:
    """One study: the best value found after ``trials`` trials, and its :func:`crowding`."""
    name = f"p{parallelism}-liar{int(liar)}-s{seed}"
    spec = validate_spec(
        {
            "objective": {"direction": "minimize"},
            "searchSpace": {f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(6)},
            "sampler": {"name": "tpe", "seed": seed * 100, "args": {"constant_liar": liar}},
            "pruner": {"name": "none"},
            "budget": {"maxTrials": trials, "parallelism": parallelism},
            "trial": {"python": "bench_objectives:hartmann6_objective"},
        }
    )
    optuna.create_study(study_name=name, storage=url, direction="minimize")
    lock = threading.Lock()
    started = 0
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        nonlocal started
        try:
            study = optuna.load_study(
                study_name=name, storage=url, sampler=bridge.build_sampler(spec, index)
            )
            while True:
                with lock:
                    if started >= trials:
                        return
                    started += 1
                trial = study.ask()
                bridge.suggest(trial, spec)
                value = hartmann6([trial.params[f"x{i}"] for i in range(6)])
                time.sleep(pause)
                study.tell(trial, value)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(parallelism)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    study = optuna.load_study(study_name=name, storage=url)
    assert len(study.trials) == trials
    return float(study.best_value), crowding(study.trials)


def crowding(trials: list[optuna.trial.FrozenTrial]) -> float:
    """The median distance from a trial's point to the nearest point of the trials that
    were running when it was asked for (what the constant liar is meant to keep apart);
    nan when trials never overlapped."""
    nearest = []
    for trial in trials:
        running = [
            other
            for other in trials
            if other.number != trial.number
            and other.datetime_start < trial.datetime_start < other.datetime_complete
        ]
        if running:
            point = [trial.params[f"x{i}"] for i in range(6)]
            nearest.append(
                min(
                    sum((a - other.params[f"x{i}"]) ** 2 for i, a in enumerate(point)) ** 0.5
                    for other in running
                )
            )
    return statistics.median(nearest) if nearest else float("nan")


def summary(values: list[float]) -> list[str]:
    return [
        f"{statistics.median(values):.4f}",
        f"{percentile(values, 25):.4f} .. {percentile(values, 75):.4f}",
        f"{statistics.median(values) - HARTMANN6_MINIMUM:.4f}",
        f"{min(values):.4f}",
        f"{max(values):.4f}",
    ]


HEADERS = [
    "workers",
    "constant liar",
    "best value, median",
    "IQR",
    "median gap to optimum",
    "best seed",
    "worst seed",
    "distance to trials in flight",
]


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--eval-seconds", type=float, default=0.1)

    args = options(__doc__.splitlines()[0], extra)
    trials, seeds = SIZES[args.mode]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.time()
    results: dict[tuple[int, bool], list[float]] = {}
    crowded: dict[tuple[int, bool], list[float]] = {}
    with Postgres() as pg:
        version = pg.version()
        url = pg.database("quality")
        for seed in range(seeds):
            # One worker: no trial is ever running while another is asked for, so the
            # liar changes nothing; it runs once per seed and stands for both.
            runs = [(1, True, 0.0), (8, True, args.eval_seconds), (8, False, args.eval_seconds)]
            for workers, liar, pause in runs:
                best, crowding_ = optimize(url, workers, liar, seed, trials, pause)
                results.setdefault((workers, liar), []).append(best)
                crowded.setdefault((workers, liar), []).append(crowding_)
            print(f"seed {seed}: " + ", ".join(f"{k}: {v[-1]:.4f}" for k, v in results.items()))
    rows: list[list[Any]] = []
    for (workers, liar), values in results.items():
        label = "n/a (one worker)" if workers == 1 else ("on" if liar else "off")
        spread = [c for c in crowded[(workers, liar)] if c == c]  # nan: no overlap
        near = f"{statistics.median(spread):.3f}" if spread else "-"
        rows.append([str(workers), label, *summary(values), near])
    print_table(f"Hartmann-6, best after {trials} trials, {seeds} seeds", HEADERS, rows)
    if args.no_record:
        return
    command = "python benchmarks/quality.py" + ("" if args.mode == "default" else f" --{args.mode}")
    body = f"""
Hartmann-6 (6-D, minimum {HARTMANN6_MINIMUM}), {trials} trials per study, {seeds} seeds
(study seed = 100 x seed; worker i's sampler seed = study seed + i, as kubetune does), TPE
with Optuna's defaults otherwise. 8 workers = 8 threads with their own study objects
on one PostgreSQL; each evaluation of the 8-worker runs waits {args.eval_seconds} s so
that 8 trials are in flight together. Lower is better. *Distance to trials in flight*:
for each trial, the distance (in the unit cube) from its point to the nearest point of
the trials running when it was asked for; the median over trials, then over seeds.

{markdown_table(HEADERS, rows)}

{environment_block(args.mode, version, time.time() - t0, command)}
"""
    record("quality", "Search quality under parallelism (quality.py)", body, args.mode)


if __name__ == "__main__":
    main()
