"""kubetune.Client against the emulated API server, with the real operator running."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import optuna
import pytest
from harness.studies import study_document
from kubetune.errors import NotFound, NotReady, SpecChangeRefused, StudyFailed, WaitTimeout

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

IMAGE = "ghcr.io/kubetune/trial:test"


def spec(function: str, max_trials: int, **trial: Any) -> dict[str, Any]:
    return {
        "objective": {"direction": "minimize"},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"maxTrials": max_trials, "parallelism": 1},
        # Many trials per pod: a pod's start-up costs more than these trials.
        "trial": {
            "python": f"kt_test_objectives:{function}",
            "image": IMAGE,
            "trialsPerPod": 20,
            **trial,
        },
    }


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


def test_submit_wait_best_trials_update_and_delete(
    cluster: Any, client: Any, storage_url: str
) -> None:
    cluster.start()
    quad = spec("quadratic", 5)
    # Warm start: both sets run first, in order, before the sampler proposes anything.
    client.submit(study_document("quad", quad), enqueue=[{"x": 2.0}, {"x": 1.0}])
    done = client.wait("quad", timeout=90, progress=False)
    assert done.status is not None and done.status.phase == "Succeeded"
    assert client.best_params("quad") == {"x": 2.0}
    best = client.best_trial("quad")
    assert (best.number, best.value) == (0, 0.0)

    rows = client.trials("quad")
    assert [r.number for r in rows] == [0, 1, 2, 3, 4]
    assert [r.params for r in rows[:2]] == [{"x": 2.0}, {"x": 1.0}]
    assert all(r.state == "COMPLETE" and r.pod and r.pod.startswith("quad-trial-") for r in rows)
    assert all(r.duration is not None and r.duration >= 0 for r in rows)
    frame = client.trials("quad", as_dataframe=True)
    assert list(frame["number"]) == [0, 1, 2, 3, 4]
    assert frame.loc[0, "params_x"] == 2.0 and frame.loc[0, "value"] == 0.0
    # The client found the database through the operator's <study>-storage Secret.
    assert done.status.study_name in optuna.get_all_study_names(storage_url)

    # Submitting it again changes nothing; changing its sampler is refused.
    generation = client.get_object("quad")["metadata"]["generation"]
    client.submit(study_document("quad", quad))
    assert client.get_object("quad")["metadata"]["generation"] == generation
    with pytest.raises(SpecChangeRefused, match=r"has started; changing its sampler") as refused:
        client.submit(study_document("quad", {**quad, "sampler": {"name": "tpe"}}))
    assert refused.value.fields == ["sampler"]

    # A bigger budget continues it: wait must not take the old Succeeded for the new one.
    bigger = {**quad, "budget": {"maxTrials": 7, "parallelism": 1}}
    client.submit(study_document("quad", bigger))
    configured = client.get_object("quad")
    assert configured["metadata"]["generation"] == generation + 1
    assert configured["spec"]["budget"]["maxTrials"] == 7
    done = client.wait("quad", timeout=90, progress=False)
    assert done.status is not None and done.status.trials.complete == 7
    # A set already tried is not queued again.
    assert client.enqueue("quad", {"x": 2.0}) == 0

    assert {e["reason"] for e in client.events("quad")} >= {"NewBestTrial", "MaxTrialsReached"}
    assert [s.metadata.name for s in client.list()] == ["quad"]
    with pytest.raises(NotFound, match="pods of study"):
        client.logs("quad")  # pods that succeeded are gone
    with pytest.raises(NotFound, match="is gone"):
        client.logs("quad", trial=0)

    # Deleting returns at once; the operator's finalizer then stops what is left.
    client.delete("quad")
    assert client.get_object("quad")["metadata"].get("deletionTimestamp")
    with pytest.raises(NotFound, match='study "nope" not found in namespace "default"'):
        client.get("nope")
    with pytest.raises(NotFound, match='study "nope"'):
        client.delete("nope")


def test_logs_suspend_resume_and_failure(cluster: Any, client: Any) -> None:
    cluster.start()
    client.submit(
        study_document("sleepy", spec("sleeps", 3, env=[{"name": "KT_SLEEP", "value": "1.5"}]))
    )
    client.submit(
        study_document(
            "broken", {**spec("raises", 3), "budget": {"maxTrials": 3, "maxFailedTrials": 0}}
        )
    )

    # The pod running trial 1 has finished trial 0, and says so in its log.
    def second_trial_log() -> str | None:
        try:
            text = client.logs("sleepy", trial=1)
        except (NotFound, NotReady):
            return None
        return text if "trial 0 value" in text else None

    assert "trial 0 value" in wait_until(second_trial_log)
    assert "==> pod sleepy-trial-" in client.logs("sleepy")

    client.suspend("sleepy")
    suspended = wait_until(
        lambda: (client.get_object("sleepy").get("status") or {}).get("phase") == "Suspended"
    )
    assert suspended
    with pytest.raises(WaitTimeout, match="did not finish within 1 s"):
        client.wait("sleepy", timeout=1, progress=False)
    client.resume("sleepy")
    done = client.wait("sleepy", timeout=90, progress=False)
    assert done.status is not None and done.status.trials.complete == 3

    with pytest.raises(StudyFailed) as failed:
        client.wait("broken", timeout=90, progress=False)
    assert failed.value.reason == "TooManyFailedTrials"
    assert failed.value.condition is not None and failed.value.condition["type"] == "Failed"
    reasons = [r.fail_reason for r in client.trials("broken", states=["FAIL"])]
    assert reasons and "boom: the objective broke" in str(reasons[0])


def test_typed_builders_are_sent_as_the_user_wrote_them(
    client: Any, emulator_server: Any, kube: Any
) -> None:
    """A Study built from the typed models is sent with only what the user set
    (camelCase, no defaults filled in), into the namespace asked for."""
    from kubetune import space
    from kubetune.study.spec import Budget, ObjectMeta, SpecError, Study, StudySpec, TrialTemplate

    kube.create(
        "namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-ns"}},
        None,
    )
    study = Study(
        metadata=ObjectMeta(name="typed", labels={"team": "ml"}),
        spec=StudySpec(
            search_space=space.search_space({"x": (0.0, 1.0)}),
            budget=Budget(max_trials=9),
            trial=TrialTemplate(python="train:objective"),
        ),
    )
    client.submit(study, namespace="team-ns")
    requests = emulator_server.call(lambda: [dict(e) for e in emulator_server.emulator.request_log])
    sent = [
        json.loads(r["body"])
        for r in requests
        if r["method"] == "POST" and r["path"].endswith("/namespaces/team-ns/studies")
    ]
    assert len(sent) == 1
    assert sent[0]["metadata"] == {
        "name": "typed",
        "namespace": "team-ns",
        "labels": {"team": "ml"},
    }
    assert sent[0]["spec"] == {
        "searchSpace": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "budget": {"maxTrials": 9},
        "trial": {"python": "train:objective"},
    }
    with pytest.raises(SpecError, match="no such file"):
        client.submit("missing-study.yaml")
