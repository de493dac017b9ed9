"""Does the operator's reconcile stay flat as a study grows?

For studies of 100, 1,000 and 10,000 finished trials (written fast through
Optuna's storage API: ``study.add_trials`` of ``optuna.trial.create_trial``; a mix
of complete, pruned and failed trials with intermediate values and kubetune's
user attributes), a fresh process runs the operator's real
``StudyReconciler.tick`` — with the Kubernetes API calls replaced by in-memory
no-ops, so only kubetune and the storage are timed — once (the first load of a
fresh operator, which reads every trial) and then repeatedly with one new trial
finishing between ticks (steady state). It records the tick times and the size
of the Study status the tick writes.

``python benchmarks/scale.py [--quick | --full]``
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

from _bench import (
    Postgres,
    environment_block,
    markdown_table,
    options,
    percentile,
    print_table,
    record,
    worker_env,
)

SIZES = {"quick": (100, 1_000), "default": (100, 1_000, 10_000), "full": (100, 1_000, 10_000)}
STEADY_TICKS = {"quick": 10, "default": 20, "full": 50}
STUDY = "scale"

SPEC: dict[str, Any] = {
    "objective": {"direction": "minimize", "metric": "val_loss"},
    "searchSpace": {
        "learning_rate": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
        "num_layers": {"type": "int", "low": 1, "high": 8},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
    },
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {"name": "median"},
    "budget": {"parallelism": 4},
    "trial": {"python": "bench_objectives:trivial"},
    "storage": {"studyName": STUDY},
}


def make_trial(number: int) -> Any:
    """A finished trial as workers leave them: 85% complete, 10% pruned, 5% failed."""
    import random

    import optuna
    from kubetune.engine import bridge
    from kubetune.study.spec import validate_spec
    from optuna.trial import TrialState

    rng = random.Random(number)
    spec = validate_spec(SPEC)
    distributions = bridge.distributions(spec)
    params = {
        "learning_rate": 10 ** rng.uniform(-4, -0.53),
        "num_layers": rng.randint(1, 8),
        "optimizer": rng.choice(["adam", "sgd", "rmsprop"]),
    }
    kind = rng.random()
    steps = 5 if kind < 0.85 else 2
    curve = {step: 1.0 / (step + 1) + rng.random() * 0.1 for step in range(steps)}
    attrs: dict[str, Any] = {
        "kubetune.worker": f"scale-trial-{number % 97:05d}",
        "kubetune.host": "n1",
    }
    if kind < 0.85:
        state, value = TrialState.COMPLETE, curve[steps - 1]
    elif kind < 0.95:
        state, value = TrialState.PRUNED, None
    else:
        state, value, curve = TrialState.FAIL, None, {}
        attrs["kubetune.fail_reason"] = "RuntimeError: CUDA out of memory (simulated)"
    return optuna.trial.create_trial(
        state=state,
        value=value,
        params=params,
        distributions=distributions,
        user_attrs=attrs,
        intermediate_values=curve,
    )


def populate(url: str, trials: int) -> float:
    """Create the study and its finished trials; seconds it took."""
    import optuna
    import psycopg2
    from kubetune.engine import bridge
    from kubetune.engine.storage import open_storage
    from kubetune.study.spec import validate_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dsn = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    database = dsn.rsplit("?", 1)[0].rsplit("/", 1)[1]

    def synchronous_commit(value: str) -> None:
        connection = psycopg2.connect(dsn)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = {value}')
        connection.close()

    # Loading test data need not wait for the disk at each commit; the measurement does.
    synchronous_commit("off")
    started = time.perf_counter()
    spec = validate_spec({**SPEC, "budget": {"maxTrials": trials + 10_000, "parallelism": 4}})
    bridge.prepare_study(open_storage(url), STUDY, spec)
    # Optuna writes a trial in ~20 statements; two processes share the work.
    half = trials // 2
    writers = [
        subprocess.Popen(
            [sys.executable, __file__, "--populate", url, str(a), str(b)], env=worker_env()
        )
        for a, b in ((0, half), (half, trials))
    ]
    if any(writer.wait() for writer in writers):
        raise RuntimeError("populating the study failed")
    took = time.perf_counter() - started
    synchronous_commit("on")
    return took


def add_trials(url: str, first: int, stop: int) -> None:
    """Add finished trials ``first`` .. ``stop - 1`` to the study, in batches."""
    import optuna
    from kubetune.engine.storage import open_storage

    study = optuna.load_study(study_name=STUDY, storage=open_storage(url))
    batch = 250
    for start in range(first, stop, batch):
        study.add_trials([make_trial(n) for n in range(start, min(stop, start + batch))])


def measure(url: str, trials: int, ticks: int) -> dict[str, Any]:
    """In this (fresh) process: tick once cold, then ``ticks`` times with a new trial each."""
    import optuna
    from kubetune.engine.storage import open_storage
    from kubetune_operator.config import OperatorConfig
    from kubetune_operator.reconciler import StudyReconciler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    status: dict[str, Any] = {}

    def patch_status(_namespace: str, _name: str, patch: Any) -> None:
        status.update(json.loads(json.dumps(patch)))

    fakes = {
        "patch_study_status": patch_status,
        "list_pods": lambda *_a, **_k: [],
        "create_pod": lambda _ns, pod: pod,
        "delete_pod": lambda *_a, **_k: None,
        "patch_pod_metadata": lambda *_a, **_k: None,
        "read_secret_value": lambda *_a, **_k: None,
        "ensure_secret": lambda *_a, **_k: None,
        "apply_configmap": lambda *_a, **_k: None,
        "delete_object": lambda *_a, **_k: None,
        "ensure_service_account": lambda *_a, **_k: None,
    }
    spec = {**SPEC, "budget": {"maxTrials": trials + 10_000, "parallelism": 4}}
    body = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "scale", "namespace": "default", "uid": "u-1", "generation": 1},
        "spec": spec,
        "status": {},
    }
    reconciler = StudyReconciler(
        OperatorConfig(storage_url=url), emit=lambda *_a: None, kube=SimpleNamespace(**fakes)
    )
    started = time.perf_counter()
    reconciler.tick(body)
    first = time.perf_counter() - started
    first_size = len(json.dumps(status))
    writer = optuna.load_study(study_name=STUDY, storage=open_storage(url))
    steady: list[float] = []
    for number in range(trials, trials + ticks):
        writer.add_trial(make_trial(number))
        body = {**body, "status": json.loads(json.dumps(status))}
        started = time.perf_counter()
        reconciler.tick(body)
        steady.append(time.perf_counter() - started)
    finished = sum(status["trials"][k] for k in ("complete", "pruned", "failed"))
    assert finished == trials + ticks, status["trials"]
    return {
        "first": first,
        "first_size": first_size,
        "steady": steady,
        "steady_size": len(json.dumps(status)),
    }


HEADERS = [
    "finished trials",
    "create s",
    "first tick s (fresh process)",
    "steady tick ms p50",
    "steady tick ms p95",
    "status bytes (first)",
    "status bytes (steady)",
]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--populate":
        add_trials(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        url, trials, ticks = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(measure(url, trials, ticks)))
        return
    args = options(__doc__.splitlines()[0])
    t0 = time.time()
    rows = []
    ticks = STEADY_TICKS[args.mode]
    with Postgres() as pg:
        version = pg.version()
        for trials in SIZES[args.mode]:
            url = pg.database("scale")
            created = populate(url, trials)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    url,
                    str(trials),
                    str(STEADY_TICKS[args.mode]),
                ],
                env=worker_env(),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            steady = [1000 * s for s in result["steady"]]
            rows.append(
                [
                    f"{trials:,}",
                    f"{created:.1f}",
                    f"{result['first']:.2f}",
                    f"{statistics.median(steady):.1f}",
                    f"{percentile(steady, 95):.1f}",
                    str(result["first_size"]),
                    str(result["steady_size"]),
                ]
            )
            print_table("scale", HEADERS, rows[-1:])
    print_table("reconcile time and status size against study size", HEADERS, rows)
    if args.no_record:
        return
    command = "python benchmarks/scale.py" + ("" if args.mode == "default" else f" --{args.mode}")
    body = f"""
Each study: finished trials written with `study.add_trials` (85% complete with 5
intermediate values, 10% pruned with 2, 5% failed with a reason; kubetune's user
attributes on each), then a fresh process runs `StudyReconciler.tick` with the
Kubernetes calls replaced by no-ops: once cold, then {STEADY_TICKS[args.mode]} times with one
more trial finished (by another storage handle) before each tick. Status bytes: the
JSON of the status the ticks wrote.

{markdown_table(HEADERS, rows)}

{environment_block(args.mode, version, time.time() - t0, command)}
"""
    record("scale", "Reconcile time and status size as a study grows (scale.py)", body, args.mode)


if __name__ == "__main__":
    main()
