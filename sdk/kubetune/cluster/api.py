"""A thin, dict-based layer over the official ``kubernetes`` client.

It finds the cluster the way kubectl does (``--kubeconfig``, ``$KUBECONFIG``,
``~/.kube/config``, else the pod's service account), picks the namespace the
same way (the context's, else ``default``), and turns the client's exceptions
into :mod:`kubetune.errors` that name the object. Objects go in and come out as
plain dicts, as ``kubectl get -o json`` shows them.

``kubernetes`` is imported only when the first request is made, so that
``import kubetune`` and the CLI start fast.

Example:
    >>> api = KubeApi(kubeconfig="~/.kube/config")            # doctest: +SKIP
    >>> api.get_study("lgbm", api.namespace)["status"]["phase"]  # doctest: +SKIP
    'Running'
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from kubetune.errors import ApiError, ClusterUnavailable, NotFound
from kubetune.study.spec import API_GROUP, API_VERSION, PLURAL

#: Where a pod finds its own namespace (in-cluster configuration).
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: Seconds one API request may take.
REQUEST_TIMEOUT = 30

CoreKind = Literal["configmaps", "secrets", "pods"]
_SINGULAR = {"configmaps": "configmap", "secrets": "secret", "pods": "pod", PLURAL: "study"}
_MERGE_PATCH = "application/merge-patch+json"


class KubeApi:
    """Requests to one cluster; the configuration is loaded on first use.

    ``namespace`` overrides the kubeconfig context's namespace.
    """

    def __init__(
        self,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self._kubeconfig = str(Path(kubeconfig).expanduser()) if kubeconfig else None
        self._context = context
        self._namespace = namespace
        self._api_client: Any = None
        self._host = ""

    # ------------------------------------------------------------ config

    def _load(self) -> Any:
        if self._api_client is not None:
            return self._api_client
        import kubernetes

        configuration = kubernetes.client.Configuration()
        # $KUBECONFIG is read now, not when ``kubernetes`` was imported (it caches it then).
        config_file = self._kubeconfig or os.environ.get("KUBECONFIG") or None
        default_file = Path("~/.kube/config").expanduser()
        context_namespace: str | None = None
        if config_file or default_file.exists():
            config_file = config_file or str(default_file)
            try:
                kubernetes.config.load_kube_config(
                    config_file=config_file,
                    context=self._context,
                    client_configuration=configuration,
                    persist_config=False,
                )
                contexts, active = kubernetes.config.list_kube_config_contexts(config_file)
            except (kubernetes.config.ConfigException, OSError, ValueError) as error:
                raise ClusterUnavailable(
                    f"cannot use the kubeconfig {config_file}: {error}"
                ) from None
            chosen = next((c for c in contexts if c.get("name") == self._context), None)
            context_namespace = ((chosen or active or {}).get("context") or {}).get("namespace")
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
            except kubernetes.config.ConfigException as error:
                raise ClusterUnavailable(
                    f"cannot use the in-cluster configuration: {error}"
                ) from None
            if SERVICE_ACCOUNT_NAMESPACE.exists():
                context_namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
        else:
            raise ClusterUnavailable(
                "no cluster configuration: $KUBECONFIG is not set, ~/.kube/config does not exist, "
                "and this is not a pod (pass kubeconfig= or --kubeconfig)"
            )
        # One retry at most: a command a user typed wants a quick answer.
        configuration.retries = 1
        self._namespace = self._namespace or context_namespace or "default"
        self._host = configuration.host
        self._api_client = kubernetes.client.ApiClient(configuration)
        return self._api_client

    @property
    def namespace(self) -> str:
        """The namespace requests go to when none is given (loads the configuration)."""
        self._load()
        assert self._namespace is not None
        return self._namespace

    @property
    def host(self) -> str:
        self._load()
        return self._host

    def close(self) -> None:
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None

    @contextmanager
    def _call(
        self, kind: str, name: str, namespace: str | None, doing: str, *, not_found: bool = True
    ) -> Iterator[None]:
        """Translate the client's exceptions into errors that name the object."""
        import kubernetes
        import urllib3

        try:
            yield
        except kubernetes.client.ApiException as error:
            if error.status == 404 and name and not_found:
                raise NotFound(_SINGULAR.get(kind, kind), name, namespace) from None
            message, reason = _status_message(error)
            what = f'{doing} {_SINGULAR.get(kind, kind)} "{name}"' if name else f"{doing} {kind}"
            where = f' in namespace "{namespace}"' if namespace else ""
            raise ApiError(
                f"{what}{where}: {error.status} {error.reason}: {message}", error.status, reason
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ClusterUnavailable(
                f"cannot reach the API server at {self._host}: {type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}"
            ) from None

    def _custom(self) -> Any:
        import kubernetes

        return kubernetes.client.CustomObjectsApi(self._load())

    def _core(self) -> Any:
        import kubernetes

        return kubernetes.client.CoreV1Api(self._load())

    # ----------------------------------------------------------- studies

    def get_study(self, name: str, namespace: str) -> dict[str, Any]:
        with self._call(PLURAL, name, namespace, "reading"):
            return dict(
                self._custom().get_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    name,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )

    def list_studies(self, namespace: str | None) -> list[dict[str, Any]]:
        """The studies of ``namespace``, or of every namespace when it is None."""
        with self._call(PLURAL, "", namespace, "listing"):
            if namespace is None:
                result = self._custom().list_cluster_custom_object(
                    API_GROUP, API_VERSION, PLURAL, _request_timeout=REQUEST_TIMEOUT
                )
            else:
                result = self._custom().list_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, PLURAL, _request_timeout=REQUEST_TIMEOUT
                )
        return [dict(item) for item in result.get("items") or []]

    def create_study(self, body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        name = body["metadata"]["name"]
        with self._call(PLURAL, name, namespace, "creating", not_found=False):
            return dict(
                self._custom().create_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    dict(body),
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )

    def replace_study(self, body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        name = body["metadata"]["name"]
        with self._call(PLURAL, name, namespace, "updating"):
            return dict(
                self._custom().replace_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    name,
                    dict(body),
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )

    def patch_study(self, name: str, patch: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        """A JSON merge patch of the study (``{"spec": {"suspend": true}}``)."""
        with self._call(PLURAL, name, namespace, "patching"):
            return dict(
                self._custom().patch_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    name,
                    dict(patch),
                    _content_type=_MERGE_PATCH,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )

    def delete_study(self, name: str, namespace: str) -> None:
        with self._call(PLURAL, name, namespace, "deleting"):
            self._custom().delete_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )

    # -------------------------------------------------------------- core

    def get(self, kind: CoreKind, name: str, namespace: str) -> dict[str, Any]:
        method = {
            "configmaps": "read_namespaced_config_map",
            "secrets": "read_namespaced_secret",
            "pods": "read_namespaced_pod",
        }[kind]
        with self._call(kind, name, namespace, "reading"):
            response = getattr(self._core(), method)(
                name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
            return dict(json.loads(response.data))

    def create_configmap(self, body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        name = body["metadata"]["name"]
        with self._call("configmaps", name, namespace, "creating", not_found=False):
            response = self._core().create_namespaced_config_map(
                namespace, dict(body), _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
            return dict(json.loads(response.data))

    def patch_configmap(
        self, name: str, patch: Mapping[str, Any], namespace: str
    ) -> dict[str, Any]:
        with self._call("configmaps", name, namespace, "patching"):
            response = self._core().patch_namespaced_config_map(
                name,
                namespace,
                dict(patch),
                _content_type=_MERGE_PATCH,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
            return dict(json.loads(response.data))

    def delete(
        self, kind: CoreKind, name: str, namespace: str, *, missing_ok: bool = False
    ) -> None:
        method = {
            "configmaps": "delete_namespaced_config_map",
            "secrets": "delete_namespaced_secret",
            "pods": "delete_namespaced_pod",
        }[kind]
        try:
            with self._call(kind, name, namespace, "deleting"):
                getattr(self._core(), method)(
                    name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                )
        except NotFound:
            if not missing_ok:
                raise

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        with self._call("pods", "", namespace, "listing"):
            response = self._core().list_namespaced_pod(
                namespace,
                label_selector=label_selector,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        return [dict(item) for item in json.loads(response.data).get("items") or []]

    def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        with self._call("events", "", namespace, "listing"):
            response = self._core().list_namespaced_event(
                namespace,
                field_selector=field_selector,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        return [dict(item) for item in json.loads(response.data).get("items") or []]

    def pod_log(self, name: str, namespace: str, *, tail: int | None = None) -> str:
        with self._call("pods", name, namespace, "reading the log of"):
            kwargs: dict[str, Any] = {"_preload_content": False, "_request_timeout": 60}
            if tail is not None:
                kwargs["tail_lines"] = tail
            response = self._core().read_namespaced_pod_log(name, namespace, **kwargs)
            return bytes(response.data).decode("utf-8", "replace")


def _status_message(error: Any) -> tuple[str, str]:
    """The message and reason of a Kubernetes ``Status`` body, or the raw body."""
    body = getattr(error, "body", None) or ""
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        return str(body).strip()[:500], ""
    if not isinstance(status, dict):
        return str(body)[:500], ""
    return str(status.get("message") or body)[:500], str(status.get("reason") or "")
