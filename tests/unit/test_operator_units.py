"""The operator's pure parts: trial pods, status, names, its command line."""

from __future__ import annotations

import json
from typing import Any

import optuna
import pytest
from kubetune.ledger import TrialLedger
from kubetune.spec import MAX_PARETO_FRONT, validate_spec
from kubetune_operator.cli import _parser, kopf_arguments
from kubetune_operator.config import OperatorConfig
from kubetune_operator.labels import best_params_configmap, optuna_study_name, pod_prefix
from kubetune_operator.pods import end_reason, trial_pod, waiting_problem
from kubetune_operator.status import set_condition, trial_status

META = {"name": "lgbm", "namespace": "team-a", "uid": "1234-abcd"}


def make_pod(**trial: Any) -> dict[str, Any]:
    spec = validate_spec({"trial": {"python": "m:f", **trial}})
    return trial_pod(
        META,
        spec,
        OperatorConfig(trial_service_account="kubetune-trial"),
        optuna_name="team-a.lgbm.1234-abcd",
        secret=("pg", "url"),
        worker_index=7,
    )


def test_trial_pod_shape() -> None:
    pod = make_pod(
        image="me/trial:1",
        resources={"limits": {"nvidia.com/gpu": 1, "memory": "4Gi"}},
        env=[{"name": "A", "value": "1"}],
        nodeSelector={"gpu": "a100"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
        trialsPerPod=3,
    )
    spec = pod["spec"]
    container = spec["containers"][0]
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "4Gi"}
    assert container["image"] == "me/trial:1"
    assert container["command"] == ["kubetune-trial"]
    assert spec["nodeSelector"] == {"gpu": "a100"}
    assert spec["tolerations"][0]["key"] == "gpu"
    assert spec["volumes"][0]["name"] == "data"
    assert container["volumeMounts"][0]["mountPath"] == "/data"
    assert spec["serviceAccountName"] == "kubetune-trial"
    assert spec["automountServiceAccountToken"] is False
    env = {e["name"]: e for e in container["env"]}
    assert env["KUBETUNE_STORAGE_URL"] == {
        "name": "KUBETUNE_STORAGE_URL",
        "valueFrom": {"secretKeyRef": {"name": "pg", "key": "url"}},
    }
    assert env["KUBETUNE_TRIALS_PER_WORKER"]["value"] == "3"
    assert env["KUBETUNE_WORKER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["A"]["value"] == "1"
    meta = pod["metadata"]
    assert meta["labels"]["kubetune.io/study"] == "lgbm"
    assert meta["ownerReferences"][0]["uid"] == "1234-abcd"
    assert meta["ownerReferences"][0]["controller"] is True


def test_default_image_and_no_plain_url_in_pod() -> None:
    pod = make_pod()
    assert pod["spec"]["containers"][0]["image"].startswith("ghcr.io/kubetune/trial")
    assert "postgresql" not in json.dumps(pod)


def test_names_fit_kubernetes_limits() -> None:
    name = "a" * 63
    assert len(pod_prefix(name)) + 5 <= 63
    assert len(best_params_configmap(name)) <= 63
    assert pod_prefix(name) != pod_prefix("a" * 62 + "b")
    assert optuna_study_name("ns", "s", "uid") == "ns.s.uid"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
                ],
            },
            "pod p was OOMKilled (exit code 137); raise its memory limit",
        ),
        (
            {"phase": "Failed", "reason": "Evicted", "message": "low on memory"},
            "pod p was evicted: low on memory",
        ),
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "state": {
                            "terminated": {
                                "exitCode": 3,
                                "reason": "Error",
                                "message": "spec.trial.python: bad",
                            }
                        }
                    }
                ],
            },
            "pod p exited with code 3 (Error): spec.trial.python: bad",
        ),
    ],
)
def test_end_reasons(status: dict[str, Any], expected: str) -> None:
    assert end_reason({"metadata": {"name": "p"}, "status": status}) == expected


def test_deleted_running_pod_reason_and_waiting_problems() -> None:
    pod = {"metadata": {"name": "p", "deletionTimestamp": "x"}, "status": {"phase": "Running"}}
    assert end_reason(pod) == "pod p was deleted while its trial was running"
    pulling = {
        "status": {
            "containerStatuses": [
                {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}
            ]
        }
    }
    assert waiting_problem(pulling) == ("ImagePullBackOff", "no such image")
    assert waiting_problem({"status": {"phase": "Running"}}) is None


def test_status_size_does_not_grow_with_trials() -> None:
    spec = validate_spec(
        {
            "objective": {"directions": ["minimize", "maximize"]},
            "trial": {"python": "m:f"},
        }
    )
    study = optuna.create_study(directions=["minimize", "maximize"])
    ledger = TrialLedger(["minimize", "maximize"])
    sizes = []
    for batch in range(3):
        for i in range(200):
            x = (batch * 200 + i) / 600
            study.add_trial(
                optuna.trial.create_trial(
                    params={"x": x},
                    distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                    values=[x, x],  # every trial is Pareto-optimal: the front is as large as can be
                )
            )
        ledger.update(study.get_trials(deepcopy=False))
        status = trial_status(spec, ledger)
        assert len(status["paretoFront"]) == MAX_PARETO_FRONT
        sizes.append(len(json.dumps(status)))
    assert max(sizes) - min(sizes) < 50, sizes


def test_single_objective_best_trial_in_status() -> None:
    spec = validate_spec(
        {
            "objective": {"direction": "maximize"},
            "trial": {"python": "m:f"},
            "budget": {"maxTrials": 10},
        }
    )
    study = optuna.create_study(direction="maximize")
    for value in (0.1, 0.9, 0.5):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": value},
                distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                value=value,
            )
        )
    status = trial_status(spec, TrialLedger.of(study.get_trials(deepcopy=False), ["maximize"]))
    assert status["bestTrial"] == {"number": 1, "value": 0.9, "params": {"x": 0.9}}
    assert status["progress"] == "3/10"
    assert status["trials"]["complete"] == 3


def test_condition_transition_time_changes_only_with_status() -> None:
    first = set_condition([], "PodsReady", "False", "Unschedulable", "no GPU")
    again = set_condition(first, "PodsReady", "False", "Unschedulable", "still no GPU")
    assert again[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert again[0]["message"] == "still no GPU"
    assert len(again) == 1


def test_operator_command_line() -> None:
    args = _parser().parse_args([])
    assert kopf_arguments(args) == [
        "run",
        "-m",
        "kubetune_operator.handlers",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--standalone",
        "--all-namespaces",
    ]
    args = _parser().parse_args(["-n", "a", "-n", "b", "--peering", "kubetune"])
    assert kopf_arguments(args)[3:] == [
        "--liveness=http://0.0.0.0:8080/healthz",
        "--peering=kubetune",
        "--namespace",
        "a",
        "--namespace",
        "b",
    ]
    config = OperatorConfig.from_env(
        {"KUBETUNE_STORAGE_URL": "postgresql://x", "KUBETUNE_TRIAL_IMAGE": "i"}
    )
    assert (config.storage_url, config.trial_image) == ("postgresql://x", "i")
