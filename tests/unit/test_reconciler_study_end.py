"""The operator marks a study that ends for good before it stops the pods
(kubetune.engine.bridge.mark_ended), and clears the mark when the study goes on; an
evicted pod whose trial resumes from its checkpoint is not a crashed worker.

The reconciler ticks against an in-memory API server and a real PostgreSQL (see
test_reconciler_rules, whose ``Study`` plays the kubelet and the trial runner).
"""

from __future__ import annotations

from pathlib import Path

from kubetune.engine import bridge
from optuna.trial import TrialState
from test_reconciler import FakeKube
from test_reconciler_rules import Study


def ended(study: Study) -> str | None:
    return bridge.stored_ended(study.optuna._storage, study.optuna._study_id)


def test_a_deleted_study_is_marked_ended_and_a_recreated_one_runs_again(storage_url: str) -> None:
    study = Study(FakeKube(), storage_url, budget={"maxTrials": 3, "parallelism": 1})
    study.tick()
    (pod,) = study.live_pods()
    study.claim(pod)
    assert ended(study) is None, "a running study is not marked"
    # The delete handler makes a fresh reconciler.
    Study(study.fake, study.url).reconciler.delete(study.meta, study.spec, dict(study.status))
    assert ended(study) == "the Study was deleted"
    (stopped,) = study.optuna.trials
    assert stopped.state == TrialState.FAIL
    assert not [t for t in study.optuna.trials if t.state == TrialState.WAITING]

    # The same Study applied again, on the same storage: it goes on with the trials kept.
    again = Study(FakeKube(), study.url, budget={"maxTrials": 3, "parallelism": 1})
    again.tick()
    assert len(again.live_pods()) == 1
    assert ended(again) is None, "its new pod may claim"
    final = again.run_to_end()
    assert final["phase"] == "Succeeded"
    # The trial the deletion stopped shows as stopped, not failed (no fault of its own),
    # and counts against maxTrials: it was not queued to run again.
    counts = final["trials"]
    assert (counts["complete"], counts["failed"], counts["stopped"]) == (2, 0, 1)
    assert ended(again) is not None, "over again, with the reason of its end"


def test_a_finished_study_whose_budget_is_raised_runs_again(storage_url: str) -> None:
    study = Study(FakeKube(), storage_url, budget={"maxTrials": 2, "parallelism": 1})
    assert study.run_to_end()["phase"] == "Succeeded"
    assert ended(study) is not None
    study.edit(budget={"maxTrials": 4})
    study.tick()
    assert study.status["phase"] == "Running"
    assert len(study.live_pods()) == 1
    assert ended(study) is None, "the new pod may claim"
    assert study.run_to_end()["trials"]["complete"] == 4


def test_a_suspended_study_is_not_ended(storage_url: str) -> None:
    study = Study(FakeKube(), storage_url, budget={"maxTrials": 4, "parallelism": 2})
    study.tick()
    for pod in study.live_pods():
        study.claim(pod)
    study.edit(suspend=True)
    study.tick()
    assert study.status["phase"] == "Suspended"
    assert ended(study) is None, "a suspend is no end: its trials run again on resume"
    assert len([t for t in study.optuna.trials if t.state == TrialState.WAITING]) == 2


def test_evicted_pods_whose_trials_resume_do_not_fail_the_study(
    storage_url: str, tmp_path: Path
) -> None:
    study = Study(
        FakeKube(),
        storage_url,
        budget={"maxTrials": 3, "parallelism": 1},
        trial={"checkpoints": {"path": str(tmp_path / "checkpoints")}},
    )
    for _ in range(4):  # more than the 3 ends without progress that fail a study
        study.tick()
        (pod,) = study.live_pods()
        study.claim(pod)
        pod["status"] = {"phase": "Failed", "reason": "Evicted", "message": "node low on memory"}
    study.tick()
    assert study.status["phase"] == "Running", study.status.get("message")
    assert study.status["failedPodsWithoutTrials"] == 0
    assert study.run_to_end()["phase"] == "Succeeded"
