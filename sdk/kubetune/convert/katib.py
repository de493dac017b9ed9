"""Katib ``Experiment`` (kubeflow.org/v1beta1) to a Study.

Parameters (``feasibleSpace`` values are strings in Katib; they are parsed):

===============================  ============================================
Katib                            Study parameter
===============================  ============================================
double (min, max[, step])        float (step kept)
int (min, max[, step])           int (step kept)
categorical (list)               categorical (strings)
discrete (list)                  categorical (numbers)
distribution: logUniform         log: true (a step is dropped: warning)
distribution: normal/logNormal   uniform/log-uniform in [min, max]: warning
===============================  ============================================

Algorithms: ``random`` → random, ``tpe`` → tpe, ``multivariate-tpe`` → tpe
with ``multivariate: true``, ``grid`` → grid, ``cmaes`` → cmaes (``sigma`` →
``sigma0``, ``restart_strategy``), ``sobol`` → qmc (``qmc_type: sobol``),
``bayesianoptimization`` → gp (``n_initial_points`` → ``n_startup_trials``),
``hyperband`` → random sampler plus the Hyperband pruner (``eta`` →
``reduction_factor``, ``r_l`` → ``min_resource``); ``random_state`` → the
sampler's seed everywhere. ``pbt``, ``enas``, ``darts`` have no Optuna
counterpart (warning; tpe). ``earlyStopping: medianstop`` → the median pruner
(``min_trials_required`` → ``n_startup_trials``, ``start_step`` →
``n_warmup_steps``); no early stopping → ``pruner: none``, as Katib stops no
trial then.

``objective`` (type, goal, objectiveMetricName) → ``objective``;
``maxTrialCount``/``parallelTrialCount``/``maxFailedTrialCount`` → ``budget``;
the trial template's primary container → ``trial.command`` (command + args,
``${trialParameters.x}`` → ``{<its reference>}``), ``image``, ``resources``,
``env``, ``workingDir``, volume mounts, and the pod's volumes, node selector,
tolerations, affinity, service account and priority class.

Example:
    >>> from kubetune.convert import convert
    >>> convert("katib", "random.yaml").study["spec"]["sampler"]   # doctest: +SKIP
    {'name': 'random'}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubetune.convert.common import Conversion, ConversionError, document, number, study_name

_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]+)\}")
_OTHER_PLACEHOLDER = re.compile(r"\$\{(trialSpec\.[^}]+)\}")
#: Katib algorithm settings and the Optuna argument each becomes.
_SETTINGS: dict[str, dict[str, str]] = {
    "random": {},
    "tpe": {"n_startup_trials": "n_startup_trials", "n_ei_candidates": "n_ei_candidates"},
    "multivariate-tpe": {
        "n_startup_trials": "n_startup_trials",
        "n_ei_candidates": "n_ei_candidates",
    },
    "grid": {},
    "cmaes": {"sigma": "sigma0", "restart_strategy": "restart_strategy"},
    "sobol": {},
    "bayesianoptimization": {"n_initial_points": "n_startup_trials"},
    "hyperband": {},
}
_SAMPLERS = {
    "random": "random",
    "tpe": "tpe",
    "multivariate-tpe": "tpe",
    "grid": "grid",
    "cmaes": "cmaes",
    "sobol": "qmc",
    "bayesianoptimization": "gp",
    "hyperband": "random",
}
_POD_FIELDS = {
    "nodeSelector": "nodeSelector",
    "tolerations": "tolerations",
    "affinity": "affinity",
    "serviceAccountName": "serviceAccountName",
    "priorityClassName": "priorityClassName",
    "imagePullSecrets": "imagePullSecrets",
    "securityContext": "podSecurityContext",
}
_KNOWN_SPEC_KEYS = {
    "objective",
    "algorithm",
    "earlyStopping",
    "parameters",
    "trialTemplate",
    "maxTrialCount",
    "parallelTrialCount",
    "maxFailedTrialCount",
    "metricsCollectorSpec",
    "resumePolicy",
    "nasConfig",
}


def convert_experiment(
    data: Mapping[str, Any],
    *,
    name: str | None = None,
    default_name: str = "experiment",
    image: str | None = None,
    **_options: Any,
) -> Conversion:
    """A Study from a Katib Experiment (see the module doc for the mapping)."""
    if data.get("kind") != "Experiment" or not str(data.get("apiVersion", "")).startswith(
        "kubeflow.org/"
    ):
        raise ConversionError(
            "not a Katib Experiment (apiVersion: kubeflow.org/v1beta1, kind: Experiment)"
        )
    spec = data.get("spec") or {}
    meta = data.get("metadata") or {}
    warnings: list[str] = []
    warn = warnings.append
    if meta.get("namespace"):
        warn(
            f"metadata.namespace: {meta['namespace']!r} not kept; submit into a namespace "
            "with kubetune submit -n"
        )
    for key in spec:
        if key not in _KNOWN_SPEC_KEYS:
            warn(f"spec.{key}: no counterpart in a Study; ignored")
    if spec.get("nasConfig"):
        raise ConversionError("spec.nasConfig: neural architecture search is not supported")

    space = _parameters(spec.get("parameters") or [], warn)
    if not space:
        raise ConversionError("spec.parameters: nothing could be converted")
    objective = _objective(spec.get("objective") or {}, warn)
    sampler, pruner = _algorithm(spec.get("algorithm") or {}, space, warn)
    early = _early_stopping(spec.get("earlyStopping"), warn)
    if early is not None:
        if pruner is not None:
            warn("spec.earlyStopping: hyperband already prunes; the median stop is not kept")
        else:
            pruner = early

    budget: dict[str, Any] = {}
    if spec.get("maxTrialCount") is not None:
        budget["maxTrials"] = int(number(spec["maxTrialCount"], "spec.maxTrialCount"))
    else:
        budget["maxTrials"] = 100
        warn("spec.maxTrialCount: not set (Katib runs until the goal); maxTrials is 100")
    budget["parallelism"] = int(number(spec.get("parallelTrialCount", 3), "parallelTrialCount"))
    if spec.get("maxFailedTrialCount") is not None:
        budget["maxFailedTrials"] = int(number(spec["maxFailedTrialCount"], "maxFailedTrialCount"))
    if spec.get("resumePolicy") not in (None, "Never", "LongRunning", "FromVolume"):
        warn(f"spec.resumePolicy: {spec['resumePolicy']!r} is unknown; ignored")
    elif spec.get("resumePolicy") not in (None, "Never"):
        warn(
            f"spec.resumePolicy: {spec['resumePolicy']} not needed: a Study keeps its trials in "
            "the database; raise budget.maxTrials to continue it"
        )
    _metrics_collector(spec.get("metricsCollectorSpec"), warn)

    trial = _trial(spec.get("trialTemplate") or {}, space, warn)
    if image:
        trial["image"] = image
    if trial.get("image"):
        warn(
            f"trialTemplate image {trial['image']!r}: trial pods run kubetune's trial runner "
            "(kubetune-trial) in it; build an image FROM it with `pip install kubetune`, or "
            "run the program from kubetune's trial image (--image)"
        )
    study_spec: dict[str, Any] = {
        "objective": objective,
        "searchSpace": space,
        "sampler": sampler,
        "budget": budget,
        "trial": trial,
    }
    # Without earlyStopping Katib stops no trial early: no pruner (a Study's default is
    # Optuna's median pruner).
    study_spec["pruner"] = pruner or {"name": "none"}
    return Conversion(
        document(study_name(name, meta.get("name"), default_name), study_spec), warnings
    )


# ---------------------------------------------------------------- parameters


def _parameters(params: Any, warn: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    space: dict[str, dict[str, Any]] = {}
    for index, param in enumerate(params):
        where = f"spec.parameters[{index}]"
        try:
            name = str(param["name"])
            kind = param["parameterType"]
            feasible = param.get("feasibleSpace") or {}
            converted = _parameter(f"{where}({name})", kind, feasible, warn)
        except (KeyError, TypeError, ConversionError) as error:
            detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
            warn(f"{where}: cannot be converted ({detail}); ignored")
            continue
        if converted is not None:
            space[name] = converted
    return space


def _parameter(
    where: str, kind: str, feasible: Mapping[str, Any], warn: Callable[[str], None]
) -> dict[str, Any] | None:
    distribution = feasible.get("distribution")
    if kind == "categorical":
        return {"type": "categorical", "choices": list(feasible["list"])}
    if kind == "discrete":
        return {
            "type": "categorical",
            "choices": [number(v, f"{where}.feasibleSpace.list") for v in feasible["list"]],
        }
    if kind not in ("double", "int"):
        warn(f"{where}: parameterType {kind!r} is unknown; ignored")
        return None
    low = number(feasible["min"], f"{where}.feasibleSpace.min")
    high = number(feasible["max"], f"{where}.feasibleSpace.max")
    step = feasible.get("step")
    log = distribution in ("logUniform", "logNormal")
    if distribution in ("normal", "logNormal"):
        warn(
            f"{where}: distribution {distribution} has no Optuna counterpart; sampled "
            f"{'log-' if log else ''}uniformly in [min, max]"
        )
    elif distribution not in (None, "", "uniform", "logUniform"):
        warn(f"{where}: distribution {distribution!r} is unknown; sampled uniformly")
    param: dict[str, Any] = {"type": "int" if kind == "int" else "float"}
    if kind == "int":
        param.update(low=int(low), high=int(high))
    else:
        param.update(low=float(low), high=float(high))
    if log:
        param["log"] = True
    if step not in (None, ""):
        if log:
            warn(f"{where}.feasibleSpace.step: dropped (Optuna cannot combine log and step)")
        else:
            value = number(step, f"{where}.feasibleSpace.step")
            param["step"] = int(value) if kind == "int" else float(value)
    return param


# ------------------------------------------------------ objective, algorithm


def _objective(objective: Mapping[str, Any], warn: Callable[[str], None]) -> dict[str, Any]:
    kind = objective.get("type", "minimize")
    if kind not in ("minimize", "maximize"):
        raise ConversionError(f"spec.objective.type: {kind!r} is not minimize or maximize")
    metric = objective.get("objectiveMetricName")
    if not metric:
        raise ConversionError("spec.objective.objectiveMetricName: required")
    result: dict[str, Any] = {"direction": kind, "metric": str(metric)}
    if objective.get("goal") is not None:
        result["goal"] = float(number(objective["goal"], "spec.objective.goal"))
    extra = objective.get("additionalMetricNames") or []
    if extra:
        warn(
            f"spec.objective.additionalMetricNames: {', '.join(map(str, extra))} are not "
            "optimized; kubetune records only the objective's metric"
        )
    strategies = {
        s.get("name"): s.get("value") for s in objective.get("metricStrategies") or [] if s
    }
    strategy = strategies.get(metric)
    if strategy != "latest":
        katib = strategy or ("max" if kind == "maximize" else "min")
        warn(
            f"spec.objective: Katib takes the {katib} of the {metric!r} values a trial reports; "
            "kubetune takes the last one printed: print the value to optimize last"
        )
    return result


def _settings(algorithm: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(s.get("name")): str(s.get("value"))
        for s in algorithm.get("algorithmSettings") or []
        if isinstance(s, Mapping)
    }


def _algorithm(
    algorithm: Mapping[str, Any], space: Mapping[str, Any], warn: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    name = str(algorithm.get("algorithmName") or "random")
    settings = _settings(algorithm)
    sampler_name = _SAMPLERS.get(name)
    if sampler_name is None:
        warn(f"spec.algorithm.algorithmName: {name!r} has no Optuna counterpart; using tpe")
        sampler: dict[str, Any] = {"name": "tpe"}
        for key in settings:
            warn(f"spec.algorithm.algorithmSettings.{key}: belongs to {name}; ignored")
        return sampler, None
    sampler = {"name": sampler_name}
    args: dict[str, Any] = {}
    pruner: dict[str, Any] | None = None
    if name == "multivariate-tpe":
        args["multivariate"] = True
    if name == "sobol":
        args["qmc_type"] = "sobol"
    mapping = _SETTINGS[name]
    for key, value in settings.items():
        where = f"spec.algorithm.algorithmSettings.{key}"
        if key == "random_state":
            sampler["seed"] = int(number(value, where))
        elif key in mapping:
            args[mapping[key]] = value if key == "restart_strategy" else number(value, where)
        elif name == "bayesianoptimization" and key == "base_estimator":
            if value.upper() != "GP":
                warn(f"{where}: {value} is not a Gaussian process; Optuna's gp sampler is used")
        elif name == "hyperband" and key in ("eta", "r_l", "resource_name"):
            continue  # below
        else:
            warn(
                f"{where}: {value!r} has no counterpart in Optuna's {sampler_name} sampler; ignored"
            )
    if name == "hyperband":
        pruner = {"name": "hyperband", "args": {}}
        if "eta" in settings:
            pruner["args"]["reduction_factor"] = int(number(settings["eta"], "eta"))
        if "r_l" in settings:
            pruner["args"]["min_resource"] = int(number(settings["r_l"], "r_l"))
        resource = settings.get("resource_name")
        warn(
            "spec.algorithm: Katib's hyperband gives each trial a budget through "
            f"{resource or 'its resource parameter'}; Optuna's Hyperband pruner stops trials "
            "instead: give the program its full budget and have it print the metric with a step "
            "each epoch" + (f" ({resource} stays in the search space)" if resource in space else "")
        )
    if sampler_name == "grid":
        continuous = [
            n
            for n, p in space.items()
            if p["type"] == "float" and ("step" not in p or p.get("log"))
        ]
        if continuous:
            warn(
                f"spec.algorithm: grid needs a step for {', '.join(continuous)}; using the "
                "random sampler"
            )
            sampler = {"name": "random", **({"seed": sampler["seed"]} if "seed" in sampler else {})}
            args = {}
    if args:
        sampler["args"] = args
    return sampler, pruner


def _early_stopping(config: Any, warn: Callable[[str], None]) -> dict[str, Any] | None:
    if not config:
        return None
    name = config.get("algorithmName")
    settings = _settings(config)
    if name != "medianstop":
        warn(f"spec.earlyStopping: {name!r} has no counterpart (only medianstop); no pruner")
        return None
    args: dict[str, Any] = {}
    for key, value in settings.items():
        where = f"spec.earlyStopping.algorithmSettings.{key}"
        if key == "min_trials_required":
            args["n_startup_trials"] = int(number(value, where))
        elif key == "start_step":
            args["n_warmup_steps"] = int(number(value, where))
        else:
            warn(f"{where}: no counterpart in Optuna's median pruner; ignored")
    return {"name": "median", "args": args}


def _metrics_collector(config: Any, warn: Callable[[str], None]) -> None:
    if not config:
        return
    kind = ((config.get("collector") or {}).get("kind")) or "StdOut"
    if kind != "StdOut":
        warn(
            f"spec.metricsCollectorSpec.collector.kind: {kind} has no counterpart; kubetune "
            "reads name=value (or JSON) lines from standard output, as StdOut does"
        )
    formats = ((config.get("source") or {}).get("filter") or {}).get("metricsFormat")
    if formats:
        warn(
            "spec.metricsCollectorSpec.source.filter.metricsFormat: custom formats are not "
            "kept; print name=value or JSON lines"
        )


# --------------------------------------------------------------------- trial


def _containers(node: Any) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(pod spec, container) pairs anywhere in a trial spec (Job, TFJob, PyTorchJob...)."""
    if isinstance(node, Mapping):
        if isinstance(node.get("containers"), list):
            for container in node["containers"]:
                if isinstance(container, Mapping):
                    yield node, container
        for value in node.values():
            yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _trial(
    template: Mapping[str, Any], space: Mapping[str, Any], warn: Callable[[str], None]
) -> dict[str, Any]:
    if template.get("configMap"):
        raise ConversionError(
            "spec.trialTemplate.configMap: the template is in a ConfigMap; put it in "
            "trialTemplate.trialSpec and convert again"
        )
    trial_spec = template.get("trialSpec")
    if not isinstance(trial_spec, Mapping):
        raise ConversionError("spec.trialTemplate.trialSpec: required")
    references = {
        str(p.get("name")): str(p.get("reference") or p.get("name"))
        for p in template.get("trialParameters") or []
        if isinstance(p, Mapping)
    }
    pairs = list(_containers(trial_spec))
    if not pairs:
        raise ConversionError("spec.trialTemplate.trialSpec: no container found")
    primary_name = template.get("primaryContainerName")
    pod, container = next(((p, c) for p, c in pairs if c.get("name") == primary_name), pairs[0])
    others = [str(c.get("name")) for p, c in pairs if c is not container]
    if others:
        warn(
            f"spec.trialTemplate: containers {', '.join(others)} are not kept; a trial pod runs "
            "one container (replicas of a distributed job included)"
        )
    kind = trial_spec.get("kind", "Job")
    if kind != "Job":
        warn(f"spec.trialTemplate.trialSpec.kind: {kind} becomes a plain pod per trial")
    if pod.get("initContainers"):
        warn("spec.trialTemplate: initContainers are not kept")
    if pod.get("restartPolicy") not in (None, "Never"):
        warn(f"spec.trialTemplate: restartPolicy {pod['restartPolicy']} becomes Never")
    for key in ("retain", "successCondition", "failureCondition", "primaryPodLabels"):
        if template.get(key) not in (None, False):
            warn(f"spec.trialTemplate.{key}: no counterpart; ignored")

    def fill(word: str) -> str:
        def reference(match: re.Match[str]) -> str:
            target = references.get(match.group(1))
            if target is None or target not in space:
                raise ConversionError(
                    f"spec.trialTemplate: ${{trialParameters.{match.group(1)}}} refers to no "
                    "converted parameter"
                )
            return "{" + target + "}"

        word = _PLACEHOLDER.sub(reference, word)
        for other in _OTHER_PLACEHOLDER.findall(word):
            if other == "trialSpec.Name":
                word = word.replace("${trialSpec.Name}", "trial-{trial_number}")
            else:
                warn(f"spec.trialTemplate: ${{{other}}} has no counterpart; kept as it is")
        return word

    argv = [
        fill(str(w)) for w in [*(container.get("command") or []), *(container.get("args") or [])]
    ]
    if not argv:
        raise ConversionError(
            "spec.trialTemplate: the primary container has no command or args; kubetune needs "
            "the program to run"
        )
    trial: dict[str, Any] = {"command": argv}
    if container.get("image"):
        trial["image"] = container["image"]
    if container.get("imagePullPolicy"):
        trial["imagePullPolicy"] = container["imagePullPolicy"]
    if container.get("resources"):
        trial["resources"] = {
            k: dict(v) for k, v in container["resources"].items() if k in ("limits", "requests")
        }
    if container.get("env"):
        trial["env"] = [dict(e) for e in container["env"]]
    if container.get("envFrom"):
        warn("spec.trialTemplate: envFrom is not kept; list the variables under env")
    if container.get("workingDir"):
        trial["workingDir"] = container["workingDir"]
    if container.get("volumeMounts"):
        trial["volumeMounts"] = [dict(m) for m in container["volumeMounts"]]
    if pod.get("volumes"):
        trial["volumes"] = [dict(v) for v in pod["volumes"]]
    for source, target in _POD_FIELDS.items():
        if pod.get(source):
            trial[target] = pod[source]
    return trial
