"""The parts of a Study's spec: the base model, the objective, the search space, the
sampler and pruner, the budget and the built-in objective.

:mod:`kubetune.study.spec` assembles them into :class:`~kubetune.study.spec.StudySpec`
(and re-exports them: import them from there). They are a module of their own so
that the built-in objectives' rules (:mod:`kubetune.study.builtin_rules`), which the
spec's validation runs, can build on them without importing the spec.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from typing_extensions import Self

from kubetune.errors import KubetuneError

API_GROUP = "kubetune.io"
API_VERSION = "v1alpha1"
KIND = "Study"
PLURAL = "studies"
API_VERSION_FULL = f"{API_GROUP}/{API_VERSION}"

#: Kubernetes label values and pod-name parts are limited to 63 characters.
MAX_NAME_LENGTH = 63
#: A categorical parameter with more choices than this belongs in a data file, not a spec.
MAX_CHOICES = 1000
#: The status lists at most this many Pareto-optimal trials.
MAX_PARETO_FRONT = 10

Direction: TypeAlias = Literal["minimize", "maximize"]
SamplerName: TypeAlias = Literal[
    "tpe", "random", "cmaes", "gp", "qmc", "grid", "nsgaii", "bruteforce"
]
PrunerName: TypeAlias = Literal[
    "none",
    "median",
    "percentile",
    "successive_halving",
    "hyperband",
    "threshold",
    "wilcoxon",
    "patient",
]
Phase: TypeAlias = Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"]
Choice: TypeAlias = str | int | float | bool | None

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_PYTHON_ENTRY = re.compile(r"^[A-Za-z_][\w.]*(?::[A-Za-z_]\w*)?$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
#: ``{name}`` placeholders in a command objective's argv.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")
#: Placeholders the runner fills in besides the search-space parameters.
RESERVED_PLACEHOLDERS = frozenset({"trial_number", "trial_id", "study_name", "checkpoint_dir"})
#: A Kubernetes quantity: ``2``, ``0.5``, ``500m``, ``1Gi``, ``1e3``.
_QUANTITY = re.compile(
    r"^\+?(\d+(?:\.\d*)?|\.\d+)(?:[eE]([-+]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
_QUANTITY_SUFFIX = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{
        s: Decimal(10) ** e
        for s, e in zip("numkMGTPE", (-9, -6, -3, 3, 6, 9, 12, 15, 18), strict=True)
    },
}

#: The trial image's user and group (``USER 10001:10001`` in trial_image/Dockerfile; it
#: owns the image's working directory /work). Trial pods run as it unless a Study says
#: otherwise in ``spec.trial.podSecurityContext``.
TRIAL_IMAGE_UID = 10001
#: A trial pod's ``securityContext`` unless ``spec.trial.podSecurityContext`` replaces keys.
#: With the container defaults below, it passes Pod Security ``restricted``; ``fsGroup``
#: makes mounted volumes writable by the trial's group.
DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": TRIAL_IMAGE_UID,
    "runAsGroup": TRIAL_IMAGE_UID,
    "fsGroup": TRIAL_IMAGE_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: The trial container's ``securityContext`` unless ``spec.trial.securityContext`` replaces keys.
DEFAULT_CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


class SpecError(KubetuneError, ValueError):
    """A Study document that does not validate.

    ``problems`` holds ``(field path, reason)`` pairs; ``str()`` gives one line
    per problem, such as ``spec.searchSpace.lr.low: must be > 0 when log is true``.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        # A problem with the whole document has no path to name.
        super().__init__(
            "\n".join(f"{path}: {reason}" if path else reason for path, reason in problems)
        )

    @property
    def first_path(self) -> str:
        return self.problems[0][0] if self.problems else ""


def _field_error(field: str, reason: str) -> ValueError:
    """An error from a model validator that belongs to one of the model's fields.

    Pydantic attaches model-validator errors to the model itself; the ``@field:``
    prefix lets :func:`_format_problems` move it onto the field's path.
    """
    return ValueError(f"@{field}: {reason}")


