"""The reconciler with multi-node trials (FakeKube, a real PostgreSQL): a gang of pods
is one worker; a member that cannot start shows; a member that fails fails the trial
with its reason and stops the gang; a leader that is done takes its members."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optuna.trial import TrialState
from test_reconciler_rules import Study


def gang_of(study: Study) -> tuple[dict[str, Any], dict[str, Any]]:
    pods = sorted(study.live_pods(), key=lambda p: p["metadata"]["labels"]["kubetune.io/node-rank"])
    leader, member = pods
    return leader, member


def test_a_gang_is_one_worker_and_fails_together(make: Callable[..., Study]) -> None:
    study = make(budget={"maxTrials": 2, "parallelism": 1}, trial={"nodes": 2, "retries": 1})
    study.tick()
    leader, member = gang_of(study)
    assert leader["metadata"]["name"].endswith("-0") and member["metadata"]["name"].endswith("-1")
    # A member that cannot be scheduled holds its whole trial: it shows.
    member["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        ],
    }
    study.tick()
    assert study.condition("PodsReady")["reason"] == "Unschedulable"
    assert len(study.live_pods()) == 2, "one gang, not one per pod"
    # Scheduled; the leader claims a trial; the member's node dies.
    member["status"] = {"phase": "Running"}
    trial = study.claim(leader)
    study.exit(member, 137, "OOMKilled")
    study.tick()
    lost = study.optuna.trials[trial.number]
    assert lost.state == TrialState.FAIL
    reason = lost.user_attrs["kubetune.fail_reason"]
    assert reason.startswith(f"pod {member['metadata']['name']} was OOMKilled")
    assert f"a node of the 2-pod trial on {leader['metadata']['name']}" in reason
    assert study.events_of("TrialGangFailed")
    assert leader["metadata"]["name"] not in study.fake.pods, "the leader went with it"
    # A new gang runs the retry; when its leader is done its member goes too.
    study.tick()
    leader, member = gang_of(study)
    member["status"] = {"phase": "Running"}
    study.complete(study.claim(leader))
    study.exit(leader)
    study.tick()
    assert member["metadata"]["name"] not in study.fake.pods
    for _ in range(5):  # the leaders run the trials; the members only follow
        if study.tick():
            break
        leader, member = gang_of(study)
        member["status"] = {"phase": "Running"}
        study.complete(study.claim(leader))
        study.exit(leader)
    final = study.status
    assert final["phase"] == "Succeeded"
    assert not study.fake.pods
    assert final["trials"]["complete"] == 2 and final["trials"]["failed"] == 1


def test_suspending_stops_whole_gangs_at_once(make: Callable[..., Study]) -> None:
    study = make(budget={"maxTrials": 4, "parallelism": 2}, trial={"nodes": 3})
    study.tick()
    assert len(study.live_pods()) == 6  # two trials, three pods each
    leader = next(p for p in study.live_pods() if p["metadata"]["name"].endswith("-0"))
    trial = study.claim(leader)
    study.edit(suspend=True)
    study.tick()
    assert study.fake.pods == {}, "members go with their leaders, not a tick later"
    assert study.tick() is True  # suspended with nothing left: it rests
    stopped = study.optuna.trials[trial.number]
    assert stopped.user_attrs["kubetune.fail_reason"] == "the study was suspended"
