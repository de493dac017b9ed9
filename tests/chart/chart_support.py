"""What the chart tests share: the value sets they render, and the rendered objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "kubetune"
RELEASE = "kubetune"
NAMESPACE = "kubetune"

#: Value sets every rendering test runs with.  Keys are test ids.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-database": {
        "postgresql": {"enabled": False},
        "externalDatabase": {"existingSecret": "tuning-db", "existingSecretKey": "dsn"},
        "dashboard": {"enabled": True},
    },
    "dashboard": {"dashboard": {"enabled": True}},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "namespaced-with-release-namespace": {"watchNamespaces": [NAMESPACE, "team-a"]},
    "custom-images": {
        "image": {
            "repository": "registry.example.com/ml/kubetune-operator",
            "tag": "1.2.3",
            "pullPolicy": "Always",
        },
        "trialImage": {
            "repository": "registry.example.com/ml/trial-cuda",
            "digest": "sha256:" + "ab" * 32,
        },
        "imagePullSecrets": [{"name": "registry-example"}],
        "trialServiceAccount": {"imagePullSecrets": [{"name": "registry-example"}]},
        "postgresql": {
            "image": {"repository": "registry.example.com/mirror/postgres", "tag": "18.1-bookworm"}
        },
        "dashboard": {
            "enabled": True,
            "image": {
                "repository": "registry.example.com/mirror/optuna-dashboard",
                "tag": "v0.20.0",
                "pullPolicy": "Never",
            },
        },
    },
    "existing-postgres-secret": {
        "postgresql": {
            "auth": {
                "existingSecret": "my-postgres",
                "secretKeys": {"passwordKey": "pg-password", "urlKey": "pg-url"},
            }
        },
        "dashboard": {"enabled": True},
    },
    "replicas-2": {"operator": {"replicas": 2}},
    "replicas-2-namespaced": {"operator": {"replicas": 2}, "watchNamespaces": ["team-a"]},
    "peering-always": {"operator": {"peering": {"mode": "always"}}},
    "no-persistence": {"postgresql": {"persistence": {"enabled": False}}},
    "everything-customised": {
        "fullnameOverride": "tuner",
        "commonLabels": {"team": "ml"},
        "watchNamespaces": ["team-a"],
        "operator": {
            "replicas": 3,
            "extraArgs": ["--verbose"],
            "extraEnv": [{"name": "KUBETUNE_LOG_FORMAT", "value": "json"}],
            "podAnnotations": {"example.com/scrape": "false"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
            ],
            "priorityClassName": "system-cluster-critical",
        },
        "serviceAccount": {"name": "tuner-op", "annotations": {"example.com/role": "x"}},
        "trialServiceAccount": {"name": "tuner-trials"},
        "postgresql": {
            "persistence": {
                "size": "50Gi",
                "storageClass": "fast-ssd",
                "retentionPolicy": {"whenDeleted": "Delete"},
            },
            "maxConnections": 500,
        },
        "dashboard": {"enabled": True, "service": {"type": "LoadBalancer", "port": 80}},
    },
}


@dataclass(frozen=True)
class Manifest:
    """One rendered Kubernetes object and the template that produced it."""

    template: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        return self.doc["metadata"].get("namespace")


@dataclass(frozen=True)
class Rendered:
    """A whole render: the objects, and every template's raw text (NOTES.txt included)."""

    manifests: list[Manifest]
    texts: dict[str, str]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m.kind == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [m.doc for m in self.of_kind(kind) if name is None or m.name == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    @property
    def notes(self) -> str:
        return next(text for path, text in self.texts.items() if path.endswith("NOTES.txt"))


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    assert len(matches) == 1, f"no single container {name!r}"
    return matches[0]


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in c.get("env", [])}


def refusal(chart: Any, values: dict[str, Any]) -> str:
    """The error the chart fails with when rendered with ``values`` (rendering must fail).

    ``assert "replicas" in refusal(chart, {"operator": {"replicas": 0}})``
    """
    import helm_python  # the chart fixture has already skipped a run without it
    import pytest

    with pytest.raises(helm_python.HelmError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return str(caught.value)
