"""The OpenAPI v3 documents ``kubectl apply`` and ``helm install`` look for.

Both validate what they send: they ask ``/openapi/v3`` whether the API server
validates fields itself (a PATCH operation of the object's kind that takes the
``fieldValidation`` query parameter) and, if it does, leave the checking to it,
as they do with any Kubernetes since 1.27. So the emulator serves, for each
group/version it knows, a document with just those operations; it never
describes the schemas (the server-side checks are the emulator's own).

Example:
    >>> index(["kubetune.io/v1alpha1"])["paths"]["apis/kubetune.io/v1alpha1"]
    {'serverRelativeURL': '/openapi/v3/apis/kubetune.io/v1alpha1?hash=kubetune-emulator'}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

PREFIX = "/openapi/v3"
_HASH = "kubetune-emulator"
_QUERY_PARAMETERS = ("fieldValidation", "fieldManager", "dryRun", "force")


class Resource(Protocol):
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool


def _group_version_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def index(group_versions: Iterable[str]) -> dict[str, Any]:
    """``GET /openapi/v3``: where each group/version's document is."""
    paths = {}
    for group_version in group_versions:
        group, _, version = group_version.rpartition("/")
        path = _group_version_path(group, version)
        paths[path] = {"serverRelativeURL": f"{PREFIX}/{path}?hash={_HASH}"}
    return {"paths": paths}


def document(resources: Iterable[Resource]) -> dict[str, Any]:
    """``GET /openapi/v3/apis/<group>/<version>``: one object path per resource, whose
    PATCH takes ``fieldValidation`` (so clients leave validation to the server)."""
    paths: dict[str, Any] = {}
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
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (emulated)", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def serve(path: str, resources: Iterable[Resource]) -> dict[str, Any] | None:
    """The document for an ``/openapi/v3...`` path, or None (404) for an unknown one."""
    known = list(resources)
    if path.rstrip("/") == PREFIX:
        return index(sorted({f"{r.group}/{r.version}".lstrip("/") for r in known}))
    wanted = path[len(PREFIX) :].strip("/")
    matching = [r for r in known if _group_version_path(r.group, r.version) == wanted]
    return document(matching) if matching else None
