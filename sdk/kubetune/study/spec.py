"""The Study resource: the one definition of its ``spec`` and ``status``.

Everything else derives from these models: the CRD (:mod:`kubetune.study.crd`), the
Optuna objects (:mod:`kubetune.engine.bridge`), the operator's pods and the trial
runner's behaviour. Field names are camelCase on the wire (YAML, the API
server) and snake_case in Python attributes. Documents (YAML, mappings given
to :func:`load_study` or ``model_validate``) take only the camelCase names,
exactly as the CRD does (an API server silently drops any other name); the
Python builders (``StudySpec(search_space=...)``) take either.

Example:
    >>> from kubetune.study.spec import load_study
    >>> study = load_study({
    ...     "apiVersion": "kubetune.io/v1alpha1", "kind": "Study",
    ...     "metadata": {"name": "demo"},
    ...     "spec": {
    ...         "objective": {"direction": "maximize", "metric": "auc"},
    ...         "searchSpace": {"lr": {"type": "float", "low": 1e-3, "high": 0.3, "log": True}},
    ...         "trial": {"python": "examples.objectives.quadratic:objective"},
    ...     },
    ... })
    >>> study.spec.budget.max_trials
    100
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kubetune.study import builtin_rules
from kubetune.study.parts import (  # noqa: F401 - re-exported: the spec's names
    _DNS_LABEL,
    _LABEL_NAME,
    _PARAM_NAME,
    _PYTHON_ENTRY,
    API_GROUP,
    API_VERSION,
    API_VERSION_FULL,
    DEFAULT_CONTAINER_SECURITY_CONTEXT,
    DEFAULT_POD_SECURITY_CONTEXT,
    KIND,
    MAX_CHOICES,
    MAX_NAME_LENGTH,
    MAX_PARETO_FRONT,
    PLACEHOLDER,
    PLURAL,
    RESERVED_PLACEHOLDERS,
    TRIAL_IMAGE_UID,
    Budget,
    BuiltinData,
    BuiltinObjective,
    CategoricalParam,
    Choice,
    Direction,
    FloatParam,
    IntParam,
    Objective,
    Param,
    Phase,
    PlateauRule,
    PricePerHour,
    PrunerName,
    PrunerSpec,
    SamplerName,
    SamplerSpec,
    SaveModel,
    SpecError,
    StopWhen,
    TerminatorRule,
    Validation,
    _field_error,
    _Model,
    parse_duration,
    quantity_value,
)

#: A DNS-1123 subdomain, as Kubernetes names most objects (PriorityClasses, LocalQueues).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_extended_resource(name: str) -> bool:
    """A resource such as ``nvidia.com/gpu``: a domain prefix other than kubernetes.io."""
    return "/" in name and "kubernetes.io/" not in name and not name.startswith("requests.")


class Resources(_Model):
    """Kubernetes resource requests and limits, e.g. ``limits: {nvidia.com/gpu: 1}``.

    Extended resources (a name with a domain prefix, such as ``nvidia.com/gpu``)
    cannot be overcommitted: one given only in ``requests`` is placed into
    ``limits`` too, and a request different from its limit is refused.
    """

    model_config = ConfigDict(alias_generator=None)

    limits: dict[str, str | int | float] = Field(default_factory=dict)
    """Limits, e.g. {nvidia.com/gpu: 1, memory: 16Gi}."""
    requests: dict[str, str | int | float] = Field(
        default_factory=dict,
        description=(
            "Requests, e.g. {cpu: 2, memory: 4Gi}. An extended resource such as "
            "nvidia.com/gpu requested here with no limit is placed into limits as well "
            "(Kubernetes takes extended resources only in limits, equal to any request)."
        ),
    )

    @model_validator(mode="after")
    def _check_quantities(self) -> Resources:
        for kind in ("limits", "requests"):
            for name, amount in getattr(self, kind).items():
                try:
                    quantity_value(amount)
                except ValueError as error:
                    raise _field_error(f"{kind}.{name}", str(error)) from None
        for name, amount in self.requests.items():
            if not is_extended_resource(name):
                continue
            if name not in self.limits:
                self.limits[name] = amount  # in place: an assignment would validate again
            elif quantity_value(self.limits[name]) != quantity_value(amount):
                raise _field_error(
                    f"requests.{name}",
                    f"must equal limits.{name} (extended resources cannot be overcommitted)",
                )
        return self


class EnvVar(_Model):
    """A container environment variable, as in a pod spec."""

    model_config = ConfigDict(alias_generator=None)

    name: str = Field(min_length=1)
    """The variable's name."""
    value: str | None = None
    """Its value (or valueFrom, as in a pod)."""
    valueFrom: dict[str, Any] | None = None
    """A secretKeyRef, configMapKeyRef or fieldRef, as in a pod."""


class LocalObjectReference(_Model):
    """An object in the Study's namespace, by name (e.g. an image pull Secret)."""

    name: str = Field(min_length=1)


