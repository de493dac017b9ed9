"""The Study CustomResourceDefinition, generated from :mod:`kubetune.study.spec`.

Pydantic's JSON Schema is turned into the structural OpenAPI v3 schema that
Kubernetes requires: references inlined, ``anyOf`` with null made
``nullable``, the search-space union flattened into one object with a ``type``
enum, free-form maps marked ``x-kubernetes-preserve-unknown-fields``.
``crds/study.yaml`` is this module's output (``kubetune crd``), checked in and
kept in sync by a test.

Example:
    >>> crd = study_crd()
    >>> crd["spec"]["names"]["plural"]
    'studies'
"""

from __future__ import annotations

from typing import Any

from kubetune.study.spec import API_GROUP, API_VERSION, KIND, PLURAL, StudySpec, StudyStatus

_DROPPED_KEYS = frozenset({"title", "default", "discriminator", "examples"})
_ANY_VALUE = {"x-kubernetes-preserve-unknown-fields": True}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every ``$ref`` (the models have no recursion)."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    return node


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node as a structural OpenAPI v3 node."""
    node = {k: v for k, v in node.items() if k not in _DROPPED_KEYS}
    description = node.pop("description", None)

    for key in ("anyOf", "oneOf"):
        if key in node:
            options = node.pop(key)
            merged = _structural({**_merge_union(options), **node})
            if description:
                merged["description"] = " ".join(description.split())
            return merged

    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[inclusive] = node.pop(bound)
            node[bound] = True

    node_type = node.get("type")
    if node_type == "object":
        extra = node.get("additionalProperties")
        if "properties" in node:
            node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
            node.pop("additionalProperties", None)
        elif extra is True or extra == {} or extra is None:
            node.pop("additionalProperties", None)
            node.update(_ANY_VALUE)
        elif isinstance(extra, dict):
            node["additionalProperties"] = _structural(extra)
    elif node_type == "array":
        node["items"] = _structural(node.get("items", {}))
    elif node_type is None and not any(k.startswith("x-kubernetes") for k in node):
        node.update(_ANY_VALUE)  # a value of any type (categorical choices)
    if description:
        node["description"] = " ".join(description.split())
    return node


def _merge_union(options: list[dict[str, Any]]) -> dict[str, Any]:
    non_null = [o for o in options if o.get("type") != "null"]
    nullable = len(non_null) < len(options)
    result: dict[str, Any]
    if len(non_null) == 1:
        result = dict(non_null[0])
        if result.get("type") is None and "anyOf" in result:
            result = {**_merge_union(result.pop("anyOf")), **result}
    elif all(o.get("type") == "object" for o in non_null):
        # A tagged union (the search-space parameters): one object with every field.
        properties: dict[str, Any] = {}
        tags: list[Any] = []
        for option in non_null:
            for name, schema in option.get("properties", {}).items():
                if name == "type":
                    tags.extend(schema.get("enum", [schema.get("const")]))
                else:
                    properties.setdefault(name, schema)
        properties["type"] = {"type": "string", "enum": tags}
        result = {"type": "object", "properties": properties, "required": ["type"]}
    elif {o.get("type") for o in non_null} <= {"string", "integer"}:
        result = {"x-kubernetes-int-or-string": True}
    else:
        result = dict(_ANY_VALUE)
    if nullable:
        result["nullable"] = True
    return result


def _schema_of(model: type[StudySpec] | type[StudyStatus]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(_resolve(raw, raw.get("$defs", {})))


def study_crd() -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of ``Study``."""
    spec_schema = _schema_of(StudySpec)
    status_schema = _schema_of(StudyStatus)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["kts"],
                "categories": ["kubetune"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Trials", "type": "string", "jsonPath": ".status.progress"},
                        {"name": "Best", "type": "string", "jsonPath": ".status.best"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A hyperparameter tuning study run by kubetune.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    """:func:`study_crd` as the YAML checked in at ``crds/study.yaml``."""
    import yaml

    header = "# Generated by `kubetune crd` from kubetune.study.spec; do not edit by hand.\n"
    return header + yaml.safe_dump(study_crd(), sort_keys=False, width=100)
