"""The Hydra Optuna sweeper's configuration to a Study.

The input is a Hydra config with a ``hydra.sweeper`` block, or the sweeper
block alone. ``params`` use Hydra's override grammar, mapped as the sweeper
plugin maps them to Optuna distributions:

==============================  =============================================
Hydra                           Study parameter
==============================  =============================================
choice(a, b, c) / a,b,c         categorical
range(start, stop, step=1)      int (float when any bound or step is a float),
                                stop included, as the plugin does
interval(low, high)             float (int when both are ints)
tag(log, interval(low, high))   the same with log: true
shuffle(range/choice), sort()   categorical of the values / the inner sweep
a plain value (lr: 0.1)         passed to every trial as ``key=value``
==============================  =============================================

The older ``search_space:`` form (``{type: float, low, high, log, step}``)
maps one to one. ``sampler`` (``_target_: optuna.samplers.TPESampler`` and its
arguments, or ``override hydra/sweeper/sampler: tpe`` in ``defaults``) →
``sampler`` (``seed`` kept, other arguments checked against the class);
``direction`` (one or a list) → ``objective``; ``n_trials`` → ``maxTrials``;
``n_jobs`` → ``parallelism``; ``max_failure_rate`` → ``maxFailedTrials`` (rate x
n_trials: warning); ``study_name`` → ``storage.studyName``. ``storage`` and
``custom_search_space`` do not carry over (warnings).

Trials run ``python <program> key={key} ...`` (``--program``, default
``main.py``); the sweeper takes the value the task function returns, kubetune
reads it from standard output: the task prints ``objective=<value>``
(``--metric`` renames it).

Example:
    >>> from kubetune.convert import convert
    >>> convert("hydra", "conf/config.yaml", program="train.py").study   # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune.convert import Conversion, ConversionError, document, number, study_name

_SAMPLER_CLASSES = {
    "TPESampler": "tpe",
    "RandomSampler": "random",
    "CmaEsSampler": "cmaes",
    "NSGAIISampler": "nsgaii",
    "GridSampler": "grid",
    "QMCSampler": "qmc",
    "GPSampler": "gp",
    "BruteForceSampler": "bruteforce",
    "MOTPESampler": "tpe",
}
#: Names in ``override hydra/sweeper/sampler: <name>``.
_SAMPLER_CONFIGS = {
    "tpe": "tpe",
    "random": "random",
    "cmaes": "cmaes",
    "nsgaii": "nsgaii",
    "motpe": "tpe",
    "grid": "grid",
    "qmc": "qmc",
    "gp": "gp",
}
_KNOWN_KEYS = {
    "_target_",
    "sampler",
    "direction",
    "study_name",
    "storage",
    "n_trials",
    "n_jobs",
    "max_failure_rate",
    "params",
    "search_space",
    "custom_search_space",
}


def convert_sweeper(
    data: Mapping[str, Any],
    *,
    name: str | None = None,
    default_name: str = "sweep",
    image: str | None = None,
    program: str | None = None,
    metric: str | None = None,
    **_options: Any,
) -> Conversion:
    """A Study from a Hydra Optuna sweeper configuration (see the module doc)."""
    sweeper = _find_sweeper(data)
    warnings: list[str] = []
    warn = warnings.append
    for key in sweeper:
        if key not in _KNOWN_KEYS:
            warn(f"hydra.sweeper.{key}: no counterpart in a Study; ignored")
    target = str(sweeper.get("_target_") or "")
    if target and "optuna" not in target.lower():
        raise ConversionError(f"hydra.sweeper._target_: {target} is not the Optuna sweeper")

    space: dict[str, dict[str, Any]] = {}
    fixed: dict[str, str] = {}
    for key, value in (sweeper.get("params") or {}).items():
        _param(str(key), value, space, fixed, warn)
    for key, value in (sweeper.get("search_space") or {}).items():
        _legacy_param(str(key), value, space, warn)
    if sweeper.get("custom_search_space"):
        warn(
            "hydra.sweeper.custom_search_space: a Python function cannot be converted; "
            "suggest those parameters in a python objective instead"
        )
    if not space:
        raise ConversionError("hydra.sweeper.params: no parameter to sweep")

    directions = sweeper.get("direction", "minimize")
    objective: dict[str, Any]
    if isinstance(directions, str):
        objective = {"direction": str(directions), "metric": metric or "objective"}
    else:
        directions = [str(d) for d in directions]
        names = [f"{metric or 'objective'}_{i}" for i in range(len(directions))]
        objective = {"directions": directions, "metrics": names}
    shown = " and ".join(f"{m}=<value>" for m in objective.get("metrics") or [objective["metric"]])
    warn(
        "the sweeper optimizes what the task function returns; kubetune reads it from standard "
        f"output: have the task print {shown}"
    )

    sampler = _sampler(sweeper.get("sampler"), _defaults_sampler(data), warn)
    budget: dict[str, Any] = {}
    n_trials = int(number(sweeper.get("n_trials", 20), "hydra.sweeper.n_trials"))
    budget["maxTrials"] = n_trials
    budget["parallelism"] = int(number(sweeper.get("n_jobs", 1), "hydra.sweeper.n_jobs"))
    rate = sweeper.get("max_failure_rate")
    if rate is not None:
        budget["maxFailedTrials"] = math.floor(float(number(rate, "max_failure_rate")) * n_trials)
        warn(
            f"hydra.sweeper.max_failure_rate: {rate} of each batch becomes maxFailedTrials "
            f"{budget['maxFailedTrials']} (failed trials over the whole study)"
        )
    storage: dict[str, Any] = {}
    if sweeper.get("study_name"):
        storage["studyName"] = str(sweeper["study_name"])
    if sweeper.get("storage"):
        warn(
            "hydra.sweeper.storage: not kept; a cluster study uses the operator's database or "
            "spec.storage.secretRef, a local one --storage"
        )

    if not program:
        warn("program: not given (--program); the trials run main.py")
    argv = ["python", program or "main.py"]
    argv += [f"{key}={{{key}}}" for key in space]
    argv += [f"{key}={value}" for key, value in fixed.items()]
    trial: dict[str, Any] = {"command": argv}
    if image:
        trial["image"] = image
    spec: dict[str, Any] = {
        "objective": objective,
        "searchSpace": space,
        "sampler": sampler,
        "budget": budget,
        "trial": trial,
    }
    if storage:
        spec["storage"] = storage
    return Conversion(
        document(study_name(name, sweeper.get("study_name"), default_name), spec), warnings
    )


def _find_sweeper(data: Mapping[str, Any]) -> Mapping[str, Any]:
    hydra = data.get("hydra")
    if isinstance(hydra, Mapping) and isinstance(hydra.get("sweeper"), Mapping):
        return hydra["sweeper"]
    if isinstance(data.get("sweeper"), Mapping):
        return data["sweeper"]
    if any(key in data for key in ("params", "search_space", "sampler", "n_trials")):
        return data
    raise ConversionError("no hydra.sweeper block (nor a sweeper config with params) found")


def _defaults_sampler(data: Mapping[str, Any]) -> str | None:
    """``- override hydra/sweeper/sampler: tpe`` in the defaults list."""
    for entry in data.get("defaults") or []:
        if isinstance(entry, Mapping):
            for key, value in entry.items():
                if str(key).replace("override ", "").strip() == "hydra/sweeper/sampler":
                    return str(value)
    return None


def _sampler(config: Any, from_defaults: str | None, warn: Callable[[str], None]) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        if from_defaults is None:
            return {"name": "tpe"}
        name = _SAMPLER_CONFIGS.get(from_defaults)
        if name is None:
            warn(f"defaults: sampler {from_defaults!r} is unknown; using tpe")
            return {"name": "tpe"}
        return {"name": name}
    target = str(config.get("_target_") or "")
    class_name = target.rsplit(".", 1)[-1]
    name = _SAMPLER_CLASSES.get(class_name) or _SAMPLER_CONFIGS.get(from_defaults or "")
    if name is None:
        warn(f"hydra.sweeper.sampler._target_: {target or '(none)'} is unknown; using tpe")
        return {"name": "tpe"}
    sampler: dict[str, Any] = {"name": name}
    accepted = _accepted_arguments(name)
    args: dict[str, Any] = {}
    for key, value in config.items():
        if key == "_target_" or value is None:
            continue  # None is the class's default
        if key == "seed":
            if value is not None:
                sampler["seed"] = int(value)
        elif key == "search_space" and name == "grid":
            continue  # the grid comes from the search space
        elif value is not None and isinstance(value, str | int | float | bool) and key in accepted:
            args[key] = value
        else:
            warn(f"hydra.sweeper.sampler.{key}: {value!r} cannot be carried over; ignored")
    if args:
        sampler["args"] = args
    return sampler


def _accepted_arguments(name: str) -> set[str]:
    import optuna

    classes = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "nsgaii": optuna.samplers.NSGAIISampler,
        "grid": optuna.samplers.GridSampler,
        "qmc": optuna.samplers.QMCSampler,
        "gp": optuna.samplers.GPSampler,
        "bruteforce": optuna.samplers.BruteForceSampler,
    }
    return set(inspect.signature(classes[name]).parameters)


# --------------------------------------------------------------- parameters


def _param(
    key: str,
    value: Any,
    space: dict[str, dict[str, Any]],
    fixed: dict[str, str],
    warn: Callable[[str], None],
) -> None:
    where = f"hydra.sweeper.params.{key}"
    if not isinstance(value, str):
        fixed[key] = _format_fixed(value)
        return
    try:
        parsed = parse_override(value)
    except ConversionError as error:
        warn(f"{where}: {error}; ignored")
        return
    try:
        param = _distribution(parsed, warn, where)
    except ConversionError as error:
        warn(f"{where}: {error}; ignored")
        return
    if param is None:
        fixed[key] = value
    else:
        space[key] = param


def _format_fixed(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _legacy_param(
    key: str, config: Any, space: dict[str, dict[str, Any]], warn: Callable[[str], None]
) -> None:
    """The sweeper's older ``search_space: {x: {type: float, low, high, ...}}`` form."""
    where = f"hydra.sweeper.search_space.{key}"
    if not isinstance(config, Mapping) or config.get("type") not in ("float", "int", "categorical"):
        warn(f"{where}: needs type float, int or categorical; ignored")
        return
    param = {
        k: v for k, v in config.items() if k in ("type", "low", "high", "log", "step", "choices")
    }
    if param["type"] == "float" and param.get("step") == 1 and not param.get("log"):
        param.pop("step")  # the plugin's default step of 1 meant "no step" for floats
    space[key] = param


