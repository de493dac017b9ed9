"""W&B sweep configurations to Studies.

Methods: ``grid`` → grid sampler, ``random`` → random, ``bayes`` (a Gaussian
process) → ``gp``. Each parameter is read as the W&B sweep controller
(wandb/sweeps) reads it, so the Study searches what the sweep would:

===========================  ==================================================
W&B                          Study parameter
===========================  ==================================================
constant (``value``)         categorical with one choice
categorical (``values``)     categorical (``probabilities``: warning, ignored;
                             a value listed twice: warning, listed once)
int_uniform                  int [min, max]
uniform                      float [min, max]
q_uniform                    the multiples of q W&B rounds to:
                             [round(min/q)*q, round(max/q)*q], step q; int
                             when q is an int, as W&B returns ints then
log_uniform                  float log [e^min, e^max]
log_uniform_values           float log [min, max]
q_log_uniform(_values)       int log when q is whole (q > 1: warning), else
                             float log (q dropped: warning)
inv_log_uniform              float log [e^-max, e^-min] (1/X log-uniform: exact)
inv_log_uniform_values       float log [min, max] (exact)
normal, q_normal             float [mu - 3 sigma, mu + 3 sigma] (+ step q): warning
log_normal, q_log_normal     float log [e^(mu - 3 sigma), e^(mu + 3 sigma)]: warning
beta, q_beta                 float [0, 1] (+ step q): warning (the prior is lost)
===========================  ==================================================

A grid sweep takes, as W&B does, only constant, categorical (no
probabilities), int_uniform (every int from min to max) and q_uniform (W&B's
``numpy.arange(min, max, q)``: **max excluded**) parameters; any other is
refused, naming it. Its budget is the grid's size (or ``run_cap`` when
smaller), so every point runs once. A parameter that cannot be represented
(an unknown distribution, a list or mapping among the values, min >= max) is
refused with its name: it is never dropped from the search.

``metric`` (name, goal, target) → ``objective`` (metric, direction, goal);
no ``early_terminate`` → no pruner (W&B stops no run early; Optuna's default
median pruner would); ``early_terminate: {type: hyperband}`` → the Hyperband pruner (``min_iter`` →
``min_resource``, ``max_iter`` → ``max_resource``, ``eta`` →
``reduction_factor``; ``max_iter`` with ``s`` → ``min_resource = max_iter /
eta^s``); ``run_cap`` → ``maxTrials``; ``program`` and ``command`` macros →
``trial.command`` with ``{param}`` placeholders; ``entity``/``project`` →
``WANDB_ENTITY``/``WANDB_PROJECT`` in the trial's environment, so the program
still logs to W&B. Nested parameters become dotted names (``optimizer.lr``).

Example:
    >>> from kubetune.convert import convert
    >>> convert("wandb", "sweep.yaml").warnings      # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from kubetune.convert.common import Conversion, ConversionError, document, number, study_name

METHODS = {"grid": "grid", "random": "random", "bayes": "gp"}
#: The command W&B runs when a sweep gives none.
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
KNOWN_KEYS = {
    "program",
    "method",
    "metric",
    "parameters",
    "early_terminate",
    "command",
    "run_cap",
    "name",
    "description",
    "entity",
    "project",
}


def convert_sweep(
    data: Mapping[str, Any],
    *,
    name: str | None = None,
    default_name: str = "sweep",
    image: str | None = None,
    **_options: Any,
) -> Conversion:
    """A Study from a W&B sweep configuration (see the module doc for the mapping)."""
    if "parameters" not in data or not isinstance(data["parameters"], Mapping):
        raise ConversionError("not a W&B sweep: it has no parameters mapping")
    warnings: list[str] = []
    warn = warnings.append
    for key in data:
        if key not in KNOWN_KEYS:
            warn(f"{key}: no counterpart in a Study; ignored")

    method = str(data.get("method") or "")
    sampler_name = METHODS.get(method)
    if sampler_name is None:
        warn(f"method: {method or '(none)'!r} is not grid, random or bayes; using tpe")
        sampler_name = "tpe"

    space: dict[str, dict[str, Any]] = {}
    _parameters(data["parameters"], "", space, warn, grid=sampler_name == "grid")
    if not space:
        raise ConversionError("parameters: nothing could be converted")

    metric = data.get("metric") or {}
    objective: dict[str, Any] = {}
    if isinstance(metric, Mapping) and metric.get("name"):
        objective["metric"] = str(metric["name"])
        objective["direction"] = "maximize" if metric.get("goal") == "maximize" else "minimize"
        if metric.get("goal") not in (None, "minimize", "maximize"):
            warn(f"metric.goal: {metric['goal']!r} is not minimize or maximize; minimizing")
        if metric.get("target") is not None:
            objective["goal"] = number(metric["target"], "metric.target")
    else:
        objective.update(metric="value", direction="minimize")
        warn(
            "metric: the sweep names no metric; the Study minimizes 'value': set "
            "spec.objective.metric to the name your program prints"
        )
    warn(
        f"metric: W&B reads {objective['metric']!r} from wandb.log; kubetune reads it from the "
        f"program's standard output: print '{objective['metric']}=<value>' (with "
        "'step=<n>' on the same line for each epoch"
        + (", so the pruner can stop it" if data.get("early_terminate") else "")
        + ") or a JSON line"
    )

    budget: dict[str, Any] = {}
    if sampler_name == "grid":
        # W&B runs each point of the grid once, then the sweep is done.
        budget["maxTrials"] = _grid_size(space)
        if data.get("run_cap") is not None:
            budget["maxTrials"] = min(budget["maxTrials"], int(number(data["run_cap"], "run_cap")))
    elif data.get("run_cap") is not None:
        budget["maxTrials"] = int(number(data["run_cap"], "run_cap"))
    else:
        budget["maxTrials"] = 100
        warn("run_cap: not set (W&B runs until stopped); maxTrials is 100")

    spec: dict[str, Any] = {
        "objective": objective,
        "searchSpace": space,
        "sampler": {"name": sampler_name},
        "budget": budget,
    }
    # Without early_terminate W&B lets every run finish: no pruner (a Study's default is
    # Optuna's median pruner, which would stop runs W&B keeps, and grid points with them).
    spec["pruner"] = _early_terminate(data.get("early_terminate"), warn) or {"name": "none"}

    trial: dict[str, Any] = {"command": _command(data, list(space), warn)}
    if image:
        trial["image"] = image
    env = [
        {"name": variable, "value": str(data[key])}
        for key, variable in (("entity", "WANDB_ENTITY"), ("project", "WANDB_PROJECT"))
        if data.get(key)
    ]
    if env:
        trial["env"] = env
    spec["trial"] = trial
    annotations = (
        {"kubetune.io/description": str(data["description"])} if data.get("description") else None
    )
    return Conversion(
        document(study_name(name, data.get("name"), default_name), spec, annotations), warnings
    )


# ---------------------------------------------------------------- parameters


def _parameters(
    params: Mapping[str, Any],
    prefix: str,
    space: dict[str, dict[str, Any]],
    warn: Callable[[str], None],
    *,
    grid: bool = False,
) -> None:
    for key, config in params.items():
        name = f"{prefix}{key}"
        where = f"parameters.{name}"
        if not isinstance(config, Mapping):
            raise ConversionError(f"{where}: {config!r} is not a mapping (value, values, min/max)")
        if "parameters" in config and isinstance(config["parameters"], Mapping):
            warn(
                f"{where}: nested parameters become dotted names ({name}.<key>); "
                "W&B passes them to the program as one nested value"
            )
            _parameters(config["parameters"], f"{name}.", space, warn, grid=grid)
            continue
        try:
            space[name] = _parameter(where, config, warn, grid=grid)
        except ConversionError as error:
            if str(error).startswith(where):
                raise
            raise ConversionError(f"{where}: {error}") from None
        except KeyError as error:
            raise ConversionError(f"{where}: needs {error.args[0]}") from None
        except (TypeError, ValueError) as error:
            raise ConversionError(f"{where}: {error}") from None


def _distribution(config: Mapping[str, Any]) -> str:
    """W&B's default: constant for value, categorical for values, int_uniform for
    integer bounds, uniform for float bounds."""
    if config.get("distribution"):
        return str(config["distribution"])
    if "value" in config:
        return "constant"
    if "values" in config:
        return "categorical"
    if "min" in config and "max" in config:
        both_int = all(
            isinstance(config[k], int) and not isinstance(config[k], bool) for k in ("min", "max")
        )
        return "int_uniform" if both_int else "uniform"
    raise ConversionError("has no distribution, value, values or min/max")


#: What W&B's grid search accepts (sweeps.grid_search: categorical without
#: probabilities, constant, int_uniform, q_uniform).
_GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")


def _parameter(
    where: str, config: Mapping[str, Any], warn: Callable[[str], None], *, grid: bool = False
) -> dict[str, Any]:
    dist = _distribution(config)
    if dist == "categorical" and "probabilities" in config:
        dist = "categorical_w_probabilities"
    if grid and dist not in _GRID_DISTRIBUTIONS:
        raise ConversionError(
            f"{where}: a grid takes constant, categorical (without probabilities), int_uniform "
            f"or q_uniform parameters, not {dist} (W&B refuses this sweep too); use method "
            "random or bayes, or list the values"
        )

    def bound(key: str) -> float:
        return float(number(config[key], f"{where}.{key}"))

    if "min" in config and "max" in config and not bound("min") < bound("max"):
        raise ConversionError(f"{where}: min {config['min']} is not less than max {config['max']}")
    # W&B's schema default for q is 1.0, a float: quantized values stay floats then.
    raw_q = config.get("q", 1.0)
    q = float(number(raw_q, f"{where}.q"))
    if not q > 0:
        raise ConversionError(f"{where}.q: must be > 0")
    int_q = isinstance(raw_q, int) and not isinstance(raw_q, bool)
    mu = float(number(config.get("mu", 0), f"{where}.mu"))
    sigma = float(number(config.get("sigma", 1), f"{where}.sigma"))

    if dist == "constant":
        return {"type": "categorical", "choices": _choices(where, [config["value"]], warn)}
    if dist in ("categorical", "categorical_w_probabilities"):
        if dist == "categorical_w_probabilities":
            warn(f"{where}.probabilities: Optuna samplers do not weight choices; ignored")
        return {"type": "categorical", "choices": _choices(where, list(config["values"]), warn)}
    if dist == "int_uniform":
        low, high = config["min"], config["max"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            raise ConversionError(f"{where}: int_uniform needs integer min and max")
        return {"type": "int", "low": low, "high": high}
    if dist == "uniform":
        return {"type": "float", "low": bound("min"), "high": bound("max")}
    if dist == "q_uniform":
        if grid:
            return _arange(where, config["min"], config["max"], raw_q)
        return _quantized(where, bound("min"), bound("max"), q, int_q)
    if dist in ("log_uniform", "q_log_uniform"):
        low, high = math.exp(bound("min")), math.exp(bound("max"))
        return _log(where, low, high, q if dist.startswith("q_") else None, warn)
    if dist in ("log_uniform_values", "q_log_uniform_values"):
        if not bound("min") > 0:
            raise ConversionError(f"{where}.min: must be > 0 for {dist}")
        return _log(where, bound("min"), bound("max"), q if dist.startswith("q_") else None, warn)
    if dist == "inv_log_uniform":
        # X with log(1/X) uniform in [min, max]: log X uniform in [-max, -min].
        return _log(where, math.exp(-bound("max")), math.exp(-bound("min")), None, warn)
    if dist == "inv_log_uniform_values":
        if not bound("min") > 0:
            raise ConversionError(f"{where}.min: must be > 0 for {dist}")
        return _log(where, bound("min"), bound("max"), None, warn)
    if dist in ("normal", "q_normal"):
        warn(
            f"{where}: {dist}(mu={mu:g}, sigma={sigma:g}) has no Optuna counterpart; "
            "sampled uniformly over mu ± 3 sigma"
        )
        param: dict[str, Any] = {"type": "float", "low": mu - 3 * sigma, "high": mu + 3 * sigma}
        if dist == "q_normal":
            param["step"] = q
        return param
    if dist in ("log_normal", "q_log_normal"):
        warn(
            f"{where}: {dist}(mu={mu:g}, sigma={sigma:g}) has no Optuna counterpart; "
            "sampled log-uniformly over e^(mu ± 3 sigma)"
        )
        return _log(
            where,
            math.exp(mu - 3 * sigma),
            math.exp(mu + 3 * sigma),
            q if dist == "q_log_normal" else None,
            warn,
        )
    if dist in ("beta", "q_beta"):
        a = config.get("a", 1)
        b = config.get("b", 1)
        warn(
            f"{where}: {dist}(a={a}, b={b}) has no Optuna counterpart; sampled uniformly in [0, 1]"
        )
        param = {"type": "float", "low": 0.0, "high": 1.0}
        if dist == "q_beta":
            param["step"] = q
        return param
    raise ConversionError(
        f"{where}: distribution {dist!r} is not one W&B documents, and has no Optuna counterpart"
    )


def _choices(where: str, values: list[Any], warn: Callable[[str], None]) -> list[Any]:
    """Values a Study can hold (scalars), each once."""
    choices: list[Any] = []
    for value in values:
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ConversionError(
                f"{where}: the value {value!r} is a list or mapping; a Study's choices are "
                "strings, numbers, booleans or null"
            )
        if any(type(c) is type(value) and c == value for c in choices):
            warn(f"{where}: {value!r} is listed twice; the Study lists it once")
            continue
        choices.append(value)
    return choices


def _quantized(where: str, low: float, high: float, q: float, int_q: bool) -> dict[str, Any]:
    """q_uniform outside a grid: W&B samples uniformly and rounds to a multiple of q,
    an int when q is one."""
    first, last = round(low / q), round(high / q)
    if int_q:
        step = int(q)
        return {"type": "int", "low": first * step, "high": last * step, "step": step}
    return {"type": "float", "low": round(first * q, 12), "high": round(last * q, 12), "step": q}


def _arange(where: str, low: Any, high: Any, q: Any) -> dict[str, Any]:
    """q_uniform in a grid: W&B's very points, ``numpy.arange(min, max, q)`` (max excluded)."""
    import numpy

    values = numpy.arange(low, high, q).tolist()
    if not values:
        raise ConversionError(f"{where}: the grid's numpy.arange(min, max, q) is empty")
    return {"type": "categorical", "choices": values}


