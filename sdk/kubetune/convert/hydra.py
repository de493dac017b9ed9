"""The Hydra Optuna sweeper's configuration to a Study.

The input is a Hydra config with a ``hydra.sweeper`` block, or the sweeper
block alone. ``params`` use Hydra's override grammar; each value is evaluated
as Hydra 1.3 evaluates it and mapped as hydra-optuna-sweeper 1.3 maps it to an
Optuna distribution, so the Study searches exactly what the sweeper would
(checked against both libraries):

===================================  ==========================================
Hydra                                Study parameter
===================================  ==========================================
choice(a, b, c) / a,b,c              categorical (lists and dicts as Hydra
                                     writes them: ``"[1,2]"``)
range(start, stop, step=1)           int (float when any bound or step is a
                                     float), **stop included**: the sweeper
                                     hands ``stop`` to Optuna as ``high``
interval(low, high)                  float, even with whole bounds (Hydra makes
                                     interval bounds floats)
int(interval(low, high))             int
tag(log, interval(...))              the same with log: true (tags on a range
                                     or choice are ignored, as the sweeper does)
shuffle(range(...))                  categorical of the range's values, **stop
                                     excluded** (Hydra enumerates the range)
shuffle(choice(...)), sort(...)      the choice or range they wrap
int(), float(), str(), bool()        cast as Hydra casts
a plain value (lr: 0.1)              passed to every trial as ``key=value``
===================================  ==========================================

With the grid sampler the sweeper builds its grid itself: a range's or an int
interval's ``stop`` is excluded there, a float range gives ``low + i*step``
below ``stop``, a continuous interval is refused, and ``n_trials`` is capped at
the grid's size; the Study gets the same points and budget.

The older ``search_space:`` form (``{type: float, low, high, log, step}``)
maps one to one (ignored, as by the sweeper, when ``params`` is given).
``sampler`` (``_target_: optuna.samplers.TPESampler`` and its arguments, or
``override hydra/sweeper/sampler: tpe`` in ``defaults``) → ``sampler``
(``seed`` kept, other arguments checked against the class); ``direction`` (one
or a list) → ``objective``; ``n_trials`` (default 20) → ``maxTrials``;
``n_jobs`` (default 2) → ``parallelism``; ``max_failure_rate`` →
``maxFailedTrials`` (rate x n_trials: warning); ``study_name`` →
``storage.studyName``. The sweeper never prunes, so neither does the Study
(``pruner: none``). ``storage`` and ``custom_search_space`` do not carry over
(warnings). A value the sweeper would refuse (``glob()``, ``choice(null)``,
``range(5, 1)``, a log interval from 0) is refused, naming the parameter.

Trials run ``python <program> key={key} ...`` (``--program``, default
``main.py``); the sweeper takes the value the task function returns, kubetune
reads it from standard output: the task prints ``objective=<value>``
(``--metric`` renames it).

Example:
    >>> from kubetune.convert import convert
    >>> convert("hydra", "conf/config.yaml", program="train.py").study   # doctest: +SKIP
"""

from __future__ import annotations

