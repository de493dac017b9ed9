"""The operator's pure parts: trial pods, status, names, its command line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from kubetune.engine.ledger import TrialLedger
from kubetune.study.spec import MAX_PARETO_FRONT, TRIAL_IMAGE_UID, validate_spec
from kubetune_operator.cli import _parser, kopf_arguments
from kubetune_operator.config import OperatorConfig
from kubetune_operator.labels import best_params_configmap, optuna_study_name, pod_prefix
from kubetune_operator.pods import end_reason, trial_pod, waiting_problem
from kubetune_operator.status import set_condition, trial_status

REPO = Path(__file__).resolve().parents[2]
META = {"name": "lgbm", "namespace": "team-a", "uid": "1234-abcd"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


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


def test_trial_pod_runs_as_the_trial_images_user() -> None:
    dockerfile = (REPO / "trial_image" / "Dockerfile").read_text()
    assert re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)[-1] == (
        str(TRIAL_IMAGE_UID),
        str(TRIAL_IMAGE_UID),
    )
    spec = make_pod()["spec"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": TRIAL_IMAGE_UID,
        "runAsGroup": TRIAL_IMAGE_UID,
        "fsGroup": TRIAL_IMAGE_UID,  # volumes are writable by the trial's group
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert restricted_violations(make_pod()) == []


RESTRICTED_VOLUME_KINDS = {
    *("name", "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral"),
    *("persistentVolumeClaim", "projected", "secret"),
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What Pod Security ``restricted`` refuses, for the fields kubetune sets."""
    spec, found = pod["spec"], []
    pod_context = spec.get("securityContext") or {}
    for container in spec["containers"]:
        context = {**pod_context, **(container.get("securityContext") or {})}
        if context.get("runAsNonRoot") is not True or context.get("runAsUser") == 0:
            found.append("runAsNonRoot")
        if (context.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            found.append("seccompProfile")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append("allowPrivilegeEscalation")
        if (context.get("capabilities") or {}).get("drop") != ["ALL"]:
            found.append("capabilities")
        if context.get("privileged"):
            found.append("privileged")
    for volume in spec.get("volumes") or []:
        found += [f"volume {kind}" for kind in set(volume) - RESTRICTED_VOLUME_KINDS]
    return found


def test_security_contexts_are_replaced_key_by_key() -> None:
    pod = make_pod(
        podSecurityContext={"runAsUser": 2000, "fsGroup": None, "supplementalGroups": [5]},
        securityContext={"readOnlyRootFilesystem": True},
    )
    spec = pod["spec"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 2000,
        "runAsGroup": TRIAL_IMAGE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
        "supplementalGroups": [5],
    }
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
    assert restricted_violations(pod) == []
    loose = make_pod(securityContext={"allowPrivilegeEscalation": True})
    assert restricted_violations(loose) == ["allowPrivilegeEscalation"]


def test_gpu_pods_get_limits_and_the_gpu_toleration() -> None:
    pod = make_pod(resources={"requests": {"nvidia.com/gpu": 1, "cpu": "1"}})
    container = pod["spec"]["containers"][0]
    assert container["resources"] == {
        "limits": {"nvidia.com/gpu": "1"},
        "requests": {"nvidia.com/gpu": "1", "cpu": "1"},
    }
    assert pod["spec"]["tolerations"] == [GPU_TOLERATION]
    assert "tolerations" not in make_pod(resources={"limits": {"cpu": "1"}})["spec"]


@pytest.mark.parametrize(
    ("tolerations", "added"),
    [
        ([{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present"}], False),
        ([{"operator": "Exists"}], False),  # tolerates every taint
        ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}], True),
        ([{"key": "dedicated", "operator": "Equal", "value": "ml"}], True),
    ],
)
def test_gpu_toleration_only_when_not_tolerated_already(
    tolerations: list[dict[str, Any]], added: bool
) -> None:
    pod = make_pod(resources={"limits": {"nvidia.com/gpu": 2}}, tolerations=tolerations)
    expected = [*tolerations, GPU_TOLERATION] if added else tolerations
    assert pod["spec"]["tolerations"] == expected


def test_per_study_pod_settings() -> None:
    pod = make_pod(
        imagePullSecrets=["regcred", {"name": "mirror"}],
        nodeSelector={"pool": "gpu"},
        tolerations=[{"key": "spot", "operator": "Exists"}],
        shmSize="2Gi",
        activeDeadlineSeconds="2h",
        volumes=[{"name": "data", "emptyDir": {}}],
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
    )
    spec = pod["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["tolerations"] == [{"key": "spot", "operator": "Exists"}]
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["volumes"] == [
        {"name": "data", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
    ]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "data", "mountPath": "/data"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    assert restricted_violations(pod) == []
    plain = make_pod()["spec"]
    assert not {"imagePullSecrets", "activeDeadlineSeconds", "volumes"} & set(plain)
    assert "volumeMounts" not in plain["containers"][0]


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
    never = {"reason": "ErrImageNeverPull", "message": 'image "me/trial:1" is not present'}
    not_here = {"status": {"containerStatuses": [{"state": {"waiting": never}}]}}
    assert waiting_problem(not_here) == ("ErrImageNeverPull", never["message"])
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
        # kubectl's BEST column counts the whole front, not the status's first trials.
        assert status["best"] == f"{(batch + 1) * 200} on the Pareto front"
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
    assert status["best"] == "0.9 (#1)"
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
