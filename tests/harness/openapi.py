"""The OpenAPI v3 documents ``kubectl apply``, ``kubectl explain`` and ``helm install`` read.

``kubectl apply`` and Helm validate what they send: they ask ``/openapi/v3`` whether the API
server validates fields itself (a PATCH operation of the object's kind that takes the
``fieldValidation`` query parameter) and, if it does, leave the checking to it, as they do
with any Kubernetes since 1.27. So the emulator serves, for each group/version it knows, a
document with those operations.

``kubectl explain study.spec`` reads the schemas: for a custom resource, the document of its
group/version has, as Kubernetes builds it from the CRD, ``components.schemas`` keyed by the
reversed group, version and kind (``io.kubetune.v1alpha1.Study``, and ``...StudyList``), with
``x-kubernetes-group-version-kind``: the CRD version's openAPIV3Schema plus the standard
``apiVersion``/``kind`` and ``metadata`` (a reference to ``ObjectMeta``, whose schema, from
kubernetes-validate's definitions, is in the document too). Built-in kinds get no schemas
(``kubectl explain pods`` fails here). The PATCH operations have no request body, so
``kubectl apply`` sends custom resources a JSON merge patch, as Kubernetes tells it to.

Each document's URL carries a hash of its content (as Kubernetes' do), so kubectl's cache
never serves an old one.

Example:
    >>> paths = index({"kubetune.io/v1alpha1": {}})["paths"]
    >>> paths["apis/kubetune.io/v1alpha1"]  # doctest: +ELLIPSIS
    {'serverRelativeURL': '/openapi/v3/apis/kubetune.io/v1alpha1?hash=...'}
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

PREFIX = "/openapi/v3"
_QUERY_PARAMETERS = ("fieldValidation", "fieldManager", "dryRun", "force")
_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_REF = "#/components/schemas/"

_API_VERSION_DESCRIPTION = (
    "APIVersion defines the versioned schema of this representation of an object. Servers "
    "should convert recognized schemas to the latest internal value, and may reject "
    "unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
_KIND_DESCRIPTION = (
    "Kind is a string value representing the REST resource this object represents. Servers "
    "may infer this from the endpoint the client submits requests to. Cannot be updated. In "
    "CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
_METADATA_DESCRIPTION = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_LIST_METADATA_DESCRIPTION = (
    "Standard list metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)


class Resource(Protocol):
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool


def _group_version_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _hash(document: Mapping[str, Any]) -> str:
    text = json.dumps(document, sort_keys=True).encode()
    return hashlib.sha512(text).hexdigest()[:128].upper()


def index(documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``GET /openapi/v3``: where each group/version's document is (``{gv: document}``)."""
    paths = {}
    for group_version, document in sorted(documents.items()):
        group, _, version = group_version.rpartition("/")
        path = _group_version_path(group, version)
        paths[path] = {"serverRelativeURL": f"{PREFIX}/{path}?hash={_hash(document)}"}
    return {"paths": paths}


# ----------------------------------------------------------------------------------------------
# Schemas
# ----------------------------------------------------------------------------------------------


def schema_name(group: str, version: str, kind: str) -> str:
    """``kubetune.io``, ``v1alpha1``, ``Study`` -> ``io.kubetune.v1alpha1.Study``."""
    reversed_group = ".".join(reversed(group.split("."))) if group else "io.k8s.api.core"
    return f"{reversed_group}.{version}.{kind}"


def _to_openapi3(schema: Any) -> Any:
    """A kubernetes-validate (JSON Schema) definition as OpenAPI 3.0 writes it:
    ``type: [x, "null"]`` -> ``type: x``; ``$ref`` into ``components.schemas``, wrapped in
    ``allOf`` when it has siblings (as Kubernetes does)."""
    if isinstance(schema, list):
        return [_to_openapi3(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _to_openapi3(value) for key, value in schema.items()}
    kind = result.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) == 1:
            result["type"] = kinds[0]
        else:
            result.pop("type")
    if "$ref" in result:
        ref = _REF + str(result.pop("$ref")).rsplit("/", 1)[-1]
        result = {"allOf": [{"$ref": ref}], **result} if result else {"$ref": ref}
    return result