# ------------------------------------------------------------ override grammar


@dataclass
class Call:
    """A grammar function: ``interval(0, 1)``, ``tag(log, ...)``, ``choice(...)``."""

    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bare:
    """An unquoted word (a tag such as ``log``, or a string value)."""

    text: str


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<punct>[(),=\[\]])
      | (?P<word>[^\s(),=\[\]'"]+)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ConversionError(f"cannot parse {text!r} at {text[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def parse_override(text: str) -> Any:
    """Parse a Hydra override value: a primitive, a list, or a sweep function.

    A top-level comma list (``a,b,c``) is a choice sweep, as in Hydra.
    """
    tokens = _tokens(text)
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take(expected: str | None = None) -> tuple[str, str]:
        nonlocal position
        token = peek()
        if token is None or (expected is not None and token[1] != expected):
            raise ConversionError(f"cannot parse {text!r}: expected {expected or 'a value'}")
        position += 1
        return token

    def value() -> Any:
        kind, raw = take()
        if kind == "string":
            return raw[1:-1]
        if raw == "[":
            items = []
            if peek() != ("punct", "]"):
                items.append(value())
                while peek() == ("punct", ","):
                    take(",")
                    items.append(value())
            take("]")
            return items
        if kind == "word":
            if peek() == ("punct", "("):
                take("(")
                call = Call(raw)
                if peek() != ("punct", ")"):
                    argument(call)
                    while peek() == ("punct", ","):
                        take(",")
                        argument(call)
                take(")")
                return call
            return _primitive(raw)
        raise ConversionError(f"cannot parse {text!r}: unexpected {raw!r}")

    def argument(call: Call) -> None:
        nonlocal position
        token = peek()
        if (
            token is not None
            and token[0] == "word"
            and position + 1 < len(tokens)
            and tokens[position + 1] == ("punct", "=")
        ):
            position += 2
            call.kwargs[token[1]] = value()
        else:
            call.args.append(value())

    first = value()
    if peek() == ("punct", ","):
        items = [first]
        while peek() == ("punct", ","):
            take(",")
            items.append(value())
        first = Call("choice", items)
    if peek() is not None:
        raise ConversionError(f"cannot parse {text!r}: unexpected {peek()[1]!r}")  # type: ignore[index]
    return first


def _primitive(raw: str) -> Any:
    lowered = raw.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered == "null":
        return None
    if _NUMBER.match(raw):
        try:
            return int(raw)
        except ValueError:
            return float(raw)
    return Bare(raw)


def _plain(value: Any) -> Any:
    return value.text if isinstance(value, Bare) else value


def _distribution(parsed: Any, warn: Callable[[str], None], where: str) -> dict[str, Any] | None:
    """The search-space entry of a parsed override; None for a plain value."""
    if not isinstance(parsed, Call):
        return None
    name, args, kwargs = parsed.name, parsed.args, parsed.kwargs
    if name == "choice":
        choices = [_plain(a) for a in args]
        if any(isinstance(c, Call | list) for c in choices):
            raise ConversionError("a choice of sweeps or lists has no Optuna counterpart")
        return {"type": "categorical", "choices": choices}
    if name == "range":
        start, stop, step = _range_arguments(args, kwargs)
        if any(isinstance(v, float) for v in (start, stop, step)):
            return {"type": "float", "low": float(start), "high": float(stop), "step": float(step)}
        return {"type": "int", "low": int(start), "high": int(stop), "step": int(step)}
    if name == "interval":
        low = kwargs.get("start", args[0] if args else None)
        high = kwargs.get("end", args[1] if len(args) > 1 else None)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise ConversionError("interval needs two numbers")
        if isinstance(low, int) and isinstance(high, int):
            return {"type": "int", "low": low, "high": high}
        return {"type": "float", "low": float(low), "high": float(high)}
    if name == "tag":
        tags = [_plain(a) for a in args if isinstance(a, Bare | str)]
        inner = next((a for a in args if isinstance(a, Call)), kwargs.get("sweep"))
        result = _distribution(inner, warn, where)
        if result is None:
            raise ConversionError("tag() needs a sweep")
        for tag in tags:
            if tag == "log" and result["type"] in ("int", "float"):
                result["log"] = True
                result.pop("step", None)
            else:
                warn(f"{where}: tag {tag!r} has no counterpart; ignored")
        return result
    if name == "shuffle":
        inner = _distribution(args[0] if args else None, warn, where)
        if inner is not None and inner["type"] != "categorical":
            return {"type": "categorical", "choices": _values(inner)}
        return inner
    if name == "sort":
        return _distribution(args[0] if args else None, warn, where)
    raise ConversionError(f"{name}() has no Optuna counterpart")


def _range_arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    values = list(args)
    if len(values) == 1 and "stop" not in kwargs:
        values = [0, values[0]]
    start = kwargs.get("start", values[0] if values else 0)
    stop = kwargs.get("stop", values[1] if len(values) > 1 else None)
    step = kwargs.get("step", values[2] if len(values) > 2 else 1)
    for item in (start, stop, step):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ConversionError("range needs numbers")
    return start, stop, step


def _values(param: Mapping[str, Any]) -> list[Any]:
    low, high, step = param["low"], param["high"], param.get("step", 1)
    count = round((high - low) / step) + 1
    if param["type"] == "int":
        return [int(low + i * step) for i in range(count)]
    return [round(low + i * step, 12) for i in range(count)]
