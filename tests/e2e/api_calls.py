"""Which Kubernetes API calls the operator makes, read from the emulator's request log.

The chart's RBAC is checked against ``tests/chart/operator_api_calls.json``; the
e2e session checks that every call the operator made is listed there, and
``KUBETUNE_RECORD_API_CALLS=1 pytest -n 0 tests/e2e`` rewrites the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).resolve().parents[1] / "chart" / "operator_api_calls.json"
#: Kopf's own requests and those of the operator's Kubernetes client.
OPERATOR_AGENTS = ("kopf/", "kubetune-operator/")

Call = tuple[str, str, str]


def call_of(entry: Mapping[str, Any]) -> Call | None:
    """(API group, resource[/subresource], verb) of one request; None for discovery."""
    parts = [p for p in str(entry["path"]).split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return None
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        if len(parts) < 3:
            return None
        group, rest = parts[1], parts[3:]
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2:3]
    if sub:
        resource = f"{resource}/{sub[0]}"
    method = entry["method"]
    if method == "GET":
        watching = str(entry.get("query", {}).get("watch", "")).lower() in ("true", "1")
        verb = "get" if name else ("watch" if watching else "list")
    else:
        verb = {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }[method]
    return group, resource, verb


def operator_calls(log: Iterable[Mapping[str, Any]]) -> set[Call]:
    calls = set()
    for entry in log:
        if str(entry.get("user_agent", "")).startswith(OPERATOR_AGENTS):
            call = call_of(entry)
            if call is not None:
                calls.add(call)
    return calls
