"""Many Studies on one operator: a finished or suspended Study costs the operator
no thread, so new Studies are reconciled and deletions complete however many
Studies a team keeps around."""

from __future__ import annotations

from typing import Any

import optuna
import psutil
import pytest
from scenario import create, spec, status, wait_phase, wait_until

FINISHED, SUSPENDED, RUNNING = 120, 75, 5


def _finished_optuna_study(storage: optuna.storages.BaseStorage, name: str) -> None:
    """An Optuna study that already holds its whole budget (one complete trial)."""
    study = optuna.create_study(study_name=name, storage=storage)
    study.add_trial(
        optuna.trial.create_trial(
            params={"x": 0.5},
            distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
            value=0.25,
        )
    )


@pytest.mark.slow(seconds=150)
def test_two_hundred_studies_on_one_operator(cluster: Any, kube: Any, storage_url: str) -> None:
    """Past the operator's old limit of 64 Studies (a thread each, for life): every
    Study is reconciled, the running ones finish, and deleting a finished, a suspended
    or a running Study completes while the other Studies stay."""
    storage = optuna.storages.RDBStorage(storage_url)
    finished = [f"done-{i:03d}" for i in range(FINISHED)]
    for name in finished:
        _finished_optuna_study(storage, f"fleet-{name}")
    suspended = [f"paused-{i:03d}" for i in range(SUSPENDED)]
    running = [f"busy-{i}" for i in range(RUNNING)]

    cluster.start()
    for name in finished:
        create(
            kube,
            name,
            spec(
                "quadratic",
                budget={"maxTrials": 1, "parallelism": 1},
                storage={"studyName": f"fleet-{name}"},
            ),
        )
    for name in suspended:
        create(kube, name, spec("quadratic", suspend=True))
    for name in running:
        create(
            kube,
            name,
            spec(
                "sleeps",
                budget={"maxTrials": 3, "parallelism": 1},
                trial={"trialsPerPod": 3, "env": [{"name": "KT_SLEEP", "value": "2"}]},
            ),
        )

    def phases() -> dict[str, str | None]:
        return {
            obj["metadata"]["name"]: (obj.get("status") or {}).get("phase")
            for obj in kube.list("studies", "default")
        }

    wait_until(
        lambda: (
            all(phases()[name] == "Succeeded" for name in finished)
            and all(phases()[name] == "Suspended" for name in suspended)
        ),
        timeout=240,
        every=2,
    )
    # Resting Studies hold nothing: the operator's threads do not grow with them.
    threads = psutil.Process(cluster.operator.pid).num_threads()
    assert threads < 64, f"the operator holds {threads} threads for {FINISHED + SUSPENDED} Studies"

    # Deleting completes while the others exist (it queued behind the daemons before).
    for name in (finished[7], suspended[7], running[0]):
        kube.delete("studies", name, "default")
    for name in (finished[7], suspended[7], running[0]):
        kube.wait_gone("studies", name, "default", timeout=60)

    for name in running[1:]:
        final = wait_phase(kube, name, "Succeeded", timeout=240)
        assert final["trials"]["complete"] == 3

    # A suspended Study wakes when resumed, however long it rested.
    kube.patch("studies", suspended[0], {"spec": {"suspend": False}}, "default")
    wait_until(lambda: status(kube, suspended[0]).get("phase") == "Running", timeout=60)
    assert cluster.operator.running
