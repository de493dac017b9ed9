"""Multi-node trials in the emulated cluster: each trial of a Study with
``spec.trial.nodes: 2`` runs on a gang of two pods (one process each), joined by
torchrun's rendezvous at the leader's address; Lightning DDP spans both pods,
rank 0 (on the leader) reports, and a pruned trial stops on every rank. The
pods of a gang are created together and removed together; a trial counts once.
In a Kueue queue the gang is one pod group, admitted whole (the test plays Kueue)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from scenario import (
    IMAGE,
    create,
    events,
    live_pods,
    optuna_study,
    status,
    wait_phase,
    wait_until,
)
from test_queues import PlayKueue, gated

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def ddp_spec(**trial: Any) -> dict[str, Any]:
    return {
        "objective": {"direction": "minimize", "metric": "val_loss"},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "median", "args": {"n_startup_trials": 1, "n_warmup_steps": 0}},
        "budget": {"maxTrials": 2, "parallelism": 1},
        "suspend": True,  # resumed once the two parameter sets are queued
        "trial": {
            "python": "examples.objectives.lightning_ddp:objective",
            "image": IMAGE,
            "nodes": 2,
            "processesPerNode": 1,
            **trial,
        },
    }


def test_a_two_pod_trial_completes_and_a_two_pod_trial_is_pruned(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    cluster.start()
    # One gang runs both trials in turn: its follower joins each of the leader's trials.
    create(kube, "ddp", ddp_spec(queueName="team-a-gpus", trialsPerPod=2))
    study = optuna_study(kube, storage_url, "ddp")
    # Trial 1 learns 500x slower: worse than trial 0 at every epoch, so it is pruned.
    study.enqueue_trial({"lr": 0.05, "hidden_size": 32})
    study.enqueue_trial({"lr": 0.0001, "hidden_size": 8})
    kube.patch("studies", "ddp", {"spec": {"suspend": False}})

    # The gang: two pods made together, the leader (rank 0) and its follower.
    gang = wait_until(lambda: len(live_pods(kube, "ddp")) == 2 and live_pods(kube, "ddp"))
    ranks = {p["metadata"]["labels"]["kubetune.io/node-rank"]: p for p in gang}
    assert sorted(ranks) == ["0", "1"]
    assert len({p["metadata"]["labels"]["kubetune.io/gang"] for p in gang}) == 1
    follower_env = {e["name"]: e for e in ranks["1"]["spec"]["containers"][0]["env"]}
    assert follower_env["KUBETUNE_GANG_LEADER"]["value"] == ranks["0"]["metadata"]["name"]
    assert follower_env["KUBETUNE_NODES"]["value"] == "2"
    # One Kueue pod group of two, both pods held until the group is admitted.
    group = {p["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] for p in gang}
    assert group == {gang[0]["metadata"]["labels"]["kubetune.io/gang"]}
    assert all(
        p["metadata"]["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == "2" for p in gang
    )
    assert all(gated(p) for p in gang)
    queued = wait_until(
        lambda: (
            (status(kube, "ddp").get("conditions") or [])
            and [c for c in status(kube, "ddp")["conditions"] if c["type"] == "Queued"]
        )
    )
    assert queued[0]["status"] == "True" and "1 of 1 trial pod(s)" in queued[0]["message"]

    with PlayKueue(kube, "ddp"):
        final = wait_phase(kube, "ddp", "Succeeded", timeout=240)
    first, second = optuna.load_study(study_name=study.study_name, storage=storage_url).trials
    assert [first.state, second.state] == [TrialState.COMPLETE, TrialState.PRUNED], (
        first.user_attrs,
        second.user_attrs,
    )
    # Both trials ran on two ranks, one per pod; rank 0 reported every epoch.
    assert first.user_attrs["ddp.world_size"] == 2
    assert second.user_attrs["ddp.world_size"] == 2
    assert sorted(first.intermediate_values) == [0, 1, 2, 3, 4]
    assert len(second.intermediate_values) < 5
    # Budgeted as one trial each, recorded by the leader pods.
    assert final["trials"]["complete"] == 1 and final["trials"]["pruned"] == 1
    assert first.user_attrs["kubetune.worker"] == second.user_attrs["kubetune.worker"]
    assert first.user_attrs["kubetune.worker"] == ranks["0"]["metadata"]["name"]
    assert not live_pods(kube, "ddp")
    assert not [e for e in events(kube) if e.get("type") == "Warning"]


def test_a_gang_fails_together_when_one_pod_dies(cluster: Any, kube: Any, storage_url: str) -> None:
    cluster.start()
    create(kube, "ddp-fail", ddp_spec())
    study = optuna_study(kube, storage_url, "ddp-fail")
    study.enqueue_trial({"lr": 0.05, "hidden_size": 32})
    kube.patch("studies", "ddp-fail", {"spec": {"suspend": False, "budget": {"maxTrials": 1}}})
    gang = wait_until(lambda: len(live_pods(kube, "ddp-fail")) == 2 and live_pods(kube, "ddp-fail"))
    follower = next(p for p in gang if p["metadata"]["labels"]["kubetune.io/node-rank"] == "1")
    name = follower["metadata"]["name"]
    # Once the trial runs on both pods, the follower's node is lost.
    wait_until(
        lambda: any(
            t.state == TrialState.RUNNING
            for t in optuna.load_study(study_name=study.study_name, storage=storage_url).trials
        ),
        timeout=60,
    )
    wait_until(lambda: cluster.kubelet.pid("default", name), timeout=30)
    cluster.kubelet.kill_pod_process("default", name)
    final = wait_phase(kube, "ddp-fail", "Succeeded", timeout=120)
    [trial] = optuna.load_study(study_name=study.study_name, storage=storage_url).trials
    assert trial.state == TrialState.FAIL
    reason = trial.user_attrs["kubetune.fail_reason"]
    assert name in reason and "2-pod trial" in reason, reason
    assert final["trials"]["failed"] == 1
    # The whole gang is gone, the leader with it.
    wait_until(lambda: not live_pods(kube, "ddp-fail"), timeout=30)
    assert events(kube, reason="TrialGangFailed")
    assert status(kube, "ddp-fail")["phase"] == "Succeeded"
