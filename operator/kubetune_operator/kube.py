"""The Kubernetes API calls the operator makes, and nothing else.

Every call the operator makes goes through this module, so the chart's RBAC
rules can be read off it: studies (patch status), pods (list, create, patch,
delete), secrets (get, create, delete), configmaps (create, patch, delete),
serviceaccounts (create). Objects come back as plain dicts with the API's
camelCase keys. A request the API server refuses raises :class:`ApiRefused`,
whose message is the server's own (``pods "x" is forbidden: ...``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
from collections.abc import Mapping
from typing import Any, Protocol

from kubetune.study.spec import API_GROUP, API_VERSION, PLURAL

USER_AGENT = "kubetune-operator/0.1.0"


@functools.cache
def _client() -> Any:
    import kubernetes

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    client = kubernetes.client.ApiClient()
    # Named, so audit logs (and the e2e tests that check RBAC) can tell our calls apart.
    client.user_agent = USER_AGENT
    return client


def _core() -> Any:
    import kubernetes

    return kubernetes.client.CoreV1Api(_client())


def _custom() -> Any:
    import kubernetes

    return kubernetes.client.CustomObjectsApi(_client())


def _plain(obj: Any) -> Any:
    return _client().sanitize_for_serialization(obj)


class ApiRefused(Exception):
    """The API server refused a request (403, 422, quota...); the message is the server's."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @classmethod
    def of(cls, error: Any) -> ApiRefused:
        """From a ``kubernetes.client.ApiException``: its Status message when it has one."""
        message = ""
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            message = str(json.loads(error.body or "{}").get("message") or "")
        status = int(getattr(error, "status", 0) or 0)
        reason = str(getattr(error, "reason", "") or "")
        return cls(status, reason, message or f"{status} {reason}".strip())


class KubeCalls(Protocol):
    """The calls a :class:`~kubetune_operator.reconciler.StudyReconciler` makes: this
    module's functions, which it uses unless a test gives it something else."""

    def patch_study_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...
    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...
    def create_pod(self, namespace: str, pod: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None: ...
    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        labels: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> None: ...
    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None: ...
    def ensure_secret(self, namespace: str, body: Mapping[str, Any]) -> None: ...
    def ensure_service_account(self, namespace: str, body: Mapping[str, Any]) -> None: ...
    def apply_configmap(self, namespace: str, body: Mapping[str, Any]) -> None: ...
    def delete_object(self, kind: str, namespace: str, name: str) -> None: ...
    def find_study(self, namespace: str, name: str) -> dict[str, Any] | None: ...


def is_not_found(error: BaseException) -> bool:
    return getattr(error, "status", None) == 404


def is_conflict(error: BaseException) -> bool:
    return getattr(error, "status", None) == 409


# ------------------------------------------------------------------ studies


def patch_study_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    _custom().patch_namespaced_custom_object_status(
        API_GROUP, API_VERSION, namespace, PLURAL, name, {"status": dict(status)}
    )


def find_study(namespace: str, name: str) -> dict[str, Any] | None:
    """The Study ``name`` of ``namespace`` (a fork's parent), or None. Listed, not read:
    the operator's RBAC lists and watches Studies and needs no ``get`` for this."""
    result = _custom().list_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, field_selector=f"metadata.name={name}"
    )
    items = _plain(result).get("items") or []
    return next((dict(i) for i in items if i.get("metadata", {}).get("name") == name), None)


# --------------------------------------------------------------------- pods


def list_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    result = _core().list_namespaced_pod(namespace, label_selector=selector)
    return list(_plain(result).get("items") or [])


def create_pod(namespace: str, pod: Mapping[str, Any]) -> dict[str, Any]:
    """Create a pod; :class:`ApiRefused` says why the API server would not."""
    import kubernetes

    try:
        return dict(_plain(_core().create_namespaced_pod(namespace, dict(pod))))
    except kubernetes.client.ApiException as error:
        if error.status is None or error.status >= 500:
            raise
        raise ApiRefused.of(error) from None


def delete_pod(namespace: str, name: str, grace_seconds: int | None = None) -> None:
    import kubernetes

    try:
        _core().delete_namespaced_pod(
            name,
            namespace,
            body=kubernetes.client.V1DeleteOptions(
                grace_period_seconds=grace_seconds, propagation_policy="Background"
            ),
        )
    except kubernetes.client.ApiException as error:
        if not is_not_found(error):
            raise


def patch_pod_metadata(
    namespace: str,
    name: str,
    labels: Mapping[str, str | None] | None = None,
    annotations: Mapping[str, str | None] | None = None,
) -> None:
    import kubernetes

    metadata: dict[str, Any] = {}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    try:
        _core().patch_namespaced_pod(name, namespace, {"metadata": metadata})
    except kubernetes.client.ApiException as error:
        if not is_not_found(error):
            raise


# ------------------------------------------------------------------ secrets


def read_secret_value(namespace: str, name: str, key: str) -> str | None:
    """One key of a Secret, decoded; None if the Secret or the key is missing."""
    import kubernetes

    try:
        secret = _core().read_namespaced_secret(name, namespace)
    except kubernetes.client.ApiException as error:
        if is_not_found(error):
            return None
        raise
    encoded = (secret.data or {}).get(key)
    return None if encoded is None else base64.b64decode(encoded).decode("utf-8")


def ensure_secret(namespace: str, body: Mapping[str, Any]) -> None:
    """Create the Secret unless it exists (its content never changes)."""
    import kubernetes

    try:
        _core().create_namespaced_secret(namespace, dict(body))
    except kubernetes.client.ApiException as error:
        if not is_conflict(error):
            raise


# ---------------------------------------------------------- serviceaccounts


def ensure_service_account(namespace: str, body: Mapping[str, Any]) -> None:
    """Create the ServiceAccount unless it exists (an existing one is left as it is)."""
    import kubernetes

    try:
        _core().create_namespaced_service_account(namespace, dict(body))
    except kubernetes.client.ApiException as error:
        if not is_conflict(error):
            raise


# --------------------------------------------------------------- configmaps


def apply_configmap(namespace: str, body: Mapping[str, Any]) -> None:
    """Create the ConfigMap, or replace its data if it exists."""
    import kubernetes

    name = body["metadata"]["name"]
    try:
        _core().patch_namespaced_config_map(name, namespace, {"data": body["data"]})
    except kubernetes.client.ApiException as error:
        if not is_not_found(error):
            raise
        _core().create_namespaced_config_map(namespace, dict(body))


def delete_object(kind: str, namespace: str, name: str) -> None:
    """Delete a Secret or ConfigMap the operator made; gone already is fine."""
    import kubernetes

    delete = {
        "Secret": _core().delete_namespaced_secret,
        "ConfigMap": _core().delete_namespaced_config_map,
    }[kind]
    try:
        delete(name, namespace)
    except kubernetes.client.ApiException as error:
        if not is_not_found(error):
            raise
