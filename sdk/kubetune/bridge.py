"""From a Study spec to Optuna: distributions, sampler, pruner, and the stored study.

Every process that works on a study (a trial pod, a local worker, the operator)
builds these objects with the same functions, so the sampler and pruner behave
as one, whichever process asks.

Example:
    >>> from kubetune.spec import validate_spec
    >>> spec = validate_spec({
    ...     "searchSpace": {"x": {"type": "float", "low": -10, "high": 10}},
    ...     "trial": {"python": "examples.objectives.quadratic:objective"},
    ... })
    >>> type(build_sampler(spec)).__name__
    'TPESampler'
"""

from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any

from kubetune.spec import (
    CategoricalParam,
    FloatParam,
    IntParam,
    PrunerSpec,
    SpecError,
    StudySpec,
    validate_spec,
)

if TYPE_CHECKING:
    import optuna

#: The study system attribute that holds the spec the study was started with,
#: kept current with budget edits so every worker reads the same budget.
SPEC_ATTR = "kubetune.spec"
#: The study system attribute holding the deadline (seconds since the epoch) of a timeout.
DEADLINE_ATTR = "kubetune.deadline"

# Samplers that coordinate through the storage and need the same seed everywhere.
_SHARED_SEED_SAMPLERS = frozenset({"qmc", "grid"})


