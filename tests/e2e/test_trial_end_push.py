"""A finished trial reaches the Study's status when it ends, not at the operator's
next look: with a reconcile period far longer than the whole study, the status
still counts each trial as it ends (the runner's NOTIFY wakes the operator), a pod
done with its trials is replaced then, and a study whose pods exit ends soon after.
benchmarks/latency.py measures how soon."""

from __future__ import annotations

from typing import Any

import pytest
from scenario import create, optuna_study, spec, status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

#: Far longer than the study: no count below can come from a periodic look.
PERIOD = "600"


def test_trial_ends_reach_the_status_without_waiting_for_the_period(
    cluster: Any, kube: Any
) -> None:
    cluster.start(KUBETUNE_RECONCILE_SECONDS=PERIOD)
    create(
        kube,
        "pushed",
        spec(
            "sleeps",
            budget={"maxTrials": 3, "parallelism": 1},
            trial={"trialsPerPod": 3, "env": [{"name": "KT_SLEEP", "value": "1"}]},
        ),
    )
    counts_seen = set()

    def complete() -> int:
        counts_seen.add((status(kube, "pushed").get("trials") or {}).get("complete", 0))
        return max(counts_seen)

    wait_until(lambda: complete() >= 3, timeout=90, every=0.05)
    assert {1, 2, 3} <= counts_seen  # each trial counted as it ended
    shown = status(kube, "pushed")
    assert shown["bestTrial"]["number"] in (0, 1, 2)
    # A pod's end is not announced, but the look the last trial's end woke saw its pod
    # with nothing left to run: the operator looks again soon, not after the period.
    wait_until(lambda: status(kube, "pushed").get("phase") == "Succeeded", timeout=60)


def test_without_push_the_status_waits_for_the_period(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    """The same study with push off stays at its first look: the test above is not
    passing by some other path."""
    cluster.start(KUBETUNE_RECONCILE_SECONDS=PERIOD, KUBETUNE_TRIAL_END_PUSH="false")
    create(
        kube,
        "polled",
        spec(
            "sleeps",
            budget={"maxTrials": 2, "parallelism": 1},
            trial={"trialsPerPod": 2, "env": [{"name": "KT_SLEEP", "value": "0.5"}]},
        ),
    )
    study = optuna_study(kube, storage_url, "polled")
    wait_until(
        lambda: [t.state.name for t in study.get_trials(deepcopy=False)] == ["COMPLETE"] * 2,
        timeout=90,
    )
    assert (status(kube, "polled").get("trials") or {}).get("complete", 0) == 0


def test_a_pod_done_with_its_trials_is_replaced_when_its_trial_ends(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    """A pod per trial (the default trialsPerPod, 1): the trial's end wakes the operator,
    which starts the next pod at once instead of at its next look after the pod has
    ended (the period, here far longer than the study)."""
    cluster.start(KUBETUNE_RECONCILE_SECONDS=PERIOD)
    create(
        kube,
        "pod-per-trial",
        spec(
            "sleeps",
            budget={"maxTrials": 3, "parallelism": 1},
            trial={"trialsPerPod": 1, "env": [{"name": "KT_SLEEP", "value": "0.2"}]},
        ),
    )
    study = optuna_study(kube, storage_url, "pod-per-trial")
    wait_until(
        lambda: [t.state.name for t in study.get_trials(deepcopy=False)] == ["COMPLETE"] * 3,
        timeout=90,
    )
    workers = {t.user_attrs["kubetune.worker"] for t in study.get_trials(deepcopy=False)}
    assert len(workers) == 3  # one pod each
