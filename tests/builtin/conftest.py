"""Running built-in objectives the way pods do: ``python -m kubetune_trial``
worker processes against the session's real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
from builtin_helpers import WorkerRun
from kubetune.engine import bridge
from kubetune.engine.storage import open_storage
from kubetune.study.spec import validate_spec


class StartedWorker:
    """A worker process on a freshly prepared study; :meth:`wait` collects its result."""

    def __init__(self, process: subprocess.Popen[str], name: str, storage_url: str) -> None:
        self.process, self.name, self.storage_url = process, name, storage_url

    def wait(self, timeout: float = 120) -> WorkerRun:
        output, _ = self.process.communicate(timeout=timeout)
        study = optuna.load_study(study_name=self.name, storage=self.storage_url)
        return WorkerRun(self.process.returncode, output, study)


@pytest.fixture
def start_builtin(
    storage_url: str, worker_env: dict[str, str], tmp_path: Path
) -> Callable[..., StartedWorker]:
    """Prepare a study from a spec mapping, queue any fixed trials, and start one
    worker process that runs until the budget is spent. Workers of different
    studies may run at once (the tests have two cores and pay mostly imports)."""
    counter = iter(range(1000))
    started: list[StartedWorker] = []

    def start(
        spec: dict[str, Any],
        *,
        enqueue: Sequence[dict[str, Any]] = (),
        stored: dict[str, Any] | None = None,
    ) -> StartedWorker:
        """``stored`` replaces the spec recorded in the study after it is prepared
        (as a study made by an older kubetune, whose rules were looser, would hold)."""
        name = f"builtin-{next(counter)}"
        storage = open_storage(storage_url)
        study = bridge.prepare_study(storage, name, validate_spec(spec))
        if stored is not None:
            storage.set_study_system_attr(study._study_id, bridge.SPEC_ATTR, stored)
        for params in enqueue:
            study.enqueue_trial(params)
        env = {**worker_env, "KUBETUNE_STUDY_NAME": name, "KUBETUNE_WORKER_NAME": "w0"}
        env["KUBETUNE_TERMINATION_LOG"] = str(tmp_path / f"{name}.termination-log")
        process = subprocess.Popen(
            [sys.executable, "-m", "kubetune_trial"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(StartedWorker(process, name, storage_url))
        return started[-1]

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture
def run_builtin(start_builtin: Callable[..., StartedWorker]) -> Callable[..., WorkerRun]:
    """Like ``start_builtin``, and wait for the worker to finish."""

    def run(
        spec: dict[str, Any],
        *,
        enqueue: Sequence[dict[str, Any]] = (),
        stored: dict[str, Any] | None = None,
    ) -> WorkerRun:
        return start_builtin(spec, enqueue=enqueue, stored=stored).wait()

    return run
