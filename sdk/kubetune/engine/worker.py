"""The contract between a supervisor and the trial runner it starts.

The operator (for pods) and ``kubetune run`` (for local processes) describe a
worker with :class:`WorkerConfig` and pass it as environment variables; the
trial runner reads it back with :meth:`WorkerConfig.from_env`. The storage
URL travels separately: in a pod only through a ``secretKeyRef``.

Example:
    >>> env = WorkerConfig(study_name="demo", worker_name="demo-x7k2p").to_env()
    >>> env["KUBETUNE_STUDY_NAME"]
    'demo'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kubetune.errors import KubetuneError

#: Set by the trial runner before it imports an objective: ``tune()`` refuses to start
#: a study inside a trial (a worker or a pod importing a script that calls it).
IN_TRIAL_ENV = "KUBETUNE_IN_TRIAL"

STUDY_NAME_ENV = "KUBETUNE_STUDY_NAME"
STORAGE_URL_ENV = "KUBETUNE_STORAGE_URL"
WORKER_NAME_ENV = "KUBETUNE_WORKER_NAME"
WORKER_INDEX_ENV = "KUBETUNE_WORKER_INDEX"
MAX_TRIALS_ENV = "KUBETUNE_TRIALS_PER_WORKER"
SPEC_FILE_ENV = "KUBETUNE_SPEC_FILE"


class WorkerConfigError(KubetuneError, ValueError):
    """The worker's environment is missing or malformed (the message names the variable)."""


@dataclass(frozen=True)
class WorkerConfig:
    """What one trial-runner process needs besides the storage URL.

    ``max_trials`` is how many trials this worker runs before it exits (the
    spec's ``trialsPerPod``); None runs until the study's budget is spent.
    ``spec_file`` is only needed when the study does not exist yet: normally the
    runner reads the spec stored in the study.
    """

    study_name: str
    worker_name: str
    worker_index: int = 0
    max_trials: int | None = None
    spec_file: str | None = None

    def to_env(self) -> dict[str, str]:
        env = {
            STUDY_NAME_ENV: self.study_name,
            WORKER_NAME_ENV: self.worker_name,
            WORKER_INDEX_ENV: str(self.worker_index),
        }
        if self.max_trials is not None:
            env[MAX_TRIALS_ENV] = str(self.max_trials)
        if self.spec_file is not None:
            env[SPEC_FILE_ENV] = self.spec_file
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        env = os.environ if env is None else env
        study_name = env.get(STUDY_NAME_ENV, "").strip()
        if not study_name:
            raise WorkerConfigError(f"{STUDY_NAME_ENV} is not set: which study should I work on?")
        worker_name = env.get(WORKER_NAME_ENV) or env.get("HOSTNAME") or f"pid-{os.getpid()}"
        return cls(
            study_name=study_name,
            worker_name=worker_name,
            worker_index=_int(env, WORKER_INDEX_ENV, 0, minimum=0) or 0,
            max_trials=_int(env, MAX_TRIALS_ENV, None, minimum=1),
            spec_file=env.get(SPEC_FILE_ENV) or None,
        )


def storage_url_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    url = env.get(STORAGE_URL_ENV, "").strip()
    if not url:
        raise WorkerConfigError(f"{STORAGE_URL_ENV} is not set: where are the trials stored?")
    return url


def _int(env: Mapping[str, str], name: str, default: int | None, *, minimum: int) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise WorkerConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise WorkerConfigError(f"{name}={value} must be >= {minimum}")
    return value


#: Exit codes of the trial runner, which supervisors act on.
EXIT_OK = 0
#: The objective cannot run at all (does not import, program not found, bad spec):
#: starting another worker would fail the same way.
EXIT_CONFIG_ERROR = 3
#: The storage cannot be reached.
EXIT_STORAGE_ERROR = 4
#: Where a failing worker leaves its last words (Kubernetes shows them in the pod status).
TERMINATION_LOG_ENV = "KUBETUNE_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