class _Model(BaseModel):
    """Keyword arguments take snake_case or camelCase names; documents take camelCase only."""

    model_config = ConfigDict(
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        alias_generator=to_camel,
        # A field's docstring is its description in the CRD (kubectl explain shows it).
        use_attribute_docstrings=True,
        validate_assignment=True,
    )

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Self:
        """Validate a document: only the wire (camelCase) names, unless ``by_name=True``.

        A snake_case key is an unknown field here, as it is to the CRD's schema.
        """
        options.setdefault("by_name", False)
        return super().model_validate(obj, **options)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ---------------------------------------------------------------- objective


class Objective(_Model):
    """What to optimize: one direction, or several for a multi-objective study.

    ``metric``/``metrics`` name the values (a command objective reads them from
    the program's output); ``goal`` stops a single-objective study early once
    the best value reaches it.
    """

    direction: Direction | None = None
    """minimize or maximize: the study's one direction."""
    directions: list[Direction] | None = Field(default=None, min_length=1)
    """One direction per objective, for a multi-objective study (not with direction)."""
    metric: str | None = Field(default=None, min_length=1)
    """The value's name: the metric a command objective prints, or a built-in's
    metric (auc, logloss, accuracy, f1, rmse, mae, r2)."""
    metrics: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    """One metric name per direction, for a multi-objective study."""
    goal: float | None = None
    """Stop the study once the best value reaches this (single objective only)."""

    @model_validator(mode="after")
    def _one_way_to_say_it(self) -> Objective:
        if self.direction is not None and self.directions is not None:
            raise _field_error("directions", "give either direction or directions, not both")
        if self.metric is not None and self.metrics is not None:
            raise _field_error("metrics", "give either metric or metrics, not both")
        n = len(self.study_directions)
        if self.metrics is not None and len(self.metrics) != n:
            raise _field_error(
                "metrics",
                f"has {len(self.metrics)} names for {n} direction(s); give one per direction",
            )
        if self.metric is not None and n != 1:
            raise _field_error("metric", f"names one metric for {n} directions; use metrics")
        if self.goal is not None:
            if n != 1:
                raise _field_error("goal", "only a single-objective study can have a goal")
            if not math.isfinite(self.goal):
                raise _field_error("goal", "must be a finite number")
        return self

    @property
    def study_directions(self) -> list[Direction]:
        if self.directions is not None:
            return list(self.directions)
        return [self.direction or "minimize"]

    @property
    def is_multi_objective(self) -> bool:
        return len(self.study_directions) > 1

    @property
    def metric_names(self) -> list[str] | None:
        """The metric names, one per direction, or None when the study names none."""
        if self.metrics is not None:
            return list(self.metrics)
        if self.metric is not None:
            return [self.metric]
        return None

    def reached_goal(self, best_value: float | None) -> bool:
        if self.goal is None or best_value is None:
            return False
        if self.study_directions[0] == "maximize":
            return best_value >= self.goal
        return best_value <= self.goal


# ------------------------------------------------------------- search space


class FloatParam(_Model):
    """A float in ``[low, high]``, optionally log-scaled or on a ``step`` grid."""

    type: Literal["float"]
    """float"""
    low: float
    """The smallest value (> 0 when log is true)."""
    high: float
    """The largest value (>= low)."""
    log: bool = False
    """Sample on a log scale."""
    step: float | None = None
    """Sample only low, low + step, ... (not with log)."""

    @model_validator(mode="after")
    def _check_range(self) -> FloatParam:
        for name in ("low", "high"):
            if not math.isfinite(getattr(self, name)):
                raise _field_error(name, "must be a finite number")
        if self.low > self.high:
            raise _field_error("high", f"must be >= low ({self.low})")
        if self.log and self.low <= 0:
            raise _field_error("low", "must be > 0 when log is true")
        if self.step is not None:
            if self.log:
                raise _field_error("step", "cannot be combined with log: true")
            if not self.step > 0:
                raise _field_error("step", "must be > 0")
        return self