def _references(schema: Any) -> Iterable[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _references(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _references(item)


@functools.cache
def _meta_schemas() -> dict[str, Any]:
    """``ObjectMeta``, ``ListMeta`` and what they refer to, from kubernetes-validate."""
    try:
        import kubernetes_validate.utils as kv

        version = kv.latest_version()
        definitions = kv.schema_contents(
            f"kubernetes-json-schema/v{version}-local/_definitions.json", version
        )["$defs"]
    except Exception:  # no kubernetes-validate: metadata stays a plain object
        return {}
    wanted, schemas = [f"{_META}.ObjectMeta", f"{_META}.ListMeta"], {}
    while wanted:
        name = wanted.pop()
        if name in schemas or name not in definitions:
            continue
        schemas[name] = _to_openapi3(definitions[name])
        wanted.extend(_references(definitions[name]))
    return schemas


def _metadata_property(list_kind: bool = False) -> dict[str, Any]:
    name = f"{_META}.ListMeta" if list_kind else f"{_META}.ObjectMeta"
    description = _LIST_METADATA_DESCRIPTION if list_kind else _METADATA_DESCRIPTION
    if name not in _meta_schemas():
        return {"type": "object", "description": description}
    return {"allOf": [{"$ref": _REF + name}], "description": description}


def kind_schemas(resource: Resource, openapi_v3_schema: Mapping[str, Any]) -> dict[str, Any]:
    """The ``components.schemas`` entries of a custom resource's kind and list kind."""
    name = schema_name(resource.group, resource.version, resource.kind)
    gvk = {"group": resource.group, "kind": resource.kind, "version": resource.version}
    schema = copy.deepcopy(dict(openapi_v3_schema))
    schema["type"] = "object"
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"description": _API_VERSION_DESCRIPTION, "type": "string"}
    properties["kind"] = {"description": _KIND_DESCRIPTION, "type": "string"}
    properties["metadata"] = _metadata_property()
    schema["x-kubernetes-group-version-kind"] = [gvk]
    list_schema = {
        "description": f"{resource.kind}List is a list of {resource.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": _API_VERSION_DESCRIPTION, "type": "string"},
            "items": {
                "description": f"List of {resource.plural}. More info: "
                "https://git.k8s.io/community/contributors/devel/sig-architecture/"
                "api-conventions.md",
                "type": "array",
                "items": {"$ref": _REF + name},
            },
            "kind": {"description": _KIND_DESCRIPTION, "type": "string"},
            "metadata": _metadata_property(list_kind=True),
        },
        "x-kubernetes-group-version-kind": [{**gvk, "kind": f"{resource.kind}List"}],
    }
    return {name: schema, f"{name}List": list_schema}


# ----------------------------------------------------------------------------------------------
# Documents
# ----------------------------------------------------------------------------------------------


def document(
    resources: Iterable[Resource],
    schemas: Mapping[tuple[str, str, str], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``GET /openapi/v3/apis/<group>/<version>``: one object path per resource, whose
    PATCH takes ``fieldValidation`` (so clients leave validation to the server), and the
    kinds' schemas for the resources in ``schemas`` (``(group, version, plural)`` ->
    openAPIV3Schema: custom resources)."""
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for resource in resources:
        base = "/" + _group_version_path(resource.group, resource.version)
        scope = "/namespaces/{namespace}" if resource.namespaced else ""
        gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
        # As Kubernetes writes them: the query parameters on the operation.
        operation = {
            "parameters": [
                {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                for name in _QUERY_PARAMETERS
            ],
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"{base}{scope}/{resource.plural}/{{name}}"] = {"patch": operation}
        schema = (schemas or {}).get((resource.group, resource.version, resource.plural))
        if schema:
            components.update(kind_schemas(resource, schema))
    if components:
        components.update(copy.deepcopy(_meta_schemas()))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (emulated)", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": dict(sorted(components.items()))},
    }


def documents(
    resources: Iterable[Resource],
    schemas: Mapping[tuple[str, str, str], Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every group/version's document, keyed ``group/version`` (``v1`` for the core group)."""
    by_group_version: dict[str, list[Resource]] = {}
    for resource in resources:
        group_version = f"{resource.group}/{resource.version}".lstrip("/")
        by_group_version.setdefault(group_version, []).append(resource)
    return {gv: document(known, schemas) for gv, known in sorted(by_group_version.items())}


def serve(
    path: str,
    resources: Iterable[Resource],
    schemas: Mapping[tuple[str, str, str], Mapping[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """The document for an ``/openapi/v3...`` path, or None (404) for an unknown one."""
    known = list(resources)
    if path.rstrip("/") == PREFIX:
        return index(documents(known, schemas))
    wanted = path[len(PREFIX) :].strip("/")
    matching = [r for r in known if _group_version_path(r.group, r.version) == wanted]
    return document(matching, schemas) if matching else None
