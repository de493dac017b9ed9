"""Tenants end to end: the operator gives each namespace's trial pods a database and
role of their own, and with exactly what a pod is given, trial code reaches its own
namespace's studies and nothing else (a real operator, real trial processes, a real
PostgreSQL that asks for passwords).

The attempts themselves, and a restarted operator: tests/integration/test_tenants.py.
"""

from __future__ import annotations

import base64
from typing import Any

import optuna
import pytest
from harness.db_probe import TENANT_MAY, tenant_attempts
from scenario import create, live_pods, running_trial_pod, spec, wait_phase, wait_until
from sqlalchemy.engine import make_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def url_given_to_pod(kube: Any, pod: dict[str, Any]) -> str:
    """The storage URL a trial pod's container gets: its secretKeyRef, read as the
    kubelet reads it."""
    [container] = pod["spec"]["containers"]
    [ref] = [
        e["valueFrom"]["secretKeyRef"]
        for e in container.get("env") or []
        if e["name"] == "KUBETUNE_STORAGE_URL"
    ]
    secret = kube.get("secrets", ref["name"], pod["metadata"]["namespace"])
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def test_each_namespaces_pods_reach_only_their_own_database(
    cluster: Any, kube: Any, password_storage_url: str
) -> None:
    cluster.start(
        KUBETUNE_STORAGE_URL=password_storage_url,
        KUBETUNE_STORAGE_TENANTS="true",
        POD_NAMESPACE="default",
    )
    slow = spec(
        "sleeps",
        budget={"maxTrials": 3, "parallelism": 1},
        trial={"env": [{"name": "KT_SLEEP", "value": "1"}]},
    )
    create(kube, "same-name", slow, namespace="team-a")
    create(kube, "same-name", spec("quadratic", budget={"maxTrials": 2}), namespace="team-b")
    pods = wait_until(lambda: live_pods(kube, "same-name", "team-a"), timeout=60)
    url_a = url_given_to_pod(kube, pods[0])
    a = wait_phase(kube, "same-name", "Succeeded", namespace="team-a")
    b = wait_phase(kube, "same-name", "Succeeded", namespace="team-b")

    admin_database = str(make_url(password_storage_url).database)
    assert a["database"] == f"{admin_database}_team_a"
    assert b["database"] == f"{admin_database}_team_b"
    assert make_url(url_a).username == a["database"]  # not the operator's own user
    assert optuna.get_all_study_names(storage=url_a) == [a["studyName"]]
    assert len(optuna.load_study(study_name=a["studyName"], storage=url_a).trials) == 3
    assert (
        tenant_attempts(
            url_a, other=b["database"], other_user=b["database"], admin_database=admin_database
        )
        == TENANT_MAY
    )
    # The tenants' credentials are kept in the operator's namespace.
    for namespace in ("team-a", "team-b"):
        kube.get("secrets", f"kubetune-tenant-{namespace}", "default")


def test_upgrading_to_tenants_keeps_started_studies_where_they_are(
    cluster: Any, kube: Any, password_storage_url: str
) -> None:
    """A Study started by an operator without tenants finishes in the operator's
    database after the upgrade, nothing lost; a Study made after it gets its tenant."""
    tenants = {"KUBETUNE_STORAGE_TENANTS": "true", "POD_NAMESPACE": "default"}
    before = cluster.start(KUBETUNE_STORAGE_URL=password_storage_url)
    create(
        kube,
        "older",
        spec(
            "sleeps",
            budget={"maxTrials": 4, "parallelism": 1},
            trial={"env": [{"name": "KT_SLEEP", "value": "0.7"}]},
        ),
    )
    running_trial_pod(kube, "older")
    before.kill()
    cluster.start(KUBETUNE_STORAGE_URL=password_storage_url, **tenants)
    create(kube, "newer", spec("quadratic", budget={"maxTrials": 2}))
    older = wait_phase(kube, "older", "Succeeded")
    newer = wait_phase(kube, "newer", "Succeeded")

    assert "database" not in older
    kept = optuna.load_study(study_name=older["studyName"], storage=password_storage_url)
    assert [t.state.name for t in kept.trials] == ["COMPLETE"] * 4
    assert newer["database"] == f"{make_url(password_storage_url).database}_default"
    assert newer["studyName"] not in optuna.get_all_study_names(storage=password_storage_url)
