"""Trial pods in a Kueue queue and with priorities: what the pod carries, and how a
pod held back by the queue reads (waiting, never a start problem or a crash)."""

from __future__ import annotations

from typing import Any

import pytest
from kubetune.study.spec import SpecError, validate_spec
from kubetune_operator.pods import disruption, end_reason, queue_wait, waiting_problem
from test_operator_units import make_pod
from test_reconciler_rules import UNSCHEDULABLE  # a pod the scheduler could not place


def test_a_queued_study_pod_carries_kueues_label_gate_and_priorities() -> None:
    pod = make_pod(
        queueName="team-a-gpus",
        workloadPriorityClassName="research-high",
        priorityClassName="batch-low",
    )
    labels = pod["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a-gpus"
    assert labels["kueue.x-k8s.io/priority-class"] == "research-high"
    assert labels["kubetune.io/study"] == "lgbm"  # the operator still finds its pods
    assert pod["spec"]["schedulingGates"] == [{"name": "kueue.x-k8s.io/admission"}]
    assert pod["spec"]["priorityClassName"] == "batch-low"
    # One pod is one Kueue workload: no pod group for a single-pod trial.
    assert "kueue.x-k8s.io/pod-group-name" not in labels
    assert "kueue.x-k8s.io/pod-group-total-count" not in pod["metadata"]["annotations"]


def test_without_a_queue_no_kueue_label_and_no_gate() -> None:
    pod = make_pod(priorityClassName="batch-low")
    assert not any(key.startswith("kueue.x-k8s.io/") for key in pod["metadata"]["labels"])
    assert "schedulingGates" not in pod["spec"]
    assert pod["spec"]["priorityClassName"] == "batch-low"
    assert "priorityClassName" not in make_pod()["spec"]


@pytest.mark.parametrize(
    ("trial", "field", "words"),
    [
        ({"queueName": "Team_A"}, "spec.trial.queueName", "not a Kueue object name"),
        ({"queueName": "q" * 64}, "spec.trial.queueName", "at most 63"),
        ({"priorityClassName": "High"}, "spec.trial.priorityClassName", "not a PriorityClass"),
        (
            {"priorityClassName": "system-node-critical"},
            "spec.trial.priorityClassName",
            "Kubernetes' own pods",
        ),
        (
            {"workloadPriorityClassName": "high"},
            "spec.trial.workloadPriorityClassName",
            "set queueName too",
        ),
        (
            {"queueName": "q", "weakTrialsPriorityClassName": "low"},
            "spec.trial.weakTrialsPriorityClassName",
            "set it too",
        ),
    ],
)
def test_bad_queue_and_priority_names_are_refused_naming_the_field(
    trial: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as caught:
        validate_spec({"trial": {"python": "m:f", **trial}})
    [(path, reason)] = caught.value.problems
    assert path == field
    assert words in reason


GATED = {
    "metadata": {"name": "p"},
    "spec": {"schedulingGates": [{"name": "kueue.x-k8s.io/admission"}]},
    "status": {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
            }
        ],
    },
}


def test_a_gated_pod_waits_and_has_no_start_problem() -> None:
    assert queue_wait(GATED) == "held by the scheduling gate(s) kueue.x-k8s.io/admission"
    assert waiting_problem(GATED) is None
    # The condition alone (a gate another controller holds, status seen before spec).
    only_condition = {**GATED, "spec": {}}
    assert queue_wait(only_condition) == "Scheduling is blocked due to non-empty scheduling gates"
    assert waiting_problem(only_condition) is None
    # Admitted and bound, its status not yet updated: neither waiting nor a problem.
    bound = {**only_condition, "spec": {"nodeName": "gpu-node-1"}}
    assert queue_wait(bound) is None
    assert waiting_problem(bound) is None


def test_an_admitted_pod_that_cannot_be_placed_is_a_start_problem_again() -> None:
    unschedulable = {
        "metadata": {"name": "p"},
        "spec": {},
        "status": UNSCHEDULABLE,
    }
    assert queue_wait(unschedulable) is None
    assert waiting_problem(unschedulable) == (
        "Unschedulable",
        "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
    )


def test_a_pod_kueue_preempted_reads_as_preempted_not_deleted() -> None:
    pod = {
        "metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "phase": "Running",
            "conditions": [
                {
                    "type": "TerminationTarget",
                    "status": "True",
                    "reason": "StoppedByKueue",
                    "message": "Preempted to accommodate a higher priority Workload",
                }
            ],
        },
    }
    assert disruption(pod) == (
        "StoppedByKueue: Preempted to accommodate a higher priority Workload"
    )
    assert end_reason(pod) == (
        "pod p was preempted (StoppedByKueue: Preempted to accommodate a higher priority Workload)"
    )
    assert disruption({"metadata": {"name": "p"}, "status": {"phase": "Failed"}}) is None
