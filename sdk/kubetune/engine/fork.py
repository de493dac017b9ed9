"""Forking a study: a new study that starts with the finished trials of another.

A started study refuses a change of its search space or sampler (its trials
would not mean the same thing). A fork is the way to widen a range, add a
choice or a parameter, or try another sampler without losing what was learnt:
a new study (``spec.forkFrom: {study: PARENT}``) whose storage starts with every
finished trial (COMPLETE or PRUNED) of the parent whose parameters fit the new
search space, copied with Optuna's ``add_trials``. A trial with a value outside
the new space is left out and counted. A parameter added to the space gets the
value ``forkFrom.defaults`` names in the copied trials (the value the parent's
trials ran with); a trial lacking a parameter with no default is left out.

Failed trials are not copied: they would count as the fork's own failures
(``maxFailedTrials``), and samplers learn nothing from them. A fork to the grid
sampler copies one trial per point of its grid (others are left out), and the
copies hold their points: the fork runs the grid's other points.

The copy is made once, before the fork's first trial, by whichever executor
creates the fork's storage (``kubetune run`` locally, the operator in a
cluster), and recorded in the fork's study (:data:`PARENT_ATTR`): made again
after a crash part way, it copies only the trials still missing.

Example:
    >>> from kubetune.engine.fork import apply_sets
    >>> apply_sets({"searchSpace": {"x": {"type": "float", "low": 0, "high": 1}}},
    ...            ["searchSpace.x.high=10", "sampler.name=random"])
    {'searchSpace': {'x': {'type': 'float', 'low': 0, 'high': 10}}, 'sampler': {'name': 'random'}}
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubetune.engine import bridge
from kubetune.study.spec import ParentStatus, SpecError, Study, StudySpec, validate_spec

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

#: The user attribute on each copied trial: ``{"study": parent, "number": its number there}``.
FORKED_FROM_ATTR = "kubetune.forked_from"
#: The study system attribute a fork's study holds once its copy is done (a ParentStatus).
PARENT_ATTR = "kubetune.parent"
#: Trial system attributes not carried over: a grid point of the parent's grid is not
#: one of the fork's, and an enqueued trial's fixed parameters were the parent's plan.
_NOT_COPIED_SYSTEM_ATTRS = frozenset({"grid_id", "search_space", "fixed_params"})


class ForkRefused(SpecError):
    """The fork cannot be made as asked (another objective, no such parent)."""


@dataclasses.dataclass(frozen=True)
class ForkPlan:
    """What a fork takes from its parent: the trials to copy (ready for
    ``study.add_trials``) and, for each trial left out, its number and why."""

    parent: str
    copies: list[FrozenTrial]
    left_out: list[tuple[int, str]]

    @property
    def status(self) -> ParentStatus:
        return ParentStatus(
            name=self.parent, trials_copied=len(self.copies), trials_left_out=len(self.left_out)
        )


def plan_fork(
    parent_name: str,
    parent_trials: Iterable[FrozenTrial],
    spec: StudySpec,
    *,
    parent_directions: Sequence[str] | None = None,
) -> ForkPlan:
    """The copies of ``parent_trials`` that fit ``spec``'s search space, and those left out.

    A copied trial keeps its values, state, intermediate values, times and
    attributes; the parameters of the search space get the new space's
    distributions (so samplers see one space), the others keep theirs. Raises
    :class:`ForkRefused` when the objective's directions differ from the parent's.
    """
    from optuna.trial import TrialState, create_trial

    if parent_directions is not None:
        wanted = spec.objective.study_directions
        if [d.lower() for d in parent_directions] != wanted:
            raise ForkRefused(
                [
                    (
                        "spec.objective",
                        f"the parent study {parent_name!r} has directions "
                        f"{[d.lower() for d in parent_directions]} and this one {wanted}: "
                        "a fork keeps its parent's objective (their values would not compare)",
                    )
                ]
            )
    defaults = spec.fork_from.defaults if spec.fork_from is not None else {}
    space = bridge.distributions(spec)
    copies: list[FrozenTrial] = []
    left_out: list[tuple[int, str]] = []
    # A grid fork copies one trial per point of its grid, each holding its point, so the
    # grid's budget (one trial a point) counts the copies exactly.
    grid_points = bridge.grid(spec) if spec.sampler.name == "grid" else None
    grid_taken: set[tuple[Any, ...]] = set()
    for trial in parent_trials:
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        params = dict(trial.params)
        distributions = dict(trial.distributions)
        reason = None
        for name, distribution in space.items():
            if name not in params and name not in defaults:
                reason = f"it has no {name} (give forkFrom.defaults.{name})"
                break
            value = params.get(name, defaults.get(name))
            if not _fits(distribution, value):
                reason = f"{name}={value!r} is outside the new search space"
                break
            params[name], distributions[name] = value, distribution
        system_attrs = {
            key: value
            for key, value in trial.system_attrs.items()
            if key not in _NOT_COPIED_SYSTEM_ATTRS
        }
        if reason is None and grid_points is not None:
            point = tuple(params[name] for name in grid_points)
            if any(v not in grid_points[name] for name, v in zip(grid_points, point, strict=True)):
                reason = f"{dict(zip(grid_points, point, strict=True))} is not a point of the grid"
            elif point in grid_taken:
                reason = "its grid point is copied from another trial"
            else:
                # The grid sampler counts the point as run: the fork runs only the others.
                grid_taken.add(point)
                system_attrs["fixed_params"] = dict(zip(grid_points, point, strict=True))
        if reason is not None:
            left_out.append((trial.number, reason))
            continue
        copied = create_trial(
            state=trial.state,
            values=trial.values,
            params=params,
            distributions=distributions,
            user_attrs={
                **trial.user_attrs,
                FORKED_FROM_ATTR: {"study": parent_name, "number": trial.number},
            },
            system_attrs=system_attrs,
            intermediate_values=trial.intermediate_values,
        )
        copied.datetime_start = trial.datetime_start
        copied.datetime_complete = trial.datetime_complete
        copies.append(copied)
    return ForkPlan(parent_name, copies, left_out)


def _fits(distribution: optuna.distributions.BaseDistribution, value: Any) -> bool:
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def copy_parent_trials(
    parent: optuna.Study, child: optuna.Study, spec: StudySpec, *, parent_name: str | None = None
) -> ParentStatus:
    """Copy the parent's trials that fit ``spec`` into ``child`` (once; see the module).

    ``parent_name`` is how the status names the parent (a cluster Study's name;
    default: the parent's study name). Returns what ``status.parent`` shows.
    """
    recorded = parent_status(child)
    if recorded is not None:
        return recorded
    name = parent_name or parent.study_name
    plan = plan_fork(
        name,
        parent.get_trials(deepcopy=False),
        spec,
        parent_directions=[d.name for d in parent.directions],
    )
    already = {
        (trial.user_attrs.get(FORKED_FROM_ATTR) or {}).get("number")
        for trial in child.get_trials(deepcopy=False)
    }
    child.add_trials(
        [t for t in plan.copies if t.user_attrs[FORKED_FROM_ATTR]["number"] not in already]
    )
    status = plan.status
    child._storage.set_study_system_attr(child._study_id, PARENT_ATTR, status.to_dict())
    return status


def parent_status(study: optuna.Study) -> ParentStatus | None:
    """What the fork copied from its parent, or None (not a fork, or not copied yet)."""
    data = study._storage.get_study_system_attrs(study._study_id).get(PARENT_ATTR)
    return None if data is None else ParentStatus.model_validate(data)


def describe(status: ParentStatus) -> str:
    """One line for people: what was copied from where."""
    left = f", {status.trials_left_out} left out (they do not fit the new search space)"
    return (
        f"forked from {status.name}: copied {status.trials_copied} finished "
        f"trial(s){left if status.trials_left_out else ''}"
    )


# ------------------------------------------------------------------ the new Study


def apply_sets(spec: Mapping[str, Any], sets: Iterable[str]) -> dict[str, Any]:
    """``spec`` (a wire-form mapping) with each ``path.to.field=value`` applied.

    The value is read as YAML (``10``, ``true``, ``[a, b]``, ``{type: int, low: 1,
    high: 8}``); an empty value (``x=``) removes the field. A leading ``spec.`` is
    allowed. Raises :class:`~kubetune.study.spec.SpecError` naming a malformed one.
    """
    import yaml

    result = copy.deepcopy(dict(spec))
    for item in sets:
        path, equals, raw = item.partition("=")
        path = path.strip().removeprefix("spec.")
        if not equals or not path or any(not part for part in path.split(".")):
            raise SpecError([("--set", f"{item!r} is not of the form path.to.field=value")])
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise SpecError([(f"spec.{path}", f"{raw!r} is not a YAML value: {error}")]) from None
        *parents, last = path.split(".")
        node: Any = result
        for index, part in enumerate(parents):
            child = node.setdefault(part, {}) if isinstance(node, dict) else None
            if not isinstance(child, dict):
                where = ".".join(parents[: index + 1])
                raise SpecError([(f"spec.{where}", "is not a mapping: cannot set a field in it")])
            node = child
        if value is None and not raw.strip():
            node.pop(last, None)
        else:
            node[last] = value
    return result


def fork_document(
    parent: Study,
    sets: Iterable[str] = (),
    *,
    name: str | None = None,
    parent_ref: str | None = None,
    defaults: Mapping[str, Any] | None = None,
    trials_copied: int | None = None,
) -> Study:
    """The Study that forks ``parent``: its spec with ``sets`` applied and
    ``forkFrom: {study: parent_ref}``, named ``name`` (default ``<parent>-fork``).

    ``parent_ref`` is how the fork finds its parent: a cluster Study's name (the
    default), or a local study's name in its storage. The parent's
    ``storage.studyName`` is not carried over (the fork needs a study of its own).
    Copied trials count against the fork's ``maxTrials``, so unless ``sets`` give
    ``budget.maxTrials``, it becomes ``trials_copied`` plus the parent's: the fork
    runs as many new trials as its parent was given. The result is validated:
    :class:`~kubetune.study.spec.SpecError` names a bad field.
    """
    sets = list(sets)
    data = parent.spec.to_dict()
    data.pop("forkFrom", None)
    data.pop("suspend", None)  # a suspended parent's fork is meant to run
    data.get("storage", {}).pop("studyName", None)
    data = apply_sets(data, sets)
    given = data.pop("forkFrom", None)  # --set forkFrom.defaults.x=3 is a default too
    given_defaults = given.get("defaults") if isinstance(given, dict) else None
    fork_from: dict[str, Any] = {"study": parent_ref or parent.metadata.name}
    if given_defaults is not None and not isinstance(given_defaults, dict):
        fork_from["defaults"] = given_defaults  # not a mapping: validation says so
    elif given_defaults or defaults:
        fork_from["defaults"] = {**(given_defaults or {}), **(defaults or {})}
    data["forkFrom"] = fork_from
    sets_budget = any(s.partition("=")[0].removeprefix("spec.") == "budget.maxTrials" for s in sets)
    if trials_copied is not None and not sets_budget:
        data.setdefault("budget", {})["maxTrials"] = trials_copied + parent.spec.budget.max_trials
    spec = validate_spec(data)
    metadata: dict[str, Any] = {"name": name or f"{parent.metadata.name}-fork"[:63].rstrip("-")}
    if parent.metadata.namespace:
        metadata["namespace"] = parent.metadata.namespace
    if parent.metadata.labels:
        metadata["labels"] = dict(parent.metadata.labels)
    return Study.model_validate({"metadata": metadata, "spec": spec.to_dict()})


def copy_from_same_storage(child: optuna.Study, spec: StudySpec) -> ParentStatus:
    """:func:`copy_parent_trials` from the study ``spec.forkFrom.study`` names in the
    child's own storage (local mode: both in one database)."""
    import optuna

    assert spec.fork_from is not None
    name = spec.fork_from.study
    try:
        parent = optuna.load_study(study_name=name, storage=child._storage)
    except KeyError:
        raise ForkRefused(
            [
                (
                    "spec.forkFrom.study",
                    f"no study {name!r} in this storage to fork from (the parent is named by "
                    "its study name: its storage.studyName or metadata.name)",
                )
            ]
        ) from None
    return copy_parent_trials(parent, child, spec)
