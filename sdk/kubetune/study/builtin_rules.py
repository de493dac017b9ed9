"""The rules of the built-in objectives that the spec alone can be checked against.

One table and one set of checks, used everywhere a Study is checked: the spec
model's validator calls :func:`check`, so ``kubetune validate``, ``kubetune
run``, the SDK's builders and the operator refuse a broken built-in Study with
the same field-named message before any worker or pod starts; the trial
runner (``kubetune_trial.builtin``) takes its metric table, default search
spaces and checks from here too. Nothing here imports numpy, scikit-learn or
a model library.

What is checked where:

- from the spec alone (here, everywhere): the metric's name, its task and the
  study's direction, and a goal the metric can reach; a sampler that can
  suggest the space (grid, bruteforce); stepwise tuning's empty search space, parallelism 1 and
  LightGBM-computable metric; the search space against the model (a parameter
  both fixed and tuned, names the MLP lacks, a float where the model takes an
  integer); the data source (``.csv``/``.parquet``, known packaged datasets
  and their target column); ``saveModel.artifactStore`` being a directory;
- from the data file, by ``kubetune validate`` on the machine it runs on
  (:func:`check_local_data`): when ``data.path`` is readable there, its
  columns (target, features). A path that is not on this machine is not an
  error: a cluster's trial pods read it from their image or a volume, so it
  is reported as not checked;
- where the trial runs, by the worker before its first trial: the rest of the
  data (rows, classes, missing target values), the device (a GPU is a
  property of the pod) and whether the model's library can be imported.

Example:
    >>> from kubetune.study.spec import SpecError, validate_spec
    >>> try:
    ...     validate_spec({"objective": {"direction": "minimize", "metric": "auc"},
    ...                    "trial": {"builtin": {"model": "lightgbm",
    ...                                          "data": {"dataset": "sklearn:wine"}}}})
    ... except SpecError as error:
    ...     print(error)
    spec.objective.direction: must be maximize for metric auc (higher is better); it is minimize
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias

from kubetune.errors import KubetuneError
from kubetune.study.parts import (
    Budget,
    BuiltinData,
    BuiltinObjective,
    CategoricalParam,
    FloatParam,
    IntParam,
    Objective,
    SamplerSpec,
    SaveModel,
    SpecError,
)


class _TrialTemplate(Protocol):
    @property
    def builtin(self) -> BuiltinObjective | None: ...


class StudySpec(Protocol):
    """What the rules read of a :class:`kubetune.study.spec.StudySpec` (which runs
    them as it validates, so this module cannot import it)."""

    @property
    def objective(self) -> Objective: ...
    @property
    def search_space(self) -> dict[str, FloatParam | IntParam | CategoricalParam]: ...
    @property
    def sampler(self) -> SamplerSpec: ...
    @property
    def budget(self) -> Budget: ...
    @property
    def trial(self) -> _TrialTemplate: ...


Task: TypeAlias = Literal["classification", "regression"]
Param: TypeAlias = FloatParam | IntParam | CategoricalParam
Kind: TypeAlias = Literal["int", "float"]

_DATA = "spec.trial.builtin.data"


class RuleBroken(KubetuneError, ValueError):
    """A built-in rule the spec breaks; ``field`` is its full path (spec.objective.direction)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


# ----------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricRule:
    """A built-in metric: its name, the task it belongs to, and whether higher is better."""

    name: str
    task: Task
    higher_is_better: bool

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if self.higher_is_better else "minimize"


#: Every metric a built-in objective computes.
METRICS: dict[str, MetricRule] = {
    rule.name: rule
    for rule in (
        MetricRule("auc", "classification", True),
        MetricRule("logloss", "classification", False),
        MetricRule("accuracy", "classification", True),
        MetricRule("f1", "classification", True),
        MetricRule("rmse", "regression", False),
        MetricRule("mae", "regression", False),
        MetricRule("r2", "regression", True),
    )
}