def distributions(spec: StudySpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distribution of each search-space parameter."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    result: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, param in spec.search_space.items():
        if isinstance(param, FloatParam):
            result[name] = FloatDistribution(param.low, param.high, log=param.log, step=param.step)
        elif isinstance(param, IntParam):
            result[name] = IntDistribution(param.low, param.high, log=param.log, step=param.step)
        else:
            result[name] = CategoricalDistribution(param.choices)
    return result


def suggest(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """Suggest every search-space parameter on ``trial`` and return the values.

    A python objective that calls ``trial.suggest_*`` again with the same name and
    range gets the same value back.
    """
    values: dict[str, Any] = {}
    for name, param in spec.search_space.items():
        if isinstance(param, FloatParam):
            values[name] = trial.suggest_float(
                name, param.low, param.high, log=param.log, step=param.step
            )
        elif isinstance(param, IntParam):
            values[name] = trial.suggest_int(
                name, param.low, param.high, log=param.log, step=param.step
            )
        else:
            values[name] = trial.suggest_categorical(name, param.choices)
    return values


def grid(spec: StudySpec) -> dict[str, list[Any]]:
    """Every value of every parameter, for the grid sampler."""
    values: dict[str, list[Any]] = {}
    for name, param in spec.search_space.items():
        if isinstance(param, CategoricalParam):
            values[name] = list(param.choices)
        elif isinstance(param, IntParam):
            values[name] = list(range(param.low, param.high + 1, param.step))
        else:
            assert param.step is not None  # the spec refuses a grid float without a step
            count = round((param.high - param.low) / param.step) + 1
            values[name] = [round(param.low + i * param.step, 12) for i in range(count)]
    return values


def _sampler_classes() -> dict[str, type[optuna.samplers.BaseSampler]]:
    import optuna.samplers as s

    return {
        "tpe": s.TPESampler,
        "random": s.RandomSampler,
        "cmaes": s.CmaEsSampler,
        "gp": s.GPSampler,
        "qmc": s.QMCSampler,
        "grid": s.GridSampler,
        "nsgaii": s.NSGAIISampler,
        "bruteforce": s.BruteForceSampler,
    }


def _pruner_classes() -> dict[str, type[optuna.pruners.BasePruner]]:
    import optuna.pruners as p

    return {
        "none": p.NopPruner,
        "median": p.MedianPruner,
        "percentile": p.PercentilePruner,
        "successive_halving": p.SuccessiveHalvingPruner,
        "hyperband": p.HyperbandPruner,
        "threshold": p.ThresholdPruner,
        "wilcoxon": p.WilcoxonPruner,
        "patient": p.PatientPruner,
    }


def _construct(cls: type, args: dict[str, Any], path: str) -> Any:
    """``cls(**args)``, with a bad argument reported against the spec field."""
    parameters = {
        name: p
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    for name, value in args.items():
        if name not in parameters:
            raise SpecError(
                [
                    (
                        f"{path}.{name}",
                        f"{cls.__name__} has no argument {name!r} "
                        f"(it takes: {', '.join(parameters)})",
                    )
                ]
            )
        problem = _type_problem(parameters[name].default, value)
        if problem:
            raise SpecError([(f"{path}.{name}", f"{problem} ({cls.__name__})")])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature warnings, once per process
            return cls(**args)
    except (TypeError, ValueError) as error:
        raise SpecError([(path, f"{cls.__name__}: {error}")]) from None


def _type_problem(default: Any, value: Any) -> str | None:
    """Why ``value`` cannot stand where the constructor's ``default`` is, judged by the
    default's kind (YAML gives strings, numbers and booleans); None when it can."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if isinstance(default, int | float) and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        return f"must be a number, not {value!r}"
    return None


def build_sampler(spec: StudySpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler.

    TPE gets ``constant_liar=True`` unless the spec says otherwise, so parallel
    workers do not all propose the same point. A seed is offset by the worker's
    index (each worker's stream is reproducible, and workers do not repeat each
    other), except for QMC and grid, which coordinate through the storage and
    need one seed.
    """
    sampler = spec.sampler
    cls = _sampler_classes()[sampler.name]
    args = dict(sampler.args)
    if sampler.name == "tpe":
        args.setdefault("constant_liar", True)
    if sampler.name == "grid":
        args.setdefault("search_space", grid(spec))
    if sampler.seed is not None:
        offset = 0 if sampler.name in _SHARED_SEED_SAMPLERS else worker_index
        args.setdefault("seed", sampler.seed + offset)
    return _construct(cls, args, "spec.sampler.args")  # type: ignore[no-any-return]


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner (Optuna's median pruner when the spec names none)."""
    return _build_pruner(spec.effective_pruner, "spec.pruner")


def _build_pruner(pruner: PrunerSpec, path: str) -> optuna.pruners.BasePruner:
    cls = _pruner_classes()[pruner.name]
    args = dict(pruner.args)
    if pruner.name == "patient":
        wrapped = args.pop("wrapped", None) or {"name": "none"}
        try:
            wrapped_spec = PrunerSpec.model_validate(wrapped)
        except Exception:
            raise SpecError(
                [(f"{path}.args.wrapped", "must be a pruner: {name: ..., args: {...}}")]
            ) from None
        if wrapped_spec.name == "patient":
            raise SpecError([(f"{path}.args.wrapped.name", "cannot itself be patient")])
        args["wrapped_pruner"] = _build_pruner(wrapped_spec, f"{path}.args.wrapped")
    return _construct(cls, args, f"{path}.args")  # type: ignore[no-any-return]


def check_buildable(spec: StudySpec) -> None:
    """Raise :class:`SpecError` if the sampler or pruner cannot be built from the spec."""
    build_sampler(spec)
    build_pruner(spec)


def prepare_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    spec: StudySpec,
    *,
    deadline: float | None = None,
) -> optuna.Study:
    """Create the Optuna study, or load it if it exists, and store the spec in it.

    A study that exists with a different search space, objective, sampler or
    objective code is refused: its trials would not mean the same thing.
    """
    import optuna

    check_buildable(spec)
    directions = spec.objective.study_directions
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=directions,
        load_if_exists=True,
        sampler=build_sampler(spec),
        pruner=build_pruner(spec),
    )
    if [d.name.lower() for d in study.directions] != directions:
        raise SpecError(
            [
                (
                    "spec.objective",
                    f"study {study_name!r} already exists with directions "
                    f"{[d.name.lower() for d in study.directions]}",
                )
            ]
        )
    previous = stored_spec(storage, study._study_id)
    if previous is not None and previous.started_fields() != spec.started_fields():
        changed = [
            key
            for key, value in spec.started_fields().items()
            if previous.started_fields().get(key) != value
        ]
        raise SpecError(
            [
                (
                    f"spec.{changed[0]}",
                    f"study {study_name!r} already ran with a different "
                    f"{' and '.join(changed)}; its trials would not be comparable. Use a new name "
                    "or delete the study first",
                )
            ]
        )
    names = spec.objective.metric_names
    if names is not None and study.metric_names != names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.set_metric_names(names)
    store_spec(storage, study._study_id, spec)
    storage.set_study_system_attr(study._study_id, DEADLINE_ATTR, deadline)
    return study


def store_spec(storage: optuna.storages.BaseStorage, study_id: int, spec: StudySpec) -> None:
    """Record the spec in the study, where every worker reads its budget."""
    storage.set_study_system_attr(study_id, SPEC_ATTR, spec.to_dict())


def stored_spec(storage: optuna.storages.BaseStorage, study_id: int) -> StudySpec | None:
    """The spec recorded in the study, or None for a study kubetune did not create."""
    data = storage.get_study_system_attrs(study_id).get(SPEC_ATTR)
    return None if data is None else validate_spec(data)


def stored_deadline(storage: optuna.storages.BaseStorage, study_id: int) -> float | None:
    value = storage.get_study_system_attrs(study_id).get(DEADLINE_ATTR)
    return None if value is None else float(value)
