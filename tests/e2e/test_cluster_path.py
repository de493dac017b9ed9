"""What a real cluster asks of the operator beyond running trials: a Study works in any
namespace with nothing made by hand, a pod the API server refuses shows in the Study's
status (not only in the operator's log), and the status's best trial is replaced, never
merged with the one before."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from scenario import (
    condition,
    create,
    events,
    live_pods,
    running_trial_pod,
    spec,
    status,
    wait_phase,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_a_study_in_a_new_namespace_gets_its_trial_service_account(cluster: Any, kube: Any) -> None:
    cluster.start()
    create(
        kube,
        "elsewhere",
        spec("sleeps", budget={"maxTrials": 2, "parallelism": 1}),
        namespace="team-x",
    )
    pod = running_trial_pod(kube, "elsewhere", "team-x")
    assert pod["spec"]["serviceAccountName"] == "kubetune-trial"
    account = kube.get("serviceaccounts", "kubetune-trial", "team-x")
    # Trial pods run user code: the account carries no API token.
    assert account["automountServiceAccountToken"] is False
    # What docs/helm.md's uninstall table selects it by (helm uninstall leaves it).
    labels = account["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "kubetune"
    assert labels["app.kubernetes.io/component"] == "trial"


def test_best_trial_params_are_replaced_not_merged(cluster: Any, kube: Any) -> None:
    cluster.start()
    create(
        kube,
        "shapes",
        spec("changes_shape", budget={"maxTrials": 4, "parallelism": 1}),
    )
    seen: list[dict[str, Any]] = []

    def best_of_last_trial() -> bool:
        best = status(kube, "shapes").get("bestTrial") or {}
        if best and best not in seen:
            seen.append(best)
        return best.get("number") == 3

    wait_until(best_of_last_trial, timeout=120)
    final = wait_phase(kube, "shapes", "Succeeded")
    # The operator saw earlier best trials with the other parameter name first.
    assert {name for best in seen for name in best["params"]} == {"x_even", "x_odd"}
    assert list(final["bestTrial"]["params"]) == ["x_odd"]
    configmap = kube.get("configmaps", "shapes-best-params")
    assert list(json.loads(configmap["data"]["best_params.json"])) == ["x_odd"]


def test_a_refused_pod_is_a_condition_and_one_event(cluster: Any, kube: Any) -> None:
    """The API server refuses the trial pods (their ServiceAccount does not exist, and
    the operator was told not to make it): the Study says so, with the server's words,
    in a condition and in one Event, not one per tick; once the account exists, it runs."""
    cluster.start(
        KUBETUNE_TRIAL_SERVICE_ACCOUNT="team-trials", KUBETUNE_TRIAL_SERVICE_ACCOUNT_CREATE="false"
    )
    create(kube, "refused", spec("quadratic", budget={"maxTrials": 2, "parallelism": 1}))

    def refused() -> dict[str, Any]:
        found = condition(status(kube, "refused"), "PodsReady")
        return found if found.get("reason") == "PodCreateRefused" else {}

    found = wait_until(refused, timeout=60)
    assert found["status"] == "False"
    assert 'serviceaccount "team-trials" not found' in found["message"]
    assert status(kube, "refused")["phase"] == "Running"
    time.sleep(3)  # several reconcile ticks (0.5 s each)
    posted = events(kube, reason="PodCreateRefused")
    assert len(posted) == 1, posted
    kube.create(
        "serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "team-trials"}},
    )
    final = wait_phase(kube, "refused", "Succeeded", timeout=120)
    assert final["trials"]["complete"] == 2
    assert condition(final, "PodsReady").get("reason") != "PodCreateRefused"


def test_a_gpu_asked_for_in_requests_only_reaches_the_pod_as_a_limit(
    cluster: Any, kube: Any
) -> None:
    """Extended resources go in limits (the API server refuses them in requests alone):
    the Study's request becomes the pod's limit, and the pod tolerates GPU nodes' taint."""
    cluster.start()
    create(
        kube,
        "gpu-request",
        spec("quadratic", trial={"resources": {"requests": {"nvidia.com/gpu": 1}}}),
    )
    pod = wait_until(lambda: live_pods(kube, "gpu-request") and live_pods(kube, "gpu-request")[0])
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources.get("requests", {}).get("nvidia.com/gpu", "1") == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"][
        "tolerations"
    ]
    assert condition(status(kube, "gpu-request"), "PodsReady").get("reason") != "PodCreateRefused"
