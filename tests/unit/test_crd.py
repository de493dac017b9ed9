"""The CRD is generated from the spec model and checked in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubetune.crd import crd_yaml, study_crd

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
        "Best": ".status.bestTrial.value",
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
