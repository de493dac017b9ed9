"""``tune(objective_fn, ...)``: the Study that runs a Python function, and its local run.

:func:`build_study` turns the arguments of ``Client.tune`` into a Study whose
``trial.python`` names the shipped function (see :mod:`kubetune.cluster.shipping`);
in a cluster the source is mounted from a ConfigMap at
:data:`~kubetune.study.names.CODE_MOUNT_PATH`, which is put on ``PYTHONPATH``.
:func:`run_local` runs the same Study with local worker processes. ``tune()``
returns a :class:`TunedStudy`: the Study, with its results under Optuna's names.

Example:
    >>> code = ship(objective)                                      # doctest: +SKIP
    >>> study = build_study(code, {"x": (0.0, 1.0)}, max_trials=20)  # doctest: +SKIP
    >>> study.spec.trial.python                                     # doctest: +SKIP
    'train:objective'
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from kubetune.cluster.shipping import ShippedCode
from kubetune.engine.progress import DisplayFactory, display_for
from kubetune.engine.script_study import DerivedStudy
from kubetune.engine.worker import IN_TRIAL_ENV
from kubetune.errors import KubetuneError, NoBestTrial
from kubetune.space import to_spec
from kubetune.study.names import (
    CODE_DIGEST_ANNOTATION,
    CODE_MOUNT_PATH,
    CODE_VOLUME,
    MANAGED_BY_LABEL,
    code_configmap,
)
from kubetune.study.spec import (
    MAX_NAME_LENGTH,
    PrunerSpec,
    SamplerSpec,
    Study,
    StudyStatus,
    TrialSummary,
    load_study,
)

if TYPE_CHECKING:
    import pandas

    from kubetune.engine.trials import TrialRecord

#: ``resources={"gpu": 1}`` asks for this extended resource.
GPU_RESOURCE = "nvidia.com/gpu"


class TuneInsideTrial(KubetuneError):
    """``tune()`` was called inside a trial worker, where it must never start workers."""


class TunedStudy(Study):
    """What ``Client.tune`` returns: the Study it ran (spec and status, as
    ``Client.get`` gives it), with its results under the names Optuna gives them on
    a study after ``study.optimize``::

        study = client.tune(objective, max_trials=50, local=True)
        study.best_params, study.best_value   # {'lr': 0.01, ...}, 0.93
        study.trials                          # every trial (TrialRecord)
        study.trials_dataframe()              # one row per trial (needs pandas)

    The results are there once the study has run: locally, or in a cluster with
    ``wait=True``; a submitted study (tune() returned at once) has none yet
    (``best_params`` raises :class:`~kubetune.errors.NoBestTrial`: wait for it with
    ``Client.wait``, then ``Client.best_params``).
    """

    _read_trials: Callable[[], builtins.list[TrialRecord]] | None = PrivateAttr(default=None)
    _best_params_file: Path | None = PrivateAttr(default=None)

    @classmethod
    def of(
        cls,
        study: Study,
        trials: Callable[[], builtins.list[TrialRecord]] | None = None,
        best_params_file: Path | None = None,
    ) -> TunedStudy:
        """``study`` (already validated) with the way to read its trials."""
        fields = {name: getattr(study, name) for name in Study.model_fields}
        tuned = cls.model_construct(_fields_set=set(study.model_fields_set), **fields)
        tuned._read_trials = trials
        tuned._best_params_file = best_params_file
        return tuned

    @property
    def study_name(self) -> str:
        """The Optuna study's name (``optuna.load_study(study_name=...)``)."""
        status_name = self.status.study_name if self.status is not None else None
        return status_name or self.spec.storage.study_name or self.metadata.name

    @property
    def best_trials(self) -> builtins.list[TrialSummary]:
        """The best trial, or a multi-objective study's Pareto front (number, value(s),
        params). Raises NoBestTrial when no trial completed."""
        status = self.status
        if status is not None and status.best_trial is not None:
            return [status.best_trial]
        if status is not None and status.pareto_front:
            return list(status.pareto_front)
        raise NoBestTrial(self.metadata.name, self.metadata.namespace)

    @property
    def best_trial(self) -> TrialSummary:
        """The best trial of a single-objective study."""
        trials = self.best_trials
        if len(trials) != 1 or trials[0].value is None:
            raise KubetuneError(
                f'study "{self.metadata.name}" is multi-objective: it has a Pareto front, not '
                "one best trial; use best_trials"
            )
        return trials[0]

    @property
    def best_value(self) -> float:
        """The best trial's value (single objective)."""
        value = self.best_trial.value
        assert value is not None  # best_trial checked it
        return value

    @property
    def best_params(self) -> dict[str, Any] | builtins.list[dict[str, Any]]:
        """What ``best_params.json`` holds: the best trial's parameters, or for a
        multi-objective study the Pareto front as ``[{"values": ..., "params": ...}]``."""
        from kubetune.engine.trials import best_params_of

        return best_params_of(self.best_trials, self.metadata.name)

    @property
    def trials(self) -> builtins.list[TrialRecord]:
        """Every trial: number, state, values, params, duration, worker, fail reason.

        A local run's, as they were when it ended; a cluster study's are read from its
        database when asked for (as ``Client.trials`` reads them)."""
        return self._read_trials() if self._read_trials is not None else []

    def trials_dataframe(self) -> pandas.DataFrame:
        """:attr:`trials` as a pandas DataFrame, one row per trial (needs pandas)."""
        from kubetune.engine.trials import to_dataframe

        return to_dataframe(self.trials, self.spec.objective.metric_names)

    @property
    def best_params_file(self) -> Path | None:
        """The ``best_params.json`` tune() wrote (None when it wrote none)."""
        return self._best_params_file


