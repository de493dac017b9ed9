"""Metrics in a program's standard output.

Two forms are understood, one line at a time:

- ``name=value`` pairs, as Katib's StdOut collector reads them:
  ``epoch=3 val_loss=0.412 val_auc=0.93``;
- JSON objects: ``{"step": 3, "val_auc": 0.93}``.

A line that also carries ``step`` (or ``epoch``) is an intermediate result.

Example:
    >>> parse_line("epoch=3 loss=0.25 note=x")
    MetricLine(values={'epoch': 3.0, 'loss': 0.25}, step=3)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

_NUMBER = r"[-+]?(?:nan|inf(?:inity)?|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_PAIR = re.compile(rf"(?<![\w.\-/])([A-Za-z_][\w.\-/]*)\s*=\s*({_NUMBER})(?![\w.])", re.IGNORECASE)
_STEP_KEYS = ("step", "epoch")


@dataclass(frozen=True)
class MetricLine:
    values: dict[str, float]
    step: int | None


def parse_line(line: str) -> MetricLine | None:
    """The metrics on one output line, or None if it carries none."""
    text = line.strip()
    values: dict[str, float] = {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    values[str(key)] = float(value)
    else:
        for key, raw in _PAIR.findall(text):
            values[key] = float(raw)
    if not values:
        return None
    step: int | None = None
    for key in _STEP_KEYS:
        value = values.get(key)
        if value is not None and math.isfinite(value) and value == int(value):
            step = int(value)
            break
    return MetricLine(values=values, step=step)