class IntParam(_Model):
    """An integer in ``[low, high]``, optionally log-scaled or on a ``step`` grid."""

    type: Literal["int"]
    """int"""
    low: int
    """The smallest value (>= 1 when log is true)."""
    high: int
    """The largest value (>= low)."""
    log: bool = False
    """Sample on a log scale."""
    step: int = 1
    """Sample only low, low + step, ... (1 with log)."""

    @model_validator(mode="after")
    def _check_range(self) -> IntParam:
        if self.low > self.high:
            raise _field_error("high", f"must be >= low ({self.low})")
        if self.log and self.low < 1:
            raise _field_error("low", "must be >= 1 when log is true")
        if self.step < 1:
            raise _field_error("step", "must be >= 1")
        if self.log and self.step != 1:
            raise _field_error("step", "cannot be combined with log: true")
        return self


class CategoricalParam(_Model):
    """One of a list of ``choices`` (strings, numbers, booleans or null)."""

    type: Literal["categorical"]
    """categorical"""
    choices: list[Choice]
    """1 to 1000 distinct values: strings, numbers, booleans or null."""

    @field_validator("choices")
    @classmethod
    def _check_choices(cls, choices: list[Choice]) -> list[Choice]:
        if not choices:
            raise ValueError("must list at least one choice")
        if len(choices) > MAX_CHOICES:
            raise ValueError(f"has {len(choices)} choices; at most {MAX_CHOICES} are allowed")
        seen: set[tuple[str, Choice]] = set()
        for choice in choices:
            if isinstance(choice, float) and not math.isfinite(choice):
                raise ValueError(f"choice {choice!r} is not a finite number")
            key = (type(choice).__name__, choice)
            if key in seen:
                raise ValueError(f"choice {choice!r} is listed twice")
            seen.add(key)
        return choices


Param: TypeAlias = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


# ---------------------------------------------------------- sampler, pruner


class SamplerSpec(_Model):
    """Which Optuna sampler proposes parameters; ``args`` go to its constructor."""

    name: SamplerName = "tpe"
    """The Optuna sampler: tpe, random, cmaes, gp, qmc, grid, nsgaii, bruteforce."""
    seed: int | None = None
    """A seed: each worker gets seed + its index (qmc and grid coordinate through
    the storage instead)."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the sampler's class, e.g. {multivariate: true}."""


class PrunerSpec(_Model):
    """Which Optuna pruner stops unpromising trials; ``args`` go to its constructor.

    ``patient`` wraps another pruner given as ``args.wrapped: {name, args}``.
    """

    name: PrunerName = "median"
    """The Optuna pruner: none, median, percentile, successive_halving, hyperband,
    threshold, wilcoxon or patient."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the pruner's class, e.g. {n_warmup_steps: 5}."""


# ------------------------------------------------------------------ budget


