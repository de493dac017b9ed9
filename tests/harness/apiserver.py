"""An emulated Kubernetes API server for e2e tests, built on kmock's ``KubernetesEmulator``.

kmock 0.8 as shipped stores objects as plain JSON and lacks most of what a real API server
adds. :class:`KubeEmulator` serves every request for a *registered* resource itself (kmock's
own handling is kept for discovery, ``/version`` and any non-Kubernetes path) and adds:

* ``metadata.uid``, ``metadata.creationTimestamp``, ``metadata.generation`` (bumped only when
  something outside ``metadata``/``status`` changes), a global, increasing
  ``metadata.resourceVersion`` changed by every write (no-op writes change nothing, as in
  Kubernetes), and ``metadata.generateName`` (name = prefix + 5 random characters).
* create -> 201; duplicate -> 409 AlreadyExists; missing -> 404 NotFound; stale
  ``metadata.resourceVersion`` in a PUT or merge patch -> 409 Conflict; a failed JSON-patch
  ``test`` op (or any other JSON-patch error) -> 422 Invalid (kopf's finalizer patches rely on
  that); invalid names and label values -> 422.
* PATCH with a JSON list is a JSON patch (RFC 6902), with a dict a JSON merge patch (RFC 7386),
  or with ``Content-Type: application/strategic-merge-patch+json`` a strategic merge patch
  (lists such as containers, env, volumes, conditions, ownerReferences are merged by their
  key and finalizers as a set; 415 for custom resources, as in Kubernetes), or with
  ``application/apply-patch+yaml`` (server-side apply, ``fieldManager`` required) an
  approximation: create if missing, else a merge patch (no field ownership). PUT replaces.
* the ``status`` subresource: ``/status`` PATCH/PUT change only ``.status``; a normal
  PATCH/PUT of a resource that has the subresource keeps the old ``.status`` (and a create
  drops it), exactly as for CRDs with ``subresources.status``.
* label selectors (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``,
  ``a notin (x,y)``) and simple field selectors (``path=value``, ``path!=value`` on any
  dotted path such as ``metadata.name``, ``spec.nodeName``, ``status.phase``) for list,
  watch and deletecollection.
* watch: ``?watch=true`` (also ``True``/``1``) from a ``resourceVersion`` (replays the
  event log; a version older than the log gives an ERROR 410 event), without one (ADDED for
  every current object, then changes), ``sendInitialEvents=true`` (ends the initial events
  with a BOOKMARK annotated ``k8s.io/initial-events-end``), ``timeoutSeconds``. An object
  that starts/stops matching a watch's selector is sent as ADDED/DELETED, as Kubernetes does.
* deletion: with finalizers, ``deletionTimestamp`` is set and the object stays until the
  last finalizer is removed; new finalizers cannot be added then (422). Pods that are bound
  to a node and not finished are deleted gracefully, as a real API server does: DELETE only
  sets ``deletionTimestamp``/``deletionGracePeriodSeconds`` and the (fake) kubelet removes
  the pod with ``gracePeriodSeconds=0`` once its process is gone.
* garbage collection: when an object is removed, every object whose ``ownerReferences``
  name its uid and which has no other live owner is deleted too (in the background policy's
  way, immediately; ``propagationPolicy=Orphan`` skips it). Deleting a namespace deletes the
  objects in it.
* namespaces: listing and watching ``/api/v1/namespaces`` works (kmock 0.8 answers 500 on
  it); ``default``, ``kube-system`` and ``kube-public`` exist; every namespace gets, when
  created, the ``default`` ServiceAccount and the ``kube-root-ca.crt`` ConfigMap (``ca.crt``:
  the CA of the HTTPS port); with ``auto_namespaces=True`` (the default) a superuser creating
  an object in a missing namespace creates that namespace first; otherwise (and for every
  other user) it is a 404 as in Kubernetes.
* Secrets: ``stringData`` is folded into base64 ``data``. Pods: ``status.phase=Pending`` on
  create, defaults for ``terminationGracePeriodSeconds`` (30) and ``restartPolicy``
  (Always); ``pods/log`` is served from a log provider (the fake kubelet),
  ``pods/eviction`` deletes, ``pods/binding`` binds.
* CRDs: creating an ``apiextensions.k8s.io/v1`` CustomResourceDefinition registers its
  resources, so ``crds/*.yaml`` can be loaded through the API (see
  :meth:`KubeEmulator.register_crd`); the repo's ``crds/*.yaml`` are registered at start
  (``KubeEmulator(crds=...)``), schemas included.
* what kubectl reads (:mod:`.tables`, :mod:`.openapi`): a list, get or watch asked for with
  ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` is answered with a Table of the
  CRD version's ``additionalPrinterColumns`` (or a built-in kind's columns), so ``kubectl get
  studies [-w] [-A] [-o wide]`` prints PHASE, TRIALS, BEST; ``/openapi/v3`` serves each
  group/version's document with the CRDs' schemas (``kubectl explain``) and PATCH operations
  taking ``fieldValidation`` (``kubectl apply`` leaves validation to the server).

What a real API server refuses, it refuses too (each rule can be switched off by a
constructor flag, all on by default; ``harness_selftest/test_admission.py`` shows each):

* authentication (:mod:`.auth`): the default kubeconfig token is a superuser
  (``system:masters``); ServiceAccount tokens from TokenRequest (``POST
  serviceaccounts/NAME/token``, or :meth:`KubeEmulator.issue_token`) are
  ``system:serviceaccount:NS:NAME``; no token is ``system:anonymous``; an unknown token is a
  401 (``authorization=False``: everyone is a superuser).
* RBAC authorization (:mod:`.rbac`) of every non-superuser request: Roles, ClusterRoles,
  their bindings, subresources, resourceNames, wildcards, aggregated ClusterRoles, the
  bootstrap roles (``cluster-admin``, ``admin``/``edit``/``view``, ``system:discovery``...);
  403 with Kubernetes' message.
* decoding and validation (:mod:`.schema`, :mod:`.validation`): custom resources are pruned,
  defaulted and validated by their CRD version's openAPIV3Schema
  (``validate_custom_resources``); built-in objects by kubernetes-validate's schemas and pods
  by the essentials of ``ValidatePod`` (``validate_builtin``). Unknown fields are dropped
  with a ``Warning`` header (400 with ``fieldValidation=Strict``); 422 Invalid with
  ``details.causes`` otherwise.
* admission (:mod:`.admission`): ServiceAccount (``service_account_admission``; the token
  volume with ``mount_service_account_token``), PodSecurity from namespace labels
  (``pod_security``), OwnerReferencesPermissionEnforcement
  (``owner_references_permission_enforcement``).
* HTTPS: :class:`EmulatorServer` also serves the API on ``https_url`` with a certificate
  for 127.0.0.1/localhost signed by the CA at ``ca_path`` (:mod:`.tls`).

Not emulated: RBAC's escalation checks (``bind``/``escalate``), impersonation, the Node
authorizer (the fake kubelet uses the superuser token), CEL validation rules
(``x-kubernetes-validations``) and ``format`` of CRD schemas, admission webhooks, quotas and
LimitRanges, PodSecurity ``warn``/``audit`` modes, field ownership of server-side apply,
``limit``/``continue`` paging (everything comes in one page), foreground deletion (treated
as background), namespace finalization (a namespace disappears at once), protobuf (kubectl
and Helm send built-in objects as protobuf: create those with :class:`KubeClient`; custom
resources go as JSON), Table printers of built-in kinds other than pods, namespaces,
configmaps, secrets and events (NAME and AGE only), OpenAPI schemas of built-in kinds
(``kubectl explain pods`` fails), the OpenAPI v2 document (404; kubectl does without).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import contextvars
import copy
import dataclasses
import datetime
import json
import os
import random
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import requests
import yaml

from . import admission, openapi, rbac, schema, tables, validation
from .auth import (
    ANONYMOUS,
    DEFAULT_AUDIENCE,
    SUPERUSER,
    SUPERUSER_TOKEN,
    SYSTEM,
    TokenIssuer,
    UserInfo,
    unauthorized,
)
from .errors import ApiError, FieldError, bad_request, invalid
from .rbac import RBAC_GROUP, Attributes, RBACAuthorizer, forbidden_error, request_verb
from .tls import TLSBundle, default_bundle

__all__ = [
    "DEFAULT_CRDS",
    "DEFAULT_RESOURCES",
    "SUPERUSER_TOKEN",
    "ApiError",
    "EmulatorServer",
    "KubeClient",
    "KubeEmulator",
    "ResourceSpec",
    "write_kubeconfig",
]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclasses.dataclass(frozen=True)
class ResourceSpec:
    """What the emulator knows about one resource (group/version/plural)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()
    singular: str = ""
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def kmock_resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


DEFAULT_RESOURCES: tuple[ResourceSpec, ...] = (
    ResourceSpec(
        "kubetune.io",
        "v1alpha1",
        "studies",
        "Study",
        True,
        ("status",),
        "study",
        ("kts",),
        ("kubetune",),
    ),
    ResourceSpec(
        "", "v1", "pods", "Pod", True, ("status", "log", "eviction", "binding"), "pod", ("po",)
    ),
    ResourceSpec("", "v1", "configmaps", "ConfigMap", True, (), "configmap", ("cm",)),
    ResourceSpec("", "v1", "secrets", "Secret", True, (), "secret"),
    ResourceSpec("", "v1", "events", "Event", True, (), "event", ("ev",)),
    ResourceSpec(
        "", "v1", "serviceaccounts", "ServiceAccount", True, ("token",), "serviceaccount", ("sa",)
    ),
    ResourceSpec("", "v1", "services", "Service", True, ("status",), "service", ("svc",)),
    ResourceSpec(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        True,
        ("status",),
        "persistentvolumeclaim",
        ("pvc",),
    ),
    ResourceSpec("", "v1", "namespaces", "Namespace", False, ("status",), "namespace", ("ns",)),
    # The chart's workloads (no controller runs them: a test starts their pods).
    ResourceSpec(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        ("status", "scale"),
        "deployment",
        ("deploy",),
    ),
    ResourceSpec(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        True,
        ("status", "scale"),
        "statefulset",
        ("sts",),
    ),
    ResourceSpec("", "v1", "nodes", "Node", False, ("status",), "node", ("no",)),
    ResourceSpec("events.k8s.io", "v1", "events", "Event", True, (), "event", ("ev",)),
    ResourceSpec("coordination.k8s.io", "v1", "leases", "Lease", True, (), "lease"),
    ResourceSpec("kopf.dev", "v1", "kopfpeerings", "KopfPeering", True, (), "kopfpeering"),
    ResourceSpec(
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        "ClusterKopfPeering",
        False,
        (),
        "clusterkopfpeering",
    ),
    ResourceSpec(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("status",),
        "customresourcedefinition",
        ("crd", "crds"),
    ),
)

