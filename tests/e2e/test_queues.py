"""Studies in a Kueue queue, in the emulated cluster: trial pods are created behind
Kueue's admission gate, wait as Queued (not failing, not stuck, not crash-looping)
for as long as the queue holds them, and run once admitted. The test plays Kueue by
removing the gate, as Kueue does when it admits a workload; the fake kubelet keeps a
gated pod Pending with PodScheduled=False reason SchedulingGated, as Kubernetes does."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubetune.cli import app
from scenario import (
    condition,
    create,
    events,
    live_pods,
    optuna_study,
    running_trial_pod,
    spec,
    status,
    wait_phase,
    wait_until,
)
from typer.testing import CliRunner

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

GATE = "kueue.x-k8s.io/admission"


def gated(pod: dict[str, Any]) -> bool:
    return any(g.get("name") == GATE for g in pod["spec"].get("schedulingGates") or [])


def admit(kube: Any, pod: dict[str, Any]) -> None:
    """What Kueue does to admit a pod: remove its scheduling gate (a JSON patch)."""
    kube.patch("pods", pod["metadata"]["name"], [{"op": "remove", "path": "/spec/schedulingGates"}])


class PlayKueue:
    """Admits every gated pod of a study, once started, until stopped."""

    def __init__(self, kube: Any, study: str) -> None:
        self.kube, self.study = kube, study
        self.admitted: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PlayKueue:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pod in live_pods(self.kube, self.study):
                if gated(pod):
                    admit(self.kube, pod)
                    self.admitted.add(pod["metadata"]["name"])


def test_a_queued_study_waits_as_queued_then_runs_when_admitted(
    cluster: Any, kube: Any, storage_url: str, kubeconfig: Path
) -> None:
    cluster.start()
    create(
        kube,
        "queued",
        spec(
            "quadratic",
            budget={"maxTrials": 4, "parallelism": 2},
            trial={"queueName": "team-a-gpus", "workloadPriorityClassName": "research"},
        ),
    )
    pods = wait_until(lambda: len(live_pods(kube, "queued")) == 2 and live_pods(kube, "queued"))
    for pod in pods:
        assert gated(pod)
        assert pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpus"
        assert pod["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "research"
    queued = wait_until(
        lambda: (
            condition(status(kube, "queued"), "Queued").get("status") == "True"
            and status(kube, "queued")
        )
    )
    message = condition(queued, "Queued")["message"]
    assert "2 of 2 trial pod(s) wait in the Kueue LocalQueue 'team-a-gpus'" in message
    # The kubelet reports what Kubernetes reports for a gated pod.
    scheduled = wait_until(
        lambda: [
            c
            for p in live_pods(kube, "queued")
            for c in (p.get("status") or {}).get("conditions") or []
            if c.get("reason") == "SchedulingGated"
        ]
    )
    assert scheduled[0]["status"] == "False"
    # Held well past several reconciles: the same two pods wait, none is replaced,
    # nothing is called failing or unable to start.
    time.sleep(4)
    held = status(kube, "queued")
    assert held["phase"] == "Running"
    assert condition(held, "Queued")["status"] == "True"
    assert condition(held, "PodsReady").get("status") != "False"
    assert held.get("failedPodsWithoutTrials", 0) == 0
    assert {p["metadata"]["name"] for p in live_pods(kube, "queued")} == {
        p["metadata"]["name"] for p in pods
    }
    assert not [e for e in events(kube) if e.get("type") == "Warning"]
    assert len(events(kube, reason="Queued")) == 1
    # `kubetune watch` says why the study makes no progress, from its first line.
    watched = CliRunner().invoke(
        app, ["watch", "queued", "--timeout", "2"], env={"KUBECONFIG": str(kubeconfig)}
    )
    assert watched.exit_code == 6, watched.output
    assert "Queued=True (WaitingForAdmission)" in watched.output
    assert "team-a-gpus" in watched.output

    with PlayKueue(kube, "queued") as kueue:
        final = wait_phase(kube, "queued", "Succeeded")
    assert final["trials"]["complete"] == 4
    assert condition(final, "Queued")["status"] == "False"
    study = optuna_study(kube, storage_url, "queued")
    # Every trial ran in a pod the queue admitted, one pod per trial.
    assert {t.user_attrs["kubetune.worker"] for t in study.trials} <= kueue.admitted
    assert not [e for e in events(kube) if e.get("type") == "Warning"]


def test_bad_queue_and_priority_names_fail_the_study_naming_the_field(
    cluster: Any, kube: Any
) -> None:
    cluster.start()
    create(kube, "bad-queue", spec("quadratic", trial={"queueName": "Team_A"}))
    create(kube, "bad-priority", spec("quadratic", trial={"priorityClassName": "High"}))
    queue = wait_phase(kube, "bad-queue", "Failed", timeout=30)
    priority = wait_phase(kube, "bad-priority", "Failed", timeout=30)
    assert queue["message"].startswith("spec.trial.queueName: 'Team_A' is not a Kueue object name")
    assert priority["message"].startswith(
        "spec.trial.priorityClassName: 'High' is not a PriorityClass name"
    )
    assert not live_pods(kube, "bad-queue") and not live_pods(kube, "bad-priority")


def test_a_trial_pod_kueue_preempts_is_replaced_and_never_counted_a_crash(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    cluster.start()
    create(
        kube,
        "preempted",
        spec(
            "sleeps",
            budget={"maxTrials": 2, "parallelism": 1},
            trial={
                "queueName": "team-a-gpus",
                "retries": 1,
                "env": [{"name": "KT_SLEEP", "value": "6"}],
            },
        ),
    )
    with PlayKueue(kube, "preempted"):
        pod = running_trial_pod(kube, "preempted")
        name = pod["metadata"]["name"]
        # Kueue's preemption of an admitted pod: the condition on its status, then deletion.
        preempted = {
            "type": "TerminationTarget",
            "status": "True",
            "reason": "StoppedByKueue",
            "message": "Preempted to accommodate a higher priority Workload",
        }
        conditions = [*(pod["status"].get("conditions") or []), preempted]
        kube.patch("pods", name, {"status": {"conditions": conditions}}, subresource="status")
        kube.delete("pods", name)
        final = wait_phase(kube, "preempted", "Succeeded", timeout=120)
    study = optuna_study(kube, storage_url, "preempted")
    lost = next(t for t in study.trials if t.user_attrs.get("kubetune.worker") == name)
    assert lost.state.name == "FAIL"
    # The worker's own SIGTERM hand-back usually tells first; else the operator does.
    assert lost.user_attrs["kubetune.fail_reason"] in (
        f"worker {name} was stopped by SIGTERM",
        f"pod {name} was preempted "
        "(StoppedByKueue: Preempted to accommodate a higher priority Workload)",
    )
    retry = [t for t in study.trials if t.params == lost.params and t.state.name == "COMPLETE"]
    assert retry, "the preempted trial ran again with its parameters"
    assert final["trials"]["complete"] == 2 and final.get("failedPodsWithoutTrials", 0) == 0
    assert not events(kube, reason="TrialPodFailed")