#: The range each metric's values lie in (None: unbounded on that side).
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "auc": (0.0, 1.0),
    "logloss": (0.0, None),
    "accuracy": (0.0, 1.0),
    "f1": (0.0, 1.0),
    "rmse": (0.0, None),
    "mae": (0.0, None),
    "r2": (None, 1.0),
}

#: The metric used when ``spec.objective.metric`` is not set.
DEFAULT_METRIC: dict[Task, str] = {"classification": "logloss", "regression": "rmse"}

#: The metrics LightGBM computes itself, which stepwise tuning needs (auc for two classes).
STEPWISE_METRICS = ("auc", "logloss", "rmse", "mae")


def resolve_metric(spec: StudySpec) -> MetricRule:
    """The spec's metric, checked against the builtin's task and the study's direction."""
    builtin = spec.trial.builtin
    assert builtin is not None
    name = spec.objective.metric or DEFAULT_METRIC[builtin.task]
    if name not in METRICS:
        raise RuleBroken(
            "spec.objective.metric",
            f"{name!r} is not a built-in metric (choose from {', '.join(METRICS)})",
        )
    metric = METRICS[name]
    if metric.task != builtin.task:
        raise RuleBroken(
            "spec.objective.metric",
            f"{name} is a {metric.task} metric, but spec.trial.builtin.task is {builtin.task}",
        )
    direction = spec.objective.study_directions[0]
    if direction != metric.direction:
        better = "higher" if metric.higher_is_better else "lower"
        stated = spec.objective.direction or "unset, which means minimize"
        raise RuleBroken(
            "spec.objective.direction",
            f"must be {metric.direction} for metric {name} ({better} is better); it is {stated}",
        )
    return metric


def check_goal(spec: StudySpec, metric: MetricRule) -> None:
    """Refuse a goal the metric can never reach (the study would never stop early)."""
    goal = spec.objective.goal
    if goal is None:
        return
    low, high = BOUNDS[metric.name]
    if metric.higher_is_better and high is not None and goal > high:
        raise RuleBroken(
            "spec.objective.goal", f"{metric.name} is at most {high:g}; {goal:g} is never reached"
        )
    if not metric.higher_is_better and low is not None and goal < low:
        raise RuleBroken(
            "spec.objective.goal", f"{metric.name} is at least {low:g}; {goal:g} is never reached"
        )


def check_sampler(spec: StudySpec, space: dict[str, Param]) -> None:
    """Refuse a sampler that cannot suggest the built-in's space (every trial would fail).

    The grid sampler knows only the grid it was given (``spec.searchSpace``, or
    ``sampler.args.search_space``); brute force needs a step on every float.
    """
    builtin = spec.trial.builtin
    assert builtin is not None
    name = spec.sampler.name
    if name == "grid" and "search_space" not in spec.sampler.args:
        extra = [p for p in space if p not in spec.search_space]
        if extra:
            raise RuleBroken(
                "spec.sampler.name",
                f"the grid sampler searches only spec.searchSpace, and the {builtin.model} "
                f"default space adds {', '.join(extra)}: set trial.builtin.defaultSearchSpace: "
                "false, fix them in trial.builtin.params, or use another sampler",
            )
    if name == "bruteforce":
        continuous = [
            p for p, param in space.items() if isinstance(param, FloatParam) and param.step is None
        ]
        if continuous:
            raise RuleBroken(
                "spec.sampler.name",
                f"bruteforce needs a step on every float, and {', '.join(continuous)} "
                f"{'has' if len(continuous) == 1 else 'have'} none (the {builtin.model} default "
                "space's floats have none: give them a step in spec.searchSpace, fix them in "
                "trial.builtin.params, or use another sampler)",
            )


