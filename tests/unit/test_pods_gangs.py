"""Multi-node trials' pods: a gang's pods as built, and the rules that keep a gang
together (a member lost stops the gang, a leader gone takes its members)."""

from __future__ import annotations

from typing import Any

import pytest
from kubetune.engine.gang import Gang, Launch
from kubetune.study.spec import SpecError, validate_spec
from kubetune_operator.config import OperatorConfig
from kubetune_operator.gangs import broken_gangs, is_member, leaders, new_gang, orphans
from kubetune_operator.pods import trial_pod

META = {"name": "lgbm", "namespace": "team-a", "uid": "1234-abcd"}


def gang_pods(nodes: int = 2, **trial: Any) -> list[dict[str, Any]]:
    spec = validate_spec({"trial": {"python": "m:f", "nodes": nodes, **trial}})
    return [
        trial_pod(
            META,
            spec,
            OperatorConfig(),
            optuna_name="s",
            secret=("pg", "url"),
            worker_index=1,
            gang=place,
        )
        for place in new_gang("a" * 63, nodes)
    ]


def env(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]
    }


def test_a_gangs_pods_know_their_place_and_their_leader() -> None:
    leader, follower = gang_pods(processesPerNode=4)
    assert leader["metadata"]["name"].endswith("-0") and follower["metadata"]["name"].endswith("-1")
    assert all(len(p["metadata"]["name"]) <= 63 for p in (leader, follower))
    assert "generateName" not in leader["metadata"]  # the members must know the leader's name
    gang = leader["metadata"]["labels"]["kubetune.io/gang"]
    assert follower["metadata"]["labels"]["kubetune.io/gang"] == gang
    assert env(follower)["KUBETUNE_GANG_LEADER"] == leader["metadata"]["name"]
    assert (env(leader)["KUBETUNE_NODE_RANK"], env(follower)["KUBETUNE_NODE_RANK"]) == ("0", "1")
    assert env(follower)["KUBETUNE_NODES"] == "2"
    assert env(follower)["KUBETUNE_PROCESSES_PER_NODE"] == "4"
    assert env(leader)["KUBETUNE_POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    # Read back by the runner's side:
    assert Gang.from_env(
        {k: str(v) for k, v in env(follower).items() if isinstance(v, str)}
    ).is_member


def test_a_queued_gang_is_one_kueue_pod_group() -> None:
    pods = gang_pods(nodes=3, queueName="gpus")
    groups = {p["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] for p in pods}
    assert groups == {pods[0]["metadata"]["labels"]["kubetune.io/gang"]}
    assert {p["metadata"]["annotations"]["kueue.x-k8s.io/pod-group-total-count"] for p in pods} == {
        "3"
    }
    assert all(p["spec"]["schedulingGates"] == [{"name": "kueue.x-k8s.io/admission"}] for p in pods)
    # Never mended in place: Kueue frees the gang's quota once its pods end.
    assert {p["metadata"]["annotations"]["kueue.x-k8s.io/retriable-in-group"] for p in pods} == {
        "false"
    }


def test_a_multi_node_trial_needs_a_python_objective() -> None:
    with pytest.raises(SpecError) as caught:
        validate_spec({"objective": {"metric": "m"}, "trial": {"command": ["x"], "nodes": 2}})
    [(path, reason)] = caught.value.problems
    assert path == "spec.trial.nodes" and "python objective" in reason


def phase(pod: dict[str, Any], value: str, deleting: bool = False) -> dict[str, Any]:
    meta = {**pod["metadata"], "name": pod["metadata"]["name"]}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {**pod, "metadata": meta, "status": {"phase": value}}


def test_a_lost_member_breaks_its_gang_and_a_gone_leader_takes_its_members() -> None:
    leader, follower = gang_pods()
    running = [phase(leader, "Running"), phase(follower, "Running")]
    assert broken_gangs(running, nodes=2) == [] and orphans(running) == []
    assert [p["metadata"]["name"] for p in leaders(running)] == [leader["metadata"]["name"]]
    assert is_member(follower) and not is_member(leader)

    failed = [phase(leader, "Running"), phase(follower, "Failed")]
    [(stopped, why)] = broken_gangs(failed, nodes=2)
    assert stopped["metadata"]["name"] == leader["metadata"]["name"]
    assert follower["metadata"]["name"] in why
    # A member gone from the API altogether breaks it too.
    [(_, why)] = broken_gangs([phase(leader, "Running")], nodes=2)
    assert why == f"pod {follower['metadata']['name']} is gone"
    # The leader done (or deleted): its members go, and nothing is called broken.
    done = [phase(leader, "Succeeded"), phase(follower, "Running")]
    assert broken_gangs(done, nodes=2) == []
    assert [p["metadata"]["name"] for p in orphans(done)] == [follower["metadata"]["name"]]


def test_the_rendezvous_the_leader_publishes_starts_each_node() -> None:
    launch = Launch(
        args=("-m", "train"), address="10.0.0.7", port=29500, nodes=2, processes_per_node=4
    )
    assert Launch.from_attr(launch.to_attr()) == launch
    argv = launch.argv(node_rank=1)
    assert argv[1:3] == ["-m", "torch.distributed.run"]
    assert "--nnodes=2" in argv and "--nproc-per-node=4" in argv and "--node-rank=1" in argv
    assert "--master-addr=10.0.0.7" in argv and "--master-port=29500" in argv
    assert argv[-2:] == ["-m", "train"]


class _TrialStates:
    """A storage stand-in that answers only ``get_trial(...).state``."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def get_trial(self, trial_id: int) -> Any:
        return self


def test_a_members_ranks_outliving_their_trial_are_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import time

    from kubetune_trial import gang
    from optuna.trial import TrialState

    monkeypatch.setattr(gang, "LINGER_SECONDS", 0.5)
    monkeypatch.setattr(gang, "POLL_SECONDS", 0.1)
    waiting_forever = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = time.monotonic()
    # The trial ended without this node (its leader failed before the rendezvous):
    # the ranks are stopped, and that is not this pod failing.
    assert gang._run_ranks(_TrialStates(TrialState.FAIL), 1, waiting_forever) == 0  # type: ignore[arg-type]
    assert time.monotonic() - started < 15
    # Ranks that fail while their trial runs fail the pod (and so the gang).
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    assert gang._run_ranks(_TrialStates(TrialState.RUNNING), 1, failing) == 3  # type: ignore[arg-type]
