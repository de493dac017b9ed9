"""Warm start: parameter sets to try first, checked against the search space.

They come from a ``best_params.json`` (a dict of parameters, or for a
multi-objective study a list of ``{"values": ..., "params": ...}``), a JSON or
YAML file holding a list of dicts, or Python objects of the same shapes.

Example:
    >>> param_sets({"lr": 0.01, "layers": 3})
    [{'lr': 0.01, 'layers': 3}]
    >>> param_sets([{"values": [0.1, 2.0], "params": {"lr": 0.02}}])
    [{'lr': 0.02}]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubetune.study.spec import CategoricalParam, FloatParam, IntParam, SpecError, StudySpec

ParamSets = Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | os.PathLike[str]


def param_sets(source: ParamSets) -> list[dict[str, Any]]:
    """Parameter sets from a file path, a dict or a list; raises SpecError naming the entry."""
    data: Any = source
    where = "params"
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise SpecError([(str(path), "no such file")])
        where = str(path)
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except ValueError:
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as error:
                raise SpecError([(where, f"neither JSON nor YAML: {error}")]) from None
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise SpecError([(where, "must be a dict of parameters or a list of them")])
    sets: list[dict[str, Any]] = []
    for index, item in enumerate(data):
        if isinstance(item, Mapping) and "params" in item and isinstance(item["params"], Mapping):
            item = item["params"]  # a Pareto-front entry of best_params.json
        if not isinstance(item, Mapping) or not all(isinstance(k, str) for k in item):
            raise SpecError([(f"{where}[{index}]", "must be a dict of parameter names to values")])
        sets.append(dict(item))
    if not sets:
        raise SpecError([(where, "holds no parameter set")])
    return sets


def check_param_sets(sets: Sequence[Mapping[str, Any]], spec: StudySpec) -> None:
    """Raise SpecError for values outside the search space.

    Names the space does not list are accepted for Python objectives (they may
    suggest more parameters as they run), refused for command objectives.
    """
    problems: list[tuple[str, str]] = []
    for index, params in enumerate(sets):
        for name, value in params.items():
            where = f"params[{index}].{name}"
            param = spec.search_space.get(name)
            if param is None:
                if spec.trial.command is not None:
                    problems.append((where, "is not a parameter in spec.searchSpace"))
                continue
            reason = _misfit(param, value)
            if reason:
                problems.append((where, reason))
    if problems:
        raise SpecError(problems)


def _misfit(param: FloatParam | IntParam | CategoricalParam, value: Any) -> str | None:
    if isinstance(param, CategoricalParam):
        return None if value in param.choices else f"{value!r} is not one of {param.choices}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{value!r} is not a number"
    if isinstance(param, IntParam) and float(value) != int(value):
        return f"{value!r} is not a whole number"
    if not param.low <= value <= param.high:
        return f"{value!r} is outside [{param.low}, {param.high}]"
    return None
