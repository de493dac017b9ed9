"""What kubetune costs over running Optuna by hand.

The same studies — trials that sleep 1 s, and trivial trials — at parallelism 2
and 4, run side by side on one embedded PostgreSQL by:

(a) plain Optuna: P processes, each ``study.optimize(objective, n_trials=N/P)``
    (how Optuna's Kubernetes example splits a budget);
(b) ``kubetune run`` (the CLI as a subprocess, P worker processes);
(c) the operator in the e2e harness (a real ``kopf run``, an emulated API server,
    a fake kubelet running each pod as a local process), with ``trialsPerPod`` 1
    (a fresh process per trial) and N/P (each of P pods runs its share).

All use the random sampler and no pruner, so what differs is the machinery, not
the search. Wall time is from the start (processes launched, or the Study
created) to the end (processes exited, or the Study's status says Succeeded).

``python benchmarks/overhead.py [--quick | --full]``
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from _bench import (
    HERE,
    TRIAL_IMAGE,
    Cluster,
    Postgres,
    cluster,
    environment_block,
    markdown_table,
    options,
    print_table,
    record,
    worker_env,
)

#: (trials of 1 s, trivial trials, trials for the pod-per-trial runs) per mode.
SIZES = {"quick": (12, 100, 8), "default": (36, 200, 12), "full": (200, 200, 200)}
PARALLELISM = (2, 4)
#: Ray Tune's published overhead: 10,000 trials of 1 s on 16 CPUs took 715 s, ideal 625 s.
WORKER = HERE / "_plain_worker.py"
RAY = {"wall": 715.0, "ideal": 625.0, "trials": 10_000, "parallel": 16}


@dataclass
class Run:
    workload: str
    trials: int
    parallelism: int
    runner: str
    wall: float
    first_complete: float
    steady: float

    @property
    def trial_seconds(self) -> float:
        return 1.0 if self.workload == "sleep1" else 0.0


def trial_times(
    url: str, study_name: str, started: float, workload: str, parallelism: int
) -> tuple[float, float]:
    """Seconds from ``started`` to the first trial's completion, and the steady cost of
    one trial to a worker (s): the median trial duration plus the median gap between
    a worker's trial and its next one.

    Workers are not named in plain Optuna, so a worker's trials are chained greedily:
    each trial follows the latest unclaimed completion before its start. For trivial
    trials: P x (last end - first start) / N.
    """
    trials = optuna.load_study(study_name=study_name, storage=url).trials
    spans = sorted(
        (t.datetime_start.timestamp(), t.datetime_complete.timestamp())
        for t in trials
        if t.datetime_start and t.datetime_complete
    )
    if len(spans) != len(trials):
        raise RuntimeError(f"{study_name}: {len(trials) - len(spans)} trials did not finish")
    ends: list[float] = []
    gaps: list[float] = []
    for start, end in spans:
        before = [e for e in ends if e <= start]
        if before:
            latest = max(before)
            ends.remove(latest)
            gaps.append(start - latest)
        ends.append(end)
    first_done = min(end for _, end in spans) - started
    if workload == "trivial":
        # Trivial trials of P workers interleave too finely to chain; use the throughput
        # while trials ran instead (process start-up and exit left out).
        window = max(end for _, end in spans) - min(start for start, _ in spans)
        return first_done, parallelism * window / len(spans)
    durations = [end - start for start, end in spans]
    return first_done, statistics.median(durations) + (statistics.median(gaps) if gaps else 0.0)


def run_plain(pg: Postgres, workload: str, trials: int, parallelism: int) -> Run:
    url = pg.database("plain")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="plain", storage=url)
    shares = [trials // parallelism + (i < trials % parallelism) for i in range(parallelism)]
    env = worker_env()
    started = time.time()
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, "plain", str(n), workload, str(i)],
            env=env,
        )
        for i, n in enumerate(shares)
    ]
    codes = [p.wait() for p in processes]
    wall = time.time() - started
    if any(codes):
        raise RuntimeError(f"plain Optuna workers exited with {codes}")
    first, steady = trial_times(url, "plain", started, workload, parallelism)
    return Run(workload, trials, parallelism, "(a) plain Optuna", wall, first, steady)


def kubetune_spec(workload: str, trials: int, parallelism: int, per_pod: int) -> dict[str, Any]:
    return {
        "objective": {"direction": "minimize"},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": {"maxTrials": trials, "parallelism": parallelism},
        "trial": {
            "python": f"bench_objectives:{workload}",
            "image": TRIAL_IMAGE,
            "trialsPerPod": per_pod,
        },
    }


def run_cli(pg: Postgres, workload: str, trials: int, parallelism: int) -> Run:
    url = pg.database("cli")
    folder = Path(tempfile.mkdtemp(prefix="kubetune-bench-cli-"))
    spec = kubetune_spec(workload, trials, parallelism, 1)
    del spec["trial"]["image"], spec["trial"]["trialsPerPod"]
    document = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "cli"},
        "spec": spec,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    started = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "run", str(path), "--storage", url],
        cwd=folder,
        env=worker_env({"COLUMNS": "120"}),
        capture_output=True,
        text=True,
    )
    wall = time.time() - started
    if result.returncode != 0:
        raise RuntimeError(f"kubetune run failed:\n{result.stdout}\n{result.stderr}")
    first, steady = trial_times(url, "cli", started, workload, parallelism)
    return Run(workload, trials, parallelism, "(b) kubetune run", wall, first, steady)


def run_operator(
    kube: Cluster, url: str, workload: str, trials: int, parallelism: int, per_pod: int
) -> Run:
    name = f"{workload}-{trials}-{parallelism}-{per_pod}".lower()
    started = time.time()
    kube.study(name, kubetune_spec(workload, trials, parallelism, per_pod))
    status = kube.wait_phase(name, ("Succeeded", "Failed"), timeout=3600)
    wall = time.time() - started
    if status["phase"] != "Succeeded":
        raise RuntimeError(f"study {name} ended {status}")
    first, steady = trial_times(url, status["studyName"], started, workload, parallelism)
    label = f"(c) operator, trialsPerPod {per_pod}"
    return Run(workload, trials, parallelism, label, wall, first, steady)


def describe(run: Run, baseline: Run) -> list[str]:
    """A table row: the numbers that compare a run with plain Optuna and with the ideal."""
    n, p = run.trials, run.parallelism
    row = [
        run.workload,
        str(n),
        str(p),
        run.runner,
        f"{run.wall:.1f}",
        f"{n / run.wall:.1f}",
        f"{run.wall / baseline.wall:.2f}",
        f"{run.first_complete:.1f}",
    ]
    if run.trial_seconds:
        ideal = n * run.trial_seconds / p
        extra = run.steady - run.trial_seconds
        row += [f"{run.wall / ideal:.2f}", f"{1000 * (run.wall - ideal) / n:.0f}"]
        row += [f"{1000 * extra:.0f}", f"{run.steady / run.trial_seconds:.3f}"]
    else:
        row += ["", "", f"{1000 * run.steady:.0f}", ""]
    return row


HEADERS = [
    "trials",
    "n",
    "P",
    "run by",
    "wall s",
    "trials/s",
    "÷ (a)",
    "1st trial done s",
    "÷ ideal",
    "wall overhead ms/trial",
    "ms/trial per worker (steady)",
    "projected ÷ ideal, 10,000 trials",
]


def command_line(mode: str) -> str:
    return "python benchmarks/overhead.py" + ("" if mode == "default" else f" --{mode}")


def main() -> None:
    args = options(__doc__.splitlines()[0])
    slow, cheap, per_trial_pods = SIZES[args.mode]
    t0 = time.time()
    runs: list[tuple[Run, Run]] = []

    def show(batch: list[Run], baseline: Run) -> None:
        runs.extend((run, baseline) for run in batch)
        print_table("overhead", HEADERS, [describe(run, baseline) for run in batch])

    with Postgres() as pg:
        version = pg.version()
        operator_url = pg.database("operator")
        with cluster(operator_url) as kube:
            for workload, trials in (("sleep1", slow), ("trivial", cheap)):
                for parallelism in PARALLELISM:
                    plain = run_plain(pg, workload, trials, parallelism)
                    cli = run_cli(pg, workload, trials, parallelism)
                    many = math.ceil(trials / parallelism)
                    pods = run_operator(kube, operator_url, workload, trials, parallelism, many)
                    show([plain, cli, pods], plain)
            # A fresh pod (process) per trial costs seconds each: fewer trials, own baseline.
            for workload in ("sleep1", "trivial"):
                for parallelism in PARALLELISM:
                    plain = run_plain(pg, workload, per_trial_pods, parallelism)
                    one = run_operator(kube, operator_url, workload, per_trial_pods, parallelism, 1)
                    show([plain, one], plain)
    rows = [describe(run, baseline) for run, baseline in runs]
    print_table("kubetune overhead over plain Optuna", HEADERS, rows)
    if args.no_record:
        return
    sizes = (
        f"{slow} trials of 1 s; {cheap} trivial trials; pod-per-trial runs "
        f"(trialsPerPod 1) with {per_trial_pods} trials"
    )
    ray_ratio = RAY["wall"] / RAY["ideal"]
    ray_ms = 1000 * (RAY["wall"] - RAY["ideal"]) / RAY["trials"]
    ray_worker_ms = ray_ms * RAY["parallel"]
    body = f"""