#: RBAC's resources (registered with the defaults).
RBAC_RESOURCES: tuple[ResourceSpec, ...] = (
    ResourceSpec(RBAC_GROUP, "v1", "roles", "Role", True, (), "role"),
    ResourceSpec(RBAC_GROUP, "v1", "rolebindings", "RoleBinding", True, (), "rolebinding"),
    ResourceSpec(RBAC_GROUP, "v1", "clusterroles", "ClusterRole", False, (), "clusterrole"),
    ResourceSpec(
        RBAC_GROUP,
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        False,
        (),
        "clusterrolebinding",
    ),
)
DEFAULT_RESOURCES = DEFAULT_RESOURCES + RBAC_RESOURCES

#: CRDs installed in every new emulator (their schemas validate custom resources).
DEFAULT_CRDS: tuple[Path, ...] = tuple(
    sorted((Path(__file__).resolve().parents[2] / "crds").glob("*.yaml"))
)

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public")
#: The ConfigMap every namespace gets, with the cluster's CA (``ca.crt``).
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
PODS = ("", "v1", "pods")
NAMESPACES = ("", "v1", "namespaces")
#: Nodes are written by the fake kubelet, which stands in for Kubernetes itself and reports
#: less than a real kubelet: their schema is not checked.
NODES = ("", "v1", "nodes")
SERVICEACCOUNTS = ("", "v1", "serviceaccounts")
CRDS = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")

#: The verbs discovery lists for a subresource (others: get, patch, update).
_SUBRESOURCE_VERBS = {
    "log": ("get",),
    "eviction": ("create",),
    "binding": ("create",),
    "token": ("create",),
}

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as Kubernetes' utilrand


def _now(offset: float = 0.0) -> str:
    when = datetime.datetime.now(tz=datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


# ----------------------------------------------------------------------------------------------
# Selectors
# ----------------------------------------------------------------------------------------------


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"


def parse_label_selector(text: str | None) -> list[tuple[str, str, frozenset[str]]]:
    """Parse a label selector into ``(key, op, values)``; op in = != in notin exists !exists."""
    requirements = []
    for term in _split_top_level(text or ""):
        if m := re.fullmatch(rf"(!?)\s*({_KEY})", term):
            requirements.append((m[2], "!exists" if m[1] else "exists", frozenset()))
        elif m := re.fullmatch(rf"({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)", term):
            op = "!=" if m[2] == "!=" else "="
            requirements.append((m[1], op, frozenset([m[3]])))
        elif m := re.fullmatch(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)", term):
            values = frozenset(v.strip() for v in m[3].split(",") if v.strip())
            requirements.append((m[1], m[2], values))
        else:
            raise ApiError(
                400, "BadRequest", f"unable to parse requirement: invalid label selector {term!r}"
            )
    return requirements


def match_labels(
    labels: Mapping[str, str] | None, requirements: Sequence[tuple[str, str, frozenset[str]]]
) -> bool:
    labels = labels or {}
    for key, op, values in requirements:
        present = key in labels
        value = labels.get(key)
        ok = {
            "exists": present,
            "!exists": not present,
            "=": present and value in values,
            "in": present and value in values,
            "!=": not present or value not in values,
            "notin": not present or value not in values,
        }[op]
        if not ok:
            return False
    return True


def parse_field_selector(text: str | None) -> list[tuple[str, str, str]]:
    requirements = []
    for term in _split_top_level(text or ""):
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]']+)\s*(==|=|!=)\s*(.*)", term)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term!r}")
        requirements.append((m[1], "!=" if m[2] == "!=" else "=", m[3]))
    return requirements


def parse_field_selector_lenient(text: str | None) -> list[tuple[str, str, str]]:
    """:func:`parse_field_selector`, or nothing if it does not parse (for authorization)."""
    try:
        return parse_field_selector(text)
    except ApiError:
        return []


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def match_fields(obj: Mapping[str, Any], requirements: Sequence[tuple[str, str, str]]) -> bool:
    for path, op, expected in requirements:
        actual = _field_value(obj, path)
        if (actual == expected) != (op == "="):
            return False
    return True


# ----------------------------------------------------------------------------------------------
# Merge patch (RFC 7386)
# ----------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


#: Lists of objects merged by a key in strategic merge patches (by field name, a simplification
#: of Kubernetes' per-type patchMergeKey tags); ``None``: a list of scalars merged as a set.
STRATEGIC_MERGE_KEYS: dict[str, str | None] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "volumes": "name",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "finalizers": None,
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}

#: API groups served by Kubernetes itself (strategic merge patches work only for these).
BUILTIN_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "coordination.k8s.io",
        "events.k8s.io",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "scheduling.k8s.io",
        "apiextensions.k8s.io",
        "admissionregistration.k8s.io",
        "discovery.k8s.io",
        "node.k8s.io",
    }
)


def strategic_merge_patch(target: Any, patch: Any, field: str | None = None) -> Any:
    """A strategic merge patch for the common fields (see STRATEGIC_MERGE_KEYS).

    Supports ``$patch: delete`` in list items and maps, ``$patch: replace`` on maps,
    ``$deleteFromPrimitiveList/<field>``; ``$retainKeys`` and ``$setElementOrder`` are ignored.
    """
    if isinstance(patch, Mapping):
        if patch.get("$patch") == "delete":
            return None
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        result = dict(target) if isinstance(target, Mapping) else {}
        for key, value in patch.items():
            if key.startswith("$deleteFromPrimitiveList/"):
                name = key.split("/", 1)[1]
                result[name] = [x for x in result.get(name) or [] if x not in value]
            elif key.startswith("$"):
                continue
            elif value is None:
                result.pop(key, None)
            else:
                merged = strategic_merge_patch(result.get(key), value, key)
                if merged is None:
                    result.pop(key, None)
                else:
                    result[key] = merged
        return result
    if isinstance(patch, list) and field in STRATEGIC_MERGE_KEYS and isinstance(target, list):
        merge_key = STRATEGIC_MERGE_KEYS[field]
        if merge_key is None:
            return list(target) + [x for x in patch if x not in target]
        result_list = [copy.deepcopy(x) for x in target]
        for item in patch:
            if not isinstance(item, Mapping) or merge_key not in item:
                result_list.append(copy.deepcopy(item))
                continue
            index = next(
                (
                    i
                    for i, x in enumerate(result_list)
                    if isinstance(x, Mapping) and x.get(merge_key) == item[merge_key]
                ),
                None,
            )
            if item.get("$patch") == "delete":
                if index is not None:
                    del result_list[index]
            elif index is None:
                result_list.append(
                    {k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("$")}
                )
            else:
                result_list[index] = strategic_merge_patch(result_list[index], item)
        return result_list
    return copy.deepcopy(patch)


# ----------------------------------------------------------------------------------------------
# The emulator
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Route:
    spec: ResourceSpec | None
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


@dataclasses.dataclass(frozen=True)
class _Event:
    rv: int
    key: tuple[str, str, str]
    namespace: str | None
    type: str
    old: dict[str, Any] | None
    new: dict[str, Any]


@dataclasses.dataclass
class RequestContext:
    """Who is calling, what was authorized, and the warnings to send back."""

    user: UserInfo
    attributes: Attributes | None = None
    field_validation: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)


