"""Checkpoints: what lets a trial whose pod or worker was lost go on where it stopped.

A trial saves its state with :func:`save` and reads it back with :func:`load` (a
python objective), writes files in :func:`directory` (a command objective gets it as
``$KUBETUNE_CHECKPOINT_DIR`` and ``{checkpoint_dir}``), or lets a built-in objective do
it every ``spec.trial.checkpoints.everyRounds`` rounds. Objects are kept in an Optuna
artifact store (:class:`optuna.artifacts.FileSystemArtifactStore` on
``spec.trial.checkpoints.path``: a PVC in a cluster, a local directory in local mode).

How a lost trial goes on (see :func:`kubetune.engine.recovery.fail_lost_trials`): Optuna
cannot move a finished trial back to RUNNING, and keeping a lost trial RUNNING until a
new worker claims it would make every rule that reads running trials (parallelism, lost
workers, stuck pods, the budget's running count, Optuna's own heartbeat) tell a live
trial from a dead one by a mark. So the lost trial is failed as *stopped and retried*
(it counts neither against ``maxTrials`` nor as a failure: :func:`kubetune.engine.budget.
was_retried`, :class:`kubetune.engine.ledger.TrialLedger`), and a WAITING copy takes its
place, the way every retry already does, carrying what the run had: its parameters, its
intermediate values (the pruner sees one unbroken curve: a step reported again is
ignored by Optuna) and its checkpoint (the user attribute :data:`CHECKPOINT_ATTR`, read
by :func:`load`; the directory is named after the first trial of the run,
:data:`CHECKPOINT_OF_ATTR`). Claims take WAITING trials before new ones, so the copy
runs next. Nothing is lost (the checkpoint and reports move with the copy), nothing is
duplicated (the copy's checkpoint pointer is the only one read), and the run counts
once.

Writes are committed by the trial's user attribute: :func:`save` writes a new artifact,
then points the trial at it, then removes the one before; a worker killed halfway leaves
the previous checkpoint in force.

Example:
    >>> from kubetune import checkpoint
    >>> def objective(trial):
    ...     state = checkpoint.load(trial) or {"epoch": 0, "weights": None}
    ...     for epoch in range(state["epoch"], 20):
    ...         state = {"epoch": epoch + 1, "weights": train_one_epoch(state["weights"])}
    ...         checkpoint.save(trial, state)
    ...         trial.report(evaluate(state["weights"]), epoch)
    ...     return evaluate(state["weights"])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import pickle
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.trial import FrozenTrial

    from kubetune.study.spec import CheckpointSpec

#: The artifact id of a trial's last saved object (moves to the copy that resumes it).
CHECKPOINT_ATTR = "kubetune.checkpoint"
#: The number of the trial whose run this one continues (names its checkpoint directory).
CHECKPOINT_OF_ATTR = "kubetune.checkpoint_of"
#: On a copy going on from a lost trial's checkpoint: that trial's number.
RESUMED_FROM_ATTR = "kubetune.resumed_from"

#: Environment variable naming a command objective's checkpoint directory.
CHECKPOINT_DIR_ENV = "KUBETUNE_CHECKPOINT_DIR"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

#: Checkpoint settings read from a study's stored spec, by (storage, study id).
_settings: dict[tuple[int, int], CheckpointSpec | None] = {}


def run_number(trial: optuna.Trial | FrozenTrial) -> int:
    """The number of the first trial of the run ``trial`` belongs to (itself unless it
    resumes a lost one)."""
    return int(trial.user_attrs.get(CHECKPOINT_OF_ATTR, trial.number))


def settings_of(trial: optuna.Trial) -> CheckpointSpec | None:
    """``spec.trial.checkpoints`` of the trial's study, or None (not a kubetune study, or
    checkpoints not set)."""
    from kubetune.engine import bridge

    storage, study_id = trial.study._storage, trial.study._study_id
    key = (id(storage), study_id)
    if key not in _settings:
        spec = bridge.stored_spec(storage, study_id)
        _settings[key] = None if spec is None else spec.trial.checkpoints
    return _settings[key]


def _store(settings: CheckpointSpec) -> FileSystemArtifactStore:
    from optuna.artifacts import FileSystemArtifactStore

    os.makedirs(settings.path, exist_ok=True)
    return FileSystemArtifactStore(settings.path)


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)


def directory_for(settings: CheckpointSpec, study_name: str, run: int) -> Path:
    """The checkpoint directory of run ``run`` of ``study_name`` (not created)."""
    return Path(settings.path) / _safe(study_name) / f"trial-{run}"


def directory(trial: optuna.Trial) -> Path | None:
    """A directory for the trial's checkpoint files, created, kept across a lost pod's
    resumption and removed when the trial ends; None when the study has no
    ``spec.trial.checkpoints``.

    Example:
        >>> path = checkpoint.directory(trial)  # doctest: +SKIP
        >>> torch.save(model.state_dict(), path / "model.pt")  # doctest: +SKIP
    """
    settings = settings_of(trial)
    if settings is None:
        return None
    path = directory_for(settings, trial.study.study_name, run_number(trial))
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(trial: optuna.Trial, state: Any) -> bool:
    """Keep ``state`` (anything pickle can write) as the trial's checkpoint, replacing
    the one before. Returns False, saving nothing, when the study has no
    ``spec.trial.checkpoints`` (a plain Optuna study, say), so one objective runs both ways.

    Example:
        >>> checkpoint.save(trial, {"epoch": 3, "model": model.state_dict()})  # doctest: +SKIP
        True
    """
    settings = settings_of(trial)
    if settings is None:
        return False
    store = _store(settings)
    storage = trial.study._storage
    previous = storage.get_trial(trial._trial_id).user_attrs.get(CHECKPOINT_ATTR)
    artifact_id = f"{_safe(trial.study.study_name)}-trial-{run_number(trial)}-{uuid.uuid4().hex}"
    store.write(artifact_id, io.BytesIO(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)))
    # The commit point: a worker killed before it keeps the previous checkpoint.
    storage.set_trial_user_attr(trial._trial_id, CHECKPOINT_ATTR, artifact_id)
    if previous:
        _remove(store, str(previous))
    return True


def load(trial: optuna.Trial, default: Any = None) -> Any:
    """The state last saved with :func:`save` for this trial's run (by a pod that was
    lost since, when the trial resumes), or ``default`` when there is none.

    Example:
        >>> state = checkpoint.load(trial, {"epoch": 0})  # doctest: +SKIP
    """
    settings = settings_of(trial)
    artifact_id = trial.study._storage.get_trial(trial._trial_id).user_attrs.get(CHECKPOINT_ATTR)
    if settings is None or not artifact_id:
        return default
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        with _store(settings).open_reader(str(artifact_id)) as reader:
            return pickle.load(reader)
    except ArtifactNotFound:
        return default


def discard(settings: CheckpointSpec, study_name: str, trial: FrozenTrial) -> None:
    """Remove an ended trial's checkpoint: its saved object and its directory."""
    artifact_id = trial.user_attrs.get(CHECKPOINT_ATTR)
    if artifact_id:
        _remove(_store(settings), str(artifact_id))
    shutil.rmtree(directory_for(settings, study_name, run_number(trial)), ignore_errors=True)


