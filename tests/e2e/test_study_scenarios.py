"""The operator's scenarios: pruning across pods, failures, suspend, scaling,
deletion, restarts, several namespaces."""

from __future__ import annotations

import json
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
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


def test_killed_pod_trial_fails_with_reason_and_is_retried(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    cluster.start()
    create(
        kube,
        "oom",
        spec(
            "sleeps",
            budget={"maxTrials": 2, "parallelism": 1},
            trial={"retries": 1, "env": [{"name": "KT_SLEEP", "value": "1.5"}]},
        ),
    )
    pod = running_trial_pod(kube, "oom")
    assert cluster.kubelet.kill_pod_process("default", pod["metadata"]["name"], oom=True)
    final = wait_phase(kube, "oom", "Succeeded")
    study = optuna_study(kube, storage_url, "oom")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1
    reason = failed[0].user_attrs["kubetune.fail_reason"]
    assert f"pod {pod['metadata']['name']} was OOMKilled" in reason
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2, "the retry replaces the lost attempt in the budget"
    assert failed[0].params in [t.params for t in complete]
    assert final["trials"]["failed"] == 1
    assert events(kube, reason="TrialFailed")


def test_invalid_spec_fails_the_study_with_the_field_and_no_crash_loop(
    cluster: Any, kube: Any
) -> None:
    cluster.start()
    bad = spec("quadratic", searchSpace={"lr": {"type": "float", "low": 0, "high": 1, "log": True}})
    create(kube, "bad", bad)
    final = wait_phase(kube, "bad", "Failed", timeout=30)
    failed = condition(final, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "spec.searchSpace.lr.low: must be > 0 when log is true" in failed["message"]
    assert events(kube, reason="InvalidSpec")
    assert not live_pods(kube, "bad")
    # The operator is still working: another study runs to the end.
    create(kube, "good", spec("quadratic", budget={"maxTrials": 2}))
    wait_phase(kube, "good", "Succeeded")
    assert cluster.operator.running


def test_suspend_stops_pods_and_resume_carries_on(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    cluster.start()
    create(
        kube,
        "pause",
        spec(
            "sleeps",
            budget={"maxTrials": 4, "parallelism": 2},
            trial={"env": [{"name": "KT_SLEEP", "value": "4"}]},
        ),
    )
    running_trial_pod(kube, "pause")
    kube.patch("studies", "pause", {"spec": {"suspend": True}}, "default")
    suspended = wait_phase(kube, "pause", "Suspended", timeout=30)
    assert condition(suspended, "Suspended")["status"] == "True"
    wait_until(lambda: not live_pods(kube, "pause"), timeout=30)
    study = optuna_study(kube, storage_url, "pause")
    stopped = [
        t
        for t in study.trials
        if t.state == TrialState.FAIL
        and t.user_attrs.get("kubetune.fail_reason") == "the study was suspended"
    ]
    assert stopped, states(study)
    assert any(t.state == TrialState.WAITING for t in study.trials)
    kube.patch("studies", "pause", {"spec": {"suspend": False}}, "default")
    final = wait_phase(kube, "pause", "Succeeded")
    assert final["trials"]["complete"] == 4
    study = optuna_study(kube, storage_url, "pause")
    complete_params = [t.params for t in study.trials if t.state == TrialState.COMPLETE]
    assert all(t.params in complete_params for t in stopped if t.params)


def test_raising_parallelism_takes_effect(cluster: Any, kube: Any, storage_url: str) -> None:
    cluster.start()
    create(
        kube,
        "scale",
        spec(
            "sleeps",
            budget={"maxTrials": 8, "parallelism": 1},
            trial={"env": [{"name": "KT_SLEEP", "value": "1"}]},
        ),
    )
    running_trial_pod(kube, "scale")
    assert len(live_pods(kube, "scale")) == 1
    kube.patch("studies", "scale", {"spec": {"budget": {"parallelism": 3}}}, "default")
    wait_until(lambda: len(live_pods(kube, "scale")) == 3, timeout=30)
    kube.patch("studies", "scale", {"spec": {"budget": {"maxTrials": 5}}}, "default")
    final = wait_phase(kube, "scale", "Succeeded")
    assert final["progress"] == "5/5"
    assert len(optuna_study(kube, storage_url, "scale").trials) == 5


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
    kube.delete("studies", "gone", "default")
    kube.wait_gone("studies", "gone", "default", timeout=30)
    wait_until(lambda: not kube.list("pods", "default", label_selector="kubetune.io/study=gone"))
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    assert study.trials, "the Optuna study is kept"
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    # The trials that were running (30 s of sleep) end FAIL, saying why.
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert pod["metadata"]["name"] in [t.user_attrs.get("kubetune.worker") for t in failed]
    assert {t.user_attrs.get("kubetune.fail_reason") for t in failed} == {"the Study was deleted"}
    assert kube.get("configmaps", "gone-best-params", "default", missing_ok=True) is None
    # onDelete: delete drops the Optuna study too.
    create(
        kube, "dropped", spec("quadratic", budget={"maxTrials": 1}, storage={"onDelete": "delete"})
    )
    dropped_name = wait_phase(kube, "dropped", "Succeeded")["studyName"]
    kube.delete("studies", "dropped", "default")
    kube.wait_gone("studies", "dropped", "default", timeout=30)
    assert dropped_name not in [s.study_name for s in optuna.get_all_study_summaries(storage_url)]


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


def test_two_studies_in_two_namespaces(cluster: Any, kube: Any, storage_url: str) -> None:
    cluster.start()
    create(kube, "same-name", spec("quadratic", budget={"maxTrials": 3}), namespace="team-a")
    create(kube, "same-name", spec("quadratic", budget={"maxTrials": 5}), namespace="team-b")
    a = wait_phase(kube, "same-name", "Succeeded", namespace="team-a")
    b = wait_phase(kube, "same-name", "Succeeded", namespace="team-b")
    assert a["studyName"] != b["studyName"]
    assert len(optuna.load_study(study_name=a["studyName"], storage=storage_url).trials) == 3
    assert len(optuna.load_study(study_name=b["studyName"], storage=storage_url).trials) == 5


def test_unschedulable_gpu_pod_is_a_condition_and_an_event(cluster: Any, kube: Any) -> None:
    cluster.start()
    create(
        kube,
        "gpu",
        spec("quadratic", trial={"resources": {"limits": {"nvidia.com/gpu": 1}}}),
    )
    blocked = wait_until(
        lambda: (
            condition(status(kube, "gpu"), "PodsReady").get("status") == "False"
            and status(kube, "gpu")
        ),
        timeout=30,
    )
    ready = condition(blocked, "PodsReady")
    assert ready["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in ready["message"]
    assert events(kube, reason="Unschedulable")
    pod = live_pods(kube, "gpu")[0]
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_changing_the_search_space_of_a_started_study_is_refused(cluster: Any, kube: Any) -> None:
    cluster.start()
    create(
        kube,
        "fixed",
        spec(
            "sleeps",
            budget={"maxTrials": 3, "parallelism": 1},
            trial={"env": [{"name": "KT_SLEEP", "value": "0.5"}]},
        ),
    )
    running_trial_pod(kube, "fixed")
    kube.patch("studies", "fixed", {"spec": {"sampler": {"name": "tpe", "seed": 1}}}, "default")
    refused = wait_until(
        lambda: (
            condition(status(kube, "fixed"), "SpecChangeRefused").get("status") == "True"
            and status(kube, "fixed")
        ),
        timeout=30,
    )
    assert (
        "spec.sampler: the study has started" in condition(refused, "SpecChangeRefused")["message"]
    )
    final = wait_phase(kube, "fixed", "Succeeded")
    assert final["trials"]["complete"] == 3


def test_several_trials_per_pod(cluster: Any, kube: Any, storage_url: str) -> None:
    cluster.start()
    create(
        kube,
        "batch",
        spec("quadratic", budget={"maxTrials": 6, "parallelism": 1}, trial={"trialsPerPod": 3}),
    )
    wait_phase(kube, "batch", "Succeeded")
    workers = [
        t.user_attrs["kubetune.worker"] for t in optuna_study(kube, storage_url, "batch").trials
    ]
    assert len(workers) == 6
    assert sorted(workers.count(w) for w in set(workers)) == [3, 3]


def test_objective_that_does_not_import_fails_the_study(cluster: Any, kube: Any) -> None:
    cluster.start()
    create(kube, "broken", spec("quadratic", trial={"python": "nowhere:objective"}))
    final = wait_phase(kube, "broken", "Failed", timeout=60)
    failed = condition(final, "Failed")
    assert failed["reason"] == "TrialPodsFailing"
    assert "spec.trial.python: cannot import 'nowhere'" in failed["message"]
    assert events(kube, reason="ObjectiveNotLoadable")
    assert not live_pods(kube, "broken")


def test_storage_from_a_secret(cluster: Any, kube: Any, storage_url: str) -> None:
    from scenario import secret_document

    cluster.start(KUBETUNE_STORAGE_URL="")
    create(kube, "nostore", spec("quadratic", budget={"maxTrials": 1}))
    waiting = wait_until(
        lambda: (
            condition(status(kube, "nostore"), "StorageReady").get("status") == "False"
            and status(kube, "nostore")
        ),
        timeout=30,
    )
    assert "KUBETUNE_STORAGE_URL is not set" in condition(waiting, "StorageReady")["message"]
    kube.create("secrets", secret_document("pg", storage_url), "default")
    create(
        kube,
        "secret",
        spec(
            "sleeps",
            budget={"maxTrials": 2},
            storage={"secretRef": {"name": "pg"}},
            trial={"env": [{"name": "KT_SLEEP", "value": "0.5"}]},
        ),
    )
    pod = running_trial_pod(kube, "secret")
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["KUBETUNE_STORAGE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "pg", "key": "url"}
    }
    assert storage_url not in json.dumps(pod), "the storage URL must reach pods only by reference"
    wait_phase(kube, "secret", "Succeeded")


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
    assert "was stopped by SIGTERM" in reasons[second] or "deleted" in reasons[second]
    assert final["trials"]["complete"] == 3
    # A deleted pod's worker that got its SIGTERM handed its trial back to run again:
    # stopped, not failed. One killed before it could is failed with the pod's reason.
    handed_back = "was stopped by SIGTERM" in reasons[second]
    assert final["trials"]["failed"] == (1 if handed_back else 2)
    assert final["trials"]["stopped"] == (1 if handed_back else 0)


def test_multi_objective_study_reports_a_pareto_front(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    cluster.start()
    create(
        kube,
        "pareto",
        spec(
            "two_objectives",
            objective={"directions": ["minimize", "minimize"], "metrics": ["a", "b"]},
            budget={"maxTrials": 4, "parallelism": 2},
            trial={"trialsPerPod": 2},
        ),
    )
    final = wait_phase(kube, "pareto", "Succeeded")
    study = optuna_study(kube, storage_url, "pareto")
    front = final["paretoFront"]
    assert front and len(front) <= 10
    assert {t["number"] for t in front} == {t.number for t in study.best_trials}
    assert all(len(t["values"]) == 2 for t in front)
    assert "bestTrial" not in final or final["bestTrial"] is None
    configmap = kube.get("configmaps", "pareto-best-params", "default")
    assert len(json.loads(configmap["data"]["best_params.json"])) == len(front)


def test_too_many_failed_trials_fail_the_study(cluster: Any, kube: Any) -> None:
    cluster.start()
    create(
        kube,
        "failing",
        spec(
            "raises",
            budget={"maxTrials": 20, "parallelism": 1, "maxFailedTrials": 1},
            trial={"trialsPerPod": 5},
        ),
    )
    final = wait_phase(kube, "failing", "Failed")
    failed = condition(final, "Failed")
    assert failed["reason"] == "TooManyFailedTrials"
    assert failed["message"] == "2 trials failed, more than maxFailedTrials (1)"
    assert final["trials"]["failed"] == 2
    assert not live_pods(kube, "failing")


def test_goal_and_timeout_end_the_study(cluster: Any, kube: Any, storage_url: str) -> None:
    cluster.start()
    create(
        kube,
        "goal",
        spec(
            "quadratic",
            objective={"direction": "minimize", "goal": 1000.0},
            budget={"maxTrials": 50, "parallelism": 1},
        ),
    )
    # One trial of 60 s: it is running when the 15 s timeout comes.
    create(
        kube,
        "slow",
        spec(
            "sleeps",
            budget={"maxTrials": 50, "parallelism": 1, "timeout": "15s"},
            trial={"env": [{"name": "KT_SLEEP", "value": "60"}], "trialsPerPod": 50},
        ),
    )
    goal = wait_phase(kube, "goal", "Succeeded")
    assert condition(goal, "Complete")["reason"] == "GoalReached"
    assert goal["trials"]["complete"] == 1
    pod = running_trial_pod(kube, "slow")
    slow = wait_phase(kube, "slow", "Succeeded", timeout=45)
    assert condition(slow, "Complete")["reason"] == "Timeout"
    assert {state: n for state, n in slow["trials"].items() if n} == {"failed": 1}, slow["trials"]
    # The timeout stops the pod at once, failing its trial with the reason.
    wait_until(lambda: not live_pods(kube, "slow"), timeout=15)
    trials = optuna_study(kube, storage_url, "slow").trials
    assert [(t.state, t.user_attrs.get("kubetune.worker")) for t in trials] == [
        (TrialState.FAIL, pod["metadata"]["name"])
    ]
    assert trials[0].user_attrs["kubetune.fail_reason"] == "the study stopped: Timeout"