import builtins
import decimal
import inspect
import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kubetune.convert.common import Conversion, ConversionError, document, number, study_name

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
#: The sweeper's defaults (hydra_plugins.hydra_optuna_sweeper.config.OptunaSweeperConf).
_DEFAULT_N_TRIALS = 20
_DEFAULT_N_JOBS = 2


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

    space: dict[str, Distribution] = {}
    fixed: dict[str, str] = {}
    params = sweeper.get("params")
    if params is not None and not isinstance(params, Mapping):
        raise ConversionError("hydra.sweeper.params: must be a mapping of name: override")
    if params is not None and sweeper.get("search_space"):
        warn(
            "hydra.sweeper.search_space: ignored because params is given (the sweeper uses "
            "params alone then)"
        )
    elif sweeper.get("search_space"):
        for key, value in sweeper["search_space"].items():
            space[str(key)] = _legacy_param(str(key), value)
    for key, value in (params or {}).items():
        where = f"hydra.sweeper.params.{key}"
        try:
            result = translate(value, warn=lambda text, w=where: warn(f"{w}: {text}"))
        except ConversionError as error:
            raise ConversionError(f"{where}: {error}") from None
        if isinstance(result, Distribution):
            space[str(key)] = result
        else:
            if "${" in result:
                warn(
                    f"{where}: the interpolation in {result!r} is resolved by Hydra in each "
                    "trial's own config, not in the sweeper's"
                )
            fixed[str(key)] = result
            space.pop(str(key), None)  # a fixed value overrides search_space, as in the sweeper
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
    n_trials = int(number(sweeper.get("n_trials", _DEFAULT_N_TRIALS), "hydra.sweeper.n_trials"))
    search_space: dict[str, dict[str, Any]]
    if sampler["name"] == "grid":
        search_space, size = _grid(space)
        if size < n_trials:
            warn(
                f"hydra.sweeper.n_trials: {n_trials} capped at the grid's {size} points, as the "
                "sweeper does"
            )
            n_trials = size
    else:
        search_space = {key: param.to_dict() for key, param in space.items()}
    budget: dict[str, Any] = {"maxTrials": n_trials}
    budget["parallelism"] = int(
        number(sweeper.get("n_jobs", _DEFAULT_N_JOBS), "hydra.sweeper.n_jobs")
    )
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
    argv += [f"{key}={{{key}}}" for key in search_space]
    argv += [f"{key}={value}" for key, value in fixed.items()]
    trial: dict[str, Any] = {"command": argv}
    if image:
        trial["image"] = image
    spec: dict[str, Any] = {
        "objective": objective,
        "searchSpace": search_space,
        "sampler": sampler,
        # The sweeper reports only each trial's final value: nothing is ever pruned.
        "pruner": {"name": "none"},
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
        if key in ("_target_", "_partial_") or value is None:
            continue  # None is the class's default; _partial_ is Hydra's, not the sampler's
        if key == "seed":
            sampler["seed"] = int(value)
        elif key == "search_space" and name == "grid":
            continue  # the grid comes from the search space
        elif isinstance(value, str | int | float | bool) and key in accepted:
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


# ------------------------------------------------- distributions (as the sweeper)


@dataclass
class Distribution:
    """An Optuna distribution as the sweeper builds it: ``kind`` is ``categorical``,
    ``int``, ``float`` (uniform) or ``discrete`` (float with a step)."""

    kind: str
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False
    choices: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The Study's search-space entry."""
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        if self.kind == "int":
            param: dict[str, Any] = {"type": "int", "low": int(self.low), "high": int(self.high)}
            if self.log:
                param["log"] = True
            elif self.step not in (None, 1):
                param["step"] = int(self.step)  # type: ignore[arg-type]
            return param
        param = {"type": "float", "low": float(self.low), "high": float(self.high)}
        if self.log:
            param["log"] = True
        elif self.step is not None:
            param["step"] = float(self.step)
        return param


def _int_distribution(low: Any, high: Any, step: Any = 1, *, log: bool = False) -> Distribution:
    """Optuna's IntUniform/IntLogUniform checks; ``high`` moved down onto the step grid."""
    low, high, step = int(low), int(high), int(step)
    if low > high:
        raise ConversionError(f"low {low} is greater than high {high} (Optuna refuses it)")
    if step <= 0:
        raise ConversionError(f"step {step} must be > 0 (Optuna refuses it)")
    if log and low < 1:
        raise ConversionError(f"a log int needs low >= 1, not {low} (Optuna refuses it)")
    high = (high - low) // step * step + low
    return Distribution("int", low, high, None if log else step, log)


def _float_distribution(
    low: Any, high: Any, step: Any = None, *, log: bool = False
) -> Distribution:
    """Optuna's Uniform/LogUniform/DiscreteUniform checks; ``high`` moved onto the step
    grid with decimals, as Optuna does."""
    low, high = float(low), float(high)
    if low > high:
        raise ConversionError(f"low {low:g} is greater than high {high:g} (Optuna refuses it)")
    if log and low <= 0:
        raise ConversionError(f"a log float needs low > 0, not {low:g} (Optuna refuses it)")
    if step is None or log:
        return Distribution("float", low, high, None, log)
    step = float(step)
    if step <= 0:
        raise ConversionError(f"step {step:g} must be > 0 (Optuna refuses it)")
    d_low, d_step = decimal.Decimal(str(low)), decimal.Decimal(str(step))
    span = decimal.Decimal(str(high)) - d_low
    if span % d_step != 0:
        high = float((span // d_step) * d_step + d_low)
    return Distribution("discrete", low, high, step)


def _legacy_param(key: str, config: Any) -> Distribution:
    """The sweeper's older ``search_space: {x: {type: float, low, high, ...}}`` form,
    as ``create_optuna_distribution_from_config`` builds it."""
    where = f"hydra.sweeper.search_space.{key}"
    if not isinstance(config, Mapping) or config.get("type") not in ("float", "int", "categorical"):
        raise ConversionError(f"{where}: needs type float, int or categorical")
    try:
        if config["type"] == "categorical":
            return _categorical(list(config["choices"]))
        low = number(config["low"], f"{where}.low")
        high = number(config["high"], f"{where}.high")
        log = bool(config.get("log", False))
        step = config.get("step")
        if config["type"] == "int":
            return _int_distribution(low, high, 1 if step is None else step, log=log)
        return _float_distribution(low, high, step, log=log)
    except KeyError as error:
        raise ConversionError(f"{where}: needs {error.args[0]}") from None
    except ConversionError as error:
        raise ConversionError(f"{where}: {error}") from None


def _categorical(choices: list[Any]) -> Distribution:
    for choice in choices:
        if isinstance(choice, float) and not math.isfinite(choice):
            raise ConversionError(f"choice {choice!r} is not a finite number")
    return Distribution("categorical", choices=choices)


def _grid(space: Mapping[str, Distribution]) -> tuple[dict[str, dict[str, Any]], int]:
    """The search space the sweeper gives Optuna's GridSampler
    (``OptunaSweeperImpl._to_grid_sampler_choices``), and its size."""
    result: dict[str, dict[str, Any]] = {}
    size = 1
    for key, param in space.items():
        where = f"hydra.sweeper.params.{key}"
        if param.kind == "categorical":
            result[key] = param.to_dict()
            size *= len(param.choices)
            continue
        if param.kind == "int" and not param.log:
            step = int(param.step or 1)
            count = (int(param.high) - int(param.low)) // step  # stop excluded, as the sweeper
            if count < 1:
                raise ConversionError(f"{where}: the sweeper's grid of this range is empty")
            result[key] = {
                "type": "int",
                "low": int(param.low),
                "high": int(param.low) + (count - 1) * step,
            }
            if step != 1:
                result[key]["step"] = step
        elif param.kind == "discrete":
            assert param.step is not None
            count = int((param.high - param.low) // param.step)
            if count < 1:
                raise ConversionError(f"{where}: the sweeper's grid of this range is empty")
            # The sweeper's own float arithmetic, so trials get the very same values.
            result[key] = {
                "type": "categorical",
                "choices": [param.low + i * param.step for i in range(count)],
            }
        else:
            raise ConversionError(
                f"{where}: the grid sampler needs a choice or a range; the sweeper refuses "
                "an interval with it"
            )
        size *= count
    return result, size


# ------------------------------------------------------------ override grammar


@dataclass
class Call:
    """A grammar function as written: ``interval(0, 1)``, ``tag(log, ...)``."""

    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bare:
    """An unquoted string as written (Hydra escapes kept: ``a\\,b``)."""

    text: str


@dataclass
class Quoted:
    """A quoted string: its text, and how it was written."""

    text: str
    written: str


@dataclass
class Raw:
    """A dict value (``{a: 1}``) kept as written."""

    text: str


@dataclass
class ChoiceSweep:
    """Hydra's ChoiceSweep: ``simple`` for the bare ``a,b`` form."""

    values: list[Any]
    simple: bool = False
    shuffle: bool = False
    tags: set[str] = field(default_factory=set)


@dataclass
class RangeSweep:
    """Hydra's RangeSweep: start, stop (excluded when enumerated) and step."""

    start: int | float
    stop: int | float
    step: int | float = 1
    shuffle: bool = False
    tags: set[str] = field(default_factory=set)

    def values(self) -> list[int | float]:
        """The values Hydra enumerates (stop excluded; floats summed as decimals)."""
        if all(isinstance(v, int) for v in (self.start, self.stop, self.step)):
            return list(builtins.range(int(self.start), int(self.stop), int(self.step)))
        start, stop, step = (decimal.Decimal(v) for v in (self.start, self.stop, self.step))
        values: list[int | float] = []
        while (step > 0 and start < stop) or (step < 0 and start > stop):
            values.append(float(start))
            start += step
        return values


@dataclass
class IntervalSweep:
    """Hydra's IntervalSweep: floats unless cast with int()."""

    start: int | float
    end: int | float
    tags: set[str] = field(default_factory=set)


Sweep = ChoiceSweep | RangeSweep | IntervalSweep

_WORD = r"(?:\$\{[^}]*\}|\\.|[^\s(),=\[\]{}'\"\\])+"
_TOKEN = re.compile(
    rf"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<punct>[(),=\[\]])
      | (?P<word>{_WORD}(?:[ \t]+{_WORD})*)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        while text[position].isspace():
            position += 1
        if text[position] == "{":
            end = _closing_brace(text, position)
            tokens.append(("raw", text[position : end + 1]))
            position = end + 1
            continue
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ConversionError(f"cannot parse {text!r} at {text[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _closing_brace(text: str, start: int) -> int:
    depth, quote = 0, ""
    for index in builtins.range(start, len(text)):
        char = text[index]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ConversionError(f"cannot parse {text!r}: unclosed '{{'")


def parse_override(text: str) -> Any:
    """Parse a Hydra override value as written: a primitive, a list, a dict
    (:class:`Raw`), a function call (:class:`Call`) or a bare ``a,b,c`` choice
    (``Call("choice", ..., simple)``)."""
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
            return Quoted(re.sub(r"\\(.)", r"\1", raw[1:-1]), raw)
        if kind == "raw":
            return Raw(raw)
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
        elif call.kwargs:
            raise ConversionError(f"cannot parse {text!r}: a positional argument after a named one")
        else:
            call.args.append(value())

    first = value()
    if peek() == ("punct", ","):
        items = [first]
        while peek() == ("punct", ","):
            take(",")
            items.append(value())
        first = Call("choice", items, {"_simple": True})
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


# ----------------------------------------------------- Hydra's grammar functions


def evaluate(node: Any) -> Any:
    """Evaluate a parsed override as Hydra's grammar functions do: sweeps become
    :class:`ChoiceSweep`, :class:`RangeSweep` or :class:`IntervalSweep`."""
    if isinstance(node, list):
        return _elements([evaluate(item) for item in node], "a list")
    if not isinstance(node, Call):
        return node
    args = [evaluate(a) for a in node.args]
    kwargs = {k: evaluate(v) for k, v in node.kwargs.items() if k != "_simple"}
    if node.kwargs.get("_simple"):
        return ChoiceSweep(_elements(args, "a,b"), simple=True)
    function = _FUNCTIONS.get(node.name)
    if function is None:
        if node.name == "glob":
            raise ConversionError(
                "glob() selects options of a config group, which a Study cannot list: "
                "name them with choice()"
            )
        raise ConversionError(f"{node.name}() is not a function of Hydra's override grammar")
    try:
        return function(*args, **kwargs)
    except TypeError as error:
        raise ConversionError(f"{node.name}(): {error}") from None


def _is_sweep(value: Any) -> bool:
    return isinstance(value, ChoiceSweep | RangeSweep | IntervalSweep)


def _elements(values: list[Any], where: str) -> list[Any]:
    for item in values:
        if _is_sweep(item):
            raise ConversionError(
                f"{where}: a sweep inside a sweep is not allowed (Hydra refuses it)"
            )
    return values


def _number_argument(value: Any, function: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConversionError(f"{function}() takes numbers, not {_element_str(value)!r}")
    return value


def _choice(*args: Any) -> ChoiceSweep:
    if not args:
        raise ConversionError("choice() needs at least one value")
    if len(args) == 1 and isinstance(args[0], ChoiceSweep):
        if not args[0].simple:
            raise ConversionError("choice(choice(...)): nesting choices is not supported")
        return replace(args[0], simple=False)
    for item in args:
        if item is None:
            raise ConversionError("choice() cannot hold null (Hydra refuses it)")
    return ChoiceSweep(_elements(list(args), "choice()"))


def _range(start: Any, stop: Any = None, step: Any = 1) -> RangeSweep:
    if stop is None:
        start, stop = 0, start
    return RangeSweep(
        _number_argument(start, "range"),
        _number_argument(stop, "range"),
        _number_argument(step, "range"),
    )


def _interval(start: Any, end: Any) -> IntervalSweep:
    return IntervalSweep(
        float(_number_argument(start, "interval")), float(_number_argument(end, "interval"))
    )


def _tag(*args: Any, sweep: Any = None) -> Any:
    if sweep is not None:
        args = (*args, sweep)
    if not args or not _is_sweep(args[-1]):
        raise ConversionError("tag(): the last argument must be a choice, range or interval")
    tags = set()
    for tag in args[:-1]:
        if not isinstance(tag, Bare | Quoted):
            raise ConversionError(f"tag(): tags must be strings, not {_element_str(tag)!r}")
        tags.add(tag.text)
    return replace(args[-1], tags=tags)


def _shuffle(*args: Any, sweep: Any = None, list: Any = None) -> Any:  # Hydra's argument names
    if list is not None:
        args = (list,)
    elif sweep is not None:
        args = (sweep,)
    if len(args) == 1:
        if isinstance(args[0], ChoiceSweep | RangeSweep):
            return replace(args[0], shuffle=True)
        if isinstance(args[0], IntervalSweep):
            raise ConversionError("shuffle() takes a choice or a range, not an interval")
        if isinstance(args[0], builtins.list):
            shuffled = builtins.list(args[0])
            random.shuffle(shuffled)
            return shuffled
        return [args[0]]
    return ChoiceSweep(_elements(builtins.list(args), "shuffle()"), simple=True, shuffle=True)


def _sort(*args: Any, sweep: Any = None, list: Any = None, reverse: Any = False) -> Any:
    if list is not None:
        args = (list,)
    elif sweep is not None:
        args = (sweep,)
    if not args:
        raise ConversionError("sort() needs a value")
    if len(args) > 1:
        args = (ChoiceSweep(_elements(builtins.list(args), "sort()"), simple=True),)
    value = args[0]
    if isinstance(value, ChoiceSweep):
        try:
            return replace(value, values=sorted(value.values, key=_sort_key, reverse=reverse))
        except TypeError:
            raise ConversionError("sort(): the values cannot be compared") from None
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if not reverse and start > stop:
            start, stop, step = stop + abs(step), start + abs(step), -step
        elif reverse and start < stop:
            start, stop, step = stop - abs(step), start - abs(step), -step
        return replace(value, start=start, stop=stop, step=step)
    if isinstance(value, IntervalSweep):
        raise ConversionError("sort() takes a choice or a range, not an interval")
    if isinstance(value, builtins.list):
        return sorted(value, key=_sort_key, reverse=reverse)
    return value


def _sort_key(value: Any) -> Any:
    return value.text if isinstance(value, Bare | Quoted) else value


def _caster(kind: type) -> Callable[..., Any]:
    def cast(*args: Any, value: Any = None) -> Any:
        if args and value is not None:
            raise ConversionError("cannot use both position and named arguments")
        if value is None:
            if not args:
                raise ConversionError(f"{kind.__name__}() needs a value")
            value = args[0] if len(args) == 1 else ChoiceSweep(builtins.list(args), simple=True)
        return _cast(kind, value)

    return cast


def _cast(kind: type, value: Any) -> Any:
    if isinstance(value, ChoiceSweep):
        return replace(value, values=[_cast(kind, v) for v in value.values])
    if isinstance(value, RangeSweep):
        if kind not in (int, float):
            raise ConversionError("a range can only be cast to int or float")
        return replace(value, start=kind(value.start), stop=kind(value.stop), step=kind(value.step))
    if isinstance(value, IntervalSweep):
        if kind not in (int, float):
            raise ConversionError(f"an interval cannot be cast to {kind.__name__}")
        return replace(value, start=kind(value.start), end=kind(value.end))
    if isinstance(value, builtins.list):
        return [_cast(kind, v) for v in value]
    if isinstance(value, Raw):
        raise ConversionError(f"{kind.__name__}() of a dict cannot be converted")
    if isinstance(value, Bare | Quoted):
        value = value.text
    if value is None:
        raise ConversionError(f"{kind.__name__}(null) is not allowed (Hydra refuses it)")
    try:
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise ValueError(f"cannot cast {value!r} to bool")
            return value.lower() == "true"
        if kind is str:
            return str(value).lower() if isinstance(value, bool) else str(value)
        if kind is int and isinstance(value, str):
            return int(value)
        return kind(value)
    except ValueError as error:
        raise ConversionError(f"{kind.__name__}(): {error}") from None


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "choice": _choice,
    "range": _range,
    "interval": _interval,
    "tag": _tag,
    "shuffle": _shuffle,
    "sort": _sort,
    "int": _caster(int),
    "float": _caster(float),
    "str": _caster(str),
    "bool": _caster(bool),
}


# ---------------------------------------------- the sweeper's translation


def _escape(text: str) -> str:
    r"""Hydra's ``escape_special_characters``: ``\()[]{}:=, \t`` get a backslash."""
    return re.sub(r"([\\()\[\]{}:=, \t])", r"\\\1", text)


def _element_str(value: Any) -> str:
    """Hydra's ``Override._get_value_element_as_str``: how the sweeper writes a
    value back into an override."""
    if value is None:
        return "null"
    if isinstance(value, Quoted):
        return value.written
    if isinstance(value, Bare):
        return value.text
    if isinstance(value, Raw):
        return re.sub(r"([:,])\s+", r"\1", value.text)
    if isinstance(value, list):
        return "[" + ",".join(_element_str(v) for v in value) + "]"
    if isinstance(value, str):
        return _escape(value)
    return str(value)


def _encode(value: Any) -> Any:
    """``Transformer.encode``: strings and numbers stay, the rest become Hydra text."""
    if isinstance(value, Bare | Quoted):
        return re.sub(r"\\(.)", r"\1", value.text) if isinstance(value, Bare) else value.text
    if isinstance(value, str | int | float | bool):
        return value
    return _element_str(value)


def _omegaconf_text(value: Any) -> str:
    """What ``f"{k}={v}"`` writes for a YAML value in ``params`` (the sweeper's
    ``_parse_sweeper_params_config``)."""
    return str(value)


def translate(value: Any, warn: Callable[[str], None] = lambda _: None) -> Distribution | str:
    """A ``params`` value as the sweeper takes it: a :class:`Distribution`, or the
    text of a fixed value passed to every trial."""
    text = value if isinstance(value, str) else _omegaconf_text(value)
    evaluated = evaluate(parse_override(text))
    if isinstance(evaluated, ChoiceSweep):
        ignored = evaluated.tags
        choices: list[Any] = []
        for choice in (_encode(v) for v in evaluated.values):
            if any(type(c) is type(choice) and c == choice for c in choices):
                warn(
                    f"{choice!r} is listed twice; Optuna's sampler picked it twice as often, "
                    "the Study lists it once"
                )
                continue
            choices.append(choice)
        result = _categorical(choices)
    elif isinstance(evaluated, RangeSweep):
        ignored = evaluated.tags
        if evaluated.shuffle:
            values = evaluated.values()
            if not values:
                raise ConversionError(f"{text}: the range is empty")
            result = _categorical(values)  # type: ignore[arg-type]
        elif any(isinstance(v, float) for v in (evaluated.start, evaluated.stop, evaluated.step)):
            result = _float_distribution(evaluated.start, evaluated.stop, evaluated.step)
        else:
            result = _int_distribution(evaluated.start, evaluated.stop, evaluated.step)
    elif isinstance(evaluated, IntervalSweep):
        log = "log" in evaluated.tags
        ignored = evaluated.tags - {"log"}
        if isinstance(evaluated.start, int) and isinstance(evaluated.end, int):
            result = _int_distribution(evaluated.start, evaluated.end, log=log)
        else:
            result = _float_distribution(evaluated.start, evaluated.end, log=log)
    else:
        return _element_str(evaluated)
    for tag in sorted(ignored):
        warn(
            f"tag {tag!r} is ignored, as the sweeper ignores it"
            + (" (it reads log only on an interval)" if tag == "log" else "")
        )
    return result