def check_stepwise(spec: StudySpec) -> None:
    """Refuse what stepwise tuning cannot honour."""
    if spec.search_space:
        raise RuleBroken(
            "spec.searchSpace",
            "must be empty with tuner: stepwise (the tuner chooses what to tune, stage by stage)",
        )
    if spec.budget.parallelism != 1:
        raise RuleBroken(
            "spec.budget.parallelism",
            "must be 1 with tuner: stepwise (each stage starts from the best trial of the last)",
        )
    name = resolve_metric(spec).name
    if name not in STEPWISE_METRICS:
        raise RuleBroken(
            "spec.objective.metric",
            f"{name!r} is not available with tuner: stepwise "
            "(use auc for two classes, logloss, rmse or mae)",
        )


# ------------------------------------------------------------ search space


def _float(low: float, high: float, log: bool = False) -> FloatParam:
    return FloatParam(type="float", low=low, high=high, log=log)


def _int(low: int, high: int, log: bool = False) -> IntParam:
    return IntParam(type="int", low=low, high=high, log=log)


#: Ranges follow optuna-integration's LightGBM tuner, plus the learning rate.
LIGHTGBM_SPACE: dict[str, Param] = {
    "learning_rate": _float(0.01, 0.3, log=True),
    "num_leaves": _int(4, 256, log=True),
    "min_child_samples": _int(5, 100, log=True),
    "feature_fraction": _float(0.4, 1.0),
    "bagging_fraction": _float(0.4, 1.0),
    "bagging_freq": _int(1, 7),
    "lambda_l1": _float(1e-8, 10.0, log=True),
    "lambda_l2": _float(1e-8, 10.0, log=True),
}

XGBOOST_SPACE: dict[str, Param] = {
    "learning_rate": _float(0.01, 0.3, log=True),
    "max_depth": _int(2, 10),
    "min_child_weight": _float(0.1, 20.0, log=True),
    "subsample": _float(0.5, 1.0),
    "colsample_bytree": _float(0.5, 1.0),
    "lambda": _float(1e-8, 10.0, log=True),
    "alpha": _float(1e-8, 10.0, log=True),
    "gamma": _float(1e-8, 1.0, log=True),
}

LIGHTNING_SPACE: dict[str, Param] = {
    "lr": _float(1e-4, 1e-1, log=True),
    "hidden_size": _int(16, 256, log=True),
    "n_layers": _int(1, 3),
    "dropout": _float(0.0, 0.5),
    "weight_decay": _float(1e-8, 1e-2, log=True),
    "batch_size": CategoricalParam(type="categorical", choices=[32, 64, 128, 256]),
}

#: The MLP's hyperparameters and their values when neither tuned nor fixed.
LIGHTNING_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "hidden_size": 64,
    "n_layers": 2,
    "dropout": 0.1,
    "weight_decay": 0.0,
    "batch_size": 64,
}

DEFAULT_SPACES: dict[str, dict[str, Param]] = {
    "lightgbm": LIGHTGBM_SPACE,
    "xgboost": XGBOOST_SPACE,
    "lightning": LIGHTNING_SPACE,
}

#: What kind of number each known parameter takes. LightGBM and XGBoost refuse a float
#: (even 31.0) where they take an integer, and the MLP builds layers from its integers,
#: so such a spec would fail every trial. Names not listed are passed on unchecked.
KINDS: dict[str, dict[str, Kind]] = {
    "lightgbm": {
        "learning_rate": "float",
        "num_leaves": "int",
        "min_child_samples": "int",
        "min_data_in_leaf": "int",
        "max_depth": "int",
        "max_bin": "int",
        "feature_fraction": "float",
        "bagging_fraction": "float",
        "bagging_freq": "int",
        "lambda_l1": "float",
        "lambda_l2": "float",
    },
    "xgboost": {
        "learning_rate": "float",
        "max_depth": "int",
        "max_leaves": "int",
        "max_bin": "int",
        "min_child_weight": "float",
        "subsample": "float",
        "colsample_bytree": "float",
        "lambda": "float",
        "alpha": "float",
        "gamma": "float",
    },
    "lightning": {
        "lr": "float",
        "hidden_size": "int",
        "n_layers": "int",
        "dropout": "float",
        "weight_decay": "float",
        "batch_size": "int",
    },
}


