"""Sending each trial to MLflow or Weights & Biases as it ends (``spec.tracking``).

The runner calls the tracker right after it tells Optuna how a trial ended, in
the process that ran it (a trial pod, a local worker): one run per trial, named
``<study>-trial-<number>``, tagged with the study and the trial's number and
state, holding the parameters, the value(s) under the objective's metric names
and the intermediate values as steps (``intermediate_value``).

optuna-integration's callbacks are not used: ``MLflowCallback`` is deprecated
(since optuna-integration 4.9, to be removed in 6.0), and neither it nor
``WeightsAndBiasesCallback`` names a run per trial or logs intermediate values as
steps. MLflow runs are made with ``MlflowClient`` (no global active run, so a
worker's objective may use MLflow itself), W&B runs with ``wandb.init``.

mlflow and wandb are optional (``kubetune[mlflow]``, ``kubetune[wandb]``); a
Study asking for one that is missing fails its workers at start with a message
naming the extra, before any trial runs.

Example:
    >>> tracker = make_tracker(spec, "demo")                   # doctest: +SKIP
    >>> tracker(study, study.trials[-1])                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.study.spec import StudySpec

from kubetune_trial.objectives import ObjectiveFailed

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

Tracker = Callable[["optuna.Study", "FrozenTrial"], None]

#: The metric holding a trial's intermediate values (``trial.report``), one step each.
INTERMEDIATE_METRIC = "intermediate_value"


def _require(module: str, extra: str, field: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ObjectiveFailed(
            f"spec.tracking.{field}: the {module.partition('.')[0]} package is not installed "
            f"where trials run ({error}); install the extra: pip install 'kubetune[{extra}]' "
            "(the trial image leaves it out: build an image FROM it that adds it)"
        ) from None


#: The Optuna study of a cluster Study: ``<namespace>.<name>.<uid>`` (the operator's naming).
_CLUSTER_STUDY = re.compile(
    r"^(?P<namespace>[a-z0-9-]+)\.(?P<name>[a-z0-9-]+)\.[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
)


def study_label(study_name: str) -> str:
    """How runs name a study: a cluster Study's own name (not its Optuna study's
    ``namespace.name.uid``), else the study's name."""
    match = _CLUSTER_STUDY.match(study_name)
    return match.group("name") if match else study_name


def run_name(study_name: str, number: int) -> str:
    """The tracking run's name for one trial: ``<study>-trial-<number>``."""
    return f"{study_label(study_name)}-trial-{number}"


def make_tracker(spec: StudySpec, study_name: str) -> Tracker | None:
    """The spec's tracker, or None when ``spec.tracking`` is unset.

    ``study_name`` names the runs and tags them (the Optuna study's name). Raises
    :class:`~kubetune_trial.objectives.ObjectiveFailed` naming the extra to install
    when the tracking package is missing.
    """
    tracking = spec.tracking
    if tracking is None:
        return None
    metrics = spec.objective.metric_names or (
        ["value"]
        if not spec.objective.is_multi_objective
        else [f"value_{i}" for i in range(len(spec.objective.study_directions))]
    )
    if tracking.mlflow is not None:
        _require("mlflow", "mlflow", "mlflow")
        return _mlflow_tracker(
            tracking.mlflow.tracking_uri,
            tracking.mlflow.experiment or study_label(study_name),
            metrics,
        )
    assert tracking.wandb is not None
    wandb = _require("wandb", "wandb", "wandb")
    return _WandbTracker(wandb, tracking.wandb.project, tracking.wandb.entity, metrics)


def _tags(study: optuna.Study, trial: FrozenTrial) -> dict[str, str]:
    tags = {
        "kubetune.study": study_label(study.study_name),
        "kubetune.trial": str(trial.number),
        "kubetune.state": trial.state.name,
    }
    match = _CLUSTER_STUDY.match(study.study_name)
    if match:
        tags["kubetune.namespace"] = match.group("namespace")
        tags["kubetune.optuna_study"] = study.study_name
    return tags


def _retrying(call: Callable[[], Any], attempts: int = 10, pause: float = 0.5) -> Any:
    """``call()``, tried again a few times: workers starting together race to create a
    tracking store's tables (an MLflow sqlite file) and its experiment; the losers'
    errors pass once the winner is done."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(pause * (attempt + 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """For a sqlite store, an exclusive lock beside its file while it is opened: MLflow
    creates and migrates the tables on first use, and two workers doing that at once
    can leave the file half migrated for good. Other stores need none."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    from kubetune_trial.file_lock import exclusive

    with exclusive(Path(uri.removeprefix("sqlite:///")).with_suffix(".kubetune-lock")):
        yield


