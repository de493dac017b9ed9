"""From a Study spec to Optuna: distributions, sampler, pruner, and the stored study.

Every process that works on a study (a trial pod, a local worker, the operator)
builds these objects with the same functions, so the sampler and pruner behave
as one, whichever process asks.

Example:
    >>> from kubetune.study.spec import validate_spec
    >>> spec = validate_spec({
    ...     "searchSpace": {"x": {"type": "float", "low": -10, "high": 10}},
    ...     "trial": {"python": "examples.objectives.quadratic:objective"},
    ... })
    >>> type(build_sampler(spec)).__name__
    'TPESampler'
"""

from __future__ import annotations

import functools
import inspect
import logging
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubetune.engine.budget import float_grid_points, was_retried
from kubetune.errors import KubetuneError
from kubetune.study.spec import (
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
    from optuna.trial import FrozenTrial

#: The study system attribute that holds the spec the study was started with,
#: kept current with budget edits so every worker reads the same budget.
SPEC_ATTR = "kubetune.spec"
#: The study system attribute holding the deadline (seconds since the epoch) of a timeout.
DEADLINE_ATTR = "kubetune.deadline"
#: The study system attribute saying why the study was asked to stop (a callback of the
#: objective's script called ``study.stop()``): no trial starts after it, in any worker.
STOP_ATTR = "kubetune.stop_requested"
#: The study system attribute saying why the study is over for good (deleted, failed, its
#: timeout or goal or spend reached), set by its supervisor before it stops the workers:
#: a worker stopped after that claims no trial and hands none back to run again.
ENDED_ATTR = "kubetune.ended"

_logger = logging.getLogger("kubetune.trial")

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
    if values:
        _hold_to_the_spec(trial)
    return values


class SearchSpaceConflict(KubetuneError, ValueError):
    """The objective suggests a ``spec.searchSpace`` parameter as another kind."""


#: Parameters whose range the objective gives otherwise than the spec, said once per
#: worker (by study and name): every trial would say it again.
_OVERRIDES_SAID: set[tuple[str, str]] = set()


def _hold_to_the_spec(trial: optuna.Trial) -> None:
    """After :func:`suggest`: the objective's own ``trial.suggest_*`` of a parameter of
    ``spec.searchSpace`` gets the spec's value, as Optuna gives back what was suggested
    first. A range of its own is said once in the worker's log (the spec's range wins,
    a value outside the objective's range included); another kind (an int for a float,
    other choices) fails the trial naming the field, not with Optuna's bare error."""
    from optuna.distributions import check_distribution_compatibility

    spec_distributions = dict(trial.distributions)
    suggest = trial._suggest  # every suggest_* goes through it (Optuna 5, pinned)

    def held(name: str, distribution: optuna.distributions.BaseDistribution) -> Any:
        ours = spec_distributions.get(name)
        if ours is not None and ours != distribution:
            try:
                check_distribution_compatibility(ours, distribution)
            except ValueError:
                raise SearchSpaceConflict(
                    f"spec.searchSpace.{name}: the objective suggests {name!r} as "
                    f"{_shown(distribution)}, the spec as {_shown(ours)}: give the "
                    "parameter one kind (or leave it to one of them)"
                ) from None
            key = (trial.study.study_name, name)
            if key not in _OVERRIDES_SAID:
                _OVERRIDES_SAID.add(key)
                _logger.warning(
                    "spec.searchSpace.%s (%s) gives the value; the objective's own "
                    "suggestion of %r (%s) is not used",
                    name,
                    _shown(ours),
                    name,
                    _shown(distribution),
                )
        return suggest(name, distribution)

    trial._suggest = held  # type: ignore[method-assign]


def _shown(distribution: optuna.distributions.BaseDistribution) -> str:
    """``float in [0, 1] (log)``, ``int in [1, 9]``, ``one of ['a', 'b']``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if isinstance(distribution, CategoricalDistribution):
        return f"one of {list(distribution.choices)}"
    kind = "float" if isinstance(distribution, FloatDistribution) else "int"
    low, high = distribution.low, distribution.high  # type: ignore[attr-defined]
    step = getattr(distribution, "step", None)
    shows_step = step is not None and not (kind == "int" and step == 1)
    extra = (" (log)" if getattr(distribution, "log", False) else "") + (
        f" step {step}" if shows_step else ""
    )
    return f"{kind} in [{low:g}, {high:g}]{extra}"


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
            count = float_grid_points(param.low, param.high, param.step)
            values[name] = [round(param.low + i * param.step, 12) for i in range(count)]
    return values


@functools.cache
def _grid_sampler_class() -> type[optuna.samplers.BaseSampler]:
    """Optuna's GridSampler, made safe for many workers sharing one study.

    Optuna's picks a random unvisited point per trial (two workers may pick the
    same one), repeats a visited point once the grid is done, and calls
    ``study.stop()`` after a trial, which raises outside ``optimize`` (our
    workers ask and tell). This one gives each trial the first point no other
    trial holds (workers ask under the study's claim lock, so no two trials get
    one point), gives a retried trial its own point back, and leaves stopping to
    the budget (:data:`kubetune.engine.budget.StopReason.GRID_EXHAUSTED`).
    """
    from optuna.samplers import GridSampler

    class SharedGridSampler(GridSampler):
        def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
            attrs = trial.system_attrs
            if "grid_id" in attrs:
                return
            fixed = attrs.get("fixed_params")
            point = self._point_of(fixed) if fixed is not None else None
            if point is None and fixed is not None and set(self._param_names) <= set(fixed):
                return  # a point off the grid, enqueued on purpose: it runs as given
            if point is None:
                taken = self._taken(study, trial._trial_id)
                free = [i for i in range(len(self._all_grids)) if i not in taken]
                # None free: the budget stops claims first; a trial asked anyway (a user's
                # own ask) repeats the first point rather than fail.
                point = free[0] if free else 0
            study._storage.set_trial_system_attr(
                trial._trial_id, "search_space", self._search_space
            )
            study._storage.set_trial_system_attr(trial._trial_id, "grid_id", point)

        def after_trial(self, *_args: Any) -> None:
            """No ``study.stop()``: the budget decides when the grid is done."""

        def _point_of(self, params: dict[str, Any]) -> int | None:
            if not set(self._param_names) <= set(params):
                return None
            values = tuple(params[name] for name in self._param_names)
            for index, grid_point in enumerate(self._all_grids):
                if grid_point == values:
                    return index
            return None

        def _taken(self, study: optuna.Study, own_id: int) -> set[int]:
            """Points held by the study's other trials, but for attempts that were
            retried (their retry holds the point)."""

            taken: set[int] = set()
            for other in study._storage.get_all_trials(study._study_id, deepcopy=False):
                if other._trial_id == own_id or was_retried(other):
                    continue
                attrs = other.system_attrs
                if "grid_id" in attrs:
                    if attrs.get("search_space") == self._search_space:
                        taken.add(int(attrs["grid_id"]))
                elif "fixed_params" in attrs:
                    point = self._point_of(attrs["fixed_params"])
                    if point is not None:
                        taken.add(point)
            return taken

    # Users read Optuna's name in messages about its arguments.
    SharedGridSampler.__name__ = SharedGridSampler.__qualname__ = "GridSampler"
    return SharedGridSampler


def _sampler_classes() -> dict[str, type[optuna.samplers.BaseSampler]]:
    import optuna.samplers as s

    return {
        "tpe": s.TPESampler,
        "random": s.RandomSampler,
        "cmaes": s.CmaEsSampler,
        "gp": s.GPSampler,
        "qmc": s.QMCSampler,
        "grid": _grid_sampler_class(),
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


class StudyChanged(SpecError):
    """A study that has finished trials exists with a different objective, search
    space, sampler, pruner or objective code; ``fields`` names what changed."""

    def __init__(self, problems: list[tuple[str, str]], fields: list[str]) -> None:
        super().__init__(problems)
        self.fields = fields


def prepare_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    spec: StudySpec,
    *,
    deadline: float | None = None,
    on_message: Callable[[str], None] | None = None,
) -> optuna.Study:
    """Create the Optuna study, or load it if it exists, and store the spec in it.

    A study that exists with a different search space, objective, sampler or
    objective code is refused (:class:`StudyChanged`) once it has a finished trial
    (COMPLETE or PRUNED) or a running one: its trials would not mean the same
    thing. Before that (every trial failed, or none ran: a typo in the objective,
    the direction, the data) the study is started over with the new spec, and
    ``on_message`` is told.
    """
    import optuna

    check_buildable(spec)
    _start_over_if_unfinished(storage, study_name, spec, on_message or (lambda _m: None))
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
        raise StudyChanged(
            [
                (
                    "spec.objective",
                    f"study {study_name!r} already exists with directions "
                    f"{[d.name.lower() for d in study.directions]}",
                )
            ],
            ["objective"],
        )
    previous = stored_spec(storage, study._study_id)
    changed = spec.changed_started_fields(previous) if previous is not None else []
    if changed:
        raise StudyChanged(
            [
                (
                    f"spec.{changed[0]}",
                    f"study {study_name!r} already ran with a different "
                    f"{' and '.join(changed)}; its trials would not be comparable. Use a new name "
                    "or delete the study first",
                )
            ],
            changed,
        )
    names = spec.objective.metric_names
    if names is not None and study.metric_names != names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.set_metric_names(names)
    store_spec(storage, study._study_id, spec)
    storage.set_study_system_attr(study._study_id, DEADLINE_ATTR, deadline)
    return study


def _start_over_if_unfinished(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    spec: StudySpec,
    say: Callable[[str], None],
) -> None:
    """Delete the study if its started fields changed and no trial of it finished
    (COMPLETE or PRUNED) or runs: nothing of it is worth keeping."""
    import optuna
    from optuna.trial import TrialState

    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return
    previous = stored_spec(storage, study_id)
    if previous is None:
        return  # not kubetune's: never deleted here
    changed = spec.changed_started_fields(previous)
    if not changed:
        return
    trials = storage.get_all_trials(study_id, deepcopy=False)
    held = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    if any(t.state in held for t in trials):
        return
    optuna.delete_study(study_name=study_name, storage=storage)
    failed = sum(1 for t in trials if t.state == TrialState.FAIL)
    say(
        f"study {study_name!r} had no finished trial ({failed} failed) and its "
        f"{' and '.join(changed)} changed: started it over with the new spec"
    )


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


def request_stop(storage: optuna.storages.BaseStorage, study_id: int, reason: str) -> None:
    """Ask every worker of the study to start no more trials (``study.stop()``), saying why;
    the first request stands."""
    if not stored_stop(storage, study_id):
        storage.set_study_system_attr(study_id, STOP_ATTR, reason)


def stored_stop(storage: optuna.storages.BaseStorage, study_id: int) -> str | None:
    """Why the study was asked to stop, or None."""
    return _stored_reason(storage, study_id, STOP_ATTR)


def _stored_reason(storage: optuna.storages.BaseStorage, study_id: int, key: str) -> str | None:
    """The reason a study system attribute holds; None when unset or cleared (a JSON null)."""
    value = storage.get_study_system_attrs(study_id).get(key)
    return None if value is None else str(value)


def clear_stop(storage: optuna.storages.BaseStorage, study_id: int) -> None:
    """Let a stopped study run again (``kubetune run --trials N`` asks for more)."""
    if stored_stop(storage, study_id):
        storage.set_study_system_attr(study_id, STOP_ATTR, None)


def mark_ended(storage: optuna.storages.BaseStorage, study_id: int, reason: str) -> None:
    """Say the study is over, and why, before its supervisor stops the workers; the
    first reason stands.

    Between the supervisor failing the running trials and its workers being stopped, a
    worker may claim one more trial; stopped by SIGTERM, it would hand that trial back
    to run again, in a study that is over. With the mark, a claim finds no trial and a
    stopped worker fails its trial with ``reason`` (see :func:`stored_ended`).

    Example:
        >>> mark_ended(study._storage, study._study_id, "the Study was deleted")  # doctest: +SKIP
    """
    if not stored_ended(storage, study_id):
        storage.set_study_system_attr(study_id, ENDED_ATTR, reason)


def stored_ended(storage: optuna.storages.BaseStorage, study_id: int) -> str | None:
    """Why the study is over for good (:func:`mark_ended`), or None while it may run."""
    return _stored_reason(storage, study_id, ENDED_ATTR)


#: The study system attribute, by supervisor, saying why it stops its workers.
STOPPING_PREFIX = "kubetune.stopping:"


def note_stopping(
    storage: optuna.storages.BaseStorage, study_id: int, supervisor: str, reason: str
) -> None:
    """Say why ``supervisor`` stops its workers (``stopped by Ctrl-C``) before it signals
    them: a worker handing its trial back then gives that reason, not only the signal it
    got. A local supervisor's workers are named ``<supervisor>:w<N>``."""
    storage.set_study_system_attr(study_id, STOPPING_PREFIX + supervisor, reason)


def stopping_reason(
    storage: optuna.storages.BaseStorage, study_id: int, worker_name: str
) -> str | None:
    """Why the supervisor of ``worker_name`` stops it (:func:`note_stopping`), if it said."""
    supervisor = worker_name.rpartition(":")[0]
    return _stored_reason(storage, study_id, STOPPING_PREFIX + supervisor) if supervisor else None


def clear_ended(storage: optuna.storages.BaseStorage, study_id: int) -> None:
    """Let an ended study run again. Its supervisor calls this before it starts workers:
    whatever lets an ended study go on (``kubetune run`` again or with ``--trials N``, a
    spec edit raising the budget, a Study re-created on the same storage) starts workers,
    and they must be able to claim."""
    if stored_ended(storage, study_id):
        storage.set_study_system_attr(study_id, ENDED_ATTR, None)
