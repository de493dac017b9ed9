"""Search-space helpers for Python: typed parameters that validate as the CRD does.

Each helper returns the spec model of one parameter; :func:`search_space`
also takes shorthands, so a notebook can say what it means briefly:

- ``[a, b, c]`` is a categorical parameter;
- ``(low, high)`` is an int range when both are ints, else a float range;
- ``(low, high, "log")`` is the same on a log scale;
- a dict is a parameter in spec form (``{"type": "float", "low": ..., ...}``).

Example:
    >>> from kubetune import space
    >>> space.search_space({"lr": space.Float(1e-4, 0.1, log=True), "layers": (1, 4),
    ...                     "act": ["relu", "gelu"]})["layers"].type
    'int'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from kubetune.study.spec import (
    CategoricalParam,
    Choice,
    FloatParam,
    IntParam,
    Param,
    SpecError,
    _format_problems,
)

__all__ = ["Categorical", "Float", "Int", "search_space"]


def Float(low: float, high: float, *, log: bool = False, step: float | None = None) -> FloatParam:
    """A float in ``[low, high]`` (``log`` scale, or on a ``step`` grid)."""
    return _validated(
        {"type": "float", "low": low, "high": high, "log": log, "step": step}, "Float"
    )  # type: ignore[return-value]


def Int(low: int, high: int, *, log: bool = False, step: int = 1) -> IntParam:
    """An integer in ``[low, high]`` (``log`` scale, or every ``step``)."""
    return _validated(
        {"type": "int", "low": low, "high": high, "log": log, "step": step if step != 1 else None},
        "Int",
    )  # type: ignore[return-value]


def Categorical(choices: Sequence[Choice]) -> CategoricalParam:
    """One of ``choices`` (strings, numbers, booleans or None)."""
    return _validated({"type": "categorical", "choices": list(choices)}, "Categorical")  # type: ignore[return-value]


_PARAM = TypeAdapter(Param)


def _validated(data: Mapping[str, Any], where: str) -> FloatParam | IntParam | CategoricalParam:
    # Defaults left out, so the Study says only what the user chose (as a YAML file would).
    defaults = {"log": False, "step": None}
    clean = {k: v for k, v in data.items() if v is not None and defaults.get(k, ...) != v}
    try:
        return _PARAM.validate_python(clean)  # type: ignore[no-any-return]
    except ValidationError as error:
        raise SpecError(_format_problems(error, where, Param)) from None


def param(value: Any, name: str = "param") -> FloatParam | IntParam | CategoricalParam:
    """One parameter from a model, a spec-form dict, a list or a ``(low, high[, "log"])`` tuple."""
    if isinstance(value, FloatParam | IntParam | CategoricalParam):
        return value
    if isinstance(value, Mapping):
        return _validated(value, f"searchSpace.{name}")
    if isinstance(value, list):
        return _validated({"type": "categorical", "choices": value}, f"searchSpace.{name}")
    if isinstance(value, tuple) and len(value) in (2, 3):
        low, high, *scale = value
        if scale and scale != ["log"]:
            raise SpecError([(f"searchSpace.{name}", 'the third item may only be "log"')])
        both_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
        kind = "int" if both_int else "float"
        return _validated(
            {"type": kind, "low": low, "high": high, "log": bool(scale)}, f"searchSpace.{name}"
        )
    raise SpecError(
        [
            (
                f"searchSpace.{name}",
                f"cannot make a parameter of {value!r}: use kubetune.space.Float/Int/Categorical, "
                "a list of choices, a (low, high) tuple or a spec-form dict",
            )
        ]
    )


def search_space(
    space: Mapping[str, Any] | None,
) -> dict[str, FloatParam | IntParam | CategoricalParam]:
    """A whole search space from helpers, shorthands or spec-form dicts."""
    return {name: param(value, name) for name, value in (space or {}).items()}


def to_spec(space: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The search space in its wire form (camelCase dicts, as in a Study file)."""
    return {name: p.to_dict() for name, p in search_space(space).items()}
