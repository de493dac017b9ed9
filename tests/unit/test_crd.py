"""The CRD is generated from the spec model and checked in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubetune.study.crd import crd_yaml, study_crd

REPO = Path(__file__).resolve().parents[2]


def test_checked_in_crd_matches_the_model() -> None:
    checked_in = (REPO / "crds" / "study.yaml").read_text()
    assert checked_in == crd_yaml(), (
        "crds/study.yaml is stale: run `kubetune crd > crds/study.yaml`"
    )


def test_crd_shape() -> None:
    crd = study_crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "studies.kubetune.io"
    spec = crd["spec"]
    assert (spec["group"], spec["names"]["kind"], spec["names"]["plural"]) == (
        "kubetune.io",
        "Study",
        "studies",
    )
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Trials": ".status.progress",
        "Best": ".status.best",
        "Age": ".metadata.creationTimestamp",
    }


def _walk(node: Any, path: str = "") -> list[str]:
    """Places where the schema is not structural (Kubernetes would refuse the CRD)."""
    bad: list[str] = []
    if isinstance(node, dict):
        for key in ("$ref", "anyOf", "oneOf", "allOf", "const", "title", "default"):
            if key in node:
                bad.append(f"{path}: {key}")
        if "properties" in node and "additionalProperties" in node:
            bad.append(f"{path}: properties with additionalProperties")
        if (
            "type" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
            and not node.get("x-kubernetes-int-or-string")
        ):
            bad.append(f"{path}: no type")
        for key, value in node.get("properties", {}).items():
            bad += _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            bad += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            bad += _walk(node["additionalProperties"], f"{path}.*")
    return bad


def test_schema_is_structural() -> None:
    schema = study_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []


def _as_json_schema(node: Any) -> Any:
    """OpenAPI's ``nullable`` and Kubernetes' extensions, in plain JSON Schema terms."""
    if isinstance(node, dict):
        out = {k: _as_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
        if node.get("x-kubernetes-int-or-string"):
            out["type"] = ["integer", "string"]
        if node.get("nullable") and "type" in out:
            out["type"] = [
                *([out["type"]] if isinstance(out["type"], str) else out["type"]),
                "null",
            ]
        out.pop("nullable", None)
        if isinstance(out.get("exclusiveMinimum"), bool):
            out["exclusiveMinimum"] = out.pop("minimum")
        if isinstance(out.get("exclusiveMaximum"), bool):
            out["exclusiveMaximum"] = out.pop("maximum")
        return out
    if isinstance(node, list):
        return [_as_json_schema(v) for v in node]
    return node


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_examples_pass_the_crd_schema(name: str) -> None:
    document = yaml.safe_load((REPO / "examples" / name).read_text())
    if not isinstance(document, dict) or document.get("kind") != "Study":
        pytest.skip("not a Study")
    schema = _as_json_schema(study_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    jsonschema.validate(document, schema)


def test_crd_schema_refuses_what_the_model_refuses() -> None:
    schema = _as_json_schema(study_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    document = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    document["spec"]["sampler"]["name"] = "bayes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)


def _pruned(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """The fields an API server would drop from ``value`` (a structural schema prunes them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        dropped: list[str] = []
        for key, item in value.items():
            inner = properties.get(key) if properties is not None else extra
            if not isinstance(inner, dict):
                dropped.append(f"{path}.{key}".lstrip("."))
            else:
                dropped += _pruned(item, inner, f"{path}.{key}".lstrip("."))
        return dropped
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [p for i, v in enumerate(value) for p in _pruned(v, schema["items"], f"{path}[{i}]")]
    return []


def _spec_schema() -> dict[str, Any]:
    return study_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_examples_lose_nothing_to_pruning(name: str) -> None:
    document = yaml.safe_load((REPO / "examples" / name).read_text())
    if not isinstance(document, dict) or document.get("kind") != "Study":
        pytest.skip("not a Study")
    assert _pruned(document["spec"], _spec_schema()) == []


def test_what_the_api_server_would_prune_kubetune_refuses() -> None:
    """The same field names work with ``kubetune run`` and with ``kubectl apply``."""
    from kubetune.study.spec import SpecError, validate_spec

    spec = {
        "trial": {
            "python": "m:f",
            "trials_per_pod": 2,
            "imagePullSecrets": ["regcred"],
            "shmSize": "1Gi",
            "activeDeadlineSeconds": "2h",
            "podSecurityContext": {"runAsUser": 2000},
            "securityContext": {"readOnlyRootFilesystem": True},
        },
        "budget": {"max_trials": 3},
    }
    assert _pruned(spec, _spec_schema()) == ["trial.trials_per_pod", "budget.max_trials"]
    with pytest.raises(SpecError) as caught:
        validate_spec(spec)
    assert [path for path, _ in caught.value.problems] == [
        "spec.budget.max_trials",
        "spec.trial.trials_per_pod",
    ]
    for path in ("trial.trials_per_pod", "budget.max_trials"):
        parent, _, key = path.rpartition(".")
        del spec[parent][key]
    assert _pruned(spec, _spec_schema()) == []
    validate_spec(spec)
    wire = {"apiVersion": "kubetune.io/v1alpha1", "kind": "Study", "metadata": {"name": "a"}}
    schema = _as_json_schema(study_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    jsonschema.validate({**wire, "spec": spec}, schema)


def _undescribed(node: dict[str, Any], path: str) -> list[str]:
    found = [] if node.get("description") else [path]
    for name, child in (node.get("properties") or {}).items():
        found += _undescribed(child, f"{path}.{name}")
    items = node.get("items")
    if isinstance(items, dict) and items.get("properties"):
        found += [p for p in _undescribed(items, f"{path}[]") if p != f"{path}[]"]
    return found


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    """`kubectl explain study.spec.budget` prints each field's description."""
    schema = study_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [
        path
        for part in ("spec", "status")
        for path in _undescribed(schema["properties"][part], part)
    ]
    assert not missing, f"fields with no description: {missing}"