def _without_password(uri: str) -> str:
    return re.sub(r"://([^/@:]*):[^/@]*@", r"://\1:***@", uri)


_MLFLOW_END = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
#: MLflow's limits per log_batch call.
_MLFLOW_BATCH_METRICS = 1000
_MLFLOW_BATCH_PARAMS = 100


def _mlflow_tracker(uri: str, experiment: str, metrics: list[str]) -> Tracker:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    def experiment_id() -> str:
        found = client.get_experiment_by_name(experiment)
        return found.experiment_id if found is not None else client.create_experiment(experiment)

    try:
        with _store_lock(uri):
            client = MlflowClient(tracking_uri=uri)
            experiment_ids = [_retrying(experiment_id)]
    except Exception as error:
        raise ObjectiveFailed(
            f"spec.tracking.mlflow: the tracking store at {_without_password(uri)} did not "
            f"answer: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from None

    def track(study: optuna.Study, trial: FrozenTrial) -> None:
        now = int(time.time() * 1000)
        tags = {**_tags(study, trial), **{k: str(v) for k, v in _trial_attrs(trial).items()}}
        run = _retrying(
            lambda: client.create_run(
                experiment_ids[0], run_name=run_name(study.study_name, trial.number), tags=tags
            ),
            attempts=3,
        )
        # sqlite stores are written by one process at a time: another worker's write
        # may hold the file for a moment.
        log_batch = functools.partial(_retrying, attempts=3)
        run_id = run.info.run_id
        logged = [
            Metric(name, value, now, 0)
            for name, value in zip(metrics, trial.values or [], strict=False)
        ]
        logged += [
            Metric(INTERMEDIATE_METRIC, value, now, step)
            for step, value in sorted(trial.intermediate_values.items())
        ]
        params = [Param(name, str(value)) for name, value in trial.params.items()]
        for index in range(0, len(logged), _MLFLOW_BATCH_METRICS):
            chunk = logged[index : index + _MLFLOW_BATCH_METRICS]
            log_batch(lambda chunk=chunk: client.log_batch(run_id, metrics=chunk))
        for index in range(0, len(params), _MLFLOW_BATCH_PARAMS):
            some = params[index : index + _MLFLOW_BATCH_PARAMS]
            log_batch(lambda some=some: client.log_batch(run_id, params=some))
        directions = [RunTag("kubetune.directions", _directions(study))]
        log_batch(lambda: client.log_batch(run_id, tags=directions))
        end = _MLFLOW_END.get(trial.state.name, "FAILED")
        log_batch(lambda: client.set_terminated(run_id, status=end))

    return track


def _directions(study: optuna.Study) -> str:
    return ",".join(d.name.lower() for d in study.directions)


def _trial_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's kubetune attributes worth a tag: where it ran, why it failed."""
    return {
        key: str(value)[:4000]
        for key, value in trial.user_attrs.items()
        if key in ("kubetune.worker", "kubetune.fail_reason")
    }


class _WandbTracker:
    """One W&B run per trial (``wandb.init`` ... ``finish``), grouped by study."""

    def __init__(self, wandb: Any, project: str, entity: str | None, metrics: list[str]) -> None:
        self._wandb = wandb
        self._project = project
        self._entity = entity
        self._metrics = metrics
        self._lock = threading.Lock()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        tags = _tags(study, trial)
        with self._lock:
            run = self._wandb.init(
                project=self._project,
                entity=self._entity,
                name=run_name(study.study_name, trial.number),
                group=study_label(study.study_name),
                job_type="trial",
                # W&B takes tags of at most 64 characters: the config has them whole.
                tags=[
                    f"{key}={value}"[:64]
                    for key, value in tags.items()
                    if key != "kubetune.optuna_study"
                ],
                config={**trial.params, **tags, **_trial_attrs(trial)},
                reinit="create_new",
            )
            try:
                for step, value in sorted(trial.intermediate_values.items()):
                    run.log({INTERMEDIATE_METRIC: value}, step=step)
                values = trial.values or []
                run.summary.update(
                    {
                        **dict(zip(self._metrics, values, strict=False)),
                        "state": trial.state.name,
                        "trial_number": trial.number,
                    }
                )
            finally:
                run.finish()