def parse_duration(value: str | int) -> int:
    """Seconds in a duration such as ``90``, ``"90s"``, ``"30m"``, ``"2h"`` or ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30m, 2h or 1h30m, or a number of seconds")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be a positive number of seconds")
        return value
    text = value.strip()
    if text.isdigit():
        return parse_duration(int(text))
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(
            f"{value!r} is not a duration; use a number of seconds or a form like 30m, 2h, 1h30m"
        )
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValueError("must be longer than zero")
    return total


def quantity_value(value: str | int | float) -> Decimal:
    """The number a Kubernetes quantity stands for: ``"500m"`` is 0.5, ``"1Ki"`` is 1024."""
    match = None if isinstance(value, bool) else _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (such as 2, 500m or 4Gi)")
    number, exponent, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from None
    if exponent is not None:
        return base * Decimal(10) ** int(exponent)
    return base * _QUANTITY_SUFFIX.get(suffix or "", Decimal(1))


class PricePerHour(_Model):
    """What one resource-hour costs, in any currency: ``{gpu: 2.5, cpu: 0.04}``."""

    gpu: float = Field(default=0.0, ge=0)
    """The price of one GPU for one hour."""
    cpu: float = Field(default=0.0, ge=0)
    """The price of one CPU core for one hour."""


class PlateauRule(_Model):
    """Stop when the best value improved by no more than ``minDelta`` in the last
    ``trials`` finished trials."""

    trials: int = Field(ge=1)
    """K: how many finished trials (any end, retried attempts aside) to look back over."""
    min_delta: float = Field(default=0.0, ge=0)
    """δ: an improvement of the best value larger than this resets the count."""


class TerminatorRule(_Model):
    """Stop when Optuna's Terminator finds the regret bound of the search below the
    cross-validation error of the best trial: further trials would improve on it by
    less than the noise of its own measurement. The objective reports its folds' scores
    with ``optuna.terminator.report_cross_validation_scores`` (otherwise a static error
    ``minError`` stands in). Runs in the trial runner after each trial (it needs torch)."""

    min_trials: int = Field(default=5, ge=2)
    """Completed trials before the Terminator is asked (its Gaussian process needs some)."""
    min_error: float | None = Field(default=None, ge=0)
    """A fixed error to compare the regret bound with, instead of the reported
    cross-validation scores' variance (for objectives without folds)."""


class StopWhen(_Model):
    """Rules that end a study before its budget when trials stop paying off."""

    plateau: PlateauRule | None = None
    """No improvement larger than minDelta in the last ``trials`` trials."""
    terminator: TerminatorRule | None = None
    """Optuna's Terminator: the regret bound below the cross-validation error."""


