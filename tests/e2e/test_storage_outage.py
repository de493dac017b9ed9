"""A database that stays down longer than the operator's reconnect window: the
Study says so in a condition (without the password), and carries on when the
database is back."""

from __future__ import annotations

import time
from typing import Any

import optuna
import pytest
from scenario import (
    OwnPostgres,
    assert_accounted,
    condition,
    create,
    running_trial_pod,
    spec,
    status,
    wait_phase,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PASSWORD = "outage-Pa55word"


def test_a_long_outage_shows_as_a_condition_and_the_study_recovers(cluster: Any, kube: Any) -> None:
    with OwnPostgres("outage", password=PASSWORD) as postgres:
        # The operator gives up on a lost storage after 2 s; its pods keep their 60 s.
        cluster.start(KUBETUNE_STORAGE_URL=postgres.url, KUBETUNE_RECONNECT_SECONDS="2")
        create(
            kube,
            "outage",
            spec(
                "sleeps",
                budget={"maxTrials": 4, "parallelism": 2},
                trial={"retries": 2, "env": [{"name": "KT_SLEEP", "value": "1"}]},
            ),
        )
        running_trial_pod(kube, "outage")
        postgres.stop()
        try:
            lost = wait_until(
                lambda: (
                    (c := condition(status(kube, "outage"), "StorageReady"))
                    and c["status"] == "False"
                    and c
                ),
                timeout=60,
            )
        finally:
            time.sleep(1)
            postgres.start()
        assert "storage" in lost["message"]
        assert PASSWORD not in str(status(kube, "outage"))
        final = wait_phase(kube, "outage", "Succeeded", timeout=180)
        assert condition(final, "StorageReady")["status"] == "True"
        study = optuna.load_study(study_name=final["studyName"], storage=postgres.url)
        assert_accounted(final, study, 4)
        assert final["trials"]["complete"] == 4
