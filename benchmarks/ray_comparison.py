"""Ray Tune's published overhead benchmark, at its own size, against kubetune.

Ray Tune's documentation reports 10,000 trials that each sleep 1 s, 16 at a
time on 16 CPUs: 715 s against an ideal of 625 s (1.144 x). This runs the same
study — 10,000 one-second trials, 16 workers — with ``kubetune run`` (one
embedded PostgreSQL, random sampler, no pruner) and, side by side in the same
run, plain Optuna (16 processes, each ``study.optimize`` of its share), and
reports each one's wall time against the same ideal.

The 16 workers sleep, so 2 cores suffice: what they spend between trials is the
overhead measured. ``--quick``: 640 trials (a minute or so).

``python benchmarks/ray_comparison.py [--quick] [--no-plain]``
"""

from __future__ import annotations

import time
from typing import Any

from _bench import (
    Postgres,
    environment_block,
    markdown_table,
    options,
    print_table,
    record,
)
from overhead import RAY, Run, run_cli, run_plain

SIZES = {"quick": 640, "default": 10_000, "full": 10_000}
PARALLELISM = 16

HEADERS = [
    "run by",
    "trials",
    "workers",
    "wall s",
    "ideal s",
    "÷ ideal",
    "overhead ms/trial (wall)",
    "ms/trial per worker (steady)",
    "1st trial done s",
]


def row(run: Run) -> list[str]:
    ideal = run.trials * 1.0 / run.parallelism
    return [
        run.runner,
        f"{run.trials:,}",
        str(run.parallelism),
        f"{run.wall:.0f}",
        f"{ideal:.0f}",
        f"{run.wall / ideal:.3f}",
        f"{1000 * (run.wall - ideal) / run.trials:.1f}",
        f"{1000 * (run.steady - 1.0):.0f}",
        f"{run.first_complete:.1f}",
    ]


def ray_row() -> list[str]:
    ideal = RAY["ideal"]
    return [
        "Ray Tune (published)",
        f"{RAY['trials']:,}",
        str(RAY["parallel"]),
        f"{RAY['wall']:.0f}",
        f"{ideal:.0f}",
        f"{RAY['wall'] / RAY['ideal']:.3f}",
        f"{1000 * (RAY['wall'] - RAY['ideal']) / RAY['trials']:.1f}",
        "",
        "",
    ]


def main() -> None:
    def extra(parser: Any) -> None:
        parser.add_argument(
            "--no-plain", action="store_true", help="skip the plain Optuna run (halves the time)"
        )

    args = options(__doc__.splitlines()[0], extra)
    trials = SIZES[args.mode]
    t0 = time.time()
    runs: list[Run] = []
    with Postgres() as pg:
        version = pg.version()
        if not args.no_plain:
            runs.append(run_plain(pg, "sleep1", trials, PARALLELISM))
            print_table("plain Optuna", HEADERS, [row(runs[-1])])
        runs.append(run_cli(pg, "sleep1", trials, PARALLELISM))
        print_table("kubetune run", HEADERS, [row(runs[-1])])
    rows = [*(row(run) for run in runs), ray_row()]
    print_table("the Ray Tune overhead benchmark", HEADERS, rows)
    if args.no_record:
        return
    command = "python benchmarks/ray_comparison.py" + (" --quick" if args.mode == "quick" else "")
    body = f"""
{trials:,} trials that sleep 1 s, {PARALLELISM} workers, random sampler, no pruner, one
embedded PostgreSQL. Ideal = trials x 1 s / workers. Ray Tune's row is its published
number (16 CPUs), not measured here; kubetune and plain Optuna are measured side by side
in this run on the machine below. "ms/trial per worker (steady)" is what a worker spends
per trial besides the 1 s sleep (median trial duration plus median gap between a
worker's trials).

{markdown_table(HEADERS, rows)}

{environment_block(args.mode, version, time.time() - t0, command)}
"""
    record("ray", "Ray Tune's overhead benchmark at its size (ray_comparison.py)", body, args.mode)


if __name__ == "__main__":
    main()
