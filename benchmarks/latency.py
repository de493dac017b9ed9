"""How long after a trial ends the Study's status shows it.

The operator (a real ``kopf run`` in the e2e harness) looks at each running study
every ``KUBETUNE_RECONCILE_SECONDS``, and, on PostgreSQL, as soon as the trial
runner's NOTIFY says one of its trials ended (``KUBETUNE_TRIAL_END_PUSH``, on by
default; see kubetune.engine.trial_ends). This script runs a study of 0.5-1.5 s
trials (two pods, each running many trials), polls the Study object on the
emulated API server every 20 ms, and for the k-th finished trial (by
``datetime_complete`` in the storage) takes the first moment the status counted k
finished trials. Measured pushed at the default 5 s period, and by polling alone
at 5 s and at 1 s (the default before the push), side by side in one run.

``python benchmarks/latency.py [--quick | --full]``
"""

from __future__ import annotations

import threading
import time

import optuna
from _bench import (
    TRIAL_IMAGE,
    Postgres,
    cluster,
    environment_block,
    markdown_table,
    options,
    percentile,
    print_table,
    record,
)

SIZES = {"quick": 20, "default": 60, "full": 200}
#: (label, reconcile period s, pushed)
SETTINGS = (
    ("pushed, 5 s period (default)", 5.0, True),
    ("polled, 5 s period", 5.0, False),
    ("polled, 1 s period (before push)", 1.0, False),
)
POLL_SECONDS = 0.02


def measure(url: str, period: float, pushed: bool, trials: int) -> list[float]:
    """Latencies (s) from each trial's end to the status counting it."""
    seen: list[tuple[float, int]] = []  # (time, finished count) at each change
    push = {"KUBETUNE_TRIAL_END_PUSH": "true" if pushed else "false"}
    with cluster(url, reconcile_seconds=period, operator_env=push) as kube:
        name = f"latency-{str(period).replace('.', '-')}-{'pushed' if pushed else 'polled'}"
        kube.study(
            name,
            {
                "objective": {"direction": "minimize"},
                "sampler": {"name": "random", "seed": 0},
                "pruner": {"name": "none"},
                "budget": {"maxTrials": trials, "parallelism": 2},
                "trial": {
                    "python": "bench_objectives:sleep_jitter",
                    "image": TRIAL_IMAGE,
                    "trialsPerPod": trials,
                },
            },
        )
        done = threading.Event()
        final: dict[str, object] = {}

        def poll() -> None:
            last = -1
            deadline = None
            while deadline is None or time.monotonic() < deadline:
                status = kube.status(name)
                counts = status.get("trials") or {}
                finished = sum(counts.get(k, 0) for k in ("complete", "pruned", "failed"))
                if finished != last:
                    seen.append((time.time(), finished))
                    last = finished
                if deadline is None and status.get("phase") in ("Succeeded", "Failed"):
                    final.update(status)
                    deadline = time.monotonic() + period + 0.5
                time.sleep(POLL_SECONDS)
            done.set()

        # One thread talks to the API server; the main thread only waits.
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        if not done.wait(3600):
            raise TimeoutError(f"study {name} did not finish")
        status = final
    study = optuna.load_study(study_name=str(status["studyName"]), storage=url)
    ends = sorted(t.datetime_complete.timestamp() for t in study.trials if t.datetime_complete)
    latencies = []
    for k, ended in enumerate(ends, start=1):
        shown = next((when for when, count in seen if count >= k), None)
        if shown is not None:
            latencies.append(max(0.0, shown - ended))
    return latencies


def main() -> None:
    args = options(__doc__.splitlines()[0])
    trials = SIZES[args.mode]
    t0 = time.time()
    rows = []
    with Postgres() as pg:
        version = pg.version()
        for label, period, pushed in SETTINGS:
            latencies = measure(pg.database("latency"), period, pushed, trials)
            rows.append(
                [
                    label,
                    f"{60 / period:g}",
                    str(len(latencies)),
                    f"{percentile(latencies, 50):.2f}",
                    f"{percentile(latencies, 95):.2f}",
                    f"{max(latencies):.2f}",
                    f"{sum(latencies) / len(latencies):.2f}",
                ]
            )
            print_table("latency", HEADERS, rows[-1:])
    print_table("trial end -> Study status", HEADERS, rows)
    if args.no_record:
        return
    command = "python benchmarks/latency.py" + ("" if args.mode == "default" else f" --{args.mode}")
    body = f"""
{trials} trials of 0.5-1.5 s, 2 pods each running its share (trialsPerPod {trials}),
random sampler; the Study object polled every {POLL_SECONDS * 1000:.0f} ms (which adds up
to that much). Latency = first time the status counted the k-th finished trial minus
that trial's `datetime_complete` in the storage. "Looks/min" is what a running Study
with no trial ending costs: one reconcile (a storage read and an API list) per look.

{markdown_table(HEADERS, rows)}

{environment_block(args.mode, version, time.time() - t0, command)}
"""
    record("latency", "Trial end to Study status (latency.py)", body, args.mode)


HEADERS = [
    "status updates by",
    "looks/min at an idle running Study",
    "trials",
    "p50 s",
    "p95 s",
    "max s",
    "mean s",
]


if __name__ == "__main__":
    main()
