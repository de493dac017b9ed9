"""RBAC authorization for the emulated API server, as Kubernetes' RBAC authorizer does it.

Every request of a user who is not in ``system:masters`` is checked against the
``rbac.authorization.k8s.io/v1`` objects stored in the emulator:

* request attributes as Kubernetes' ``RequestInfo``: verbs ``get``/``list``/``watch``/
  ``create``/``update``/``patch``/``delete``/``deletecollection`` from the HTTP method;
  ``resource/subresource`` (``pods/log``, ``studies/status``, ``serviceaccounts/token``);
  the namespace (for ``/api/v1/namespaces/NAME`` it is NAME); the name (also from a
  ``metadata.name=`` field selector of a list or watch); non-resource requests (``/api``,
  ``/apis/...``, ``/version``, ``/healthz``, ``/openapi/...``) with the lower-case method;
* rules: ``verbs``, ``apiGroups``, ``resources`` (``*``, ``*/status``), ``resourceNames``,
  ``nonResourceURLs`` (``/apis/*``); ClusterRoleBindings grant everywhere, RoleBindings
  (to a Role of their namespace or a ClusterRole) only in their namespace; subjects
  ``User``, ``Group``, ``ServiceAccount``;
* ClusterRoles with ``aggregationRule.clusterRoleSelectors`` get, in their stored
  ``rules``, the rules of the ClusterRoles whose labels match (:func:`aggregated_rules`,
  run by the emulator whenever a ClusterRole changes, like the aggregation controller);
* the bootstrap objects of a new cluster (:func:`bootstrap_objects`): ``cluster-admin``
  (bound to ``system:masters``), ``admin``/``edit``/``view`` (aggregated, with the usual
  core rules), ``system:discovery`` and ``system:basic-user`` (bound to
  ``system:authenticated``), ``system:public-info-viewer`` (also for anonymous).

A refusal is a 403 with Kubernetes' text, e.g. ``pods is forbidden: User
"system:serviceaccount:kubetune:kubetune-operator" cannot create resource "pods" in API
group "" in the namespace "default"``.

Not emulated: the escalation check on creating Roles/bindings (``bind``/``escalate``),
impersonation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .auth import UserInfo, service_account_username
from .errors import ApiError, forbidden

__all__ = [
    "RBAC_GROUP",
    "Attributes",
    "RBACAuthorizer",
    "aggregated_rules",
    "bootstrap_objects",
    "forbidden_error",
    "match_label_selector",
    "request_verb",
    "rule_allows",
]

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclasses.dataclass(frozen=True)
class Attributes:
    """What is authorized: ``authorizer.Attributes``."""

    user: UserInfo
    verb: str
    resource_request: bool = True
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def request_verb(method: str, has_name: bool, watch: bool) -> str:
    """The API verb of a resource request."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        if watch:
            return "watch"
        return "get" if has_name else "list"
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


# ----------------------------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------------------------


