"""The operator's scenarios that only a running operator shows: pruning across real
pods, pods killed and deleted under running trials, deleting a Study (the finalizer),
the operator killed mid-study.

The reconcile rules (failures, suspend, scaling, timeouts, goals, refused edits, pod
conditions, storage from a Secret, the Pareto front...) are unit tests of the reconciler:
tests/unit/test_reconciler_rules.py, whose docstring lists where each scenario that was
here went."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from scenario import (
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

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def test_pruning_works_across_pods(cluster: Any, kube: Any, storage_url: str) -> None:
    cluster.start()
    create(
        kube,
        "prune",
        spec(
            "by_parity",
            budget={"maxTrials": 6, "parallelism": 2},
            pruner={"name": "median", "args": {"n_startup_trials": 1}},
        ),
    )
    final = wait_phase(kube, "prune", "Succeeded")
    study = optuna_study(kube, storage_url, "prune")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, states(study)
    assert all(t.number % 2 == 1 for t in pruned)
    assert final["trials"]["pruned"] == len(pruned)
    assert final["trials"]["complete"] + final["trials"]["pruned"] == 6
    assert len({t.user_attrs["kubetune.worker"] for t in study.trials}) == 6  # one pod each


def test_deleting_a_study_removes_its_pods_and_keeps_its_data(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    cluster.start()
    create(
        kube,
        "gone",
        spec("sleeps", trial={"env": [{"name": "KT_SLEEP", "value": "30"}]}),
    )
    pod = running_trial_pod(kube, "gone")
    study_name = status(kube, "gone")["studyName"]
    # Deleted while the other pod may still be claiming: it finds the study marked ended
    # and claims nothing, or fails what it claimed with the study's reason, queuing no
    # copy (bridge.mark_ended; made to happen on purpose in
    # tests/integration/test_study_end_marker.py).
    kube.delete("studies", "gone", "default")
    kube.wait_gone("studies", "gone", "default", timeout=30)
    wait_until(lambda: not kube.list("pods", "default", label_selector="kubetune.io/study=gone"))
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    assert study.trials, "the Optuna study is kept"
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # The trials that were running (30 s of sleep) end FAIL, saying why.
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert pod["metadata"]["name"] in [t.user_attrs.get("kubetune.worker") for t in failed]
    assert {t.user_attrs.get("kubetune.fail_reason") for t in failed} == {"the Study was deleted"}
    assert kube.get("configmaps", "gone-best-params", "default", missing_ok=True) is None
    # onDelete: delete (dropping the Optuna study too) is a rule of the reconciler's
    # delete: tests/unit/test_reconciler_rules.py::test_on_delete_delete_drops_the_optuna_study


def test_operator_killed_mid_study_loses_and_duplicates_nothing(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    operator = cluster.start()
    create(
        kube,
        "restart",
        spec(
            "sleeps",
            budget={"maxTrials": 6, "parallelism": 2},
            trial={"env": [{"name": "KT_SLEEP", "value": "0.7"}]},
        ),
    )
    running_trial_pod(kube, "restart")
    operator.kill()
    most_pods = len(live_pods(kube, "restart"))
    operator = cluster.start()
    final = wait_phase(kube, "restart", "Succeeded")
    study = optuna_study(kube, storage_url, "restart")
    assert states(study) == {"COMPLETE": 6}
    assert {state: n for state, n in final["trials"].items() if n} == {"complete": 6}, final
    assert most_pods <= 2
    assert len(events(kube, reason="NewBestTrial")) == len(
        {e["message"] for e in events(kube, reason="NewBestTrial")}
    ), "the restarted operator repeated an event"


def test_evicted_and_deleted_pods_fail_their_trials_with_reasons(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    cluster.start()
    create(
        kube,
        "chaos",
        spec(
            "sleeps",
            budget={"maxTrials": 3, "parallelism": 2},
            trial={"retries": 2, "env": [{"name": "KT_SLEEP", "value": "2"}]},
        ),
    )
    first = running_trial_pod(kube, "chaos")["metadata"]["name"]
    cluster.kubelet.evict_pod("default", first)
    second = wait_until(
        lambda: next(
            (
                p["metadata"]["name"]
                for p in live_pods(kube, "chaos")
                if p["metadata"]["name"] != first
                and (p["metadata"].get("labels") or {}).get("kubetune.io/trial")
                and p["status"].get("phase") == "Running"
            ),
            None,
        )
    )
    kube.delete("pods", second, "default")
    final = wait_phase(kube, "chaos", "Succeeded")
    study = optuna_study(kube, storage_url, "chaos")
    reasons = {
        t.user_attrs["kubetune.worker"]: t.user_attrs["kubetune.fail_reason"]
        for t in study.trials
        if t.state == TrialState.FAIL
    }
    assert reasons[first].startswith(f"pod {first} was evicted")
    # The evicted pod's trial ran again, with the same parameters, in another pod.
    evicted = next(t for t in study.trials if t.user_attrs.get("kubetune.worker") == first)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert evicted.params in [t.params for t in complete]
    assert {t.user_attrs["kubetune.worker"] for t in complete}.isdisjoint({first, second})
    assert [e for e in events(kube, reason="TrialFailed") if first in e["message"]]
    assert "was stopped by SIGTERM" in reasons[second] or "deleted" in reasons[second]
    assert final["trials"]["complete"] == 3
    # A deleted pod's worker that got its SIGTERM handed its trial back to run again:
    # stopped, not failed. One killed before it could is failed with the pod's reason.
    handed_back = "was stopped by SIGTERM" in reasons[second]
    assert final["trials"]["failed"] == (1 if handed_back else 2)
    assert final["trials"]["stopped"] == (1 if handed_back else 0)