def write_best_params_file(study: TunedStudy, path: Path) -> Path | None:
    """Write ``study``'s best parameters to ``path`` as ``kubetune run`` does (UTF-8
    JSON); with no best trial, remove an older file there, which would pass for this
    study's result. Returns the path written, or None."""
    try:
        params = study.best_params
    except NoBestTrial:
        path.unlink(missing_ok=True)
        return None
    path.write_text(json.dumps(params, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def refuse_inside_trial(function: str) -> None:
    """Raise :class:`TuneInsideTrial` when this process is a trial worker."""
    where = os.environ.get(IN_TRIAL_ENV)
    if where:
        raise TuneInsideTrial(
            f"tune({function}) was called inside a trial of study {where!r}: a worker never starts "
            "a study of its own. The objective's module calls tune() when it is imported; "
            "ship the function with tune() (it leaves the caller's top level out), or guard "
            'the call with if __name__ == "__main__":'
        )


def default_name(code: ShippedCode) -> str:
    """``<function>-<digest>``: the same code continues the same study, changed code
    starts a new one (its trials would not be comparable)."""
    base = re.sub(r"[^a-z0-9]+", "-", code.function.lower()).strip("-") or "objective"
    return f"{base[: MAX_NAME_LENGTH - 9].rstrip('-')}-{code.digest[:8]}"


def resources_spec(resources: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{"gpu": 1, "cpu": 2, "memory": "4Gi"}`` as pod resources.

    ``gpu`` becomes a ``nvidia.com/gpu`` limit; ``cpu`` a request (a CPU limit
    would throttle the trial); ``memory`` a request and an equal limit (a trial
    over it is OOM-killed, and the operator says so); other keys (``amd.com/gpu``)
    are limits; ``limits``/``requests`` dicts are taken as they are.
    """
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    for key, value in (resources or {}).items():
        if key in ("limits", "requests") and isinstance(value, Mapping):
            (limits if key == "limits" else requests).update(value)
        elif key == "gpu":
            limits[GPU_RESOURCE] = value
        elif key in ("cpu", "ephemeral-storage"):
            requests[key] = value
        elif key == "memory":
            requests[key] = value
            limits[key] = value
        else:
            limits[key] = value
    return {k: v for k, v in (("limits", limits), ("requests", requests)) if v}


def _objective_spec(
    direction: str | Sequence[str], metric: str | Sequence[str] | None
) -> dict[str, Any]:
    objective: dict[str, Any] = {}
    if isinstance(direction, str):
        objective["direction"] = direction
    else:
        objective["directions"] = list(direction)
    if isinstance(metric, str):
        objective["metric"] = metric
    elif metric is not None:
        objective["metrics"] = list(metric)
    return objective


def _component(value: str | Mapping[str, Any] | SamplerSpec | PrunerSpec) -> dict[str, Any]:
    if isinstance(value, SamplerSpec | PrunerSpec):
        return value.to_dict()
    if isinstance(value, str):
        return {"name": value}
    return dict(value)


def build_study(
    code: ShippedCode,
    search_space: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    namespace: str | None = None,
    direction: str | Sequence[str] = "minimize",
    metric: str | Sequence[str] | None = None,
    max_trials: int = 100,
    parallelism: int = 1,
    max_failed_trials: int | None = None,
    timeout: str | int | None = None,
    sampler: str | Mapping[str, Any] | SamplerSpec | None = None,
    pruner: str | Mapping[str, Any] | PrunerSpec | None = None,
    resources: Mapping[str, Any] | None = None,
    image: str | None = None,
    env: Mapping[str, str] | None = None,
    trials_per_pod: int | None = None,
    retries: int | None = None,
    cluster: bool = True,
) -> Study:
    """The Study that runs ``code``'s function; ``cluster`` adds the ConfigMap volume.

    Raises :class:`~kubetune.study.spec.SpecError` naming the field, before anything is sent.
    """
    study_name = name or default_name(code)
    variables = dict(env or {})
    trial: dict[str, Any] = {"python": code.entry}
    if cluster:
        # The mounted source comes first on the path; a PYTHONPATH the caller gave follows.
        variables["PYTHONPATH"] = os.pathsep.join(
            p for p in (CODE_MOUNT_PATH, variables.get("PYTHONPATH")) if p
        )
        trial["volumes"] = [
            {
                "name": CODE_VOLUME,
                "configMap": {"name": code_configmap(study_name), "items": code.volume_items()},
            }
        ]
        trial["volumeMounts"] = [
            {"name": CODE_VOLUME, "mountPath": CODE_MOUNT_PATH, "readOnly": True}
        ]
    if variables:
        trial["env"] = [{"name": k, "value": str(v)} for k, v in variables.items()]
    if image:
        trial["image"] = image
    if resources:
        trial["resources"] = resources_spec(resources)
    if trials_per_pod is not None:
        trial["trialsPerPod"] = trials_per_pod
    if retries is not None:
        trial["retries"] = retries
    budget: dict[str, Any] = {"maxTrials": max_trials, "parallelism": parallelism}
    if max_failed_trials is not None:
        budget["maxFailedTrials"] = max_failed_trials
    if timeout is not None:
        budget["timeout"] = timeout
    spec: dict[str, Any] = {
        "objective": _objective_spec(direction, metric),
        "searchSpace": to_spec(search_space),
        "budget": budget,
        "trial": trial,
    }
    if sampler is not None:
        spec["sampler"] = _component(sampler)
    if pruner is not None:
        spec["pruner"] = _component(pruner)
    metadata: dict[str, Any] = {
        "name": study_name,
        "labels": {MANAGED_BY_LABEL: "kubetune"},
        "annotations": {CODE_DIGEST_ANNOTATION: code.digest},
    }
    if namespace:
        metadata["namespace"] = namespace
    return load_study(
        {"apiVersion": "kubetune.io/v1alpha1", "kind": "Study", "metadata": metadata, "spec": spec}
    )


def script_cluster_study(
    derived: DerivedStudy,
    code: ShippedCode,
    *,
    name: str | None = None,
    namespace: str | None = None,
    image: str | None = None,
    resources: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Study, list[str]]:
    """The Study that runs a script's study in a cluster, its code shipped as ``code``
    (mounted from the ``<study>-code`` ConfigMap), and what was left out."""
    notes: list[str] = []
    data = derived.document(with_code_digest=False)
    metadata = data["metadata"]
    if name:
        metadata["name"] = name
    study_name = metadata["name"]
    metadata["labels"] = {MANAGED_BY_LABEL: "kubetune"}
    metadata["annotations"] = {CODE_DIGEST_ANNOTATION: code.digest}
    if namespace:
        metadata["namespace"] = namespace
    spec = data["spec"]
    storage = spec.get("storage", {})
    if storage.pop("url", None) is not None or derived.storage_url is not None:
        notes.append(
            "the script's storage URL is not used in a cluster: the study runs in the "
            "operator's database"
        )
    study_name_given = storage.pop("studyName", None)
    if study_name_given is not None:
        # In the cluster's shared database a fixed name would be shared by every Study
        # run from a script of that study_name (another name=, a re-created Study): the
        # operator names the Optuna study after the Study object instead.
        notes.append(
            f"study_name {study_name_given!r} names the Study ({study_name}); its Optuna "
            "study in the cluster is named by the operator (status.studyName), so a Study "
            "deleted and run again starts afresh"
        )
    if not storage:
        spec.pop("storage", None)
    variables = dict(env or {})
    variables["PYTHONPATH"] = os.pathsep.join(
        p for p in (CODE_MOUNT_PATH, variables.get("PYTHONPATH")) if p
    )
    trial = spec["trial"]
    trial["env"] = [{"name": k, "value": str(v)} for k, v in variables.items()]
    trial["volumes"] = [
        {
            "name": CODE_VOLUME,
            "configMap": {"name": code_configmap(study_name), "items": code.volume_items()},
        }
    ]
    trial["volumeMounts"] = [{"name": CODE_VOLUME, "mountPath": CODE_MOUNT_PATH, "readOnly": True}]
    if image:
        trial["image"] = image
    if resources:
        trial["resources"] = resources_spec(resources)
    return load_study(data), notes


def run_local(
    study: Study,
    code: ShippedCode | None,
    storage_url: str | None = None,
    *,
    progress: bool | DisplayFactory = True,
    best_params_file: Path | None = Path("best_params.json"),
    source: Path | None = None,
    trials: int | None = None,
    fresh: bool = False,
) -> TunedStudy:
    """Run ``study`` with local worker processes until its budget is spent; return it
    with a status like the operator's (phase, counts, best trial) and its trials.

    The storage is ``storage_url``, else ``$KUBETUNE_STORAGE_URL``, else the
    embedded PostgreSQL. The best parameters go to ``best_params_file`` as
    ``kubetune run`` writes them (an older file is removed when no trial completed;
    None writes nothing). Ctrl-C (or SIGTERM, SIGHUP) stops the workers (finished
    trials are kept) and raises KeyboardInterrupt. Raises
    :class:`~kubetune.local.run.LocalRunError` when the run cannot go on (the function
    does not import, the storage is unreachable).
    """
    from kubetune.engine.storage import dispose, load_stored_study
    from kubetune.engine.trials import records
    from kubetune.local.embedded import local_storage
    from kubetune.local.run import LocalRun
    from kubetune.local.script import on_pythonpath
    from kubetune.local.signals import stop_on_termination

    with contextlib.ExitStack() as stack:
        # SIGTERM and SIGHUP stop the workers and the embedded server as Ctrl-C does.
        stack.enter_context(stop_on_termination())
        url = stack.enter_context(local_storage(storage_url, study))
        if code is not None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="kubetune-code-"))
            code.write_to(Path(folder))
            stack.enter_context(on_pythonpath(folder))
        on_progress = on_message = None
        bar = display_for(progress, study.metadata.name)
        if bar is not None:
            stack.enter_context(bar)

            def on_progress(p: Any) -> None:
                bar.update(
                    total=p.max_trials,
                    counts=p.counts,
                    best=p.best_values,
                    best_number=p.best_number,
                    spend=p.spend.summary() if p.spend else "",
                    done=p.done,
                    new_bests=p.new_bests,
                    front=p.front,
                )

            on_message = bar.message
        result = LocalRun(
            study,
            url,
            trials=trials,
            fresh=fresh,
            source=source,
            on_progress=on_progress,
            on_message=on_message,
        ).run()
        # Read now: the embedded server (and its URL) stops with this block.
        stored = load_stored_study(url, result.study_name)
        try:
            rows = records(stored.get_trials(deepcopy=False))
        finally:
            dispose(stored)
    if result.interrupted:
        raise KeyboardInterrupt(result.stopped_by)
    multi = study.spec.objective.is_multi_objective
    summaries = [
        TrialSummary(
            number=t["number"],
            value=None if multi else t["values"][0],
            values=t["values"] if multi else None,
            params=t["params"],
        )
        for t in result.best_trials
    ]
    status = StudyStatus(
        phase="Failed" if result.failed else "Succeeded",
        message=result.stop_message or None,
        study_name=result.study_name,
        progress=f"{result.counts.finished}/{study.spec.budget.max_trials}",
        trials=result.counts,
        best_trial=None if multi or not summaries else summaries[0],
        pareto_front=summaries if multi else [],
    )
    tuned = TunedStudy.of(study.model_copy(update={"status": status}), trials=lambda: rows)
    if best_params_file is not None:
        tuned._best_params_file = write_best_params_file(tuned, best_params_file)
    return tuned
