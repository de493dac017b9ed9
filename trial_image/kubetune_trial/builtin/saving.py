"""Keeping the best trial's model, not only its parameters.

A trial offers its model once it knows its value. The model is written only
when that value beats every model saved before it, so the target always holds
the best model so far and a study of a thousand trials writes a few models,
not a thousand. Two workers finishing at once are settled by a file lock
(a directory) or by a clean-up pass (an artifact store).

- ``saveModel.path: DIR`` keeps ``DIR/<model file>`` and ``DIR/best.json``
  (study, trial number, value, metric, parameters, the feature columns in the
  model's order, the class labels, and ``categories``: for each text column,
  its values in code order, to encode new rows as the model was trained);
- ``saveModel.artifactStore: DIR`` uploads the file to an Optuna
  ``FileSystemArtifactStore`` at DIR, attached to the trial, with the same
  record as best.json beside it; the best trial's user attributes
  ``kubetune.model_artifact`` and ``kubetune.model_info_artifact`` hold their
  artifact ids, and artifacts of trials it beat are removed.

Example:
    >>> keeper = ModelKeeper(SaveModel(path="/models/cancer"), "cancer", maximize=True,
    ...                      model_file="model.txt")                  # doctest: +SKIP
    >>> keeper.offer(trial, 0.97, booster.save_model, {"metric": "auc"})  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from kubetune.study.spec import SaveModel

from kubetune_trial.errors import ObjectiveNotLoadable
from kubetune_trial.file_lock import exclusive

#: The user attributes of a trial whose model went to an artifact store.
ARTIFACT_ATTR = "kubetune.model_artifact"
#: The user attribute holding the id of the uploaded record (best.json's content).
INFO_ARTIFACT_ATTR = "kubetune.model_info_artifact"
VALUE_ATTR = "kubetune.model_value"
#: The user attribute of a trial whose model was written to ``saveModel.path``.
PATH_ATTR = "kubetune.model_path"
BEST_FILE = "best.json"

WriteModel = Callable[[Path], None]


class ModelKeeper:
    """Saves a trial's model when it is the best so far (see the module's docs)."""

    def __init__(self, save: SaveModel, study_name: str, *, maximize: bool, model_file: str):
        self.study_name = study_name
        self.maximize = maximize
        self.model_file = model_file
        self.directory = Path(save.path) if save.path is not None else None
        self.store: Any = None
        field = "spec.trial.builtin.saveModel"
        try:
            if self.directory is not None:
                field += ".path"
                self.directory.mkdir(parents=True, exist_ok=True)
                self._check_owner()
            else:
                assert save.artifact_store is not None
                field += ".artifactStore"
                base = save.artifact_store.removeprefix("file://")
                if "://" in base:
                    raise ObjectiveNotLoadable(field, "only a directory (file://) is supported")
                Path(base).mkdir(parents=True, exist_ok=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # artifacts are experimental in Optuna
                    self.store = optuna.artifacts.FileSystemArtifactStore(base)
        except OSError as error:
            raise ObjectiveNotLoadable(field, f"cannot be used: {error}") from None

    def _check_owner(self) -> None:
        record = self._record()
        if record is not None and record.get("study") != self.study_name:
            raise ObjectiveNotLoadable(
                "spec.trial.builtin.saveModel.path",
                f"{self.directory} holds the model of study {record.get('study')!r}; "
                "use a directory of its own for each study",
            )

    def _better(self, value: float, than: float | None) -> bool:
        if than is None:
            return True
        return value > than if self.maximize else value < than

    def offer(
        self, trial: optuna.Trial, value: float, write: WriteModel, info: dict[str, Any]
    ) -> bool:
        """Save the model that ``write(path)`` produces if ``value`` is the best so far.

        ``write`` is only called when the model is saved (so a k-fold trial
        refits on all rows only when it wins). Returns whether it was saved.
        """
        if not math.isfinite(value) or not self._better(value, self._best_saved(trial)):
            return False
        parent = self.directory if self.directory is not None else None
        scratch = Path(tempfile.mkdtemp(prefix=f".trial-{trial.number}-", dir=parent))
        try:
            model_path = scratch / self.model_file
            write(model_path)
            if self.directory is not None:
                return self._replace_file(trial, value, model_path, info)
            info_path = scratch / BEST_FILE
            info_path.write_text(_record_text(self._record_of(trial, value, info)), "utf-8")
            return self._upload(trial, value, model_path, info_path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _best_saved(self, trial: optuna.Trial) -> float | None:
        if self.directory is not None:
            record = self._record()
            return None if record is None else float(record["value"])
        best: float | None = None
        for value, _number, _artifacts in self._holders(trial):
            if self._better(value, best):
                best = value
        return best

    # ------------------------------------------------------------ directory

    def _record(self) -> dict[str, Any] | None:
        assert self.directory is not None
        try:
            return json.loads((self.directory / BEST_FILE).read_text(encoding="utf-8"))  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a torn or foreign file: the next best model replaces it

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        assert self.directory is not None
        with exclusive(self.directory / ".lock"):
            yield

    def _replace_file(
        self, trial: optuna.Trial, value: float, model_path: Path, info: dict[str, Any]
    ) -> bool:
        assert self.directory is not None
        with self._locked():
            record = self._record()
            # Another worker may have saved a better model while this one was writing.
            if not self._better(value, None if record is None else float(record["value"])):
                return False
            os.replace(model_path, self.directory / self.model_file)
            staging = self.directory / f".{BEST_FILE}.{os.getpid()}"
            staging.write_text(_record_text(self._record_of(trial, value, info)), encoding="utf-8")
            os.replace(staging, self.directory / BEST_FILE)
        trial.set_user_attr(PATH_ATTR, str(self.directory / self.model_file))
        return True

    def _record_of(self, trial: optuna.Trial, value: float, info: dict[str, Any]) -> dict[str, Any]:
        """What best.json says about the saved model."""
        return {
            "study": self.study_name,
            "trial": trial.number,
            "value": value,
            "file": self.model_file,
            "params": trial.params,
            **info,
        }

    # -------------------------------------------------------- artifact store

    def _holders(self, trial: optuna.Trial) -> list[tuple[float, int, list[str]]]:
        """``(value, trial number, artifact ids)`` of every trial that uploaded a model
        (its model, and its record when it has one)."""
        holders = []
        for other in trial.study.get_trials(deepcopy=False):
            attrs = other.user_attrs
            if ARTIFACT_ATTR in attrs and VALUE_ATTR in attrs:
                ids = [
                    str(attrs[name])
                    for name in (ARTIFACT_ATTR, INFO_ARTIFACT_ATTR)
                    if name in attrs
                ]
                holders.append((float(attrs[VALUE_ATTR]), other.number, ids))
        return holders

    def _upload(self, trial: optuna.Trial, value: float, model_path: Path, info_path: Path) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info_id = optuna.artifacts.upload_artifact(
                artifact_store=self.store, file_path=str(info_path), study_or_trial=trial
            )
            artifact_id = optuna.artifacts.upload_artifact(
                artifact_store=self.store, file_path=str(model_path), study_or_trial=trial
            )
        trial.set_user_attr(INFO_ARTIFACT_ATTR, info_id)
        trial.set_user_attr(ARTIFACT_ATTR, artifact_id)
        trial.set_user_attr(VALUE_ATTR, value)
        # Keep only the best upload. Every uploader runs this after recording its own,
        # so the last one to finish sees them all; removing twice is harmless.
        holders = self._holders(trial)
        sign = -1.0 if self.maximize else 1.0
        keep = min(holders, key=lambda h: (sign * h[0], h[1]))
        for _value, number, ids in holders:
            if number != keep[1]:
                for other_id in ids:
                    with contextlib.suppress(Exception):
                        self.store.remove(other_id)
        return keep[1] == trial.number


def _record_text(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2, default=str) + "\n"