class Budget(_Model):
    """How much to spend.

    ``maxTrials`` counts trials that ran, whatever their end, except attempts
    that were retried; ``maxFailedTrials`` counts failures that were not
    retried (unset: no limit); ``timeout`` is wall time from the study's start.
    """

    max_trials: int = Field(default=100, ge=1)
    """Trials to run, whatever their end (a retried attempt counts once)."""
    parallelism: int = Field(default=1, ge=1, le=1000)
    """Trials at once: trial pods in a cluster, worker processes locally."""
    max_failed_trials: int | None = Field(default=None, ge=0)
    """Fail the study after this many failed trials (retried attempts not counted)."""
    timeout: str | int | None = None
    """Stop starting trials after this long: seconds, or 90s, 30m, 2h, 1h30m, 1d."""
    max_gpu_hours: float | None = Field(default=None, gt=0)
    """Stop when the trials' GPUs (trial.resources x nodes x each trial's run time,
    retried and pruned attempts included) have run this many hours."""
    max_cpu_hours: float | None = Field(default=None, gt=0)
    """Stop when the trials' requested CPU cores have run this many hours."""
    price_per_hour: PricePerHour | None = None
    """The price of a GPU-hour and a CPU-hour: status.spend.cost adds them up."""
    max_cost: float | None = Field(default=None, gt=0)
    """Stop when status.spend.cost reaches this (needs pricePerHour)."""
    stop_when: StopWhen | None = None
    """End the study early when trials stop improving (plateau, Optuna's Terminator)."""

    @field_validator("timeout")
    @classmethod
    def _check_timeout(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def timeout_seconds(self) -> int | None:
        return None if self.timeout is None else parse_duration(self.timeout)

    @model_validator(mode="after")
    def _cost_needs_prices(self) -> Budget:
        if self.max_cost is not None and self.price_per_hour is None:
            raise _field_error("maxCost", "needs pricePerHour (the price of a GPU- and CPU-hour)")
        return self


# ------------------------------------------------------------------- trial


class BuiltinData(_Model):
    """Where a built-in objective reads its table.

    ``path`` is a CSV or Parquet file (a mounted volume in a cluster);
    ``dataset`` names one that ships inside an installed package, such as
    ``sklearn:breast_cancer``. ``target`` is the label column of a file;
    ``features`` limits the columns used (default: every other column).
    """

    path: str | None = None
    """A CSV or Parquet file the trial can read (a mounted volume, or a path in the image)."""
    dataset: str | None = None
    """A packaged dataset: sklearn:breast_cancer, diabetes, digits, iris or wine."""
    target: str | None = None
    """The column to predict (required with path)."""
    features: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    """The columns to learn from (default: every other column)."""

    @model_validator(mode="after")
    def _one_source(self) -> BuiltinData:
        if (self.path is None) == (self.dataset is None):
            raise _field_error("path", "give exactly one of path or dataset")
        if self.path is not None and self.target is None:
            raise _field_error("target", "required when data comes from a path")
        if self.features is not None and self.target in self.features:
            raise _field_error("features", f"lists the target column {self.target!r}")
        return self


class Validation(_Model):
    """A holdout split (``testSize``) or k-fold cross-validation (``folds``).

    Classification splits are stratified; both are shuffled with the builtin's ``seed``.
    """

    kind: Literal["holdout", "kfold"] = "holdout"
    """holdout (one split) or kfold (cross-validation; the pruner sees the fold mean)."""
    test_size: float = Field(default=0.2, gt=0, lt=1)
    """The held-out fraction for holdout."""
    folds: int = Field(default=5, ge=2, le=50)
    """Folds for kfold."""


class SaveModel(_Model):
    """Where the best trial's model goes: a directory (``path``) or an Optuna
    artifact store (``artifactStore``: a directory for ``FileSystemArtifactStore``).

    Only the best trial's model is kept: a trial writes its model when its value
    beats every model saved before it.
    """

    path: str | None = None
    """A folder for the best model and best.json."""
    artifact_store: str | None = None
    """A folder used as an Optuna FileSystemArtifactStore for the best model."""

    @model_validator(mode="after")
    def _one_target(self) -> SaveModel:
        if (self.path is None) == (self.artifact_store is None):
            raise _field_error("path", "give exactly one of path or artifactStore")
        return self


class BuiltinObjective(_Model):
    """A ready-made objective: train a LightGBM, XGBoost or Lightning model on a table.

    The metric is ``spec.objective.metric`` (auc, logloss, accuracy, f1, rmse,
    mae or r2). The search space is the model's default one, updated name by
    name with ``spec.searchSpace`` (or replaced by it with
    ``defaultSearchSpace: false``), less the names fixed in ``params``.
    ``maxEpochs`` is the training length: boosting rounds for lightgbm and
    xgboost, epochs for lightning. ``device: auto`` uses a GPU when the pod
    has one.
    """

    model: Literal["lightgbm", "xgboost", "lightning"]
    """lightgbm, xgboost or lightning."""
    tuner: Literal["default", "stepwise"] = "default"
    """default, or stepwise (LightGBM's LightGBMTunerCV stages; parallelism 1)."""
    data: BuiltinData
    task: Literal["classification", "regression"] = "classification"
    """classification or regression."""
    validation: Validation = Field(default_factory=Validation)
    """How each trial is scored: holdout or k-fold."""
    seed: int = 0
    """The model's and the split's random seed."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Model parameters fixed for every trial (not tuned)."""
    default_search_space: bool = True
    """Tune the model's default search space (spec.searchSpace entries replace or add to it)."""
    max_epochs: int | None = Field(default=None, ge=1)
    """Boosting rounds (LightGBM, XGBoost) or epochs (Lightning)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto (a GPU when the pod has one), cpu or cuda."""
    save_model: SaveModel | None = None
    """Keep the best trial's model."""

    @model_validator(mode="after")
    def _stepwise_is_lightgbm(self) -> BuiltinObjective:
        if self.tuner == "stepwise" and self.model != "lightgbm":
            raise _field_error("tuner", "stepwise is only available for model: lightgbm")
        return self
