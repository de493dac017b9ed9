"""W&B sweep configurations to Studies.

Methods: ``grid`` → grid sampler (every parameter must be discrete, as W&B
requires; the budget defaults to the grid's size), ``random`` → random,
``bayes`` (a Gaussian process) → ``gp``.

Distributions (W&B's ``log_uniform`` and ``q_log_uniform`` take ``min``/``max``
as natural-log exponents, the ``*_values`` forms take the values):

===========================  ==================================================
W&B                          Study parameter
===========================  ==================================================
constant (``value``)         categorical with one choice
categorical (``values``)     categorical (``probabilities``: warning, ignored)
int_uniform                  int [min, max]
uniform                      float [min, max]
q_uniform                    float [min, max], step q
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

``metric`` (name, goal, target) → ``objective`` (metric, direction, goal);
``early_terminate: {type: hyperband}`` → the Hyperband pruner (``min_iter`` →
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

from kubetune.convert import Conversion, ConversionError, document, number, study_name

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
    _parameters(data["parameters"], "", space, warn)
    if not space:
        raise ConversionError("parameters: nothing could be converted")

    if sampler_name == "grid":
        continuous = [
            n
            for n, p in space.items()
            if p["type"] == "float" and ("step" not in p or p.get("log"))
        ]
        continuous += [n for n, p in space.items() if p["type"] == "int" and p.get("log")]
        if continuous:
            warn(
                f"method: grid needs discrete parameters, and {', '.join(continuous)} "
                "is continuous (W&B refuses this too); using the random sampler"
            )
            sampler_name = "random"

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
        "'step=<n>' on the same line for each epoch, so the pruner can stop it) or a JSON line"
    )

    budget: dict[str, Any] = {}
    if data.get("run_cap") is not None:
        budget["maxTrials"] = int(number(data["run_cap"], "run_cap"))
    elif sampler_name == "grid":
        budget["maxTrials"] = _grid_size(space)
    else:
        budget["maxTrials"] = 100
        warn("run_cap: not set (W&B runs until stopped); maxTrials is 100")

    spec: dict[str, Any] = {
        "objective": objective,
        "searchSpace": space,
        "sampler": {"name": sampler_name},
        "budget": budget,
    }
    pruner = _early_terminate(data.get("early_terminate"), warn)
    if pruner is not None:
        spec["pruner"] = pruner

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
) -> None:
    for key, config in params.items():
        name = f"{prefix}{key}"
        if not isinstance(config, Mapping):
            warn(f"parameters.{name}: {config!r} is not a mapping; ignored")
            continue
        if "parameters" in config and isinstance(config["parameters"], Mapping):
            warn(
                f"parameters.{name}: nested parameters become dotted names ({name}.<key>); "
                "W&B passes them to the program as one nested value"
            )
            _parameters(config["parameters"], f"{name}.", space, warn)
            continue
        try:
            param = _parameter(name, config, warn)
        except (ConversionError, KeyError, TypeError, ValueError) as error:
            detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
            warn(f"parameters.{name}: cannot be converted ({detail}); ignored")
            continue
        if param is not None:
            space[name] = param


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
    raise ConversionError("no distribution, value, values or min/max")


def _parameter(
    name: str, config: Mapping[str, Any], warn: Callable[[str], None]
) -> dict[str, Any] | None:
    where = f"parameters.{name}"
    dist = _distribution(config)

    def bound(key: str) -> float:
        return float(number(config[key], f"{where}.{key}"))

    q = float(number(config.get("q", 1), f"{where}.q"))
    mu = float(number(config.get("mu", 0), f"{where}.mu"))
    sigma = float(number(config.get("sigma", 1), f"{where}.sigma"))

    if dist == "constant":
        return {"type": "categorical", "choices": [config["value"]]}
    if dist == "categorical":
        if "probabilities" in config:
            warn(f"{where}.probabilities: Optuna samplers do not weight choices; ignored")
        return {"type": "categorical", "choices": list(config["values"])}
    if dist == "int_uniform":
        return {"type": "int", "low": int(bound("min")), "high": int(bound("max"))}
    if dist == "uniform":
        return {"type": "float", "low": bound("min"), "high": bound("max")}
    if dist == "q_uniform":
        return {"type": "float", "low": bound("min"), "high": bound("max"), "step": q}
    if dist in ("log_uniform", "q_log_uniform"):
        low, high = math.exp(bound("min")), math.exp(bound("max"))
        return _log(where, low, high, q if dist.startswith("q_") else None, warn)
    if dist in ("log_uniform_values", "q_log_uniform_values"):
        return _log(where, bound("min"), bound("max"), q if dist.startswith("q_") else None, warn)
    if dist == "inv_log_uniform":
        # X with log(1/X) uniform in [min, max]: log X uniform in [-max, -min].
        return _log(where, math.exp(-bound("max")), math.exp(-bound("min")), None, warn)
    if dist == "inv_log_uniform_values":
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
    warn(f"{where}: distribution {dist!r} is unknown; ignored")
    return None


def _log(
    where: str, low: float, high: float, q: float | None, warn: Callable[[str], None]
) -> dict[str, Any]:
    """A log-scaled parameter; a quantized one is an int when q is whole."""
    if q is None:
        return {"type": "float", "low": low, "high": high, "log": True}
    if q.is_integer() and q >= 1 and math.floor(high) >= max(1, math.ceil(low)):
        if q != 1:
            warn(f"{where}.q: {q:g} dropped (Optuna cannot combine log and step); whole numbers")
        return {"type": "int", "low": max(1, math.ceil(low)), "high": math.floor(high), "log": True}
    warn(f"{where}.q: {q:g} dropped (Optuna cannot combine log and step)")
    return {"type": "float", "low": low, "high": high, "log": True}


def _grid_size(space: Mapping[str, Mapping[str, Any]]) -> int:
    size = 1
    for param in space.values():
        if param["type"] == "categorical":
            size *= len(param["choices"])
        elif param["type"] == "int":
            size *= (param["high"] - param["low"]) // param.get("step", 1) + 1
        else:
            size *= round((param["high"] - param["low"]) / param["step"]) + 1
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
