"""API errors shaped like Kubernetes' ``Status`` objects, and field errors as in
``k8s.io/apimachinery/pkg/util/validation/field`` (their text is what ``kubectl`` shows).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = [
    "ApiError",
    "FieldError",
    "bad_request",
    "forbidden",
    "go_value",
    "invalid",
    "qualified",
]


class ApiError(Exception):
    """A Kubernetes-style API failure (used by the emulator and by :class:`KubeClient`)."""

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        details: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.details = dict(details or {})
        self.body = body

    def as_status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.status,
        }


def qualified(name: str, group: str) -> str:
    """``schema.GroupKind``/``GroupResource`` as a string: ``Study.kubetune.io``, ``Pod``."""
    return f"{name}.{group}" if group else name


def go_value(value: Any) -> str:
    """A value as Go's ``field.Error`` prints it (``%v`` for numbers, ``%q`` for strings)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _go_float(value: float) -> str:
    """Go's ``%v`` of a float64: shortest digits; exponent form below 1e-4 or from 1e6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    digits = Decimal(repr(value)).normalize()
    exponent = digits.adjusted()
    if exponent < -4 or exponent >= 6:
        mantissa = f"{digits.scaleb(-exponent):f}"
        return f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"
    return f"{digits:f}"


#: field.ErrorType -> (the text it prints, the StatusCause reason)
_TYPES: dict[str, tuple[str, str]] = {
    "NotFound": ("Not found", "FieldValueNotFound"),
    "Required": ("Required value", "FieldValueRequired"),
    "Duplicate": ("Duplicate value", "FieldValueDuplicate"),
    "Invalid": ("Invalid value", "FieldValueInvalid"),
    "NotSupported": ("Unsupported value", "FieldValueNotSupported"),
    "Forbidden": ("Forbidden", "FieldValueForbidden"),
    "TooLong": ("Too long", "FieldValueTooLong"),
    "TooMany": ("Too many", "FieldValueTooMany"),
    "TypeInvalid": ("Invalid value", "FieldValueTypeInvalid"),
}
_NO_VALUE = ("Required", "Forbidden", "TooLong")
_OMIT = object()


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One ``field.Error``: ``spec.x: Invalid value: 0: must be greater than 0``."""

    type: str
    field: str
    value: Any = _OMIT
    detail: str = ""

    @classmethod
    def invalid(cls, field: str, value: Any, detail: str) -> FieldError:
        return cls("Invalid", field, value, detail)

    @classmethod
    def required(cls, field: str, detail: str = "") -> FieldError:
        return cls("Required", field, _OMIT, detail)

    @classmethod
    def not_supported(cls, field: str, value: Any, supported: Iterable[Any]) -> FieldError:
        texts = (v if isinstance(v, str) else json.dumps(v) for v in supported)
        quoted = ", ".join(json.dumps(t, ensure_ascii=False) for t in texts)
        return cls("NotSupported", field, value, f"supported values: {quoted}")

    @classmethod
    def too_many(cls, field: str, actual: int, limit: int) -> FieldError:
        return cls("TooMany", field, actual, f"must have at most {limit} items")

    @classmethod
    def too_long(cls, field: str, limit: int) -> FieldError:
        return cls("TooLong", field, _OMIT, f"may not be more than {limit} bytes")

    @classmethod
    def type_invalid(cls, field: str, value: Any, detail: str) -> FieldError:
        return cls("TypeInvalid", field, value, detail)

    @classmethod
    def duplicate(cls, field: str, value: Any) -> FieldError:
        return cls("Duplicate", field, value)

    @classmethod
    def not_found(cls, field: str, value: Any) -> FieldError:
        return cls("NotFound", field, value)

    @classmethod
    def forbidden(cls, field: str, detail: str) -> FieldError:
        return cls("Forbidden", field, _OMIT, detail)

    def body(self) -> str:
        text = _TYPES[self.type][0]
        if self.type not in _NO_VALUE and self.value is not _OMIT:
            text += f": {go_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def cause(self) -> dict[str, str]:
        return {"reason": _TYPES[self.type][1], "message": self.body(), "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def invalid(kind: str, group: str, name: str, errors: Sequence[FieldError]) -> ApiError:
    """422 Invalid, as ``apierrors.NewInvalid``: ``Kind.group "name" is invalid: ...``."""
    errors = list({str(e): e for e in errors}.values())  # each once, in order
    texts = [str(e) for e in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(
        422,
        "Invalid",
        f"{qualified(kind, group)} {json.dumps(name)} is invalid: {joined}",
        {"name": name, "group": group, "kind": kind, "causes": [e.cause() for e in errors]},
    )


def forbidden(resource: str, group: str, name: str | None, why: str) -> ApiError:
    """403 Forbidden, as ``apierrors.NewForbidden``: ``pods "x" is forbidden: ...``."""
    if not resource:
        message = f"forbidden: {why}"
    elif name:
        message = f"{qualified(resource, group)} {json.dumps(name)} is forbidden: {why}"
    else:
        message = f"{qualified(resource, group)} is forbidden: {why}"
    details: dict[str, Any] = {"group": group, "kind": resource}
    if name:
        details["name"] = name
    return ApiError(403, "Forbidden", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)
