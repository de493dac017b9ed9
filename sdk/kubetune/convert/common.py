"""What the converters share: the result, the error, and the small helpers that turn
another tool's values into a Study's (a name, a number, the document around a spec).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from kubetune.errors import KubetuneError
from kubetune.study.spec import MAX_NAME_LENGTH


class ConversionError(KubetuneError, ValueError):
    """The input is not a file of that kind, or maps to no valid Study."""


@dataclasses.dataclass
class Conversion:
    """A Study document (the wire form, camelCase) and what could not be carried over."""

    study: dict[str, Any]
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.study, sort_keys=False, allow_unicode=True)


def study_name(*candidates: str | None) -> str:
    """The first candidate made into a valid Study name (lowercase, digits, '-')."""
    for candidate in candidates:
        if not candidate:
            continue
        name = re.sub(r"[^a-z0-9-]+", "-", str(candidate).lower()).strip("-")
        name = name[:MAX_NAME_LENGTH].rstrip("-")
        if name:
            return name
    return "converted"


def number(value: Any, where: str) -> int | float:
    """A number from YAML (Katib writes them as strings: ``"0.01"``); ints stay ints."""
    if isinstance(value, bool):
        raise ConversionError(f"{where}: {value!r} is not a number")
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ConversionError(f"{where}: {value!r} is not a number") from None


def document(
    name: str, spec: dict[str, Any], annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": metadata,
        "spec": spec,
    }
