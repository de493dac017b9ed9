"""The Study an Optuna script describes: what its ``create_study`` and ``optimize`` said.

``kubetune run script.py`` and ``kubetune init script.py`` execute the script
with its study intercepted (:mod:`kubetune.engine.scripts`) and turn the
recorded calls into a Study:

- ``create_study``: ``direction``/``directions``; ``sampler`` and ``pruner``
  (Optuna's classes to the spec's names, the arguments the script gave them to
  ``args``, a sampler's ``seed`` to ``seed``); ``study_name`` to
  ``spec.storage.studyName`` (and ``metadata.name``); a ``storage`` URL;
- ``optimize``: the objective (``trial.python``), ``n_trials`` to ``maxTrials``,
  ``timeout``, ``n_jobs`` to ``parallelism``, a ``MaxTrialsCallback`` to
  ``maxTrials``.

What a Study cannot hold (a sampler of another kind, an argument that is an
object) is listed in :attr:`DerivedStudy.warnings`, never dropped silently, and so
are callbacks (the workers run them: they are the script's code, not the Study's).
Command-line flags (``overrides``) win over the script.

Example:
    >>> record = run_script(Path("seed_script.py"))          # doctest: +SKIP
    >>> derived = derive_study(record, Path("seed_script.py"))  # doctest: +SKIP
    >>> derived.study.spec.trial.python                         # doctest: +SKIP
    'seed_script:objective'
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import re
from pathlib import Path
from typing import Any

from kubetune.engine.scripts import (
    OptimizeCall,
    ScriptError,
    ScriptRecord,
    never_optimized,
    reachable_on_import,
    statement_line,
)
from kubetune.study.names import CODE_DIGEST_ANNOTATION
from kubetune.study.spec import Study, load_study

#: ``maxTrials`` when the script's ``optimize`` gives no ``n_trials`` (the spec's default).
DEFAULT_MAX_TRIALS = 100

_SAMPLERS = {
    "TPESampler": "tpe",
    "RandomSampler": "random",
    "CmaEsSampler": "cmaes",
    "GPSampler": "gp",
    "QMCSampler": "qmc",
    "GridSampler": "grid",
    "NSGAIISampler": "nsgaii",
    "BruteForceSampler": "bruteforce",
}
_PRUNERS = {
    "NopPruner": "none",
    "MedianPruner": "median",
    "PercentilePruner": "percentile",
    "SuccessiveHalvingPruner": "successive_halving",
    "HyperbandPruner": "hyperband",
    "ThresholdPruner": "threshold",
    "WilcoxonPruner": "wilcoxon",
    "PatientPruner": "patient",
}


@dataclasses.dataclass(frozen=True)
class Overrides:
    """Command-line flags that win over the script."""

    max_trials: int | None = None
    parallelism: int | None = None
    timeout: str | int | None = None
    name: str | None = None


@dataclasses.dataclass
class DerivedStudy:
    """The Study a script describes, and what could not be carried over."""

    study: Study
    module: str
    """The module name workers import the script as (its file name's stem)."""
    folder: Path
    """The script's folder, which workers need on their path."""
    warnings: list[str]
    summary: str
    storage_url: str | None
    """The script's own storage URL (``create_study(storage=...)``), if it gave one.
    It may hold a password, so it is never in the Study; never print it unredacted."""

    raw: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The Study as written (only what the script said), before validation."""

    def document(self, *, with_code_digest: bool = True) -> dict[str, Any]:
        """The Study as a file holds it: only what the script said (without the code
        digest, for ``init``: a Study file's code identity follows its module's file)."""
        data = copy.deepcopy(self.raw)
        if not with_code_digest:
            data["metadata"].pop("annotations", None)
        return data


def module_name(script: Path) -> str:
    """The name workers import ``script`` as; refused when it is not a module name."""
    stem = script.stem
    if not stem.isidentifier():
        suggestion = re.sub(r"\W", "_", stem)
        if not suggestion[:1].isalpha():
            suggestion = "tune_" + suggestion
        raise ScriptError(
            f"{script}: kubetune's workers import the script as a module, and {stem!r} is "
            f"not a Python module name; rename the file (e.g. {suggestion}.py)"
        )
    return stem


def derive_study(
    record: ScriptRecord, script: Path, overrides: Overrides | None = None
) -> DerivedStudy:
    """The Study ``record`` (the script ``script`` executed up to ``optimize``) describes.

    Raises :class:`~kubetune.engine.scripts.ScriptError` for a script that never
    called ``optimize`` or whose objective workers cannot find, and
    :class:`~kubetune.study.spec.SpecError` for settings the spec refuses.
    """
    overrides = overrides or Overrides()
    name = record.display_name
    call = record.optimize
    if call is None:
        raise never_optimized(name)
    module = module_name(script)
    warnings: list[str] = []
    entry = _entry(record, call, module, name)
    created = record.study_call()
    arguments = created.arguments if created is not None else {}
    said: list[str] = []

    objective: dict[str, Any] = {}
    directions = [_direction(d) for d in _directions(arguments, call)]
    if len(directions) == 1:
        objective["direction"] = directions[0]
    else:
        objective["directions"] = directions
    said.append(", ".join(directions))

    spec: dict[str, Any] = {"objective": objective}
    sampler = arguments.get("sampler")
    if sampler is not None:
        component = _component(sampler, _SAMPLERS, "sampler", record, warnings)
        if component is not None:
            spec["sampler"] = component
            said.append(f"sampler {_describe(component)}")
    pruner = arguments.get("pruner")
    if pruner is not None and len(directions) > 1:
        warnings.append(
            f"pruner {type(pruner).__name__} is left out: Optuna cannot prune "
            "multi-objective trials"
        )
    elif pruner is not None:
        component = _component(pruner, _PRUNERS, "pruner", record, warnings)
        if component is not None:
            spec["pruner"] = component
            said.append(f"pruner {_describe(component)}")

    storage: dict[str, Any] = {}
    study_name = arguments.get("study_name")
    if study_name:
        storage["studyName"] = str(study_name)
    storage_url = _storage_url(arguments.get("storage"), warnings)
    if storage_url is not None and not _has_password(storage_url):
        storage["url"] = storage_url
    if storage:
        spec["storage"] = storage

    budget: dict[str, Any] = {}
    max_trials = call.n_trials
    from_callback = _max_trials_callback(call, warnings)
    if from_callback is not None and (max_trials is None or from_callback < max_trials):
        max_trials = from_callback
    if overrides.max_trials is not None:
        budget["maxTrials"] = overrides.max_trials
    elif max_trials is not None:
        budget["maxTrials"] = int(max_trials)
        said.append(f"maxTrials {max_trials} (n_trials)")
    else:
        budget["maxTrials"] = DEFAULT_MAX_TRIALS
        warnings.append(
            f"study.optimize gives no n_trials: kubetune runs {DEFAULT_MAX_TRIALS} trials "
            "(--max-trials N to change)"
        )
    if overrides.parallelism is not None:
        budget["parallelism"] = overrides.parallelism
    else:
        n_jobs = call.n_jobs
        parallelism = (os.cpu_count() or 1) if n_jobs == -1 else max(1, n_jobs)
        budget["parallelism"] = parallelism
        said.append(f"parallelism {parallelism} (n_jobs)")
    if overrides.timeout is not None:
        budget["timeout"] = overrides.timeout
    elif call.timeout is not None:
        budget["timeout"] = max(1, math.ceil(float(call.timeout)))
        said.append(f"timeout {budget['timeout']}s")
    spec["budget"] = budget
    spec["trial"] = {"python": entry}

    metadata: dict[str, Any] = {
        "name": overrides.name or _dns_name(str(study_name) if study_name else script.stem),
        "annotations": {CODE_DIGEST_ANNOTATION: _code_digest(record, call, entry)},
    }
    raw = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": metadata,
        "spec": spec,
    }
    study = load_study(copy.deepcopy(raw))
    summary = f"{name}: {'; '.join(said)}; objective {entry}"
    return DerivedStudy(
        study=study,
        module=module,
        folder=script.resolve().parent,
        warnings=warnings,
        summary=summary,
        storage_url=storage_url,
        raw=raw,
    )


def _entry(record: ScriptRecord, call: OptimizeCall, module: str, name: str) -> str:
    """``module:function`` for a function defined at the script's top level; else
    ``module`` alone (the objective the module passes to optimize when imported)."""
    func = call.func
    function = getattr(func, "__name__", None)
    if (
        isinstance(function, str)
        and function.isidentifier()
        and record.module.__dict__.get(function) is func
    ):
        return f"{module}:{function}"
    if reachable_on_import(record):
        return module
    qualname = getattr(func, "__qualname__", None) or type(func).__name__
    raise ScriptError(
        f"{name}: the objective given to study.optimize ({call.site}), {qualname!r}, is not "
        "defined at the script's top level, and the optimize call is not in its top-level "
        f'code (it is in a function or under if __name__ == "__main__":), so kubetune\'s '
        f"workers, which import {name}, cannot find it. Define the objective with def at the "
        "top level of the script"
    )


def _directions(arguments: dict[str, Any], call: OptimizeCall) -> list[Any]:
    if arguments.get("directions") is not None:
        return list(arguments["directions"])
    if arguments.get("direction") is not None:
        return [arguments["direction"]]
    return list(call.study.directions)


def _direction(value: Any) -> str:
    name = getattr(value, "name", value)
    return str(name).lower()


def _component(
    obj: Any, names: dict[str, str], kind: str, record: ScriptRecord, warnings: list[str]
) -> dict[str, Any] | None:
    """A sampler or pruner as the spec holds it: ``{name, seed?, args}``."""
    cls = type(obj)
    name = names.get(cls.__name__) if cls.__module__.startswith("optuna.") else None
    if name is None:
        warnings.append(
            f"{kind} {cls.__name__} has no kubetune equivalent: kubetune uses its default "
            f"{kind} instead (see spec.{kind} for the ones it has)"
        )
        return None
    found = record.constructor_arguments(obj)
    component: dict[str, Any] = {"name": name}
    if found is None:
        warnings.append(
            f"{kind} {cls.__name__}: its arguments were not seen (it was made before the "
            "script ran); kubetune uses its defaults"
        )
        return component
    args: dict[str, Any] = {}
    for key, value in found[1].items():
        if key == "seed" and kind == "sampler":
            if value is not None:
                component["seed"] = int(value)
        elif key == "wrapped_pruner" and name == "patient":
            wrapped = _component(value, _PRUNERS, "pruner", record, warnings)
            if wrapped is not None:
                args["wrapped"] = wrapped
        elif _plain(value):
            args[key] = _plain_value(value)
        else:
            warnings.append(
                f"{cls.__name__}({key}=...) is not carried over: a Study holds plain values "
                f"(numbers, strings, lists), not {type(value).__name__}; kubetune uses the "
                "default"
            )
    if args:
        component["args"] = args
    return component


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _plain_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain_value(item) for item in value]
    if isinstance(value, dict):
        return {k: _plain_value(v) for k, v in value.items()}
    return value


def _describe(component: dict[str, Any]) -> str:
    details = [f"seed {component['seed']}"] if "seed" in component else []
    details += [f"{k}={v!r}" for k, v in component.get("args", {}).items() if k != "wrapped"]
    if "wrapped" in component.get("args", {}):
        details.append(f"wrapping {_describe(component['args']['wrapped'])}")
    return component["name"] + (f" ({', '.join(details)})" if details else "")


def _storage_url(storage: Any, warnings: list[str]) -> str | None:
    if storage is None:
        return None
    if isinstance(storage, str):
        return storage
    url = getattr(storage, "url", None)
    if isinstance(url, str):
        return url
    warnings.append(
        f"create_study(storage=...): a {type(storage).__name__} is not carried over; kubetune "
        "runs the study in its own storage (--storage URL to choose one)"
    )
    return None


def _has_password(url: str) -> bool:
    return re.match(r"^[\w+]+://[^/@]*:[^/@]+@", url) is not None


def _max_trials_callback(call: OptimizeCall, warnings: list[str]) -> int | None:
    """A ``MaxTrialsCallback``'s count; other callbacks are named in a warning."""
    found: int | None = None
    others: list[str] = []
    for callback in call.callbacks:
        if type(callback).__name__ == "MaxTrialsCallback":
            count = getattr(callback, "_n_trials", None)
            if isinstance(count, int):
                found = count if found is None else min(found, count)
                continue
        others.append(getattr(callback, "__qualname__", None) or type(callback).__name__)
    if others:
        warnings.append(
            f"study.optimize(callbacks=[{', '.join(others)}]): each worker runs them after "
            "each of its trials, as Optuna runs them in the process that ran the trial "
            "(study.stop() there stops the whole study)"
        )
    return found


def _dns_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")
    return name or "script"


def _code_digest(record: ScriptRecord, call: OptimizeCall, entry: str) -> str:
    """The study's code identity: the script's text before the statement that calls
    ``optimize`` (what workers run), so editing ``n_trials`` or the code after
    ``optimize`` continues the study, and editing the objective (or anything before
    that statement) is a change of code."""
    sha = hashlib.sha256(entry.encode())
    if record.filename is not None:
        text = Path(record.filename).read_text(encoding="utf-8")
        line = statement_line(record.filename, call.site.lineno)
        sha.update(b"\0" + "".join(text.splitlines(keepends=True)[: line - 1]).encode())
    return sha.hexdigest()
