"""The reconciler with queued and preempted pods (FakeKube, a real PostgreSQL): a pod
Kueue holds back waits as Queued for as long as it is held, and pods preempted again
and again never fail the study, while pods that crash the same way do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_pods_queues import GATED
from test_reconciler_rules import Study

GATED_STATUS = GATED["status"]


def test_gated_pods_wait_as_queued_through_many_ticks_then_run(make: Callable[..., Study]) -> None:
    study = make(budget={"maxTrials": 2, "parallelism": 2}, trial={"queueName": "gpus"})
    study.tick()
    pods = study.live_pods()
    assert len(pods) == 2
    for _ in range(10):  # however long the queue holds them
        for pod in pods:
            pod["status"] = dict(GATED_STATUS)
        study.tick()
    assert study.status["phase"] == "Running"
    queued = study.condition("Queued")
    assert (queued["status"], queued["reason"]) == ("True", "WaitingForAdmission")
    assert "2 of 2 trial pod(s) wait in the Kueue LocalQueue 'gpus'" in queued["message"]
    assert study.condition("PodsReady").get("status") != "False"
    assert study.live_pods() == pods, "none replaced, none added"
    assert study.status.get("failedPodsWithoutTrials", 0) == 0
    assert len(study.events_of("Queued")) == 1
    assert not [e for e in study.events if e[0] == "Warning"]
    # Admitted: the gate goes and they run.
    for pod in pods:
        pod["spec"].pop("schedulingGates")
    final = study.run_to_end()
    assert final["phase"] == "Succeeded"
    assert study.condition("Queued")["status"] == "False"


def test_queued_pods_the_last_trials_do_not_need_are_removed(make: Callable[..., Study]) -> None:
    study = make(budget={"maxTrials": 2, "parallelism": 2}, trial={"queueName": "gpus"})
    study.tick()
    running, waiting = study.live_pods()
    waiting["status"] = dict(GATED_STATUS)
    running["spec"].pop("schedulingGates")
    first = study.claim(running)
    study.complete(first)
    study.claim(running)  # the last trial runs: the queued pod could only find nothing
    study.tick()
    assert waiting["metadata"]["name"] not in study.fake.pods
    assert running["metadata"]["name"] in study.fake.pods


def add_finished(study: Study, *values: float) -> None:
    """Finished trials whose curve is flat at ``value`` at steps 0, 1 and 2."""
    import optuna

    for value in values:
        study.optuna.add_trial(
            optuna.trial.create_trial(
                value=value,
                params={"x": 0.0},
                distributions={"x": optuna.distributions.FloatDistribution(-10, 10)},
                intermediate_values={0: value, 1: value, 2: value},
            )
        )


def preempt(pod: dict[str, Any]) -> None:
    """Kueue's preemption as the operator sees it: the condition, then the pod's end."""
    pod["status"] = {
        "phase": "Failed",
        "conditions": [
            {
                "type": "TerminationTarget",
                "status": "True",
                "reason": "StoppedByKueue",
                "message": "Preempted to accommodate a higher priority Workload",
            }
        ],
        "containerStatuses": [
            {"name": "trial", "state": {"terminated": {"exitCode": 143, "reason": "Error"}}}
        ],
    }


@pytest.mark.parametrize("preempted", [True, False])
def test_preempted_pods_never_fail_the_study_but_crashing_ones_do(
    make: Callable[..., Study], preempted: bool
) -> None:
    study = make(budget={"maxTrials": 4, "parallelism": 1})
    study.tick()
    for _ in range(4):  # four pods in a row lost before their first trial
        (pod,) = study.live_pods()
        pod["status"] = {"phase": "Running"}
        if preempted:
            preempt(pod)
        else:
            study.exit(pod, 143, "Error")
        if study.tick():
            break
    if preempted:
        assert study.status["phase"] == "Running"
        assert study.status.get("failedPodsWithoutTrials", 0) == 0
        [*_, last] = study.events_of("TrialPodPreempted")
        assert len(study.events_of("TrialPodPreempted")) == 4
        assert last.endswith(
            "was preempted (StoppedByKueue: Preempted to accommodate a higher priority Workload)"
        )
        assert not study.events_of("TrialPodFailed")
        assert study.run_to_end()["phase"] == "Succeeded"
    else:
        assert study.status["phase"] == "Failed"
        assert "3 workers in a row" in study.status["message"]


#: A queued trial whose pod's Kueue priority follows its rank among the running trials.
RANKED_TRIAL = {
    "queueName": "gpus",
    "workloadPriorityClassName": "research",
    "weakTrialsPriorityClassName": "research-preemptible",
}


def test_the_weaker_half_of_running_trials_is_preempted_first(
    make: Callable[..., Study],
) -> None:
    """With weakTrialsPriorityClassName, a running trial's pod carries the lower Kueue
    WorkloadPriorityClass while the pruner's view ranks it worse than the median at its
    step, and gets the Study's back when it recovers."""

    study = make(
        budget={"maxTrials": 10, "parallelism": 2},
        trial=RANKED_TRIAL,
    )
    study.tick()
    add_finished(study, 1.0, 2.0, 3.0)  # the median at each step is 2.0
    strong_pod, weak_pod = study.live_pods()
    for pod in (strong_pod, weak_pod):
        pod["spec"].pop("schedulingGates")
    strong, weak = study.claim(strong_pod), study.claim(weak_pod)
    strong.report(1.5, step=1)
    weak.report(2.5, step=1)
    study.tick()

    def priority(pod: dict[str, Any]) -> str:
        return pod["metadata"]["labels"]["kueue.x-k8s.io/priority-class"]

    assert priority(strong_pod) == "research"
    assert priority(weak_pod) == "research-preemptible"
    weak.report(0.5, step=2)  # it recovers: better than the median at step 2
    study.tick()
    assert priority(weak_pod) == "research"


def test_a_kueue_that_refuses_the_class_change_is_said_once(
    make: Callable[..., Study],
) -> None:
    """Older Kueue versions keep a running pod's WorkloadPriorityClass fixed: one Warning
    naming the field, and the study runs on unranked."""

    class Refused(Exception):
        status = 403
        reason = "Forbidden"
        body = '{"message": "admission webhook \\"vpod.kb.io\\" denied the request"}'

    study = make(
        budget={"maxTrials": 10, "parallelism": 1},
        trial=RANKED_TRIAL,
    )
    study.tick()
    add_finished(study, 1.0, 2.0)
    (pod,) = study.live_pods()
    pod["spec"].pop("schedulingGates")
    study.claim(pod).report(9.0, step=0)
    allowed = study.fake.patch_pod_metadata

    def refuse_class_changes(namespace: str, name: str, labels: Any = None, **kw: Any) -> None:
        if labels and "kueue.x-k8s.io/priority-class" in labels:
            raise Refused()
        allowed(namespace, name, labels=labels, **kw)

    study.fake.patch_pod_metadata = refuse_class_changes  # type: ignore[method-assign]
    study.tick()
    study.tick()
    [warning] = study.events_of("PriorityChangeRefused")
    assert warning.startswith("spec.trial.weakTrialsPriorityClassName: the API server refused")
    assert "denied the request" in warning
    assert study.status["phase"] == "Running"