def _log(
    where: str, low: float, high: float, q: float | None, warn: Callable[[str], None]
) -> dict[str, Any]:
    """A log-scaled parameter; a quantized one is an int when q is whole (W&B rounds
    to the nearest multiple of q)."""
    if q is None:
        return {"type": "float", "low": low, "high": high, "log": True}
    first, last = round(low / q) * q, round(high / q) * q
    if q.is_integer() and last >= max(1, first):
        if q != 1:
            warn(f"{where}.q: {q:g} dropped (Optuna cannot combine log and step); whole numbers")
        if first < 1:
            warn(f"{where}: W&B can round to 0 here; Optuna's log scale starts at 1")
        return {"type": "int", "low": max(1, int(first)), "high": int(last), "log": True}
    warn(f"{where}.q: {q:g} dropped (Optuna cannot combine log and step)")
    return {"type": "float", "low": low, "high": high, "log": True}


def _grid_size(space: Mapping[str, Mapping[str, Any]]) -> int:
    size = 1
    for param in space.values():
        if param["type"] == "categorical":
            size *= len(param["choices"])
        else:
            size *= (param["high"] - param["low"]) // param.get("step", 1) + 1
    return max(1, size)


# ------------------------------------------------------------ early stopping


def _early_terminate(config: Any, warn: Callable[[str], None]) -> dict[str, Any] | None:
    if not config:
        return None
    if not isinstance(config, Mapping) or config.get("type") != "hyperband":
        kind = config.get("type") if isinstance(config, Mapping) else config
        warn(f"early_terminate: type {kind!r} has no counterpart (only hyperband); no pruner")
        return None
    eta = int(number(config.get("eta", 3), "early_terminate.eta"))
    args: dict[str, Any] = {"reduction_factor": eta}
    if "min_iter" in config:
        args["min_resource"] = int(number(config["min_iter"], "early_terminate.min_iter"))
        if "max_iter" in config:
            args["max_resource"] = int(number(config["max_iter"], "early_terminate.max_iter"))
        if "s" in config:
            warn("early_terminate.s: Optuna derives the brackets from min/max and eta; ignored")
    elif "max_iter" in config:
        max_iter = int(number(config["max_iter"], "early_terminate.max_iter"))
        brackets = int(number(config.get("s", 0), "early_terminate.s"))
        args["max_resource"] = max_iter
        args["min_resource"] = max(1, round(max_iter / eta**brackets))
    if config.get("strict"):
        warn("early_terminate.strict: Optuna's Hyperband has no strict mode; ignored")
    return {"name": "hyperband", "args": args}


