"""The operator's own configuration, read once from its environment.

The Helm chart sets these; every one has a default that works in a test.

Example:
    >>> OperatorConfig.from_env({"KUBETUNE_TRIAL_IMAGE": "me/trial:1"}).trial_image
    'me/trial:1'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_TRIAL_IMAGE = "ghcr.io/kubetune/trial:0.1.0"


@dataclass(frozen=True)
class OperatorConfig:
    """Settings for every study the operator runs.

    ``storage_url`` is the default database (from the operator's Secret) for
    studies that name none. With ``storage_tenants`` each namespace gets a database
    and role of its own there, and its URL is what goes into a Secret
    ``<study>-storage`` in the study's namespace (without, ``storage_url`` itself),
    so the trial pods can read it through a ``secretKeyRef``.

    ``trial_service_account`` is the ServiceAccount trial pods run as when a Study
    names none. The operator creates it in a Study's namespace when it is missing
    (no token mounted, no RBAC), with ``trial_service_account_annotations`` (workload
    identity, for instance) and ``trial_image_pull_secrets``, so a Study works in any
    namespace with nothing made by hand (unless ``create_trial_service_account`` is
    false: then it must exist). None: the namespace's ``default`` account.

    ``trial_storage_host`` / ``trial_storage_port`` put a connection pooler (the chart's
    PgBouncer) between trial pods and their tenant database: the URL a Study's pods are
    given names the pooler, while the operator itself (its pool, and the LISTEN for
    trial ends, which needs a session of its own) keeps connecting directly.
    ``pooler_auth_user`` is the role PgBouncer looks the tenants' passwords up as
    (its ``auth_user``); the operator creates it and, in each tenant database, the
    lookup it may call (:mod:`kubetune_operator.tenants`).
    """

    storage_url: str | None = None
    #: Give each namespace a database and role of its own on ``storage_url``
    #: (:mod:`kubetune_operator.tenants`) instead of handing it ``storage_url`` itself.
    storage_tenants: bool = False
    #: The operator's own namespace, where the tenants' credentials are kept.
    namespace: str = "default"
    #: Where trial pods reach their tenant database instead of ``storage_url``'s host
    #: (a pooler's Service); None: the same host as the operator.
    trial_storage_host: str | None = None
    trial_storage_port: int | None = None
    #: The role PgBouncer's ``auth_query`` runs as, and its password (from the chart's
    #: pooler Secret); None: no pooler lookup is installed.
    pooler_auth_user: str | None = None
    pooler_auth_password: str | None = field(default=None, repr=False)
    trial_image: str = DEFAULT_TRIAL_IMAGE
    trial_service_account: str | None = None
    create_trial_service_account: bool = True
    trial_service_account_annotations: Mapping[str, str] = field(default_factory=dict)
    trial_image_pull_secrets: tuple[str, ...] = ()
    trial_command: tuple[str, ...] = ("kubetune-trial",)
    #: How often a running Study is looked at. A finished trial on PostgreSQL shows in
    #: its status at once (pushed, see ``trial_end_push``); pod changes and other
    #: storages' trials within about this long. Resting Studies (finished, suspended)
    #: cost nothing.
    reconcile_seconds: float = 5.0
    #: Listen for the trial runner's NOTIFY when a trial ends (PostgreSQL), and look
    #: at its Study then (:mod:`kubetune.engine.trial_ends`).
    trial_end_push: bool = True
    #: Threads shared by every Study's reconcile ticks (a Study holds one only while it ticks).
    reconcile_workers: int = 16
    #: Consecutive trial pods failing before they ran a trial, after which the study fails.
    max_failed_pods_without_trials: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        command = env.get("KUBETUNE_TRIAL_COMMAND")
        if bool(env.get("KUBETUNE_POOLER_AUTH_USER")) != bool(
            env.get("KUBETUNE_POOLER_AUTH_PASSWORD")
        ):
            raise ValueError(
                "KUBETUNE_POOLER_AUTH_USER and KUBETUNE_POOLER_AUTH_PASSWORD: set both "
                "(the pooler's lookup role and its password) or neither"
            )
        return cls(
            storage_url=env.get("KUBETUNE_STORAGE_URL") or None,
            storage_tenants=env.get("KUBETUNE_STORAGE_TENANTS", "false").lower() == "true",
            namespace=env.get("POD_NAMESPACE") or "default",
            trial_storage_host=env.get("KUBETUNE_TRIAL_STORAGE_HOST") or None,
            trial_storage_port=_port(env, "KUBETUNE_TRIAL_STORAGE_PORT"),
            pooler_auth_user=env.get("KUBETUNE_POOLER_AUTH_USER") or None,
            pooler_auth_password=env.get("KUBETUNE_POOLER_AUTH_PASSWORD") or None,
            trial_image=env.get("KUBETUNE_TRIAL_IMAGE") or DEFAULT_TRIAL_IMAGE,
            trial_service_account=env.get("KUBETUNE_TRIAL_SERVICE_ACCOUNT") or None,
            create_trial_service_account=env.get(
                "KUBETUNE_TRIAL_SERVICE_ACCOUNT_CREATE", "true"
            ).lower()
            != "false",
            trial_service_account_annotations=_json_object(
                env, "KUBETUNE_TRIAL_SERVICE_ACCOUNT_ANNOTATIONS"
            ),
            trial_image_pull_secrets=tuple(
                name.strip()
                for name in env.get("KUBETUNE_TRIAL_IMAGE_PULL_SECRETS", "").split(",")
                if name.strip()
            ),
            trial_command=tuple(command.split()) if command else ("kubetune-trial",),
            reconcile_seconds=float(env.get("KUBETUNE_RECONCILE_SECONDS", "5")),
            trial_end_push=env.get("KUBETUNE_TRIAL_END_PUSH", "true").lower() != "false",
            reconcile_workers=int(env.get("KUBETUNE_RECONCILE_WORKERS", "16")),
        )


def _port(env: Mapping[str, str], name: str) -> int | None:
    """A TCP port from the environment, or None when unset; a wrong value stops the
    operator at start-up with the variable's name."""
    text = env.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{name}: must be a port number from 1 to 65535, not {text!r}")
    return int(text)


def _json_object(env: Mapping[str, str], name: str) -> dict[str, str]:
    """A JSON object of strings from the environment; a wrong value stops the operator
    at start-up with the variable's name, not later in a Study."""
    text = env.get(name, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}: not valid JSON ({error.msg})") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"{name}: must be a JSON object of strings")
    return {str(k): v for k, v in value.items()}
