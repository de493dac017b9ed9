"""``meta.k8s.io/v1`` Tables: what ``kubectl get`` prints, rendered by the API server.

``kubectl get`` asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints
the columns the server sends. A real API server builds them from a CRD version's
``additionalPrinterColumns`` (a ``Name`` column first; an ``Age`` column when the CRD defines
none) and, for built-in kinds, from its own printers. Each row's ``object`` is the object's
``PartialObjectMetadata`` (``?includeObject=Metadata``, the default; kubectl reads the
namespace for ``-A`` there), the whole object (``Object``, asked for by ``--sort-by``) or
nothing (``None``). Columns with ``priority`` > 0 are sent always and shown by kubectl only
with ``-o wide``. In a watch, only the first event's Table carries the column definitions.

Built-in kinds: pods (NAME READY STATUS RESTARTS AGE; wide: IP NODE NOMINATED NODE
READINESS GATES), namespaces (STATUS), configmaps (DATA), secrets (TYPE DATA), core events
(LAST SEEN TYPE REASON OBJECT MESSAGE); every other kind NAME and AGE.

Example:
    >>> crd_columns([{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}])[1].name
    'Phase'
    >>> evaluate_json_path({"status": {"phase": "Running"}}, ".status.phase")
    ['Running']
    >>> human_duration(3725)
    '62m'
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "TableConverter",
    "builtin_columns",
    "crd_columns",
    "evaluate_json_path",
    "human_duration",
    "requested_table_version",
]

TABLE_GROUP = "meta.k8s.io"
TABLE_VERSIONS = ("v1", "v1beta1")

_NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_AGE_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


@dataclasses.dataclass(frozen=True)
class Column:
    """One column: its definition (as sent) and how a cell is computed from an object."""

    name: str
    type: str
    cell: Callable[[Mapping[str, Any]], Any]
    format: str = ""
    description: str = ""
    priority: int = 0

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


# ----------------------------------------------------------------------------------------------
# Content negotiation
# ----------------------------------------------------------------------------------------------


def requested_table_version(accept: str | None) -> str | None:
    """``'v1'``/``'v1beta1'`` if the ``Accept`` header's first acceptable type is a JSON
    Table, else None (plain JSON). Unsupported types (protobuf Tables...) are skipped, as
    the API server's negotiation does."""
    for media_range in (accept or "").split(","):
        kind, *parameters = (part.strip() for part in media_range.split(";"))
        params = dict(p.partition("=")[::2] for p in parameters if p)
        if kind not in ("application/json", "application/*", "*/*"):
            continue
        if "as" not in params:
            return None
        if (
            params["as"] == "Table"
            and params.get("g") == TABLE_GROUP
            and params.get("v") in TABLE_VERSIONS
        ):
            return params["v"]
    return None


# ----------------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration`` (what AGE shows)."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 60 * 2:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if rest == 0 else f"{hours // 24 // 365}y{rest}d"
    return f"{hours // 24 // 365}y"


def _parse_time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def since(timestamp: Any, *, now: datetime.datetime | None = None) -> str:
    """``translateTimestampSince``: ``<unknown>`` for no time, else a human duration."""
    when = _parse_time(timestamp)
    if when is None:
        return "<unknown>"
    now = now or datetime.datetime.now(tz=datetime.timezone.utc)
    return human_duration((now - when).total_seconds())


def _go_float(value: float) -> str:
    """Go's ``%v`` of a float64: the shortest digits, with an exponent below 1e-4 and from
    1e6 (``strconv.FormatFloat(v, 'g', -1, 64)``: ``fmt.Println(1e6)`` prints ``1e+06``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digits, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # the decimal point's place after the first digit's
    prefix = "-" if sign else ""
    if -4 <= point - 1 < 6:
        if point <= 0:
            return f"{prefix}0.{'0' * -point}{text}"
        if point >= len(text):
            return f"{prefix}{text}{'0' * (point - len(text))}"
        return f"{prefix}{text[:point]}.{text[point:]}"
    mantissa = text[0] + (f".{text[1:]}" if len(text) > 1 else "")
    power = point - 1
    return f"{prefix}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"


def _go_text(value: Any) -> str:
    """How Kubernetes' JSONPath prints a value (``fmt.Fprint``) in a ``string`` column."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if value is None:
        return "<nil>"
    if isinstance(value, Mapping):
        inner = " ".join(f"{k}:{_go_text(v)}" for k, v in sorted(value.items()))
        return f"map[{inner}]"
    if isinstance(value, list):
        return "[" + " ".join(_go_text(v) for v in value) + "]"
    return str(value)