# ------------------------------------------------------------------- command


def _command(data: Mapping[str, Any], names: list[str], warn: Callable[[str], None]) -> list[str]:
    """``command`` (or W&B's default) with its macros expanded into ``{param}`` placeholders."""
    words = data.get("command") or DEFAULT_COMMAND
    program = data.get("program")
    argv: list[str] = []
    for word in (str(w) for w in words):
        if word == "${env}":
            continue  # /usr/bin/env finds the interpreter on PATH; the runner does so itself
        if word == "${interpreter}":
            argv.append("python")
        elif word == "${program}":
            if not program:
                raise ConversionError("program: required by the command (${program})")
            argv.append(str(program))
        elif word in ("${args}", "${args_no_boolean_flags}"):
            argv += [f"--{n}={{{n}}}" for n in names]
            if word == "${args_no_boolean_flags}":
                warn(
                    "command: ${args_no_boolean_flags} passes booleans as bare flags; kubetune "
                    "passes --name=true/false"
                )
        elif word == "${args_no_hyphens}":
            argv += [f"{n}={{{n}}}" for n in names]
        elif word in ("${args_json}", "${args_json_file}"):
            warn(
                f"command: {word} has no counterpart; dropped. The program finds every "
                "parameter as JSON in $KUBETUNE_PARAMS"
            )
        elif "${" in word:
            expanded = word.replace("${program}", str(program or "")).replace(
                "${interpreter}", "python"
            )
            if "${" in expanded:
                warn(f"command: {word!r} holds a macro kubetune does not know; kept as it is")
            argv.append(expanded)
        else:
            argv.append(word)
    if not argv:
        raise ConversionError("command: nothing to run")
    return argv