def _name_to_reference(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


#: ``regcred`` or ``{name: regcred}``; kept as ``{name: regcred}``.
NamedReference: TypeAlias = Annotated[
    LocalObjectReference,
    BeforeValidator(_name_to_reference, json_schema_input_type=str | LocalObjectReference),
]


def _context_doc(what: str, defaults: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{key}: {json.dumps(value)}" for key, value in defaults.items())
    return (
        f"The trial {what}'s securityContext (Kubernetes' field names). Each key given "
        f"replaces kubetune's default for that key; a key set to null removes it. "
        f"Defaults: {{{shown}}}."
    )


_POD_SECURITY_DOC = _context_doc("pod", DEFAULT_POD_SECURITY_CONTEXT) + (
    f" {TRIAL_IMAGE_UID} is the trial image's user, the owner of its /work; an image with "
    "another user sets runAsUser (and runAsGroup, fsGroup) here. On clusters that assign "
    "users themselves (OpenShift), set runAsUser, runAsGroup and fsGroup to null."
)
_SHM_DOC = (
    "Size of /dev/shm, a Kubernetes quantity such as 2Gi: an in-memory emptyDir mounted "
    "there (PyTorch DataLoader workers pass batches through it; the default is 64Mi). "
    "It counts against the container's memory limit."
)
_DEADLINE_DOC = (
    "A hard cap on one trial pod's run time (the pod's activeDeadlineSeconds): seconds, or "
    "a duration such as 30m, 2h or 1h30m. The pod is stopped when it passes, and its "
    "running trial fails (and is retried if spec.trial.retries allows)."
)


class CheckpointSpec(_Model):
    """Where trials keep checkpoints, so a trial whose pod or worker is lost (evicted,
    preempted, node gone) goes on from its last one in a new pod instead of from the start.

    ``path`` is a directory every trial pod sees (a ReadWriteMany PVC mounted through
    spec.trial.volumes/volumeMounts; a local directory in local mode). A trial's
    checkpoint is removed when the trial ends.
    """

    path: str = Field(min_length=1)
    """The directory checkpoints are kept in (an Optuna FileSystemArtifactStore)."""
    every_rounds: int = Field(default=10, ge=1, le=1_000_000)
    """How often the built-in objectives checkpoint: every N boosting rounds or epochs."""


class TrialTemplate(_Model):
    """How one trial runs: exactly one of ``python``, ``command`` or ``builtin``,
    and the pod it runs in.

    - ``python: package.module:function`` is called with an ``optuna.Trial``;
    - ``command: [argv...]`` runs a program with ``{param}`` placeholders filled
      in and reads ``name=value`` or JSON lines from its standard output;
    - ``builtin: {model: lightgbm, ...}`` trains a ready-made model.
    """

    python: str | None = None
    """An Optuna objective, package.module:function, taking an optuna.Trial."""
    command: list[str] | None = Field(default=None, min_length=1)
    """A program's argv with {param} placeholders; metrics read from its standard output."""
    builtin: BuiltinObjective | None = None
    """A ready-made LightGBM, XGBoost or Lightning objective."""
    image: str | None = None
    """The trial pods' image (default: the operator's trial image)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Always, IfNotPresent or Never."""
    resources: Resources = Field(default_factory=Resources)
    """The trial container's requests and limits (GPUs: limits.nvidia.com/gpu)."""
    env: list[EnvVar] = Field(default_factory=list)
    """Environment variables of the trial container."""
    working_dir: str | None = None
    """The trial container's working directory (on sys.path for python objectives)."""
    image_pull_secrets: list[NamedReference] = Field(
        default_factory=list,
        description=(
            "Secrets in the Study's namespace for pulling a private image: names, or "
            "{name: ...} objects as in a pod spec."
        ),
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="The trial pods' nodeSelector, e.g. {cloud.google.com/gke-accelerator: ...}.",
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description=(
            "The trial pods' tolerations, as in a pod spec. A pod asking for nvidia.com/gpu "
            "also gets {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule} (the taint "
            "of GPU node pools) unless these already tolerate that key."
        ),
    )
    shm_size: str | int | None = Field(default=None, description=_SHM_DOC)
    active_deadline_seconds: str | int | None = Field(default=None, description=_DEADLINE_DOC)
    pod_security_context: dict[str, Any] = Field(
        default_factory=dict, description=_POD_SECURITY_DOC
    )
    security_context: dict[str, Any] = Field(
        default_factory=dict,
        description=_context_doc("container", DEFAULT_CONTAINER_SECURITY_CONTEXT),
    )
    affinity: dict[str, Any] | None = None
    """The trial pods' affinity."""
    volumes: list[dict[str, Any]] = Field(default_factory=list)
    """Volumes of the trial pods."""
    volume_mounts: list[dict[str, Any]] = Field(default_factory=list)
    """Where the trial container mounts them."""
    service_account_name: str | None = None
    """The trial pods' ServiceAccount (default: the operator's trial account)."""
    priority_class_name: str | None = None
    """The trial pods' PriorityClass (a higher one may preempt lower ones' pods)."""
    queue_name: str | None = None
    """A Kueue LocalQueue in the Study's namespace: trial pods wait in it until Kueue
    admits them (its pod integration); a waiting study shows the condition Queued."""
    workload_priority_class_name: str | None = None
    """A Kueue WorkloadPriorityClass: the trials' priority inside the queue (needs queueName)."""
    weak_trials_priority_class_name: str | None = None
    """A lower Kueue WorkloadPriorityClass for the running trials the pruner ranks in the
    weaker half (worse than the median at their step): the queue preempts them first
    (needs workloadPriorityClassName, and a Kueue that lets a running pod's class change)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels added to the trial pods."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations added to the trial pods."""
    trials_per_pod: int = Field(default=1, ge=1)
    """Trials one pod (or worker) runs in turn before it exits: raise it for short trials."""
    retries: int = Field(default=0, ge=0, le=10)
    """Re-runs of a trial whose pod or worker died (same parameters)."""
    nodes: int = Field(default=1, ge=1, le=64)
    """Pods per trial: above 1 each trial runs on a gang of pods created, failed and removed
    together (a python objective starting its ranks with kubetune.engine.gang.torchrun)."""
    processes_per_node: int = Field(default=1, ge=1, le=64)
    """Processes torchrun starts on each of a trial's pods (one per GPU)."""
    checkpoints: CheckpointSpec | None = None
    """Where trials checkpoint (kubetune.checkpoint.save/load, $KUBETUNE_CHECKPOINT_DIR, the
    built-in objectives): a lost trial resumes from its last checkpoint."""

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            prefix, _, name = key.rpartition("/")
            if not _LABEL_NAME.match(name) or len(name) > MAX_NAME_LENGTH or len(prefix) > 253:
                raise ValueError(f"label key {key!r} is not a valid Kubernetes label key")
            if len(value) > MAX_NAME_LENGTH or (value and not _LABEL_NAME.match(value)):
                raise ValueError(
                    f"label {key}={value!r}: a value must be at most 63 letters, digits, "
                    "'-', '_' or '.', starting and ending with a letter or digit"
                )
        return labels

    @field_validator("priority_class_name")
    @classmethod
    def _check_priority_class(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
            raise ValueError(
                f"{value!r} is not a PriorityClass name (lower-case letters, digits, '-' and "
                "'.', starting and ending with a letter or digit, at most 253)"
            )
        if value.startswith("system-"):
            raise ValueError(
                f"{value!r}: PriorityClasses named system-* are for Kubernetes' own pods "
                "(the API server refuses them outside kube-system)"
            )
        return value

    @field_validator(
        "queue_name", "workload_priority_class_name", "weak_trials_priority_class_name"
    )
    @classmethod
    def _check_queue_label(cls, value: str | None) -> str | None:
        # Both go into a pod label (kueue.x-k8s.io/queue-name, .../priority-class).
        if value is not None and (len(value) > MAX_NAME_LENGTH or not _DNS_SUBDOMAIN.match(value)):
            raise ValueError(
                f"{value!r} is not a Kueue object name (lower-case letters, digits, '-' and "
                f"'.', starting and ending with a letter or digit, at most {MAX_NAME_LENGTH})"
            )
        return value

    @model_validator(mode="after")
    def _gang_needs_python(self) -> TrialTemplate:
        if self.nodes > 1 and self.python is None:
            raise _field_error(
                "nodes",
                "a multi-node trial needs a python objective: it starts the ranks on every "
                "node with kubetune.engine.gang.torchrun",
            )
        return self

    @model_validator(mode="after")
    def _priority_class_needs_queue(self) -> TrialTemplate:
        if self.workload_priority_class_name is not None and self.queue_name is None:
            raise _field_error(
                "workloadPriorityClassName",
                "a WorkloadPriorityClass orders trials inside a Kueue queue: set queueName too",
            )
        if (
            self.weak_trials_priority_class_name is not None
            and self.workload_priority_class_name is None
        ):
            raise _field_error(
                "weakTrialsPriorityClassName",
                "the weaker trials move down from workloadPriorityClassName (Kueue lets a "
                "running workload's class change, never be added): set it too",
            )
        return self

    @field_validator("python")
    @classmethod
    def _check_python(cls, value: str | None) -> str | None:
        if value is not None and not _PYTHON_ENTRY.match(value):
            raise ValueError(
                f"{value!r} is not of the form package.module:function (or package.module "
                "alone: the objective the module passes to study.optimize when imported)"
            )
        return value

    @field_validator("shm_size")
    @classmethod
    def _check_shm_size(cls, value: str | int | None) -> str | int | None:
        if value is not None and not quantity_value(value) > 0:
            raise ValueError("must be larger than zero")
        return value

    @field_validator("active_deadline_seconds")
    @classmethod
    def _check_deadline(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _check_root(self) -> TrialTemplate:
        """runAsUser 0 with our runAsNonRoot default would leave every pod unable to start."""
        effective = {**self.pod_security(), **self.container_security()}
        if effective.get("runAsUser") == 0 and effective.get("runAsNonRoot"):
            field = (
                "securityContext" if "runAsUser" in self.security_context else "podSecurityContext"
            )
            raise _field_error(
                f"{field}.runAsUser",
                "0 is root; set runAsNonRoot: false as well (kubetune's default is true)",
            )
        return self

    def pod_security(self) -> dict[str, Any]:
        """The pod's securityContext: kubetune's defaults, replaced key by key by the spec's."""
        return _overlay(DEFAULT_POD_SECURITY_CONTEXT, self.pod_security_context)

    def container_security(self) -> dict[str, Any]:
        """The container's securityContext: the defaults, replaced key by key by the spec's."""
        return _overlay(DEFAULT_CONTAINER_SECURITY_CONTEXT, self.security_context)

    @property
    def deadline_seconds(self) -> int | None:
        """``activeDeadlineSeconds`` in seconds, or None when unset."""
        value = self.active_deadline_seconds
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _exactly_one_objective(self) -> TrialTemplate:
        given = [k for k in ("python", "command", "builtin") if getattr(self, k) is not None]
        if len(given) != 1:
            detail = "none is given" if not given else f"{' and '.join(given)} are given"
            raise _field_error(
                "python", f"give exactly one of python, command or builtin ({detail})"
            )
        return self

    @property
    def kind(self) -> Literal["python", "command", "builtin"]:
        if self.python is not None:
            return "python"
        if self.command is not None:
            return "command"
        return "builtin"


def _overlay(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` with each key of ``given`` replacing it; a None value removes the key."""
    merged = {**defaults, **given}
    return {key: value for key, value in merged.items() if value is not None}


# ----------------------------------------------------------------- storage


class SecretKeyRef(_Model):
    """A key of a Secret in the Study's namespace."""

    name: str = Field(min_length=1)
    """The Secret's name, in the Study's namespace."""
    key: str = "url"
    """The key holding the SQLAlchemy URL."""


class StorageSpec(_Model):
    """Where trials are stored: a Secret holding a database URL (cluster), or
    a URL without a password (local). Unset: the operator's default database,
    or the embedded PostgreSQL of ``kubetune run``.

    ``studyName`` overrides the Optuna study name, to continue an existing
    Optuna study; ``onDelete: delete`` drops the Optuna study with the Study.
    """

    secret_ref: SecretKeyRef | None = None
    """A Secret holding the database URL (the way for URLs with a password)."""
    url: str | None = None
    """A database URL with no password (local runs; in a cluster use secretRef)."""
    study_name: str | None = Field(default=None, min_length=1, max_length=512)
    """The Optuna study's name (default: from the namespace, name and uid)."""
    on_delete: Literal["retain", "delete"] = "retain"
    """retain keeps the Optuna study when the Study is deleted; delete drops it."""

    @field_validator("url")
    @classmethod
    def _no_password(cls, url: str | None) -> str | None:
        if url is not None and re.match(r"^[\w+]+://[^/@]*:[^/@]+@", url):
            raise ValueError(
                "must not contain a password (it would be readable by anyone who can read the "
                "Study); put the URL in a Secret and use secretRef, or pass --storage"
            )
        return url

    @model_validator(mode="after")
    def _one_source(self) -> StorageSpec:
        if self.secret_ref is not None and self.url is not None:
            raise _field_error("url", "give either secretRef or url, not both")
        return self


# ------------------------------------------------------------ fork, tracking


class ForkFrom(_Model):
    """The study this one starts from: every finished trial (COMPLETE or PRUNED) of
    the parent whose parameters fit this study's search space is copied into it
    before its first trial; the rest are left out and counted in ``status.parent``.

    ``defaults`` gives a value to a parameter the parent did not have (one added to
    the search space): the value the parent's trials ran with. Without one, a parent
    trial lacking a parameter of this search space is left out.
    """

    study: str = Field(min_length=1, max_length=512)
    """The parent: a Study in the same namespace (cluster), or a study in the same
    storage, by its study name (local: its storage.studyName or metadata.name)."""
    defaults: dict[str, Choice] = Field(default_factory=dict)
    """Values the parent's trials had for parameters they did not suggest, by name."""


class MLflowTracking(_Model):
    """Where trials go in MLflow: a tracking URI and an experiment."""

    tracking_uri: str = Field(min_length=1)
    """The MLflow tracking URI, e.g. http://mlflow:5000 or sqlite:///mlflow.db."""
    experiment: str | None = Field(default=None, min_length=1)
    """The experiment's name (default: the study's name)."""

    @field_validator("tracking_uri")
    @classmethod
    def _no_password(cls, uri: str) -> str:
        if re.match(r"^[\w+]+://[^/@]*:[^/@]+@", uri):
            raise ValueError(
                "must not contain a password (anyone who can read the Study would read it); "
                "give the trial pods MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "from a Secret in trial.env"
            )
        return uri


class WandbTracking(_Model):
    """Where trials go in Weights & Biases: a project (and an entity)."""

    project: str = Field(min_length=1)
    """The W&B project."""
    entity: str | None = Field(default=None, min_length=1)
    """The W&B entity (user or team; default: the API key's)."""


class TrackingSpec(_Model):
    """Sends every trial to MLflow or Weights & Biases as it ends: one run per trial,
    named and tagged by study and trial, with its parameters, value(s), state and
    intermediate values as steps. Needs the ``kubetune[mlflow]`` or ``kubetune[wandb]``
    extra where trials run (the trial image leaves them out)."""

    mlflow: MLflowTracking | None = None
    """Send trials to MLflow."""
    wandb: WandbTracking | None = None
    """Send trials to Weights & Biases (credentials: WANDB_API_KEY in trial.env)."""

    @model_validator(mode="after")
    def _one_place(self) -> TrackingSpec:
        if self.mlflow is None and self.wandb is None:
            raise _field_error("mlflow", "give mlflow or wandb")
        return self


# ------------------------------------------------------------------ verify


class VerifySpec(_Model):
    """Re-runs the ``top`` best trials ``repeats`` times each, with other seeds (a repeat
    carries the user attribute ``kubetune.repeat``; ``kubetune.seed(trial)`` gives each
    repeat its own seed), once the budget is spent; the status shows each one's mean and
    95% confidence interval beside the best trial, and the winner is the best verified
    mean, not a lucky single value. Repeats run in a study of their own
    (``<study>.verify``): they count against no budget and the sampler never sees them.
    """

    top: int = Field(default=3, ge=1, le=100)
    """How many of the best trials to re-run."""
    repeats: int = Field(default=5, ge=2, le=1000)
    """How many times to re-run each (at least 2: a confidence interval needs two values)."""


# -------------------------------------------------------------------- spec


class StudySpec(_Model):
    """The ``spec`` of a Study."""

    objective: Objective = Field(default_factory=Objective)
    """What to optimize."""
    search_space: dict[str, Param] = Field(default_factory=dict)
    """Parameters suggested before the objective runs, by name."""
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    """How parameters are proposed."""
    pruner: PrunerSpec | None = None
    """How unpromising trials are stopped (default: median; none for multi-objective)."""
    budget: Budget = Field(default_factory=Budget)
    """How much to spend."""
    trial: TrialTemplate
    """How one trial runs, and its pod."""
    storage: StorageSpec = Field(default_factory=StorageSpec)
    """Where the Optuna study is kept."""
    suspend: bool = False
    """true removes the trial pods (running trials are queued again); false carries on."""
    fork_from: ForkFrom | None = None
    """Start from the finished trials of another study that fit this search space
    (kubetune fork makes such a Study; see status.parent)."""
    tracking: TrackingSpec | None = None
    """Send every trial to MLflow or Weights & Biases."""
    verify: VerifySpec | None = None
    """Once the budget is spent, re-run the best trials with other seeds and choose the
    winner on their mean (see status.verified and kubetune verify)."""

    @field_validator("search_space")
    @classmethod
    def _check_param_names(cls, space: dict[str, Any]) -> dict[str, Any]:
        for name in space:
            if not _PARAM_NAME.match(name) or len(name) > 128:
                raise ValueError(
                    f"parameter name {name!r} must start with a letter or _ and use only "
                    "letters, digits, _, . and - (at most 128 characters)"
                )
        return space

    @model_validator(mode="after")
    def _check_consistency(self) -> StudySpec:
        multi = self.objective.is_multi_objective
        if self.trial.command is not None:
            if self.objective.metric_names is None:
                raise _field_error(
                    "objective.metric", "required for a command objective (the name it prints)"
                )
            for index, arg in enumerate(self.trial.command):
                for name in PLACEHOLDER.findall(arg):
                    if name not in self.search_space and name not in RESERVED_PLACEHOLDERS:
                        raise _field_error(
                            f"trial.command[{index}]",
                            f"{{{name}}} is not a parameter in searchSpace",
                        )
                    if name == "checkpoint_dir" and self.trial.checkpoints is None:
                        raise _field_error(
                            f"trial.command[{index}]",
                            "{checkpoint_dir} needs trial.checkpoints (where checkpoints live)",
                        )
        if self.trial.builtin is not None and multi:
            raise _field_error("objective.directions", "built-in objectives optimize one metric")
        if multi and self.sampler.name in ("cmaes",):
            raise _field_error(
                "sampler.name",
                f"{self.sampler.name} supports one objective only; use tpe or nsgaii",
            )
        if multi and self.pruner is not None and self.pruner.name != "none":
            raise _field_error(
                "pruner.name",
                "Optuna cannot prune multi-objective trials; use none or leave it out",
            )
        if self.sampler.name == "grid":
            for name, param in self.search_space.items():
                if isinstance(param, FloatParam) and param.step is None:
                    raise _field_error(
                        f"searchSpace.{name}.step", "the grid sampler needs a step for a float"
                    )
                if isinstance(param, IntParam | FloatParam) and param.log:
                    raise _field_error(f"searchSpace.{name}.log", "the grid sampler cannot use log")
            if not self.search_space:
                raise _field_error("searchSpace", "the grid sampler needs a search space")
        if self.trial.builtin is not None:
            try:
                builtin_rules.check(self)
            except builtin_rules.RuleBroken as broken:
                raise _field_error(broken.field.removeprefix("spec."), broken.reason) from None
        return self

    @model_validator(mode="after")
    def _check_spend_rules(self) -> StudySpec:
        budget = self.budget
        for field, kind in (("maxGpuHours", "gpu"), ("maxCpuHours", "cpu")):
            if getattr(budget, f"max_{kind}_hours") is not None and not trial_request(
                self.trial, kind
            ):
                raise _field_error(
                    f"budget.{field}",
                    f"trial.resources asks for no {kind} (e.g. "
                    f"{'limits: {nvidia.com/gpu: 1}' if kind == 'gpu' else 'requests: {cpu: 2}'}"
                    f"), so no {kind.upper()}-hour would ever be spent",
                )
        stop_when = budget.stop_when
        if stop_when is not None and self.objective.is_multi_objective:
            for rule in ("plateau", "terminator"):
                if getattr(stop_when, rule) is not None:
                    raise _field_error(
                        f"budget.stopWhen.{rule}",
                        "needs a single objective (a Pareto front has no one best value)",
                    )
        return self

    @model_validator(mode="after")
    def _check_verify(self) -> StudySpec:
        if self.verify is not None and self.objective.is_multi_objective:
            raise _field_error(
                "verify", "needs a single objective (a Pareto front has no one best value)"
            )
        return self

    @model_validator(mode="after")
    def _check_fork_defaults(self) -> StudySpec:
        for name in self.fork_from.defaults if self.fork_from is not None else {}:
            if name not in self.search_space:
                raise _field_error(
                    f"forkFrom.defaults.{name}",
                    "is not a parameter in searchSpace (a default stands for a parameter "
                    "added to the search space that the parent's trials did not have)",
                )
        return self

    @property
    def effective_pruner(self) -> PrunerSpec:
        """The pruner to build: the spec's, or Optuna's default (median) for one objective."""
        if self.pruner is not None:
            return self.pruner
        return PrunerSpec(name="none" if self.objective.is_multi_objective else "median")

    def started_fields(self) -> dict[str, Any]:
        """The fields that define a study's trials; they cannot change once it started.

        The pruner is one: trials pruned under one rule and completed under another
        would not be comparable, and running pods would keep the old rule.
        """
        dumped = self.to_dict()
        trial = dumped.get("trial", {})
        return {
            "objective": dumped.get("objective"),
            "searchSpace": dumped.get("searchSpace", {}),
            "sampler": dumped.get("sampler"),
            "pruner": self.effective_pruner.to_dict(),
            "trial": {k: trial.get(k) for k in ("python", "command", "builtin")},
        }

    def changed_started_fields(self, previous: StudySpec) -> list[str]:
        """The started fields (see :meth:`started_fields`) that differ from ``previous``'s:
        what an edit of a started study may not change."""
        before = previous.started_fields()
        return [key for key, value in self.started_fields().items() if before.get(key) != value]


def trial_request(trial: TrialTemplate, kind: Literal["gpu", "cpu"]) -> float:
    """What one trial holds while it runs: its pod's GPUs (any ``*/gpu`` extended
    resource) or requested CPU cores (the limit when no request is given, as Kubernetes
    defaults it), times its pods (``nodes``).

    >>> template = TrialTemplate.model_validate({"python": "m:f", "nodes": 2,
    ...     "resources": {"limits": {"nvidia.com/gpu": 1}, "requests": {"cpu": "500m"}}})
    >>> trial_request(template, "gpu"), trial_request(template, "cpu")
    (2.0, 1.0)
    """
    resources = trial.resources
    if kind == "gpu":
        per_pod = sum(
            float(quantity_value(amount))
            for name, amount in resources.limits.items()
            if is_extended_resource(name) and name.rsplit("/", 1)[1] == "gpu"
        )
    else:
        amount = resources.requests.get("cpu", resources.limits.get("cpu"))
        per_pod = 0.0 if amount is None else float(quantity_value(amount))
    return per_pod * trial.nodes


# ------------------------------------------------------------------ status


class TrialCounts(_Model):
    """How many trials are in each state (``waiting``: queued, not started)."""

    waiting: int = 0
    """Trials queued."""
    running: int = 0
    """Trials running."""
    complete: int = 0
    """Trials that finished with a value."""
    pruned: int = 0
    """Trials the pruner stopped."""
    failed: int = 0
    """Trials that failed (each with its reason)."""
    stopped: int = 0
    """Trials stopped on purpose (suspend, Ctrl-C) and queued to run again: not failures."""

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed + self.stopped


class TrialSummary(_Model):
    """One trial in the status: its number, value(s) and parameters."""

    number: int
    """The trial's number in the study."""
    value: float | None = None
    """Its value (single objective)."""
    values: list[float] | None = None
    """Its values (multi-objective)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Its parameters."""


class Condition(_Model):
    """A Kubernetes-style condition, e.g. ``Unschedulable`` with a reason and message."""

    type: str
    """StorageReady, PodsReady, SpecChangeRefused, Suspended, Running, Complete, Failed,
    or ScriptStudyIntercepted (the objective's script calls study.optimize at import:
    kubetune runs the trials instead)."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = ""
    """A CamelCase word saying why."""
    message: str = ""
    """The reason in words."""
    last_transition_time: str | None = None
    """When status last changed."""


class ParentStatus(_Model):
    """Where a forked study's first trials came from (``spec.forkFrom``)."""

    name: str
    """The parent study."""
    trials_copied: int = 0
    """Finished trials of the parent copied into this study."""
    trials_left_out: int = 0
    """Finished trials of the parent whose parameters fall outside this search space."""


class SpendStatus(_Model):
    """What the study's trials have spent: each trial's resources (trial.resources x
    nodes) times its run time, retried, pruned and running trials included."""

    trial_hours: float = 0.0
    """The trials' run time added up, in hours."""
    gpu_hours: float = 0.0
    """GPU-hours."""
    cpu_hours: float = 0.0
    """CPU-hours (requested cores)."""
    cost: float | None = None
    """gpuHours and cpuHours at budget.pricePerHour; unset without prices."""


class VerifiedTrial(_Model):
    """One re-run trial: the mean of its repeats and their 95% confidence interval."""

    number: int
    """The trial's number in the study."""
    value: float | None = None
    """Its own (single, maybe lucky) value."""
    mean: float | None = None
    """The mean of its completed repeats."""
    low: float | None = None
    """The lower end of the 95% t-interval of that mean."""
    high: float | None = None
    """The upper end of the 95% t-interval of that mean."""
    repeats: int = 0
    """How many of its repeats completed (the others failed or were pruned)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Its parameters."""


class VerifiedStatus(_Model):
    """What verification (spec.verify, kubetune verify) found: the winner on the verified
    mean, and every re-run trial best first."""

    winner: int | None = None
    """The number of the trial with the best mean (None until one repeat completed)."""
    trials: list[VerifiedTrial] = Field(default_factory=list, max_length=100)
    """The re-run trials, the best mean first."""
    done: bool = False
    """Every repeat ended."""
    top: int | None = None
    """How many of the best trials were to be re-run (spec.verify.top, kubetune verify)."""
    repeats: int | None = None
    """How many times each (spec.verify.repeats, kubetune verify)."""


class StudyStatus(_Model):
    """The ``status`` of a Study: the same size whatever the number of trials."""

    model_config = ConfigDict(extra="ignore")

    phase: Phase | None = None
    """Pending, Running, Suspended, Succeeded or Failed."""
    message: str | None = None
    """Why the study ended."""
    study_name: str | None = None
    """The Optuna study's name in the storage."""
    database: str | None = None
    """The database of the Study's namespace that holds its Optuna study, when the
    operator gives each namespace its own; unset for a Study with its own storage."""
    progress: str | None = None
    """Finished trials / maxTrials."""
    trials: TrialCounts = Field(default_factory=TrialCounts)
    """Trial counts by state."""
    best_trial: TrialSummary | None = None
    """The best trial so far (single objective)."""
    pareto_front: list[TrialSummary] = Field(default_factory=list, max_length=MAX_PARETO_FRONT)
    """The first trials of the Pareto front (multi-objective)."""
    best: str | None = None
    """The best value and its trial (``0.0123 (#4)``), or the size of the Pareto front
    (``12 on the Pareto front``): ``kubectl get``'s BEST column, for one objective or many."""
    conditions: list[Condition] = Field(default_factory=list)
    """What is going on, one condition per aspect."""
    observed_generation: int | None = None
    """The generation of the spec this status describes."""
    failed_pods_without_trials: int = 0
    """Trial pods that failed in a row before running a trial (3 fail the study)."""
    start_time: str | None = None
    """When the study started."""
    completion_time: str | None = None
    """When the study ended."""
    parent: ParentStatus | None = None
    """The study this one was forked from, and how many of its trials were copied."""
    spend: SpendStatus | None = None
    """The resources the trials have used so far (see budget.maxGpuHours)."""
    verified: VerifiedStatus | None = None
    """The best trials re-run with other seeds (spec.verify): the winner on their mean."""


def best_summary(best_trial: Mapping[str, Any] | None, front_size: int = 0) -> str | None:
    """:attr:`StudyStatus.best`: the best trial's value and number, or the Pareto front's
    size; None before a trial completed.

    >>> best_summary({"number": 4, "value": 0.012345678})
    '0.0123457 (#4)'
    >>> best_summary(None, 12)
    '12 on the Pareto front'
    """
    if best_trial and best_trial.get("value") is not None:
        return f"{best_trial['value']:.6g} (#{best_trial['number']})"
    return f"{front_size} on the Pareto front" if front_size else None


# ---------------------------------------------------------------- document


class ObjectMeta(_Model):
    """The part of Kubernetes metadata a Study file sets; the server's fields are kept."""

    model_config = ConfigDict(extra="allow", alias_generator=None)

    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"must be at most {MAX_NAME_LENGTH} characters (got {len(name)}), since it "
                "names the trial pods and labels them"
            )
        if not _DNS_LABEL.match(name):
            raise ValueError(
                f"{name!r} must be lowercase letters, digits and '-', starting and ending "
                "with a letter or digit"
            )
        return name


class Study(_Model):
    """A whole Study document, as ``kubectl apply -f`` takes it."""

    model_config = ConfigDict(alias_generator=None)

    apiVersion: Literal["kubetune.io/v1alpha1"] = API_VERSION_FULL
    kind: Literal["Study"] = KIND
    metadata: ObjectMeta
    spec: StudySpec
    status: StudyStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name


# ------------------------------------------------------------- validation


def _format_location(loc: Iterable[int | str], tags: frozenset[str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in tags:
            continue  # a discriminated-union tag, not a field
        else:
            path += f".{part}" if path else part
    return path


_UNION_TAGS = frozenset({"float", "int", "categorical"})
_UNKNOWN_FIELD = "unknown field (check its spelling against the spec reference)"


def _bare(annotation: Any) -> Any:
    """``X`` out of ``Annotated[X, ...]`` and ``X | None``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _bare(options[0])
    return annotation


def _is_model(node: Any) -> bool:
    return isinstance(node, type) and issubclass(node, BaseModel)


def _step(node: Any, part: int | str) -> Any:
    """The type found at ``part`` inside a value of type ``node`` (None: not known)."""
    node = _bare(node)
    if _is_model(node):
        for name, field in node.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    origin = get_origin(node)
    if origin in (dict, Mapping):
        return get_args(node)[1]
    if origin is list:
        return get_args(node)[0]
    if origin in (Union, types.UnionType):  # a tagged union: ``part`` is the tag
        for option in get_args(node):
            tag = getattr(option, "model_fields", {}).get("type")
            if tag is not None and part in get_args(tag.annotation):
                return option
    return None


def _unknown_field(root: Any, loc: Sequence[int | str]) -> str:
    """Why a key is unknown, with the field meant when it is recognisable."""
    node: Any = root
    for part in loc[:-1]:
        node = _step(node, part)
    node, key = _bare(node), str(loc[-1])
    if not _is_model(node):
        return _UNKNOWN_FIELD
    names = {name: field.alias or name for name, field in node.model_fields.items()}
    meant = names.get(key) or next(
        iter(difflib.get_close_matches(key, list(names.values()), n=1, cutoff=0.6)), None
    )
    return f"unknown field; did you mean {meant}?" if meant else _UNKNOWN_FIELD


def _format_problems(
    error: ValidationError, prefix: str, root: Any = None
) -> list[tuple[str, str]]:
    """``(path, reason)`` pairs; ``root`` is the type validated (to name a misspelt field)."""
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        loc = [part for part in item["loc"] if not (isinstance(part, str) and "[" in part)]
        path = _format_location(loc, _UNION_TAGS)
        message = str(item["msg"])
        kind = item["type"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if message.startswith("@"):
            field, _, message = message[1:].partition(": ")
            path = f"{path}.{field}" if path else field
        elif kind == "extra_forbidden":
            message = _unknown_field(root, item["loc"])
        elif kind == "missing":
            message = "required"
        elif kind == "union_tag_invalid":
            message = "type must be one of: float, int, categorical"
        elif kind == "union_tag_not_found":
            message = "needs a type: float, int or categorical"
        elif kind == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            message = f"must be one of {expected} (got {item.get('input')!r})"
        elif message.startswith("Input should be"):
            message = "must be" + message.removeprefix("Input should be")
        full = f"{prefix}.{path}" if prefix and path else (prefix or path)
        problems.append((full, message))
    return _without_required_meant_elsewhere(problems)


def _without_required_meant_elsewhere(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drops ``x.high: required`` when ``x.hihg`` is reported as meaning ``high``."""
    meant = {
        ".".join(filter(None, (path.rpartition(".")[0], reason.rpartition(" ")[2].rstrip("?"))))
        for path, reason in problems
        if reason.startswith("unknown field; did you mean ")
    }
    return [
        (path, reason) for path, reason in problems if not (reason == "required" and path in meant)
    ]


def validate_spec(data: Mapping[str, Any]) -> StudySpec:
    """Validate a ``spec`` mapping; raise :class:`SpecError` naming each bad field."""
    try:
        return StudySpec.model_validate(dict(data))
    except ValidationError as error:
        raise SpecError(_format_problems(error, "spec", StudySpec)) from None


def validate_metadata(data: Mapping[str, Any]) -> ObjectMeta:
    """Validate a Study's metadata (its name must fit pod names and label values)."""
    try:
        return ObjectMeta.model_validate(dict(data))
    except ValidationError as error:
        raise SpecError(_format_problems(error, "metadata", ObjectMeta)) from None


def load_study(source: Mapping[str, Any] | str | Path) -> Study:
    """Load a Study from a mapping, a YAML file path, or YAML text.

    A one-line string is a file path unless it is a YAML mapping itself. Raises
    :class:`SpecError` with one ``field.path: reason`` line per problem; a file
    that is missing, a directory, unreadable or empty is named with the reason
    (``studies/x.yaml: no such file``).
    """
    data: Any
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        import yaml

        one_line = isinstance(source, str) and "\n" not in source and bool(source.strip())
        from_file = isinstance(source, Path) or (one_line and Path(source).exists())
        text = _read_study_file(Path(source)) if from_file else str(source)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise SpecError([("", f"not valid YAML: {error}")]) from None
        if one_line and not from_file and not isinstance(data, dict):
            # Not a file here, and not a one-line YAML mapping: most likely a mistyped path.
            raise SpecError([(str(source), "no such file")])
        if data is None:
            where = str(source) if from_file else ""
            raise SpecError([(where, "is empty: a Study needs apiVersion, kind, metadata, spec")])
    if not isinstance(data, dict):
        raise SpecError(
            [("", "a Study document must be a mapping with apiVersion, kind, metadata, spec")]
        )
    convert = _other_tools_format(data)
    if convert is not None:
        tool, command = convert
        raise SpecError(
            [("", f"this is a {tool}, not a Study: convert it with `{command} FILE > study.yaml`")]
        )
    try:
        return Study.model_validate(data)
    except ValidationError as error:
        raise SpecError(_format_problems(error, "", Study)) from None


def _read_study_file(path: Path) -> str:
    """A Study file's text; a :class:`SpecError` naming the path when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([(str(path), "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([(str(path), "is a directory, not a Study file")]) from None
    except UnicodeDecodeError:
        raise SpecError([(str(path), "is not a text (UTF-8) file")]) from None
    except OSError as error:
        raise SpecError([(str(path), f"cannot be read: {error.strerror or error}")]) from None


def _other_tools_format(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """(what it is, the kubetune convert command) for a W&B sweep, a Hydra config or a
    Katib Experiment given where a Study was expected; None otherwise."""
    if str(data.get("apiVersion", "")).startswith("kubeflow.org/") and (
        data.get("kind") == "Experiment"
    ):
        return "Katib Experiment", "kubetune convert katib"
    if "apiVersion" in data or "kind" in data:
        return None
    if "parameters" in data and {"method", "program", "command", "metric"} & set(data):
        return "W&B sweep", "kubetune convert wandb"
    if "hydra" in data or "defaults" in data:
        return "Hydra config", "kubetune convert hydra"
    return None
