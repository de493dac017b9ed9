"""Faults the operator must ride out: the database restarting, many studies at once.

Each ends with every trial COMPLETE, PRUNED or FAIL with a reason, the status
counts matching the storage, and never more trials than maxTrials.
"""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from scenario import OwnPostgres, assert_accounted, create, running_trial_pod, spec, wait_phase

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_postgres_restart_mid_study(cluster: Any, kube: Any) -> None:
    """Workers and the operator reconnect to a database that restarted under them."""
    with OwnPostgres("restart") as postgres:
        url = postgres.url
        cluster.start(KUBETUNE_STORAGE_URL=url)
        create(
            kube,
            "dbrestart",
            spec(
                "sleeps",
                budget={"maxTrials": 6, "parallelism": 2},
                trial={"retries": 2, "env": [{"name": "KT_SLEEP", "value": "1"}]},
            ),
        )
        running_trial_pod(kube, "dbrestart")
        postgres.restart()
        final = wait_phase(kube, "dbrestart", "Succeeded", timeout=180)
        study = optuna.load_study(study_name=final["studyName"], storage=url)
        assert_accounted(final, study, 6)
        assert final["trials"]["complete"] == 6


@pytest.mark.slow(seconds=30)
def test_twenty_studies_at_once(cluster: Any, kube: Any, storage_url: str) -> None:
    cluster.start()
    names = [f"many-{i:02d}" for i in range(20)]
    for name in names:
        create(
            kube,
            name,
            spec("quadratic", budget={"maxTrials": 2, "parallelism": 1}, trial={"trialsPerPod": 2}),
        )
    for name in names:
        final = wait_phase(kube, name, "Succeeded", timeout=200)
        study = optuna.load_study(study_name=final["studyName"], storage=storage_url)
        assert_accounted(final, study, 2)
        assert final["trials"]["complete"] == 2
    assert cluster.operator.running


def test_api_server_restart_mid_study(
    cluster: Any, kube: Any, emulator_server: Any, storage_url: str
) -> None:
    """The API server goes away for a few seconds (objects kept, as etcd keeps them):
    the operator and the kubelet reconnect and the study finishes."""
    import time

    cluster.start()
    create(
        kube,
        "apirestart",
        spec(
            "sleeps",
            budget={"maxTrials": 6, "parallelism": 2},
            trial={"retries": 2, "env": [{"name": "KT_SLEEP", "value": "1"}]},
        ),
    )
    running_trial_pod(kube, "apirestart")
    emulator_server.stop()
    time.sleep(3)
    emulator_server.start()
    final = wait_phase(kube, "apirestart", "Succeeded", timeout=180)
    study = optuna.load_study(study_name=final["studyName"], storage=storage_url)
    assert_accounted(final, study, 6)
    assert cluster.operator.running