Sizes: {sizes}. Random sampler, no pruner, in every runner. Operator reconcile period:
the default (2 s); its status lags the last trial by up to that much, which is in
"wall" for (c).

{markdown_table(HEADERS, rows)}

Columns: *÷ (a)* is wall time over plain Optuna's in the same row group (same
trials, same P); *÷ ideal* is wall over N x 1 s / P; *wall overhead ms/trial* is
(wall - ideal) / N, Ray Tune's measure; *ms/trial per worker (steady)* is what one
trial costs a worker once running, from the stored start and end times: the median
trial duration plus the median gap between a trial's end and its worker's next start
(workers' trials chained greedily), less the 1 s of sleep, for 1-s trials, and
P x (last trial end - first trial start) / N for trivial trials; *projected
÷ ideal* extrapolates that steady cost to a long study, where start-up costs vanish.

Ray Tune, as published: 10,000 trials of 1 s on 16 CPUs in {RAY["wall"]:.0f} s against
{RAY["ideal"]:.0f} s ideal — ÷ ideal {ray_ratio:.3f}, {ray_ms:.0f} ms of wall time per
trial, i.e. {ray_worker_ms:.0f} ms per trial per worker.

{environment_block(args.mode, version, time.time() - t0, command_line(args.mode))}
"""
    record("overhead", "Overhead over plain Optuna (overhead.py)", body, args.mode)


if __name__ == "__main__":
    main()
