"""The reconciler's decisions through its injectable Kubernetes calls: no API server,
no operator process; the storage is a real PostgreSQL. What only a running
operator can show (Kopf, the API server's rules, pods that run) is in tests/e2e."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import optuna
import pytest
from kubetune.engine.worker import EXIT_CONFIG_ERROR
from kubetune_operator.config import OperatorConfig
from kubetune_operator.kube import ApiRefused
from kubetune_operator.labels import optuna_study_name, storage_secret
from kubetune_operator.reconciler import StudyReconciler, apply_merge_patch

META = {"name": "demo", "namespace": "team-a", "uid": "uid-1", "generation": 1}
SPEC = {
    "objective": {"direction": "minimize"},
    "budget": {"maxTrials": 6, "parallelism": 2},
    "trial": {"python": "examples.objectives.quadratic:objective"},
}


class FakeKube:
    """Pods, Secrets, ConfigMaps and the Study's status in memory; every call recorded."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.configmaps: dict[str, dict[str, str]] = {}
        self.service_accounts: dict[str, dict[str, Any]] = {}
        #: Set to make the API server refuse every trial pod with it.
        self.refusal: ApiRefused | None = None
        self.calls: list[str] = []
        self._names = itertools.count()

    def patch_study_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """A JSON merge patch (RFC 7386), as the API server applies it to the status."""
        self.calls.append("patch_study_status")
        self.status = apply_merge_patch(self.status, status)

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        key, _, value = selector.partition("=")
        return [p for p in self.pods.values() if p["metadata"]["labels"].get(key) == value]

    def create_pod(self, namespace: str, pod: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append("create_pod")
        if self.refusal is not None:
            raise self.refusal
        created = {**pod, "metadata": dict(pod["metadata"]), "status": {"phase": "Pending"}}
        # A named pod (a multi-node trial's) keeps its name; others get a generated one.
        name = created["metadata"].get("name") or (
            created["metadata"].pop("generateName", "pod-") + str(next(self._names))
        )
        created["metadata"]["name"] = name
        self.pods[name] = created
        return created

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        self.calls.append("delete_pod")
        self.pods.pop(name, None)

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        labels: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> None:
        meta = self.pods[name]["metadata"]
        meta.setdefault("labels", {}).update(labels or {})
        meta.setdefault("annotations", {}).update(annotations or {})

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        return (self.secrets.get(name) or {}).get("stringData", {}).get(key)

    def ensure_secret(self, namespace: str, body: Mapping[str, Any]) -> None:
        self.calls.append("ensure_secret")
        self.secrets.setdefault(body["metadata"]["name"], dict(body))

    def ensure_service_account(self, namespace: str, body: Mapping[str, Any]) -> None:
        self.calls.append("ensure_service_account")
        self.service_accounts.setdefault(body["metadata"]["name"], dict(body))

    def apply_configmap(self, namespace: str, body: Mapping[str, Any]) -> None:
        self.calls.append("apply_configmap")
        self.configmaps[body["metadata"]["name"]] = dict(body["data"])

    def delete_object(self, kind: str, namespace: str, name: str) -> None:
        self.calls.append(f"delete {kind}")
        if kind == "Secret":
            self.secrets.pop(name, None)
        if kind == "ConfigMap":
            self.configmaps.pop(name, None)


@pytest.fixture
def fake() -> FakeKube:
    return FakeKube()


def reconciler(fake: FakeKube, url: str) -> StudyReconciler:
    events: list[tuple[str, str, str]] = []
    made = StudyReconciler(
        OperatorConfig(storage_url=url), emit=lambda *event: events.append(event), kube=fake
    )
    made.events = events  # type: ignore[attr-defined]
    return made


def body(fake: FakeKube, **spec_changes: Any) -> dict[str, Any]:
    return {"metadata": META, "spec": {**SPEC, **spec_changes}, "status": dict(fake.status)}


def test_a_new_study_gets_its_storage_secret_its_optuna_study_and_its_pods(
    fake: FakeKube, storage_url: str
) -> None:
    assert reconciler(fake, storage_url).tick(body(fake)) is False
    assert storage_secret("demo") in fake.secrets
    assert len(fake.pods) == 2  # parallelism
    assert fake.status["phase"] == "Running"
    name = optuna_study_name("team-a", "demo", "uid-1")
    assert fake.status["studyName"] == name
    assert optuna.load_study(study_name=name, storage=storage_url).trials == []


def test_a_pod_that_cannot_load_the_objective_fails_the_study_with_its_message(
    fake: FakeKube, storage_url: str
) -> None:
    study = reconciler(fake, storage_url)
    study.tick(body(fake))
    broken = next(iter(fake.pods.values()))
    broken["status"] = {
        "phase": "Failed",
        "containerStatuses": [
            {
                "name": "trial",
                "state": {
                    "terminated": {
                        "exitCode": EXIT_CONFIG_ERROR,
                        "message": "spec.trial.python: cannot import 'trian'",
                    }
                },
            }
        ],
    }
    assert study.tick(body(fake)) is True  # finished: rests until the spec changes
    assert fake.status["phase"] == "Failed"
    assert fake.status["message"] == "spec.trial.python: cannot import 'trian'"
    assert [p for p in fake.pods.values() if p["status"]["phase"] != "Failed"] == []
    reasons = [reason for _, reason, _ in study.events]  # type: ignore[attr-defined]
    assert "ObjectiveNotLoadable" in reasons


def test_a_suspended_study_with_no_pod_rests(fake: FakeKube, storage_url: str) -> None:
    study = reconciler(fake, storage_url)
    assert study.tick(body(fake, suspend=True)) is True
    assert fake.status["phase"] == "Suspended"
    assert fake.pods == {}


def test_deleting_a_study_that_never_started_creates_nothing(
    fake: FakeKube, storage_url: str
) -> None:
    reconciler(fake, storage_url).delete(META, SPEC, {})
    assert "ensure_secret" not in fake.calls
    assert "create_pod" not in fake.calls
    assert optuna.get_all_study_names(storage_url) == []


def test_deleting_a_started_study_stops_its_pods_and_keeps_its_trials(
    fake: FakeKube, storage_url: str
) -> None:
    reconciler(fake, storage_url).tick(body(fake))
    name = fake.status["studyName"]
    study = optuna.load_study(study_name=name, storage=storage_url)
    trial = study.ask()
    pod = next(iter(fake.pods))
    study._storage.set_trial_user_attr(trial._trial_id, "kubetune.worker", pod)
    # A fresh reconciler, as the operator's delete handler makes.
    reconciler(fake, storage_url).delete(META, SPEC, dict(fake.status))
    assert fake.pods == {} and fake.secrets == {}
    (stopped,) = optuna.load_study(study_name=name, storage=storage_url).trials
    assert stopped.state.name == "FAIL"
    assert stopped.user_attrs["kubetune.fail_reason"] == "the Study was deleted"
