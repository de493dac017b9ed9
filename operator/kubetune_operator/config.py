"""The operator's own configuration, read once from its environment.

The Helm chart sets these; every one has a default that works in a test.

Example:
    >>> OperatorConfig.from_env({"KUBETUNE_TRIAL_IMAGE": "me/trial:1"}).trial_image
    'me/trial:1'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_TRIAL_IMAGE = "ghcr.io/kubetune/trial:0.1.0"


@dataclass(frozen=True)
class OperatorConfig:
    """Settings for every study the operator runs.

    ``storage_url`` is the default database (from the operator's Secret) for
    studies that name none; it is copied into a Secret ``<study>-storage`` in the
    study's namespace so the trial pods can read it through a ``secretKeyRef``.
    """

    storage_url: str | None = None
    trial_image: str = DEFAULT_TRIAL_IMAGE
    trial_service_account: str | None = None
    trial_command: tuple[str, ...] = ("kubetune-trial",)
    reconcile_seconds: float = 2.0
    #: Consecutive trial pods failing before they ran a trial, after which the study fails.
    max_failed_pods_without_trials: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        command = env.get("KUBETUNE_TRIAL_COMMAND")
        return cls(
            storage_url=env.get("KUBETUNE_STORAGE_URL") or None,
            trial_image=env.get("KUBETUNE_TRIAL_IMAGE") or DEFAULT_TRIAL_IMAGE,
            trial_service_account=env.get("KUBETUNE_TRIAL_SERVICE_ACCOUNT") or None,
            trial_command=tuple(command.split()) if command else ("kubetune-trial",),
            reconcile_seconds=float(env.get("KUBETUNE_RECONCILE_SECONDS", "2")),
        )