_PATH_TOKEN = re.compile(
    r"""\.\*|\[\*\]|\[(-?\d+)\]|\[\s*'([^']*)'\s*\]|\[\s*"([^"]*)"\s*\]|\.((?:\\.|[^.\[\\])+)"""
)


def evaluate_json_path(obj: Any, path: str) -> list[Any]:
    """The values a simple Kubernetes JSONPath (``.a.b``, ``.a[0]``, ``.a['b.c']``, ``.a[*]``,
    with or without ``{}``) finds in ``obj``: ``[]`` when it finds nothing."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1].strip()
    if path.startswith("$"):
        path = path[1:]
    values = [obj]
    position = 0
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if match is None:
            return []
        position = match.end()
        index, quoted, double_quoted, name = match.groups()
        found: list[Any] = []
        for value in values:
            if match.group(0) in (".*", "[*]"):
                if isinstance(value, Mapping):
                    found.extend(value[k] for k in sorted(value))
                elif isinstance(value, list):
                    found.extend(value)
            elif index is not None:
                if isinstance(value, list) and -len(value) <= int(index) < len(value):
                    found.append(value[int(index)])
            else:
                key = quoted if quoted is not None else double_quoted
                if key is None:
                    key = re.sub(r"\\(.)", r"\1", name)
                if isinstance(value, Mapping) and key in value:
                    found.append(value[key])
        values = found
    return values


def _typed_cell(column_type: str, value: Any) -> Any:
    """``cellForJSONValue`` of the apiextensions table convertor."""
    if value is None:
        return None
    if column_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return int(value)
    elif column_type == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif column_type == "boolean":
        if isinstance(value, bool):
            return value
    elif column_type == "string":
        if isinstance(value, str):
            return value
    elif column_type == "date" and isinstance(value, str):
        return since(value) if _parse_time(value) else "<invalid>"
    return None


def _crd_cell(column_type: str, json_path: str) -> Callable[[Mapping[str, Any]], Any]:
    def cell(obj: Mapping[str, Any]) -> Any:
        found = evaluate_json_path(obj, json_path)
        if not found:
            return None
        if column_type == "string":
            return _go_text(found[0])
        return _typed_cell(column_type, found[0])

    return cell


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _name(obj: Mapping[str, Any]) -> Any:
    return _meta(obj).get("name", "")


def _name_column() -> Column:
    return Column("Name", "string", _name, "name", _NAME_DESCRIPTION)


def _age_column() -> Column:
    return Column(
        "Age",
        "string",
        lambda obj: since(_meta(obj).get("creationTimestamp")),
        "",
        _AGE_DESCRIPTION,
    )


#: What the API server serves for a CRD version without ``additionalPrinterColumns``.
DEFAULT_PRINTER_COLUMNS = (
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


def crd_columns(printer_columns: Sequence[Mapping[str, Any]] | None) -> list[Column]:
    """``Name``, then the CRD version's ``additionalPrinterColumns`` (or just ``Age``)."""
    columns = [_name_column()]
    for spec in printer_columns or DEFAULT_PRINTER_COLUMNS:
        json_path = spec["jsonPath"]
        description = spec.get("description") or (
            f"Custom resource definition column (in JSONPath format): {json_path}"
        )
        columns.append(
            Column(
                spec["name"],
                spec.get("type", "string"),
                _crd_cell(spec.get("type", "string"), json_path),
                spec.get("format", ""),
                description,
                int(spec.get("priority", 0)),
            )
        )
    return columns


# ----------------------------------------------------------------------------------------------
# Built-in kinds (the essentials of Kubernetes' pkg/printers/internalversion)
# ----------------------------------------------------------------------------------------------