_REQUEST: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "kube_emulator_request", default=None
)


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator, filled in where Kubernetes semantics matter (see module doc).

    Objects live in kmock's ``self.objects`` (with their full history, keyed by
    ``(kmock.resource, namespace, name)``) so kmock-style assertions keep working.
    All state changes happen synchronously inside the server's event loop; from another
    thread use :meth:`EmulatorServer.call`.
    """

    resource_specs: Iterable[ResourceSpec] = DEFAULT_RESOURCES
    auto_namespaces: bool = True
    graceful_pod_deletion: bool = True
    event_log_size: int = 50_000
    request_log_size: int = 10_000
    #: ``(namespace, name) -> str | None``; serves ``GET pods/NAME/log``.
    log_provider: Callable[[str, str], str | None] | None = None
    #: CRDs registered at start (paths of YAML files, or dicts); their schemas validate.
    crds: Iterable[str | os.PathLike[str] | Mapping[str, Any]] = DEFAULT_CRDS
    #: Tokens that authenticate as a superuser (``system:masters``).
    superuser_tokens: Iterable[str] = (SUPERUSER_TOKEN,)
    #: The CA certificate (PEM) published in every namespace's ``kube-root-ca.crt``.
    ca_pem: str | None = None
    # Each rule can be switched off (all on by default, as in a real cluster):
    #: authentication (401 for unknown tokens) and RBAC (403) for non-superusers.
    authorization: bool = True
    #: custom resources pruned, defaulted and validated by their CRD's openAPIV3Schema.
    validate_custom_resources: bool = True
    #: built-in objects checked with kubernetes-validate's schemas, pods with ValidatePod.
    validate_builtin: bool = True
    #: pods need an existing ServiceAccount (``default`` when none is named).
    service_account_admission: bool = True
    #: pods get the projected ServiceAccount token volume (off: the fake kubelet would
    #: have to serve it; turn on for a kubelet that does).
    mount_service_account_token: bool = False
    #: Pod Security admission from namespace labels.
    pod_security: bool = True
    #: ``blockOwnerDeletion`` needs ``update`` on the owner's ``finalizers``.
    owner_references_permission_enforcement: bool = True

    _specs: dict[tuple[str, str, str], ResourceSpec] = attrs.field(factory=dict, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _log: list[_Event] = attrs.field(factory=list, init=False)
    _log_rvs: list[int] = attrs.field(factory=list, init=False)
    _log_floor: int = attrs.field(default=0, init=False)
    _waiters: set[asyncio.Event] = attrs.field(factory=set, init=False)
    _watch_counts: dict[tuple[str, str, str], int] = attrs.field(factory=dict, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    request_log: list[dict[str, Any]] = attrs.field(factory=list, init=False)
    _schemas: dict[tuple[str, str, str], dict[str, Any]] = attrs.field(factory=dict, init=False)
    #: A CRD version's ``additionalPrinterColumns`` (``kubectl get``'s Table columns).
    _printer_columns: dict[tuple[str, str, str], list[dict[str, Any]]] = attrs.field(
        factory=dict, init=False
    )
    _tokens: TokenIssuer = attrs.field(factory=TokenIssuer, init=False)
    _superusers: frozenset[str] = attrs.field(factory=frozenset, init=False)
    _rbac_generation: int = attrs.field(default=0, init=False)
    _rbac: RBACAuthorizer | None = attrs.field(default=None, init=False)
    _aggregating: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._superusers = frozenset(self.superuser_tokens)
        if self.ca_pem is None:
            self.ca_pem = default_bundle().ca_pem
        self._rbac = RBACAuthorizer(
            lambda plural: self.live_objects(f"{RBAC_GROUP}/v1/{plural}"),
            lambda: self._rbac_generation,
        )
        for spec in self.resource_specs:
            self.register_resource(spec)
        for crd in self.crds:
            if not isinstance(crd, Mapping):
                for doc in yaml.safe_load_all(Path(crd).read_text()):
                    if doc and doc.get("kind") == "CustomResourceDefinition":
                        self.register_crd(doc)
            else:
                self.register_crd(crd)
        with self.as_system():
            for plural, obj in rbac.bootstrap_objects():
                self._create(self._specs[(RBAC_GROUP, "v1", plural)], None, obj, {})
            for namespace in INITIAL_NAMESPACES:
                self._ensure_namespace(namespace)

    # -- who is calling ------------------------------------------------------------------------

    @staticmethod
    def request_context() -> RequestContext | None:
        """The request being served (``None`` for the emulator's own writes)."""
        return _REQUEST.get()

    def caller(self) -> UserInfo:
        """The user of the request being served; the emulator itself otherwise."""
        context = _REQUEST.get()
        return context.user if context is not None else SYSTEM

    @contextlib.contextmanager
    def as_system(self) -> Iterator[None]:
        """Run the emulator's own writes (controllers) as a superuser, with no request."""
        token = _REQUEST.set(None)
        try:
            yield
        finally:
            _REQUEST.reset(token)

    def _warn(self, warnings: Iterable[str]) -> None:
        context = _REQUEST.get()
        if context is not None:
            context.warnings.extend(warnings)

    def authenticate(self, authorization: str | None) -> UserInfo:
        """The user a ``Authorization`` header value stands for; 401 if unknown."""
        if not self.authorization:
            return SUPERUSER
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        if token in self._superusers:
            return SUPERUSER
        issued = self._tokens.lookup(token)
        if issued is None:
            raise unauthorized()
        account = self._current(
            self._specs[SERVICEACCOUNTS], issued.namespace, issued.service_account
        )
        if account is None or account["metadata"].get("uid") != issued.service_account_uid:
            raise unauthorized()
        return issued.user()

    def authorize(self, attributes: Attributes) -> bool:
        """Does RBAC allow it (superusers: always)?"""
        if not self.authorization or attributes.user.is_superuser:
            return True
        assert self._rbac is not None
        return self._rbac.authorize(attributes)[0]

    def issue_token(
        self,
        namespace: str,
        service_account: str,
        *,
        expiration_seconds: int = 3600,
        audiences: Sequence[str] = (DEFAULT_AUDIENCE,),
    ) -> str:
        """A token for the ServiceAccount, as TokenRequest gives (KeyError if it is missing).

        Call in the server's thread (``EmulatorServer.issue_token`` does that for you).
        """
        account = self._current(self._specs[SERVICEACCOUNTS], namespace, service_account)
        if account is None:
            raise KeyError(f"serviceaccount {namespace}/{service_account} not found")
        token, _ = self._tokens.issue(
            namespace,
            service_account,
            account["metadata"]["uid"],
            expiration_seconds=expiration_seconds,
            audiences=audiences,
        )
        return token

    # -- registration ------------------------------------------------------------------------

    def register_resource(self, spec: ResourceSpec) -> None:
        """Make a resource servable and discoverable (by kopf and the kubernetes client)."""
        self._specs[spec.key] = spec
        info = self.resources[spec.kmock_resource]
        info.kind = spec.kind
        info.namespaced = spec.namespaced
        info.singular = spec.singular or spec.kind.lower()
        info.verbs = set(ALL_VERBS)
        info.shortnames = set(spec.shortnames)
        info.categories = set(spec.categories)
        info.subresources = set(spec.subresources)

    def register_crd(self, crd: Mapping[str, Any]) -> list[ResourceSpec]:
        """Register the served versions of a CustomResourceDefinition (a dict as in YAML)."""
        crd_spec = crd["spec"]
        names = crd_spec["names"]
        specs = []
        for version in crd_spec.get("versions", []):
            if not version.get("served", True):
                continue
            spec = ResourceSpec(
                group=crd_spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=crd_spec.get("scope", "Namespaced") == "Namespaced",
                subresources=tuple(sorted((version.get("subresources") or {}).keys())),
                singular=names.get("singular", ""),
                shortnames=tuple(names.get("shortNames", [])),
                categories=tuple(names.get("categories", [])),
            )
            self.register_resource(spec)
            openapi_schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if openapi_schema:
                self._schemas[spec.key] = copy.deepcopy(openapi_schema)
            else:
                self._schemas.pop(spec.key, None)
            self._printer_columns[spec.key] = list(version.get("additionalPrinterColumns") or [])
            specs.append(spec)
        return specs

    def schema_for(self, resource: str) -> dict[str, Any] | None:
        """The openAPIV3Schema custom resources of ``resource`` are validated with."""
        return self._schemas.get(self._find_spec(resource).key)

    def spec_for(self, group: str, version: str, plural: str) -> ResourceSpec:
        return self._specs[(group, version, plural)]

    def _find_spec(self, resource: str) -> ResourceSpec:
        """``'v1/pods'``, ``'pods'``, ``'kubetune.io/v1alpha1/studies'``, ``'studies'``..."""
        parts = resource.strip("/").split("/")
        for spec in self._specs.values():
            if parts == [spec.plural] or (parts == [spec.version, spec.plural] and not spec.group):
                return spec
            if parts == [spec.group, spec.version, spec.plural]:
                return spec
        raise KeyError(resource)

    async def _serve_server_version(self, request: Any) -> Any:
        # kmock 0.8 says v1.26 (k3s); our chart needs >= 1.27, as Helm checks.
        result = await super()._serve_server_version(request)
        return {**result, "minor": "34", "gitVersion": "v1.34.0"}

    async def _serve_version(self, request: Any) -> Any:
        # kmock 0.8 reports the core group's groupVersion as "/v1"; Kubernetes says "v1".
        result = await super()._serve_version(request)
        if isinstance(result, dict) and str(result.get("groupVersion", "")).startswith("/"):
            result["groupVersion"] = result["groupVersion"][1:]
        # kmock lists subresources with their resource's names and verbs; kubectl would then
        # match `kubectl get kts` (short name) or `kubectl get kubetune` (category) to
        # "studies/status". Kubernetes lists them with no names of their own.
        for entry in (result.get("resources") or []) if isinstance(result, dict) else []:
            if "/" in entry.get("name", ""):
                sub = entry["name"].split("/", 1)[1]
                entry.pop("shortNames", None)
                entry.pop("categories", None)
                entry["singularName"] = ""
                entry["verbs"] = list(_SUBRESOURCE_VERBS.get(sub, ("get", "patch", "update")))
        return result

    # -- synchronous accessors (call in the loop thread, or via EmulatorServer.call) ---------

    @property
    def resource_version(self) -> int:
        return self._rv

    def watch_count(self, resource: str) -> int:
        """How many watch streams are open now for the resource (e.g. ``'studies'``)."""
        return self._watch_counts.get(self._find_spec(resource).key, 0)

    def live_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        spec = self._find_spec(resource)
        return [
            copy.deepcopy(raw)
            for (key, ns, _), raw in self._iter_live()
            if key == spec.key and (namespace is None or ns == namespace)
        ]

    # -- HTTP entry point ----------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw_request.read()
        entry = self._log_request(raw_request, body)
        route = self._route(raw_request.path)
        try:
            user = self.authenticate(raw_request.headers.get("Authorization"))
            entry["user"] = user.name
            attributes = self._attributes(user, raw_request, route)
            if self.authorization and not user.is_superuser:
                assert self._rbac is not None
                allowed, reason = self._rbac.authorize(attributes)
                if not allowed:
                    raise forbidden_error(attributes, reason)
        except ApiError as e:
            response = aiohttp.web.json_response(e.as_status(), status=e.status)
            entry["status"] = response.status
            entry["response"] = e.message
            return response
        context = RequestContext(user, attributes, raw_request.query.get("fieldValidation", ""))
        token = _REQUEST.set(context)
        try:
            response = await self._serve(raw_request, route, body)
        finally:
            _REQUEST.reset(token)
        if response.status >= 400 and isinstance(response, aiohttp.web.Response):
            with contextlib.suppress(Exception):
                entry["response"] = (response.text or "")[:2000]
        if context.warnings:
            entry["warnings"] = list(dict.fromkeys(context.warnings))
            if not response.prepared:
                for warning in entry["warnings"]:
                    response.headers.add("Warning", f"299 - {json.dumps(warning)}")
        entry["status"] = response.status
        return response

    async def _serve(
        self, raw_request: aiohttp.web.BaseRequest, route: _Route | None, body: bytes
    ) -> aiohttp.web.StreamResponse:
        if raw_request.path.startswith(openapi.PREFIX):
            document = openapi.serve(raw_request.path, self._specs.values(), self._schemas)
            return _json(document) if document is not None else _json({}, 404)
        if route is None:
            return await super().__call__(raw_request)  # discovery, /version, reactions
        return await self._serve_resource(raw_request, route, body)

    def _attributes(
        self, user: UserInfo, raw: aiohttp.web.BaseRequest, route: _Route | None
    ) -> Attributes:
        """The request's authorization attributes, as Kubernetes' ``RequestInfo``."""
        method = raw.method.upper()
        if route is None:
            verb = "get" if method == "HEAD" else method.lower()
            return Attributes(user, verb, resource_request=False, path=raw.path)
        watch = _truthy(raw.query.get("watch"))
        verb = request_verb(method, route.name is not None, watch)
        name = route.name or ""
        if verb in ("list", "watch") and not name:
            for path, op, value in parse_field_selector_lenient(raw.query.get("fieldSelector")):
                if path == "metadata.name" and op == "=":
                    name = value
        namespace = route.namespace or ""
        if route.group == "" and route.plural == "namespaces" and route.name:
            namespace = route.name
        return Attributes(
            user,
            verb,
            path=raw.path,
            api_group=route.group,
            api_version=route.version,
            resource=route.plural,
            subresource=route.subresource or "",
            namespace=namespace,
            name=name,
        )

    async def _serve_resource(
        self, raw_request: aiohttp.web.BaseRequest, route: _Route, body: bytes
    ) -> aiohttp.web.StreamResponse:
        try:
            if route.spec is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f"the server could not find the requested resource "
                    f"({route.group}/{route.version}/{route.plural})",
                )
            data = None
            if body:
                try:
                    data = json.loads(body)
                except ValueError:
                    try:
                        data = yaml.safe_load(body)
                    except yaml.YAMLError as e:
                        raise ApiError(400, "BadRequest", f"invalid body: {e}") from None
            return await self._dispatch(raw_request, route, data)
        except ApiError as e:
            return aiohttp.web.json_response(e.as_status(), status=e.status)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as e:  # a bug in the emulator: answer like a broken apiserver would
            error = ApiError(500, "InternalError", f"{e!r}", {"traceback": traceback.format_exc()})
            return aiohttp.web.json_response(error.as_status(), status=500)

    def _log_request(self, raw_request: aiohttp.web.BaseRequest, body: bytes) -> dict[str, Any]:
        entry = {
            "method": raw_request.method,
            "path": raw_request.path,
            "query": dict(raw_request.query),
            "content_type": raw_request.headers.get("Content-Type", ""),
            "user_agent": raw_request.headers.get("User-Agent", ""),
            "body": body.decode("utf-8", "replace")[:10_000],
            "status": None,  # filled in once answered (for a watch: when it ends)
        }
        self.request_log.append(entry)
        if len(self.request_log) > self.request_log_size:
            del self.request_log[: len(self.request_log) - self.request_log_size]
        return entry

    def server_errors(self) -> list[dict[str, Any]]:
        """The logged requests answered with a 5xx (there should be none)."""
        return [e for e in self.request_log if (e.get("status") or 0) >= 500]

    def warnings(self) -> list[dict[str, Any]]:
        """The logged requests answered with warnings (e.g. unknown fields pruned)."""
        return [e for e in self.request_log if e.get("warnings")]

    def refusals(self) -> list[dict[str, Any]]:
        """The logged requests refused with 401, 403 or 422 (what a cluster would refuse)."""
        return [e for e in self.request_log if e.get("status") in (401, 403, 422)]

    def _route(self, path: str) -> _Route | None:
        parts = [part for part in path.split("/") if part]
        if len(parts) >= 3 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) >= 2 else None
        subresource = "/".join(rest[2:]) or None
        spec = self._specs.get((group, version, plural))
        return _Route(spec, group, version, plural, namespace, name, subresource)

    async def _dispatch(
        self, raw: aiohttp.web.BaseRequest, route: _Route, data: Any
    ) -> aiohttp.web.StreamResponse:
        spec = route.spec
        assert spec is not None
        ns, name, sub = route.namespace, route.name, route.subresource
        query = raw.query
        method = raw.method.upper()
        if spec.namespaced is False and ns is not None:
            raise ApiError(404, "NotFound", f"{spec} is not namespaced")
        if sub is not None and sub not in spec.subresources:
            raise ApiError(404, "NotFound", f"{spec} has no subresource {sub!r}")
        if name is not None and spec.namespaced and ns is None:
            raise ApiError(404, "NotFound", f"{spec} is namespaced: a namespace is required")

        if method == "GET":
            table = self._table_converter(raw, spec) if sub is None else None
            if _truthy(query.get("watch")):
                return await self._serve_watch_stream(raw, spec, ns, name, query, table)
            if name is None:
                found = self._list(spec, ns, query)
                return _json(table.list(found) if table else found)
            if sub == "log":
                return self._serve_log(spec, ns, name, query)
            obj = self._get(spec, ns, name)
            return _json(table.object(obj) if table else obj)
        if method == "POST":
            if name is None:
                return _json(self._create(spec, ns, data, query), status=201)
            if sub == "eviction":
                self._delete(spec, ns, name, query, None)
                return _json(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "code": 201,
                    },
                    status=201,
                )
            if sub == "token" and spec.key == SERVICEACCOUNTS:
                return _json(self._token_request(ns or "", name, data), status=201)
            if sub == "binding":
                target = ((data or {}).get("target") or {}).get("name")
                with self.as_system():
                    self._patch(spec, ns, name, {"spec": {"nodeName": target}}, None, query)
                return _json(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "code": 201,
                    },
                    status=201,
                )
            raise ApiError(405, "MethodNotAllowed", "POST is not supported here")
        if method == "PUT" and name is not None and sub in (None, "status"):
            return _json(self._replace(spec, ns, name, data, sub))
        if method == "PATCH" and name is not None and sub in (None, "status"):
            return _json(
                self._patch(spec, ns, name, data, sub, query, raw.headers.get("Content-Type", ""))
            )
        if method == "DELETE":
            if name is None:
                return _json(self._delete_collection(spec, ns, query, data))
            return _json(self._delete(spec, ns, name, query, data))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {raw.path}")

    def _table_converter(
        self, raw: aiohttp.web.BaseRequest, spec: ResourceSpec
    ) -> tables.TableConverter | None:
        """For ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` (``kubectl get``): the
        Table columns of the CRD version's printer columns, or of a built-in kind."""
        version = tables.requested_table_version(raw.headers.get("Accept"))
        if version is None:
            return None
        if spec.key in self._printer_columns:
            columns = tables.crd_columns(self._printer_columns[spec.key])
        else:
            columns = tables.builtin_columns(spec.group, spec.plural)
        return tables.TableConverter(columns, version, raw.query.get("includeObject"))

    def _token_request(self, ns: str, name: str, data: Any) -> dict[str, Any]:
        """``POST serviceaccounts/NAME/token``: an ``authentication.k8s.io/v1`` TokenRequest."""
        account = self._current(self._specs[SERVICEACCOUNTS], ns, name)
        if account is None:
            raise ApiError(
                404,
                "NotFound",
                f'serviceaccounts "{name}" not found',
                {"name": name, "group": "", "kind": "serviceaccounts"},
            )
        body = data if isinstance(data, Mapping) else {}
        request_spec = dict(body.get("spec") or {})
        expiration = int(request_spec.get("expirationSeconds") or 3600)
        if expiration < 600:
            raise invalid(
                "TokenRequest",
                "authentication.k8s.io",
                name,
                [
                    FieldError.invalid(
                        "spec.expirationSeconds",
                        expiration,
                        "may not specify a duration less than 10 minutes",
                    )
                ],
            )
        audiences = list(request_spec.get("audiences") or [DEFAULT_AUDIENCE])
        token, issued = self._tokens.issue(
            ns,
            name,
            account["metadata"]["uid"],
            expiration_seconds=expiration,
            audiences=audiences,
            bound_object=request_spec.get("boundObjectRef"),
        )
        expires = datetime.datetime.fromtimestamp(issued.expires, tz=datetime.timezone.utc)
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "creationTimestamp": _now(),
            },
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration,
                "boundObjectRef": request_spec.get("boundObjectRef"),
            },
            "status": {
                "token": token,
                "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    # -- storage primitives --------------------------------------------------------------------

    def _okey(self, spec: ResourceSpec, ns: str | None, name: str) -> tuple[Any, str | None, str]:
        return (spec.kmock_resource, ns if spec.namespaced else None, name)

    def _current(self, spec: ResourceSpec, ns: str | None, name: str) -> dict[str, Any] | None:
        okey = self._okey(spec, ns, name)
        if okey not in self.objects:
            return None
        obj = self.objects[okey]
        return None if obj.deleted else obj.last.raw

    def _require(self, spec: ResourceSpec, ns: str | None, name: str) -> dict[str, Any]:
        current = self._current(spec, ns, name)
        if current is None:
            raise ApiError(
                404,
                "NotFound",
                f'{spec} "{name}" not found',
                {"name": name, "group": spec.group, "kind": spec.plural},
            )
        return current

    def _iter_live(
        self,
    ) -> Iterable[tuple[tuple[tuple[str, str, str], str | None, str], dict[str, Any]]]:
        for (res, ns, name), obj in list(self.objects.items()):
            if not obj.deleted:
                yield ((res.group, res.version, res.plural), ns, name), obj.last.raw

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(
        self, spec: ResourceSpec, etype: str, old: dict[str, Any] | None, new: dict[str, Any]
    ) -> None:
        ns = new.get("metadata", {}).get("namespace")
        rv = int(new["metadata"]["resourceVersion"])
        self._log.append(_Event(rv, spec.key, ns, etype, old, new))
        self._log_rvs.append(rv)
        if len(self._log) > 2 * self.event_log_size:
            cut = len(self._log) - self.event_log_size
            self._log_floor = self._log_rvs[cut - 1]
            del self._log[:cut]
            del self._log_rvs[:cut]
        for waiter in self._waiters:
            waiter.set()
        if spec.group == RBAC_GROUP:
            self._rbac_generation += 1
            if spec.plural == "clusterroles":
                self._aggregate_cluster_roles()

    def _aggregate_cluster_roles(self) -> None:
        """The clusterrole-aggregation controller: aggregating roles get the matching rules."""
        if self._aggregating:
            return
        self._aggregating = True
        spec = self._specs[(RBAC_GROUP, "v1", "clusterroles")]
        try:
            with self.as_system():
                for _ in range(10):  # chains (view -> edit -> admin) settle in a few rounds
                    roles = self.live_objects(f"{RBAC_GROUP}/v1/clusterroles")
                    wanted = rbac.aggregated_rules(roles)
                    changed = False
                    for role in roles:
                        name = role["metadata"]["name"]
                        if name in wanted and (role.get("rules") or []) != wanted[name]:
                            current = self._require(spec, None, name)
                            self._update(spec, current, dict(current, rules=wanted[name]), None)
                            changed = True
                    if not changed:
                        break
        finally:
            self._aggregating = False

    def _store(self, spec: ResourceSpec, new: dict[str, Any], old: dict[str, Any] | None) -> None:
        meta = new["metadata"]
        okey = self._okey(spec, meta.get("namespace"), meta["name"])
        if okey not in self.objects:
            self.objects[okey] = new
        else:
            self.objects[okey].history.append(new)
        self._emit(spec, "ADDED" if old is None else "MODIFIED", old, new)

    def _remove(
        self,
        spec: ResourceSpec,
        current: dict[str, Any],
        *,
        propagate: bool = True,
    ) -> dict[str, Any]:
        final = copy.deepcopy(current)
        final["metadata"]["resourceVersion"] = str(self._next_rv())
        meta = final["metadata"]
        okey = self._okey(spec, meta.get("namespace"), meta["name"])
        self.objects[okey].history.append(final)
        self.objects[okey].delete()
        self._emit(spec, "DELETED", current, final)
        if spec.key == ("", "v1", "namespaces"):
            for (key, ns, name), _ in list(self._iter_live()):
                if ns == meta["name"] and key in self._specs:
                    self._delete_quietly(self._specs[key], ns, name)
        if propagate and meta.get("uid"):
            self._collect_garbage(meta["uid"])
        return final

    def _delete_quietly(self, spec: ResourceSpec, ns: str | None, name: str) -> None:
        with contextlib.suppress(ApiError):
            self._delete(spec, ns, name, {}, None)

    def _collect_garbage(self, owner_uid: str) -> None:
        live = list(self._iter_live())
        live_uids = {raw.get("metadata", {}).get("uid") for _, raw in live}
        for (key, ns, name), raw in live:
            refs = raw.get("metadata", {}).get("ownerReferences") or []
            if not any(ref.get("uid") == owner_uid for ref in refs):
                continue
            if any(ref.get("uid") in live_uids for ref in refs) or key not in self._specs:
                continue
            self._delete_quietly(self._specs[key], ns, name)

    def _ensure_namespace(self, name: str) -> None:
        spec = self._specs[NAMESPACES]
        if self._current(spec, None, name) is None:
            with self.as_system():
                self._create(spec, None, {"metadata": {"name": name}}, {})

    def _populate_namespace(self, name: str) -> None:
        """What controllers put in a new namespace: the ``default`` ServiceAccount and the
        ``kube-root-ca.crt`` ConfigMap (the CA that signs the API server's certificate)."""
        with self.as_system():
            accounts = self._specs[SERVICEACCOUNTS]
            if self._current(accounts, name, "default") is None:
                self._create(accounts, name, {"metadata": {"name": "default"}}, {})
            configmaps = self._specs[("", "v1", "configmaps")]
            if self._current(configmaps, name, ROOT_CA_CONFIGMAP) is None:
                body = {
                    "metadata": {
                        "name": ROOT_CA_CONFIGMAP,
                        "annotations": {
                            "kubernetes.io/description": "Contains a CA bundle that can be used "
                            "to verify the kube-apiserver when using internal endpoints such as "
                            "the internal service IP or kubernetes.default.svc. No other usage "
                            "is guaranteed across distributions of Kubernetes clusters."
                        },
                    },
                    "data": {"ca.crt": self.ca_pem or ""},
                }
                self._create(configmaps, name, body, {})

    # -- validation & defaulting ---------------------------------------------------------------

    def _decode(self, spec: ResourceSpec, obj: dict[str, Any]) -> list[FieldError]:
        """What decoding does: unknown fields pruned (a warning each; with
        ``fieldValidation=Strict`` a 400), CRD defaults applied, wrong JSON types refused (400).

        Returns the schema's 422 errors (missing required fields of built-in kinds).
        """
        context = _REQUEST.get()
        strict = context is not None and context.field_validation == "Strict"
        errors: list[FieldError] = []
        unknown: list[str] = []
        custom = self._schemas.get(spec.key) if self.validate_custom_resources else None
        builtin = validation.builtin_schemas() if self.validate_builtin else None
        if custom is not None:
            unknown += schema.prune(obj, custom)
            if builtin is not None and isinstance(obj.get("metadata"), dict):
                meta_unknown, meta_errors = builtin.check(
                    obj["metadata"],
                    validator=builtin.object_meta,
                    kind=spec.kind,
                    version=spec.version,
                    strict=False,
                    prefix=["metadata"],
                )
                unknown += [w.split('"', 1)[1].rsplit('"', 1)[0] for w in meta_unknown]
                errors += meta_errors
            if unknown and strict:
                listed = ", ".join(f"unknown field {json.dumps(p)}" for p in unknown)
                raise bad_request(
                    f'{spec.kind} in version "{spec.version}" cannot be handled as a '
                    f"{spec.kind}: strict decoding error: {listed}"
                )
            schema.prune_nulls(obj, custom)
            schema.apply_defaults(obj, custom)
        elif builtin is not None and spec.group in BUILTIN_GROUPS and spec.key != NODES:
            validator = builtin.validator(spec.api_version, spec.kind)
            if validator is not None:
                warnings, errors = builtin.check(
                    obj, validator=validator, kind=spec.kind, version=spec.version, strict=strict
                )
                unknown += [w.split('"', 1)[1].rsplit('"', 1)[0] for w in warnings]
        self._warn(f"unknown field {json.dumps(p)}" for p in unknown)
        return errors

    def _validate(
        self,
        spec: ResourceSpec,
        obj: Mapping[str, Any],
        old: Mapping[str, Any] | None = None,
        errors: Sequence[FieldError] = (),
        sub: str | None = None,
    ) -> None:
        """422 Invalid for what the object's validation refuses (metadata, kind, schema)."""
        meta = obj.get("metadata", {})
        problems = list(errors)
        name = meta.get("name", "")
        if spec.group == RBAC_GROUP:  # RBAC names are path segments ("system:discovery")
            if not name or name in (".", "..") or "/" in name or "%" in name:
                problems.append(
                    FieldError.invalid("metadata.name", name, 'may not contain "/" or "%"')
                )
        elif not _NAME_RE.match(name) or len(name) > 253:
            problems.append(FieldError.invalid("metadata.name", name, validation.SUBDOMAIN_MESSAGE))
        if spec.key in (NAMESPACES, ("", "v1", "services")) and len(name) > 63:
            problems.append(
                FieldError.invalid("metadata.name", name, "must be no more than 63 characters")
            )
        for key, value in (meta.get("labels") or {}).items():
            label_name = key.rsplit("/", 1)[-1]
            if not _LABEL_NAME_RE.match(label_name) or len(label_name) > 63:
                problems.append(
                    FieldError.invalid(
                        "metadata.labels",
                        key,
                        "name part must consist of alphanumeric characters, '-', '_' or '.', "
                        "and must start and end with an alphanumeric character, and be at "
                        "most 63 characters",
                    )
                )
            if not isinstance(value, str) or not _LABEL_VALUE_RE.match(value) or len(value) > 63:
                problems.append(
                    FieldError.invalid(
                        "metadata.labels",
                        value,
                        "a valid label must be an empty string or consist of alphanumeric "
                        "characters, '-', '_' or '.', and must start and end with an "
                        "alphanumeric character, and be at most 63 characters",
                    )
                )
        for key, value in (meta.get("annotations") or {}).items():
            if not isinstance(value, str):
                problems.append(
                    FieldError.invalid(f"metadata.annotations[{key}]", value, "must be a string")
                )
        if spec.key in (("", "v1", "configmaps"), ("", "v1", "secrets")):
            for key, value in (obj.get("data") or {}).items():
                if not isinstance(value, str):
                    problems.append(FieldError.invalid(f"data[{key}]", value, "must be a string"))
        custom = self._schemas.get(spec.key) if self.validate_custom_resources else None
        if custom is not None:
            problems += schema.validate(obj, custom)
        if spec.key == PODS and self.validate_builtin:
            problems += validation.validate_pod(obj)
            if old is not None and sub is None:
                problems += validation.pod_spec_update_errors(old, obj)
        if problems:
            raise invalid(spec.kind, spec.group, name, problems)

    def _admit(
        self,
        spec: ResourceSpec,
        obj: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        sub: str | None = None,
    ) -> None:
        """Validating admission: PodSecurity (pod create) and
        OwnerReferencesPermissionEnforcement, for requests (not the emulator's own writes)."""
        context = _REQUEST.get()
        if context is None:
            return
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or ""
        if spec.key == PODS and old is None and self.pod_security:
            ns_obj = self._current(self._specs[NAMESPACES], None, namespace) or {}
            error = admission.pod_security_error(obj, (ns_obj.get("metadata") or {}).get("labels"))
            if error is not None:
                raise error
        if self.owner_references_permission_enforcement:
            attributes = Attributes(
                context.user,
                "create" if old is None else "update",
                api_group=spec.group,
                api_version=spec.version,
                resource=spec.plural,
                subresource=sub or "",
                namespace=namespace,
                name=meta.get("name", ""),
            )
            admission.owner_reference_checks(
                attributes, obj, old, self.authorize, self._resolve_kind
            )

    def _resolve_kind(self, api_version: str, kind: str) -> tuple[str, str] | None:
        """``(group, plural)`` of the resource of a kind (a REST mapping)."""
        for spec in self._specs.values():
            if spec.api_version == api_version and spec.kind == kind:
                return spec.group, spec.plural
        return None

    def _service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._current(self._specs[SERVICEACCOUNTS], namespace, name)

    @staticmethod
    def _normalize(spec: ResourceSpec, obj: dict[str, Any]) -> None:
        if spec.key == ("", "v1", "secrets"):
            string_data = obj.pop("stringData", None) or {}
            if string_data:
                data = dict(obj.get("data") or {})
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
                obj["data"] = data

    # -- operations ----------------------------------------------------------------------------

    def _get(self, spec: ResourceSpec, ns: str | None, name: str) -> dict[str, Any]:
        return self._require(spec, ns, name)

    def _list(
        self,
        spec: ResourceSpec,
        ns: str | None,
        query: Mapping[str, str],
    ) -> dict[str, Any]:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"))
        items = [
            raw
            for (key, ons, _), raw in sorted(
                self._iter_live(), key=lambda kv: (kv[0][1] or "", kv[0][2])
            )
            if key == spec.key
            and (ns is None or ons == ns)
            and match_labels(raw.get("metadata", {}).get("labels"), labels)
            and match_fields(raw, fields)
        ]
        return {
            "apiVersion": spec.api_version,
            "kind": f"{spec.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _create(
        self, spec: ResourceSpec, ns: str | None, data: Any, query: Mapping[str, str]
    ) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise ApiError(400, "BadRequest", "the body of a create must be an object")
        obj = copy.deepcopy(dict(data))
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if spec.namespaced:
            body_ns = meta.get("namespace")
            if ns is None:
                raise ApiError(400, "BadRequest", f"{spec} is namespaced: POST to a namespace")
            if body_ns and body_ns != ns:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request",
                )
            meta["namespace"] = ns
            if self._current(self._specs[NAMESPACES], None, ns) is None:
                # auto_namespaces is a convenience for tests acting as the cluster's admin
                if not self.auto_namespaces or not self.caller().is_superuser:
                    raise ApiError(
                        404,
                        "NotFound",
                        f'namespaces "{ns}" not found',
                        {"name": ns, "kind": "namespaces"},
                    )
                self._ensure_namespace(ns)
        else:
            meta.pop("namespace", None)

        name = meta.get("name")
        requested_name = name or ""
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise ApiError(
                    422,
                    "Invalid",
                    f"{spec.kind} is invalid: metadata.name: "
                    "Required value: name or generateName is required",
                )
            for _ in range(100):
                name = prefix + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
                if self._current(spec, ns, name) is None:
                    break
            meta["name"] = name
        if self._current(spec, ns, name) is not None:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{spec} "{name}" already exists',
                {"name": name, "group": spec.group, "kind": spec.plural},
            )

        obj["apiVersion"] = spec.api_version
        obj["kind"] = spec.kind
        for field in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "selfLink",
            "managedFields",
        ):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        if spec.has_status:
            obj.pop("status", None)
        self._normalize(spec, obj)
        if spec.key == ("", "v1", "pods"):
            pod_spec = obj.setdefault("spec", {})
            pod_spec.setdefault("terminationGracePeriodSeconds", 30)
            pod_spec.setdefault("restartPolicy", "Always")
            pod_spec.setdefault("serviceAccountName", "default")
            pod_spec.setdefault("schedulerName", "default-scheduler")
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            if self.service_account_admission:
                admission.service_account_admission(
                    obj,
                    ns or "",
                    requested_name,
                    self._service_account,
                    mount_token=self.mount_service_account_token,
                )
        elif spec.key == NAMESPACES:
            obj["status"] = {"phase": "Active"}
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        elif spec.key == ("", "v1", "secrets"):
            obj.setdefault("type", "Opaque")
        errors = self._decode(spec, obj)
        self._validate(spec, obj, None, errors)
        self._admit(spec, obj, None)
        if query.get("dryRun"):
            return obj
        meta["resourceVersion"] = str(self._next_rv())
        self._store(spec, obj, None)
        if spec.key == CRDS:
            self.register_crd(obj)
        if spec.key == NAMESPACES:
            self._populate_namespace(name)
        return obj

    def _replace(
        self, spec: ResourceSpec, ns: str | None, name: str, data: Any, sub: str | None
    ) -> dict[str, Any]:
        current = self._require(spec, ns, name)
        if not isinstance(data, Mapping):
            raise ApiError(400, "BadRequest", "the body of an update must be an object")
        new = copy.deepcopy(dict(data))
        meta = new.get("metadata") or {}
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise self._conflict(spec, name)
        return self._update(spec, current, new, sub)

    def _patch(
        self,
        spec: ResourceSpec,
        ns: str | None,
        name: str,
        data: Any,
        sub: str | None,
        query: Mapping[str, str],
        content_type: str = "",
    ) -> dict[str, Any]:
        kind = content_type.split(";")[0].strip().lower()
        if kind == "application/apply-patch+yaml":
            if not query.get("fieldManager"):
                raise ApiError(
                    400, "BadRequest", "PATCH, application/apply-patch+yaml requires fieldManager"
                )
            if not isinstance(data, Mapping):
                raise ApiError(400, "BadRequest", "an apply patch must be an object")
            if self._current(spec, ns, name) is None and sub is None:
                body = copy.deepcopy(dict(data))
                body.setdefault("metadata", {})["name"] = name
                return self._create(spec, ns, body, query)
        if kind == "application/strategic-merge-patch+json" and spec.group not in BUILTIN_GROUPS:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media "
                "types include: application/json-patch+json, "
                "application/merge-patch+json, application/apply-patch+yaml",
            )
        current = self._require(spec, ns, name)
        if isinstance(data, list):
            try:
                patched = jsonpatch.apply_patch(copy.deepcopy(current), data, in_place=False)
            except jsonpatch.JsonPatchTestFailed as e:
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an "
                    f"error in our request: test operation failed: {e}",
                ) from None
            except (
                jsonpatch.JsonPatchException,
                jsonpointer.JsonPointerException,
                KeyError,
                IndexError,
                TypeError,
            ) as e:
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error in our request: {e}",
                ) from None
        elif isinstance(data, Mapping):
            wanted_rv = (data.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise self._conflict(spec, name)
            if kind == "application/strategic-merge-patch+json":
                patched = strategic_merge_patch(current, data)
            else:  # merge patch; apply patches are approximated by it
                patched = merge_patch(current, data)
        else:
            raise ApiError(400, "BadRequest", "a patch must be a JSON list or object")
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", "the patched object is not an object")
        return self._update(spec, current, patched, sub)

    @staticmethod
    def _conflict(spec: ResourceSpec, name: str) -> ApiError:
        return ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {spec} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try "
            "again",
            {"name": name, "group": spec.group, "kind": spec.plural},
        )

    def _update(
        self, spec: ResourceSpec, current: dict[str, Any], new: dict[str, Any], sub: str | None
    ) -> dict[str, Any]:
        if sub == "status":
            result = copy.deepcopy(current)
            if "status" in new:
                result["status"] = copy.deepcopy(new["status"])
            else:
                result.pop("status", None)
            errors = self._decode(spec, result)
            self._validate(spec, result, current, errors, sub)
        else:
            result = copy.deepcopy(new)  # patches share unchanged subtrees with `current`
            if spec.has_status:
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
                else:
                    result.pop("status", None)
            meta = result.get("metadata")
            if not isinstance(meta, dict):
                meta = result["metadata"] = {}
            cur_meta = current["metadata"]
            for field in (
                "uid",
                "creationTimestamp",
                "namespace",
                "name",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ):
                if field in cur_meta:
                    meta[field] = cur_meta[field]
                else:
                    meta.pop(field, None)
            result["apiVersion"] = spec.api_version
            result["kind"] = spec.kind
            self._normalize(spec, result)
            if cur_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(cur_meta.get("finalizers") or [])
                if added:
                    raise ApiError(
                        422,
                        "Invalid",
                        f'{spec.kind} "{meta["name"]}" is invalid: '
                        "metadata.finalizers: Forbidden: no new finalizers can be "
                        "added if the object is being deleted",
                    )
            if not meta.get("finalizers"):
                meta.pop("finalizers", None)
            errors = self._decode(spec, result)
            self._validate(spec, result, current, errors, sub)
            self._admit(spec, result, current, sub)

        if result == current:
            return current  # a no-op: Kubernetes changes neither resourceVersion nor anything

        def _payload(obj: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in obj.items() if k not in ("metadata", "status")}

        if _payload(result) != _payload(current):
            result["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        result["metadata"]["resourceVersion"] = str(self._next_rv())
        self._store(spec, result, current)
        if spec.key == CRDS:
            self.register_crd(result)
        meta = result["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not self._is_graceful_pod_pending(spec, result)
        ):
            self._remove(spec, result)
        return result

    def _is_graceful_pod_pending(self, spec: ResourceSpec, obj: Mapping[str, Any]) -> bool:
        """A gracefully deleted pod waits for its kubelet even with no finalizers."""
        if spec.key != ("", "v1", "pods") or not self.graceful_pod_deletion:
            return False
        meta = obj.get("metadata", {})
        return bool(meta.get("deletionGracePeriodSeconds")) and self._pod_is_active(obj)

    @staticmethod
    def _pod_is_active(pod: Mapping[str, Any]) -> bool:
        return bool((pod.get("spec") or {}).get("nodeName")) and (pod.get("status") or {}).get(
            "phase"
        ) not in ("Succeeded", "Failed")

    def _delete(
        self, spec: ResourceSpec, ns: str | None, name: str, query: Mapping[str, str], data: Any
    ) -> dict[str, Any]:
        current = self._require(spec, ns, name)
        options = data if isinstance(data, Mapping) else {}
        grace_text = query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        grace = None if grace_text in (None, "") else int(grace_text)
        policy = query.get("propagationPolicy", options.get("propagationPolicy"))
        preconditions = options.get("preconditions") or {}
        meta = current["metadata"]
        if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
            raise self._conflict(spec, name)
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta.get(
            "resourceVersion"
        ):
            raise self._conflict(spec, name)

        graceful = (
            spec.key == ("", "v1", "pods")
            and self.graceful_pod_deletion
            and self._pod_is_active(current)
            and grace != 0
        )
        if graceful:
            if grace is None:
                grace = int((current.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            old_grace = meta.get("deletionGracePeriodSeconds")
            if meta.get("deletionTimestamp") and old_grace is not None and old_grace <= grace:
                return current
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = _now(grace)
            new["metadata"]["deletionGracePeriodSeconds"] = max(grace, 1)
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            self._store(spec, new, current)
            return new

        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return current
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            self._store(spec, new, current)
            return new
        return self._remove(spec, current, propagate=policy != "Orphan")

    def _delete_collection(
        self, spec: ResourceSpec, ns: str | None, query: Mapping[str, str], data: Any
    ) -> dict[str, Any]:
        listing = self._list(spec, ns, query)
        for item in listing["items"]:
            meta = item["metadata"]
            with contextlib.suppress(ApiError):
                self._delete(spec, meta.get("namespace"), meta["name"], query, data)
        return listing

    def _serve_log(
        self, spec: ResourceSpec, ns: str | None, name: str, query: Mapping[str, str]
    ) -> aiohttp.web.StreamResponse:
        self._require(spec, ns, name)
        text = self.log_provider(ns or "", name) if self.log_provider else None
        if text is None:
            raise ApiError(400, "BadRequest", f'container in pod "{name}" is waiting to start')
        if query.get("tailLines"):
            text = "".join(text.splitlines(keepends=True)[-int(query["tailLines"]) :])
        return aiohttp.web.Response(text=text, content_type="text/plain")

    # -- watching ------------------------------------------------------------------------------

    def _visible_event(self, event: _Event, labels: Any, fields: Any) -> str | None:
        def matches(obj: Mapping[str, Any] | None) -> bool:
            return (
                obj is not None
                and match_labels(obj.get("metadata", {}).get("labels"), labels)
                and match_fields(obj, fields)
            )

        if event.type == "ADDED":
            return "ADDED" if matches(event.new) else None
        if event.type == "DELETED":
            return "DELETED" if matches(event.old) or matches(event.new) else None
        was, now = matches(event.old), matches(event.new)
        if was and now:
            return "MODIFIED"
        if now:
            return "ADDED"
        if was:
            return "DELETED"
        return None

    async def _serve_watch_stream(
        self,
        raw: aiohttp.web.BaseRequest,
        spec: ResourceSpec,
        ns: str | None,
        name: str | None,
        query: Mapping[str, str],
        table: tables.TableConverter | None = None,
    ) -> aiohttp.web.StreamResponse:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"))
        if name is not None:
            fields = [*fields, ("metadata.name", "=", name)]
        since_text = query.get("resourceVersion") or ""
        send_initial = _truthy(query.get("sendInitialEvents"))
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        deadline = None if timeout is None else time.monotonic() + timeout
        if since_text and not since_text.isdigit():
            raise ApiError(400, "BadRequest", f"invalid resourceVersion {since_text!r}")

        waiter = asyncio.Event()
        self._waiters.add(waiter)
        self._watch_counts[spec.key] = self._watch_counts.get(spec.key, 0) + 1
        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        try:
            await response.prepare(raw)
            initial: list[dict[str, Any]] = []
            if not since_text or since_text == "0" or send_initial:
                cursor = self._rv
                for (key, ons, _), obj in sorted(
                    self._iter_live(), key=lambda kv: (kv[0][1] or "", kv[0][2])
                ):
                    if (
                        key == spec.key
                        and (ns is None or ons == ns)
                        and match_labels(obj.get("metadata", {}).get("labels"), labels)
                        and match_fields(obj, fields)
                    ):
                        initial.append({"type": "ADDED", "object": obj})
                if send_initial:
                    initial.append(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": spec.kind,
                                "apiVersion": spec.api_version,
                                "metadata": {
                                    "resourceVersion": str(cursor),
                                    "annotations": {"k8s.io/initial-events-end": "true"},
                                },
                            },
                        }
                    )
            else:
                cursor = int(since_text)
                if cursor < self._log_floor:
                    gone = ApiError(
                        410, "Expired", f"too old resource version: {cursor} ({self._log_floor})"
                    )
                    await response.write(_line({"type": "ERROR", "object": gone.as_status()}))
                    return response
            for event in initial:
                await response.write(_line(table.event(event) if table else event))
            while not self._closing:
                waiter.clear()
                start = bisect.bisect_right(self._log_rvs, cursor)
                pending = self._log[start:]
                for event in pending:
                    cursor = event.rv
                    if event.key != spec.key or (ns is not None and event.namespace != ns):
                        continue
                    etype = self._visible_event(event, labels, fields)
                    if etype is not None:
                        change = {"type": etype, "object": event.new}
                        await response.write(_line(table.event(change) if table else change))
                if pending:
                    continue
                transport = raw.transport
                if transport is None or transport.is_closing():
                    break
                wait_for = 1.0
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    wait_for = min(wait_for, remaining)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(waiter.wait(), timeout=wait_for)
        except (ConnectionError, RuntimeError):
            return response
        finally:
            self._waiters.discard(waiter)
            self._watch_counts[spec.key] -= 1
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    def close_watches(self) -> None:
        """End all watch streams (used when the server stops)."""
        self._closing = True
        for waiter in self._waiters:
            waiter.set()


def _json(obj: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        text=json.dumps(obj), status=status, content_type="application/json"
    )


def _line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


# ----------------------------------------------------------------------------------------------
# Running it as a real HTTP server
# ----------------------------------------------------------------------------------------------


class EmulatorServer:
    """Serves a :class:`KubeEmulator` over HTTP on ``host`` (a free port) in a daemon thread,
    and the same API over HTTPS on another port (``https_url``), as in-cluster clients want.

    ``with EmulatorServer() as server: server.url`` -- or ``start()``/``stop()``. The HTTPS
    certificate is for ``127.0.0.1``/``localhost`` (and ``kubernetes.default.svc``), signed
    by the CA at ``ca_path``, which is also every namespace's ``kube-root-ca.crt``.
    """

    def __init__(
        self,
        emulator: KubeEmulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = True,
        https_port: int = 0,
        tls_bundle: TLSBundle | None = None,
    ) -> None:
        self.emulator = emulator if emulator is not None else KubeEmulator()
        self.host = host
        self.port = port
        self.tls = tls
        self.https_port = https_port
        self.tls_bundle = tls_bundle if tls_bundle is not None else default_bundle()
        if self.tls and self.emulator.ca_pem != self.tls_bundle.ca_pem:
            raise ValueError("the emulator's ca_pem is not the CA of tls_bundle")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        if not self._started.is_set():
            raise RuntimeError("the emulator server is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def https_url(self) -> str:
        """``https://127.0.0.1:PORT``: the same API over TLS (see ``ca_path``)."""
        if not self._started.is_set() or not self.tls:
            raise RuntimeError("the emulator server is not serving HTTPS")
        return f"https://{self.host}:{self.https_port}"

    @property
    def ca_path(self) -> Path:
        """The PEM file of the CA that signed the HTTPS certificate."""
        return self.tls_bundle.ca_path

    def issue_token(self, namespace: str, service_account: str, **kwargs: Any) -> str:
        """:meth:`KubeEmulator.issue_token`, run in the server's thread."""
        return self.call(self.emulator.issue_token, namespace, service_account, **kwargs)

    def write_kubeconfig(
        self,
        path: str | os.PathLike[str],
        *,
        token: str = SUPERUSER_TOKEN,
        https: bool = False,
        namespace: str = "default",
    ) -> Path:
        """A kubeconfig for this server (``https``: the TLS port, with the CA)."""
        if https:
            return write_kubeconfig(
                path, self.https_url, token=token, namespace=namespace, ca_path=self.ca_path
            )
        return write_kubeconfig(path, self.url, token=token, namespace=namespace)

    def kubeconfig_for(
        self,
        path: str | os.PathLike[str],
        namespace: str,
        service_account: str,
        *,
        https: bool = False,
    ) -> Path:
        """A kubeconfig acting as the ServiceAccount (a fresh token from TokenRequest)."""
        token = self.issue_token(namespace, service_account)
        return self.write_kubeconfig(path, token=token, https=https, namespace=namespace)

    def start(self, timeout: float = 10.0) -> str:
        """Start serving; after :meth:`stop`, serves the same objects on the same port again."""
        self._started.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the emulator server did not start in time")
        if self._error is not None:
            raise RuntimeError("the emulator server failed to start") from self._error
        return self.url

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:
            self._error = e
            self._started.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator:
            server = aiohttp.web.Server(self.emulator, handler_cancellation=True)
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, self.host, self.port)
            await site.start()
            sockets = site._server.sockets if site._server is not None else []  # type: ignore
            self.port = sockets[0].getsockname()[1]
            if self.tls:
                secure = aiohttp.web.TCPSite(
                    runner,
                    self.host,
                    self.https_port,
                    ssl_context=self.tls_bundle.server_context(),
                )
                await secure.start()
                sockets = secure._server.sockets if secure._server is not None else []  # type: ignore
                self.https_port = sockets[0].getsockname()[1]
            self._started.set()
            try:
                await self._stop.wait()
            finally:
                self.emulator.close_watches()
                await asyncio.sleep(0.05)
                await runner.cleanup()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def call(
        self,
        fn: Callable[..., Any],
        *args: Any,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` in the server's loop thread and return its result."""
        assert self._loop is not None

        async def _wrapper() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(_wrapper(), self._loop).result(timeout)

    def wait_for_watch(self, resource: str, timeout: float = 30.0, count: int = 1) -> None:
        """Wait until at least ``count`` watch streams are open for ``resource``."""
        deadline = time.monotonic() + timeout
        while self.call(self.emulator.watch_count, resource) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nobody watches {resource} after {timeout}s")
            time.sleep(0.05)

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_kubeconfig(
    path: str | os.PathLike[str],
    server_url: str,
    *,
    token: str = SUPERUSER_TOKEN,
    namespace: str = "default",
    context: str = "kmock",
    ca_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a kubeconfig for ``server_url`` with a bearer token.

    The default token is the emulator's superuser (``system:masters``); pass a
    ServiceAccount's (``KubeEmulator.issue_token``) to act as it. ``ca_path``: the CA of an
    ``https://`` server (``EmulatorServer.ca_path``).
    """
    cluster: dict[str, Any] = {"server": server_url}
    if ca_path is not None:
        cluster["certificate-authority"] = str(ca_path)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": namespace},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------
# A small synchronous client for the tests
# ----------------------------------------------------------------------------------------------


class KubeClient:
    """A synchronous client for tests, configured from a kubeconfig by the official client.

    Resources are named like ``'v1/pods'``, ``'pods'``, ``'kubetune.io/v1alpha1/studies'``
    or ``'studies'`` (short forms are resolved for the default resources and any resource
    registered with :meth:`register`). Objects are plain dicts. Failures raise
    :class:`ApiError` with the HTTP status.

    ``.api_client``, ``.core`` (CoreV1Api) and ``.custom`` (CustomObjectsApi) give the
    official client's typed APIs, configured the same way.
    """

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        *,
        resources: Iterable[ResourceSpec] = DEFAULT_RESOURCES,
        default_namespace: str = "default",
    ) -> None:
        import kubernetes

        self.kubeconfig = str(kubeconfig)
        self.configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=self.kubeconfig, client_configuration=self.configuration
        )
        self.host = self.configuration.host.rstrip("/")
        self.session = requests.Session()
        auth = self.configuration.get_api_key_with_prefix(
            "BearerToken"
        ) or self.configuration.get_api_key_with_prefix("authorization")
        if auth:
            self.session.headers["Authorization"] = auth
        if self.configuration.ssl_ca_cert:
            # also passed per request: REQUESTS_CA_BUNDLE would override the session's
            self.session.verify = self.configuration.ssl_ca_cert
        self.default_namespace = default_namespace
        self._specs: list[ResourceSpec] = list(resources)
        self._api_client: Any = None

    # -- official client access ----------------------------------------------------------------

    @property
    def api_client(self) -> Any:
        import kubernetes

        if self._api_client is None:
            self._api_client = kubernetes.client.ApiClient(self.configuration)
        return self._api_client

    @property
    def core(self) -> Any:
        import kubernetes

        return kubernetes.client.CoreV1Api(self.api_client)

    @property
    def custom(self) -> Any:
        import kubernetes

        return kubernetes.client.CustomObjectsApi(self.api_client)

    def close(self) -> None:
        self.session.close()
        if self._api_client is not None:
            self._api_client.close()

    # -- resources -----------------------------------------------------------------------------

    def register(self, spec: ResourceSpec) -> None:
        self._specs.insert(0, spec)

    def spec(self, resource: str | ResourceSpec) -> ResourceSpec:
        if isinstance(resource, ResourceSpec):
            return resource
        parts = resource.strip("/").split("/")
        for spec in self._specs:
            if parts in ([spec.plural], [spec.group, spec.version, spec.plural]):
                return spec
            if not spec.group and parts == [spec.version, spec.plural]:
                return spec
        raise KeyError(f"unknown resource {resource!r}; register() it first")

    def url(
        self,
        resource: str | ResourceSpec,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        spec = self.spec(resource)
        base = f"/apis/{spec.group}/{spec.version}" if spec.group else f"/api/{spec.version}"
        if spec.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{spec.plural}"
        if name is not None:
            base += f"/{name}"
        if subresource is not None:
            base += f"/{subresource}"
        return self.host + base

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        content_type: str | None = None,
        timeout: float = 30.0,
    ) -> Any:
        headers = {"Content-Type": content_type} if content_type else {}
        response = self.session.request(
            method,
            url,
            json=json_body,
            params=params,
            headers=headers,
            timeout=timeout,
            verify=self.session.verify,
        )
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            if isinstance(body, dict):
                raise ApiError(
                    response.status_code,
                    body.get("reason", ""),
                    body.get("message", ""),
                    body.get("details"),
                    body,
                )
            raise ApiError(response.status_code, response.reason, str(body), body=body)
        return body

    def _ns(self, spec: ResourceSpec, namespace: str | None) -> str | None:
        if not spec.namespaced:
            return None
        return namespace if namespace is not None else self.default_namespace

    # -- operations ----------------------------------------------------------------------------

    def create(
        self, resource: str | ResourceSpec, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        spec = self.spec(resource)
        namespace = namespace or (body.get("metadata") or {}).get("namespace")
        return self.request("POST", self.url(spec, self._ns(spec, namespace)), json_body=body)

    def get(
        self,
        resource: str | ResourceSpec,
        name: str,
        namespace: str | None = None,
        *,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        spec = self.spec(resource)
        try:
            return self.request("GET", self.url(spec, self._ns(spec, namespace), name))
        except ApiError as e:
            if missing_ok and e.status == 404:
                return None
            raise

    def list(
        self,
        resource: str | ResourceSpec,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        all_namespaces: bool = False,
    ) -> list[dict[str, Any]]:
        spec = self.spec(resource)
        params = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        ns = None if all_namespaces else self._ns(spec, namespace)
        return self.request("GET", self.url(spec, ns), params=params)["items"]

    PATCH_TYPES = {
        "json": "application/json-patch+json",
        "merge": "application/merge-patch+json",
        "strategic": "application/strategic-merge-patch+json",
        "apply": "application/apply-patch+yaml",
    }

    def patch(
        self,
        resource: str | ResourceSpec,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        patch_type: str | None = None,
        field_manager: str = "kubetune-tests",
    ) -> dict[str, Any]:
        """Patch: by default a JSON patch for a list, a JSON merge patch for a dict.

        ``patch_type``: ``'json'``, ``'merge'``, ``'strategic'`` or ``'apply'``.
        """
        spec = self.spec(resource)
        patch_type = patch_type or ("json" if isinstance(patch, list) else "merge")
        params = {"fieldManager": field_manager} if patch_type == "apply" else None
        return self.request(
            "PATCH",
            self.url(spec, self._ns(spec, namespace), name, subresource),
            json_body=patch,
            content_type=self.PATCH_TYPES[patch_type],
            params=params,
        )

    def patch_status(
        self,
        resource: str | ResourceSpec,
        name: str,
        status: Mapping[str, Any],
        namespace: str | None = None,
    ) -> dict[str, Any]:
        return self.patch(resource, name, {"status": dict(status)}, namespace, subresource="status")

    def replace(
        self,
        resource: str | ResourceSpec,
        body: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        spec = self.spec(resource)
        name = body["metadata"]["name"]
        namespace = namespace or body["metadata"].get("namespace")
        return self.request(
            "PUT", self.url(spec, self._ns(spec, namespace), name, subresource), json_body=body
        )

    def delete(
        self,
        resource: str | ResourceSpec,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        spec = self.spec(resource)
        params: dict[str, Any] = {}
        if grace_period_seconds is not None:
            params["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy is not None:
            params["propagationPolicy"] = propagation_policy
        try:
            return self.request(
                "DELETE", self.url(spec, self._ns(spec, namespace), name), params=params
            )
        except ApiError as e:
            if missing_ok and e.status == 404:
                return None
            raise

    def apply_yaml(
        self, source: str | os.PathLike[str], namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Create every document of a YAML text (``str``) or file (``Path``).

        Kinds are resolved to resources; created CRDs are registered with this client.
        """
        text = Path(source).read_text() if isinstance(source, os.PathLike) else source
        created = []
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            spec = self.spec_for_kind(doc["apiVersion"], doc["kind"])
            created.append(self.create(spec, doc, namespace))
            if spec.plural == "customresourcedefinitions":
                for version in doc["spec"].get("versions", []):
                    names = doc["spec"]["names"]
                    self.register(
                        ResourceSpec(
                            doc["spec"]["group"],
                            version["name"],
                            names["plural"],
                            names["kind"],
                            doc["spec"].get("scope", "Namespaced") == "Namespaced",
                            tuple((version.get("subresources") or {}).keys()),
                        )
                    )
        return created

    def spec_for_kind(self, api_version: str, kind: str) -> ResourceSpec:
        for spec in self._specs:
            if spec.api_version == api_version and spec.kind == kind:
                return spec
        raise KeyError(f"unknown kind {api_version}/{kind}")

    # -- waiting -------------------------------------------------------------------------------

    @staticmethod
    def wait_for(
        predicate: Callable[[], Any],
        timeout: float = 30.0,
        interval: float = 0.05,
        message: str | Callable[[], str] = "condition",
    ) -> Any:
        """Poll ``predicate()`` until it returns something truthy; return that value."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                value = predicate()
            except ApiError as e:
                value, last_error = None, e
            if value:
                return value
            if time.monotonic() > deadline:
                text = message() if callable(message) else message
                suffix = f" (last error: {last_error})" if last_error else ""
                raise TimeoutError(f"timed out after {timeout}s waiting for {text}{suffix}")
            time.sleep(interval)

    def wait_for_object(
        self,
        resource: str | ResourceSpec,
        name: str,
        predicate: Callable[[dict[str, Any]], Any] = bool,
        namespace: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Wait until the object exists and ``predicate(obj)`` is truthy; return the object."""
        seen: list[Any] = [None]

        def check() -> Any:
            obj = self.get(resource, name, namespace, missing_ok=True)
            seen[0] = obj
            return obj if obj is not None and predicate(obj) else None

        return self.wait_for(
            check, timeout, message=lambda: f"{resource} {name!r}; last seen: {seen[0]!r}"
        )

    def wait_gone(
        self,
        resource: str | ResourceSpec,
        name: str,
        namespace: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        seen: list[Any] = [None]

        def check() -> bool:
            seen[0] = self.get(resource, name, namespace, missing_ok=True)
            return seen[0] is None

        self.wait_for(
            check,
            timeout,
            message=lambda: f"{resource} {name!r} to be gone; last seen: {seen[0]!r}",
        )