def _fits(value: Any, kind: Kind) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return kind == "float" or isinstance(value, int)


def _param_fits(param: Param, kind: Kind) -> bool:
    if isinstance(param, CategoricalParam):
        return all(_fits(choice, kind) for choice in param.choices)
    return kind == "float" or isinstance(param, IntParam)


def effective_space(spec: StudySpec) -> dict[str, Param]:
    """The parameters a built-in objective tunes.

    Start from the model's default space (or nothing with ``defaultSearchSpace:
    false``); each ``spec.searchSpace`` entry replaces the default of its name or
    adds one; each name fixed in ``builtin.params`` is taken out. Raises
    :class:`RuleBroken` for a parameter both fixed and tuned, a name the MLP
    lacks, or a value of the wrong kind.
    """
    builtin = spec.trial.builtin
    assert builtin is not None
    for name in builtin.params:
        if name in spec.search_space:
            raise RuleBroken(
                f"spec.trial.builtin.params.{name}",
                "is also in spec.searchSpace: fix it here or tune it there, not both",
            )
    if builtin.model == "lightning":
        # LightGBM and XGBoost take any parameter; the MLP has a fixed set.
        _check_mlp_names(list(spec.search_space), "spec.searchSpace")
        _check_mlp_names(list(builtin.params), "spec.trial.builtin.params")
    kinds = KINDS[builtin.model]
    for name, param in spec.search_space.items():
        kind = kinds.get(name)
        if kind is not None and not _param_fits(param, kind):
            raise RuleBroken(f"spec.searchSpace.{name}", _kind_reason(builtin.model, name, kind))
    for name, value in builtin.params.items():
        kind = kinds.get(name)
        if kind is not None and not _fits(value, kind):
            raise RuleBroken(
                f"spec.trial.builtin.params.{name}",
                f"{_kind_reason(builtin.model, name, kind)}; got {value!r}",
            )
    space: dict[str, Param] = (
        dict(DEFAULT_SPACES[builtin.model]) if builtin.default_search_space else {}
    )
    space.update(spec.search_space)
    for name in builtin.params:
        space.pop(name, None)
    return space


def _kind_reason(model: str, name: str, kind: Kind) -> str:
    if kind == "int":
        return f"{model} takes an integer for {name} (use type: int, or integer choices)"
    return f"{model} takes a number for {name} (use type: float or int, or numeric choices)"


def _check_mlp_names(names: list[str], field: str) -> None:
    for name in names:
        if name not in LIGHTNING_DEFAULTS:
            raise RuleBroken(
                f"{field}.{name}",
                f"the lightning MLP has no hyperparameter {name!r} "
                f"(it has: {', '.join(LIGHTNING_DEFAULTS)})",
            )


# -------------------------------------------------------------------- data

#: Datasets that ship inside scikit-learn (no download): ``sklearn:<name>``.
SKLEARN_DATASETS = ("breast_cancer", "diabetes", "digits", "iris", "wine")
#: The file types ``data.path`` may name.
DATA_SUFFIXES = (".csv", ".parquet", ".pq")
#: The target column of a packaged dataset.
PACKAGED_TARGET = "target"


def check_data(data: BuiltinData) -> None:
    """Refuse a data source no worker could read: an unknown packaged dataset, a
    packaged dataset's target other than ``target``, a file that is neither CSV nor Parquet."""
    if data.dataset is not None:
        package, _, name = data.dataset.partition(":")
        if package != "sklearn" or name not in SKLEARN_DATASETS:
            known = ", ".join(f"sklearn:{n}" for n in SKLEARN_DATASETS)
            raise RuleBroken(
                f"{_DATA}.dataset", f"{data.dataset!r} is not a packaged dataset (known: {known})"
            )
        if data.target not in (None, PACKAGED_TARGET):
            raise RuleBroken(
                f"{_DATA}.target",
                f"a packaged dataset's target is {PACKAGED_TARGET!r}, not {data.target!r}",
            )
        return
    assert data.path is not None
    if Path(data.path).suffix.lower() not in DATA_SUFFIXES:
        raise RuleBroken(f"{_DATA}.path", f"{data.path!r} is neither .csv nor .parquet")