#: How long after a trial ended its checkpoint is left for a copy to take over (a
#: supervisor fails a lost trial before it queues the copy that resumes it).
SWEEP_GRACE = dt.timedelta(minutes=10)


def sweep(
    settings: CheckpointSpec,
    study_name: str,
    trials: Sequence[FrozenTrial],
    *,
    now: dt.datetime | None = None,
    grace: dt.timedelta = SWEEP_GRACE,
) -> None:
    """Remove the checkpoints no unfinished trial holds, of trials that ended more than
    ``grace`` ago: those of trials a supervisor failed for good (OOMKilled, a crash) or
    retried from the start, which no worker ended (and so :func:`discard`ed). A
    supervisor whose workers are all gone sweeps with no grace.
    """
    now = now or dt.datetime.now()
    unfinished = [t for t in trials if not t.state.is_finished()]
    held = {t.user_attrs.get(CHECKPOINT_ATTR) for t in unfinished}
    open_runs = {run_number(t) for t in unfinished}
    settled = [
        t
        for t in trials
        if t.state.is_finished() and t.datetime_complete and now - t.datetime_complete > grace
    ]
    store = _store(settings)
    for trial in settled:
        artifact_id = trial.user_attrs.get(CHECKPOINT_ATTR)
        if artifact_id and artifact_id not in held:
            _remove(store, str(artifact_id))
        run = run_number(trial)
        if run not in open_runs:
            shutil.rmtree(directory_for(settings, study_name, run), ignore_errors=True)


def _remove(store: FileSystemArtifactStore, artifact_id: str) -> None:
    from optuna.artifacts.exceptions import ArtifactNotFound

    with contextlib.suppress(ArtifactNotFound):
        store.remove(artifact_id)


def carried_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """The user attributes a copy resuming ``trial`` carries: where its checkpoint is."""
    attrs: dict[str, Any] = {
        CHECKPOINT_OF_ATTR: run_number(trial),
        RESUMED_FROM_ATTR: trial.number,
    }
    if trial.user_attrs.get(CHECKPOINT_ATTR):
        attrs[CHECKPOINT_ATTR] = trial.user_attrs[CHECKPOINT_ATTR]
    return attrs