def _resource_matches(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    combined = attrs.combined_resource
    for resource in rule.get("resources") or []:
        if resource in ("*", combined):
            return True
        if attrs.subresource and resource == f"*/{attrs.subresource}":
            return True
    return False


def _non_resource_url_matches(rule: Mapping[str, Any], path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url == "*" or url == path:
            return True
        if url.endswith("*") and path.startswith(url[:-1]):
            return True
    return False


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    """Does one PolicyRule allow the request (``rbac.RuleAllows``)?"""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        return _non_resource_url_matches(rule, attrs.path)
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.api_group not in groups:
        return False
    if not _resource_matches(rule, attrs):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _subject_applies(subject: Mapping[str, Any], user: UserInfo, namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        if not sa_namespace:
            return False
        return user.name == service_account_username(sa_namespace, subject.get("name", ""))
    return False


class RBACAuthorizer:
    """Authorizes against the RBAC objects that ``list_objects(plural)`` returns.

    ``generation()`` changes whenever an RBAC object changes; the objects are read again
    only then.
    """

    def __init__(
        self,
        list_objects: Callable[[str], Iterable[Mapping[str, Any]]],
        generation: Callable[[], int],
    ) -> None:
        self._list_objects = list_objects
        self._generation = generation
        self._seen = -1
        self._roles: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        self._cluster_roles: dict[str, list[Mapping[str, Any]]] = {}
        self._bindings: list[Mapping[str, Any]] = []
        self._cluster_bindings: list[Mapping[str, Any]] = []

    def _refresh(self) -> None:
        generation = self._generation()
        if generation == self._seen:
            return
        self._roles = {
            (r["metadata"].get("namespace", ""), r["metadata"]["name"]): r.get("rules") or []
            for r in self._list_objects("roles")
        }
        self._cluster_roles = {
            r["metadata"]["name"]: r.get("rules") or [] for r in self._list_objects("clusterroles")
        }
        self._bindings = list(self._list_objects("rolebindings"))
        self._cluster_bindings = list(self._list_objects("clusterrolebindings"))
        self._seen = generation

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """``(allowed, reason)``; the reason names missing roles, as RBAC's does."""
        if attrs.user.is_superuser:
            return True, ""
        self._refresh()
        missing: list[str] = []
        for binding in self._cluster_bindings:
            if not any(_subject_applies(s, attrs.user, "") for s in binding.get("subjects") or []):
                continue
            rules = self._role_rules(binding.get("roleRef") or {}, "", missing)
            if any(rule_allows(rule, attrs) for rule in rules):
                return True, ""
        if attrs.namespace:
            for binding in self._bindings:
                namespace = binding["metadata"].get("namespace", "")
                if namespace != attrs.namespace:
                    continue
                subjects = binding.get("subjects") or []
                if not any(_subject_applies(s, attrs.user, namespace) for s in subjects):
                    continue
                rules = self._role_rules(binding.get("roleRef") or {}, namespace, missing)
                if any(rule_allows(rule, attrs) and attrs.resource_request for rule in rules):
                    return True, ""
        if not missing:
            return False, ""
        joined = missing[0] if len(missing) == 1 else "[" + ", ".join(missing) + "]"
        return False, f"RBAC: {joined}"

    def _role_rules(
        self, ref: Mapping[str, Any], namespace: str, missing: list[str]
    ) -> Sequence[Mapping[str, Any]]:
        name = ref.get("name", "")
        if ref.get("kind") == "Role":
            rules = self._roles.get((namespace, name))
            if rules is None:
                missing.append(f'role.{RBAC_GROUP} "{name}" not found')
            return rules or []
        rules = self._cluster_roles.get(name)
        if rules is None:
            missing.append(f'clusterrole.{RBAC_GROUP} "{name}" not found')
        return rules or []


def forbidden_error(attrs: Attributes, reason: str = "") -> ApiError:
    """The 403 of a refused request (``responsewriters.Forbidden``)."""
    user = attrs.user.name
    if not attrs.resource_request:
        why = f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    elif attrs.namespace:
        why = (
            f'User "{user}" cannot {attrs.verb} resource "{attrs.combined_resource}" in API '
            f'group "{attrs.api_group}" in the namespace "{attrs.namespace}"'
        )
    else:
        why = (
            f'User "{user}" cannot {attrs.verb} resource "{attrs.combined_resource}" in API '
            f'group "{attrs.api_group}" at the cluster scope'
        )
    if reason:
        why += f": {reason}"
    if not attrs.resource_request:
        return forbidden("", "", None, why)
    return forbidden(attrs.resource, attrs.api_group, attrs.name or None, why)


# ----------------------------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------------------------


def match_label_selector(selector: Mapping[str, Any], labels: Mapping[str, str] | None) -> bool:
    """A ``metav1.LabelSelector`` (matchLabels, matchExpressions); empty matches all."""
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(operator, False)
        if not ok:
            return False
    return True


def aggregated_rules(cluster_roles: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The rules each aggregating ClusterRole should have (name -> rules), as the
    clusterrole-aggregation controller computes them (matching roles by name, rules
    deduplicated in order)."""
    by_name = sorted(cluster_roles, key=lambda r: r["metadata"]["name"])
    result: dict[str, list[Any]] = {}
    for role in by_name:
        rule_spec = role.get("aggregationRule")
        if not rule_spec:
            continue
        name = role["metadata"]["name"]
        rules: list[Any] = []
        for selector in rule_spec.get("clusterRoleSelectors") or []:
            for other in by_name:
                if other["metadata"]["name"] == name:
                    continue
                if not match_label_selector(selector, other["metadata"].get("labels")):
                    continue
                for rule in other.get("rules") or []:
                    if rule not in rules:
                        rules.append(rule)
        result[name] = rules
    return result


# ----------------------------------------------------------------------------------------------
# Bootstrap policy
# ----------------------------------------------------------------------------------------------

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def _cluster_role(
    name: str,
    rules: list[dict[str, Any]],
    labels: Mapping[str, str] | None = None,
    aggregate_from: Sequence[str] = (),
) -> dict[str, Any]:
    role: dict[str, Any] = {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {**_BOOTSTRAP_LABELS, **(labels or {})},
            "annotations": dict(_AUTOUPDATE),
        },
        "rules": rules,
    }
    if aggregate_from:
        role["aggregationRule"] = {
            "clusterRoleSelectors": [
                {"matchLabels": {f"{RBAC_GROUP}/aggregate-to-{to}": "true"}}
                for to in aggregate_from
            ]
        }
    return role


def _cluster_binding(name: str, role: str, groups: Sequence[str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": dict(_BOOTSTRAP_LABELS),
            "annotations": dict(_AUTOUPDATE),
        },
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups],
    }


def bootstrap_objects() -> list[tuple[str, dict[str, Any]]]:
    """``(plural, object)`` of the RBAC policy a new cluster starts with (a subset)."""
    aggregate = f"{RBAC_GROUP}/aggregate-to-"
    view_rules = [
        _rule(
            [""],
            [
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            _READ,
        ),
        _rule(
            [""],
            [
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
            _READ,
        ),
        _rule([""], ["namespaces"], _READ),
        _rule(
            ["apps"],
            [
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            _READ,
        ),
        _rule(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], _READ),
        _rule(["events.k8s.io"], ["events"], _READ),
    ]
    edit_rules = [
        _rule(
            [""],
            [
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            _READ,
        ),
        _rule([""], ["serviceaccounts"], ["impersonate"]),
        _rule(
            [""],
            ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
            _WRITE,
        ),
        _rule([""], ["pods/eviction"], ["create"]),
        _rule(
            [""],
            [
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            _WRITE,
        ),
        _rule([""], ["serviceaccounts/token"], ["create"]),
        _rule(
            ["apps"],
            [
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            _WRITE,
        ),
        _rule(["batch"], ["cronjobs", "jobs"], _WRITE),
        _rule(["coordination.k8s.io"], ["leases"], [*_READ, *_WRITE]),
    ]
    admin_rules = [
        _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
        _rule([RBAC_GROUP], ["rolebindings", "roles"], [*_WRITE, *_READ]),
    ]
    discovery_urls = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ]
    roles = [
        _cluster_role(
            "cluster-admin",
            [_rule(["*"], ["*"], ["*"]), {"nonResourceURLs": ["*"], "verbs": ["*"]}],
        ),
        _cluster_role("admin", [], aggregate_from=["admin"]),
        _cluster_role("edit", [], {f"{aggregate}admin": "true"}, aggregate_from=["edit"]),
        _cluster_role("view", [], {f"{aggregate}edit": "true"}, aggregate_from=["view"]),
        _cluster_role("system:aggregate-to-admin", admin_rules, {f"{aggregate}admin": "true"}),
        _cluster_role("system:aggregate-to-edit", edit_rules, {f"{aggregate}edit": "true"}),
        _cluster_role("system:aggregate-to-view", view_rules, {f"{aggregate}view": "true"}),
        _cluster_role("system:discovery", [{"nonResourceURLs": discovery_urls, "verbs": ["get"]}]),
        _cluster_role(
            "system:basic-user",
            [
                _rule(
                    ["authorization.k8s.io"],
                    ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    ["create"],
                ),
                _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
            ],
        ),
        _cluster_role(
            "system:public-info-viewer",
            [
                {
                    "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"],
                }
            ],
        ),
    ]
    bindings = [
        _cluster_binding("cluster-admin", "cluster-admin", ["system:masters"]),
        _cluster_binding("system:discovery", "system:discovery", ["system:authenticated"]),
        _cluster_binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
        _cluster_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            ["system:authenticated", "system:unauthenticated"],
        ),
    ]
    return [("clusterroles", r) for r in roles] + [("clusterrolebindings", b) for b in bindings]