def check_columns(columns: Sequence[str], data: BuiltinData, file_name: str) -> list[str]:
    """The feature columns of a data file with ``columns``; raise :class:`RuleBroken`
    when the target or a listed feature is not among them."""
    assert data.target is not None
    if data.target not in columns:
        raise RuleBroken(
            f"{_DATA}.target",
            f"{data.target!r} is not a column of {file_name} (it has: {list(columns)})",
        )
    names = (
        list(data.features)
        if data.features is not None
        else [c for c in columns if c != data.target]
    )
    missing = [c for c in names if c not in columns]
    if missing:
        raise RuleBroken(f"{_DATA}.features", f"{file_name} has no column {missing[0]!r}")
    if not names:
        raise RuleBroken(f"{_DATA}.features", f"{file_name} has no feature columns")
    return names


def check_save_model(save: SaveModel) -> None:
    """Only a directory (``file://`` or a plain path) can be an artifact store."""
    if save.artifact_store is not None and "://" in save.artifact_store.removeprefix("file://"):
        raise RuleBroken(
            "spec.trial.builtin.saveModel.artifactStore",
            "only a directory (a path or file://) is supported",
        )


def check(spec: StudySpec) -> None:
    """Every rule above, in the order a worker meets them; raise :class:`RuleBroken`."""
    builtin = spec.trial.builtin
    if builtin is None:
        return
    check_goal(spec, resolve_metric(spec))
    if builtin.tuner == "stepwise":
        check_stepwise(spec)
    else:
        check_sampler(spec, effective_space(spec))
    check_data(builtin.data)
    if builtin.save_model is not None:
        check_save_model(builtin.save_model)


# ------------------------------------------------------------ local files


def check_local_data(spec: StudySpec, base: Path | None = None) -> list[str]:
    """Check a built-in's data file against the spec when it is on this machine.

    ``data.path`` is taken relative to ``base`` (the current directory by
    default), as a local worker would. When the file is here, its columns are
    read (a CSV's header; a Parquet file's schema, with pyarrow) and a missing
    target or feature column raises :class:`SpecError`. When it is not here,
    nothing fails (a cluster's pods may read it from their image or a volume)
    and the returned notes say what was not checked.
    """
    builtin = spec.trial.builtin
    if builtin is None or builtin.data.path is None:
        return []
    field = f"{_DATA}.path"
    path = (base or Path.cwd()) / builtin.data.path
    if not path.exists():
        return [
            f"{field}: {builtin.data.path} is not on this machine, so its columns were not "
            "checked (fine if the trial image or a mounted volume holds it)"
        ]
    try:
        columns = _columns(path)
    except OSError as error:
        reason = f"cannot read {builtin.data.path}: {error.strerror or error}"
        raise SpecError([(field, reason)]) from None
    except ValueError as error:
        raise SpecError([(field, f"cannot read {builtin.data.path}: {error}")]) from None
    if columns is None:
        return [f"{field}: pyarrow is not installed here, so the Parquet columns were not checked"]
    try:
        check_columns(columns, builtin.data, path.name)
    except RuleBroken as broken:
        raise SpecError([(broken.field, broken.reason)]) from None
    return []


def _columns(path: Path) -> list[str] | None:
    """A data file's column names (None for Parquet without pyarrow)."""
    if path.is_dir():
        raise ValueError("it is a directory")
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
        if not header:
            raise ValueError("the file is empty")
        return header
    try:
        import pyarrow.parquet
    except ImportError:
        return None
    try:
        return list(pyarrow.parquet.read_schema(path).names)
    except pyarrow.ArrowException as error:  # type: ignore[attr-defined]
        raise ValueError(str(error)) from None