def _pod_cells(pod: Mapping[str, Any]) -> tuple[str, str, str]:
    """READY, STATUS and RESTARTS as ``printPod`` computes them (init containers aside)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or ""
    total = len(spec.get("containers") or [])
    ready = restarts = 0
    last_restart: datetime.datetime | None = None
    has_running = False
    for container in reversed(status.get("containerStatuses") or []):
        restarts += int(container.get("restartCount") or 0)
        finished = _parse_time(
            ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        )
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            if terminated.get("signal"):
                reason = f"Signal:{terminated['signal']}"
            else:
                reason = f"ExitCode:{terminated.get('exitCode', 0)}"
        elif container.get("ready") and state.get("running") is not None:
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        conditions = status.get("conditions") or []
        reason = "Running" if any(c.get("type") == "Ready" for c in conditions) else "NotReady"
    if _meta(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif status.get("phase") not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({since(last_restart.isoformat())} ago)"
    return f"{ready}/{total}", reason, restarts_text


def _pod_columns() -> list[Column]:
    def ip(pod: Mapping[str, Any]) -> str:
        ips = (pod.get("status") or {}).get("podIPs") or []
        return (ips[0].get("ip") if ips else None) or "<none>"

    def gates(pod: Mapping[str, Any]) -> str:
        wanted = [
            g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []
        ]
        if not wanted:
            return "<none>"
        conditions = {
            c.get("type"): c.get("status")
            for c in (pod.get("status") or {}).get("conditions") or []
        }
        return f"{sum(conditions.get(g) == 'True' for g in wanted)}/{len(wanted)}"

    return [
        _name_column(),
        Column(
            "Ready",
            "string",
            lambda p: _pod_cells(p)[0],
            description="The aggregate readiness state of this pod for accepting traffic.",
        ),
        Column(
            "Status",
            "string",
            lambda p: _pod_cells(p)[1],
            description="The aggregate status of the containers in this pod.",
        ),
        Column(
            "Restarts",
            "string",
            lambda p: _pod_cells(p)[2],
            description="The number of times the containers in this pod have been restarted "
            "and when the last container in this pod has restarted.",
        ),
        _age_column(),
        Column("IP", "string", ip, priority=1, description="podIP address allocated to the pod."),
        Column(
            "Node",
            "string",
            lambda p: (p.get("spec") or {}).get("nodeName") or "<none>",
            priority=1,
            description="NodeName indicates in which node this pod is scheduled.",
        ),
        Column(
            "Nominated Node",
            "string",
            lambda p: (p.get("status") or {}).get("nominatedNodeName") or "<none>",
            priority=1,
            description="nominatedNodeName is set only when this pod preempts other pods.",
        ),
        Column(
            "Readiness Gates",
            "string",
            gates,
            priority=1,
            description="The readiness gates of the pod and how many of them are met.",
        ),
    ]


def _event_columns() -> list[Column]:
    def last_seen(event: Mapping[str, Any]) -> str:
        when = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
        return since(when or _meta(event).get("creationTimestamp"))

    def involved(event: Mapping[str, Any]) -> str:
        target = event.get("involvedObject") or {}
        return f"{str(target.get('kind', '')).lower()}/{target.get('name', '')}"

    def source(event: Mapping[str, Any]) -> str:
        src = event.get("source") or {}
        text = src.get("component") or event.get("reportingComponent") or ""
        return f"{text}, {src['host']}" if src.get("host") else text

    return [
        Column(
            "Last Seen",
            "string",
            last_seen,
            description="The time at which the most recent occurrence of this event was recorded.",
        ),
        Column("Type", "string", lambda e: e.get("type", ""), description="Type of this event."),
        Column("Reason", "string", lambda e: e.get("reason", ""), description="The reason."),
        Column("Object", "string", involved, description="The object this event is about."),
        Column(
            "Subobject",
            "string",
            lambda e: (e.get("involvedObject") or {}).get("fieldPath", ""),
            priority=1,
            description="The part of the object this event is about.",
        ),
        Column("Source", "string", source, priority=1, description="The component reporting it."),
        Column("Message", "string", lambda e: e.get("message", ""), description="The message."),
        Column(
            "First Seen",
            "string",
            lambda e: since(e.get("firstTimestamp") or e.get("eventTime")),
            priority=1,
            description="The time at which the event was first recorded.",
        ),
        Column(
            "Count",
            "string",
            lambda e: str(e.get("count") or 1),
            priority=1,
            description="The number of times this event has occurred.",
        ),
        Column("Name", "string", _name, "name", _NAME_DESCRIPTION, priority=1),
    ]


def _builtin(extra: Iterable[Column]) -> list[Column]:
    return [_name_column(), *extra, _age_column()]


def builtin_columns(group: str, plural: str) -> list[Column]:
    """The columns of a built-in kind (NAME and AGE for those without a printer here)."""
    if group == "" and plural == "pods":
        return _pod_columns()
    if group == "" and plural == "events":
        return _event_columns()
    if group == "" and plural == "namespaces":
        status = Column(
            "Status",
            "string",
            lambda ns: (ns.get("status") or {}).get("phase") or "Active",
            description="The status of the namespace",
        )
        return _builtin([status])
    if group == "" and plural == "configmaps":
        data = Column(
            "Data",
            "string",
            lambda cm: str(len(cm.get("data") or {}) + len(cm.get("binaryData") or {})),
            description="Number of data entries in the ConfigMap.",
        )
        return _builtin([data])
    if group == "" and plural == "secrets":
        return _builtin(
            [
                Column(
                    "Type",
                    "string",
                    lambda s: s.get("type") or "Opaque",
                    description="The type of the secret",
                ),
                Column(
                    "Data",
                    "string",
                    lambda s: str(len(s.get("data") or {})),
                    description="The number of data entries in the secret",
                ),
            ]
        )
    return _builtin([])


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


class TableConverter:
    """Turns objects, lists and watch events of one resource into Tables.

    ``include_object``: ``Metadata`` (default), ``Object`` or ``None`` (the query
    parameter ``includeObject``). ``event`` sends the column definitions in the first event
    only, as the API server does in a watch.
    """

    def __init__(
        self, columns: Sequence[Column], version: str = "v1", include_object: str | None = None
    ) -> None:
        self.columns = list(columns)
        self.api_version = f"{TABLE_GROUP}/{version}"
        self.include_object = include_object or "Metadata"
        if self.include_object not in ("Metadata", "Object", "None"):
            from .errors import ApiError

            raise ApiError(
                400,
                "BadRequest",
                f"Invalid value: {json.dumps(self.include_object)}: must be 'Metadata', "
                "'Object', 'None', or empty",
            )
        self._headers_sent = False

    def row(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"cells": [column.cell(obj) for column in self.columns]}
        if self.include_object == "Object":
            row["object"] = dict(obj)
        elif self.include_object == "Metadata":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": self.api_version,
                "metadata": dict(_meta(obj)),
            }
        return row

    def table(
        self,
        objects: Iterable[Mapping[str, Any]],
        resource_version: str | None,
        *,
        headers: bool = True,
    ) -> dict[str, Any]:
        metadata = {"resourceVersion": resource_version} if resource_version else {}
        return {
            "kind": "Table",
            "apiVersion": self.api_version,
            "metadata": metadata,
            "columnDefinitions": [c.definition() for c in self.columns] if headers else [],
            "rows": [self.row(obj) for obj in objects],
        }

    def list(self, object_list: Mapping[str, Any]) -> dict[str, Any]:
        """A ``...List`` answer as a Table (one row per item)."""
        rv = (object_list.get("metadata") or {}).get("resourceVersion")
        return self.table(object_list.get("items") or [], rv)

    def object(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """A single object (``GET .../NAME``) as a Table of one row."""
        return self.table([obj], _meta(obj).get("resourceVersion"))

    def event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """A watch event whose object is a one-row Table (ERROR and BOOKMARK pass as they are)."""
        if event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
            return dict(event)
        obj = event.get("object") or {}
        table = self.table([obj], _meta(obj).get("resourceVersion"), headers=not self._headers_sent)
        self._headers_sent = True
        return {"type": event["type"], "object": table}
