"""Admission plugins of the emulated API server (those a kubetune cluster meets).

* :func:`service_account_admission` (``ServiceAccount``, mutating): a pod without
  ``serviceAccountName`` gets ``default``; the ServiceAccount must exist, else 403
  ``pods "x" is forbidden: error looking up service account ns/name: serviceaccount
  "name" not found``. With ``mount_token=True`` it also adds the ``kube-api-access-xxxxx``
  projected volume (token, ``kube-root-ca.crt``'s ``ca.crt``, namespace) mounted at
  ``/var/run/secrets/kubernetes.io/serviceaccount`` in every container, as Kubernetes does
  unless ``automountServiceAccountToken: false`` (pod or ServiceAccount).
* :func:`pod_security_violations` (``PodSecurity``, validating): the ``baseline`` and
  ``restricted`` levels of the Pod Security Standards, enforced on pod create from the
  namespace's ``pod-security.kubernetes.io/enforce`` label (``enforce-version`` names the
  version in the message, default ``latest``); 403 ``pods "x" is forbidden: violates
  PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "trial"
  must set securityContext.allowPrivilegeEscalation=false), ...``.
* :func:`owner_reference_checks` (``OwnerReferencesPermissionEnforcement``, validating):
  changing ``ownerReferences`` on update needs ``delete`` on the object; a new
  ``blockOwnerDeletion: true`` reference needs ``update`` on the owner's ``finalizers``
  subresource (e.g. ``studies/finalizers`` in ``kubetune.io``), else 403 ``... cannot set
  blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers
  on: , <nil>`` (Kubernetes prints the empty reason and nil error too).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import forbidden
from .rbac import Attributes
from .serviceaccount import TOKEN_MOUNT_PATH, token_volume

__all__ = [
    "ENFORCE_LABEL",
    "owner_reference_checks",
    "pod_security_violations",
    "service_account_admission",
]

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# ----------------------------------------------------------------------------------------------
# ServiceAccount
# ----------------------------------------------------------------------------------------------


def service_account_admission(
    pod: dict[str, Any],
    namespace: str,
    name: str,
    get_service_account: Callable[[str, str], Mapping[str, Any] | None],
    *,
    mount_token: bool = False,
) -> None:
    """Default and check ``spec.serviceAccountName``; optionally mount its token."""
    spec = pod.setdefault("spec", {})
    account_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = account_name
    spec["serviceAccount"] = account_name
    account = get_service_account(namespace, account_name)
    if account is None:
        raise forbidden(
            "pods",
            "",
            name,
            f"error looking up service account {namespace}/{account_name}: "
            f'serviceaccount "{account_name}" not found',
        )
    if not mount_token:
        return
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = account.get("automountServiceAccountToken", True)
    if not automount:
        return
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    if any(
        m.get("mountPath") == TOKEN_MOUNT_PATH
        for c in containers
        for m in c.get("volumeMounts") or []
    ):
        return
    volume_name = "kube-api-access-" + "".join(random.choice(_ALPHABET) for _ in range(5))
    spec.setdefault("volumes", []).append(token_volume(volume_name))
    for container in containers:
        container.setdefault("volumeMounts", []).append(
            {"name": volume_name, "mountPath": TOKEN_MOUNT_PATH, "readOnly": True}
        )


# ----------------------------------------------------------------------------------------------
# Pod Security Standards
# ----------------------------------------------------------------------------------------------

LEVELS = ("privileged", "baseline", "restricted")
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_VOLUMES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(json.dumps(n) for n in names)


def _containers_phrase(names: Sequence[str], prefix: str = "") -> str:
    noun = "container" if len(names) == 1 else "containers"
    return f"{prefix}{noun} {_quoted(names)}"


def _all_containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]


def _sc(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("securityContext") or {}


def _check_baseline(spec: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(check id, forbidden reason, detail)`` of the baseline level's checks."""
    found: list[tuple[str, str, str]] = []
    containers = _all_containers(spec)
    pod_sc = _sc(spec)

    caps: list[str] = []
    bad_caps: list[str] = []
    for c in containers:
        added = [a for a in (_sc(c).get("capabilities") or {}).get("add") or []]
        extra = [a for a in added if a not in BASELINE_CAPABILITIES]
        if extra:
            caps.append(c.get("name", ""))
            bad_caps.extend(a for a in extra if a not in bad_caps)
    if caps:
        found.append(
            (
                "capabilities_baseline",
                "non-default capabilities",
                f"{_containers_phrase(caps)} must not include {_quoted(bad_caps)} in "
                "securityContext.capabilities.add",
            )
        )

    host = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    if host:
        found.append(("hostNamespaces", "host namespaces", ", ".join(host)))

    host_paths = [v.get("name", "") for v in spec.get("volumes") or [] if "hostPath" in v]
    if host_paths:
        noun = "volume" if len(host_paths) == 1 else "volumes"
        found.append(("hostPathVolumes", "hostPath volumes", f"{noun} {_quoted(host_paths)}"))

    port_details = []
    for c in containers:
        ports = [p.get("hostPort") for p in c.get("ports") or [] if p.get("hostPort")]
        if ports:
            port_details.append(
                f"{_containers_phrase([c.get('name', '')])} uses hostPort "
                + ", ".join(str(p) for p in ports)
            )
    if port_details:
        found.append(("hostPorts", "hostPort", "; ".join(port_details)))

    privileged = [c.get("name", "") for c in containers if _sc(c).get("privileged")]
    if privileged:
        found.append(
            (
                "privileged",
                "privileged",
                f"{_containers_phrase(privileged)} must not set securityContext.privileged=true",
            )
        )

    proc = [
        c.get("name", "") for c in containers if _sc(c).get("procMount") not in (None, "Default")
    ]
    if proc:
        found.append(
            (
                "procMount",
                "procMount",
                f"{_containers_phrase(proc)} must not set securityContext.procMount",
            )
        )

    unconfined = []
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        unconfined.append("pod")
    unconfined_containers = [
        c.get("name", "")
        for c in containers
        if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"
    ]
    if unconfined_containers:
        unconfined.append(_containers_phrase(unconfined_containers))
    if unconfined:
        found.append(
            (
                "seccompProfile_baseline",
                "seccompProfile",
                " and ".join(unconfined)
                + ' must not set securityContext.seccompProfile.type to "Unconfined"',
            )
        )

    safe_sysctls = {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
    sysctls = [
        s.get("name", "") for s in pod_sc.get("sysctls") or [] if s.get("name") not in safe_sysctls
    ]
    if sysctls:
        found.append(("sysctls", "forbidden sysctls", ", ".join(sysctls)))
    return found


def _check_restricted(spec: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    pod_sc = _sc(spec)

    escalating = [
        c.get("name", "") for c in containers if _sc(c).get("allowPrivilegeEscalation") is not False
    ]
    if escalating:
        found.append(
            (
                "allowPrivilegeEscalation",
                "allowPrivilegeEscalation != false",
                f"{_containers_phrase(escalating)} must set "
                "securityContext.allowPrivilegeEscalation=false",
            )
        )

    no_drop = []
    adds: list[str] = []
    add_names: list[str] = []
    for c in containers:
        capabilities = _sc(c).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            no_drop.append(c.get("name", ""))
        extra = [a for a in capabilities.get("add") or [] if a != "NET_BIND_SERVICE"]
        if extra:
            add_names.append(c.get("name", ""))
            adds.extend(a for a in extra if a not in adds)
    details = []
    if no_drop:
        details.append(
            f'{_containers_phrase(no_drop)} must set securityContext.capabilities.drop=["ALL"]'
        )
    if adds:
        details.append(
            f"{_containers_phrase(add_names)} must not include {_quoted(adds)} in "
            "securityContext.capabilities.add"
        )
    if details:
        found.append(("capabilities_restricted", "unrestricted capabilities", "; ".join(details)))

    restricted_volumes = []
    for volume in spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name" and k not in RESTRICTED_VOLUMES]
        if kinds:
            restricted_volumes.append(
                f"volume {json.dumps(volume.get('name', ''))} uses restricted volume type "
                f"{json.dumps(kinds[0])}"
            )
    if restricted_volumes:
        found.append(
            ("restrictedVolumes", "restricted volume types", "; ".join(restricted_volumes))
        )

    pod_non_root = pod_sc.get("runAsNonRoot")
    details = []
    if pod_non_root is False:
        details.append("pod must not set securityContext.runAsNonRoot=false")
    explicit_false = [c.get("name", "") for c in containers if _sc(c).get("runAsNonRoot") is False]
    if explicit_false:
        details.append(
            f"{_containers_phrase(explicit_false)} must not set securityContext.runAsNonRoot=false"
        )
    if pod_non_root is not True:
        unset = [c.get("name", "") for c in containers if _sc(c).get("runAsNonRoot") is None]
        if unset:
            details.append(
                f"{_containers_phrase(unset, 'pod or ')} must set securityContext.runAsNonRoot=true"
            )
    if details:
        found.append(("runAsNonRoot", "runAsNonRoot != true", "; ".join(details)))

    root = []
    if pod_sc.get("runAsUser") == 0:
        root.append("pod must not set runAsUser=0")
    root_containers = [c.get("name", "") for c in containers if _sc(c).get("runAsUser") == 0]
    if root_containers:
        root.append(f"{_containers_phrase(root_containers)} must not set runAsUser=0")
    if root:
        found.append(("runAsUser", "runAsUser=0", "; ".join(root)))

    pod_profile = (pod_sc.get("seccompProfile") or {}).get("type")
    details = []
    if pod_profile not in (None, "RuntimeDefault", "Localhost") and pod_profile != "Unconfined":
        details.append(f'pod must not set securityContext.seccompProfile.type to "{pod_profile}"')
    if pod_profile is None:
        missing = [
            c.get("name", "")
            for c in containers
            if (_sc(c).get("seccompProfile") or {}).get("type") is None
        ]
        if missing:
            details.append(
                f"{_containers_phrase(missing, 'pod or ')} must set "
                'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'
            )
    if details:
        found.append(("seccompProfile_restricted", "seccompProfile", "; ".join(details)))
    return found


def pod_security_violations(pod: Mapping[str, Any], level: str) -> list[str]:
    """``"reason (detail)"`` for each check of ``level`` the pod fails, in Kubernetes' order."""
    if level not in LEVELS or level == "privileged":
        return []
    spec = pod.get("spec") or {}
    checks = _check_baseline(spec)
    if level == "restricted":
        checks += _check_restricted(spec)
    return [f"{reason} ({detail})" for _, reason, detail in sorted(checks)]


def pod_security_error(
    pod: Mapping[str, Any], namespace_labels: Mapping[str, str] | None
) -> Any | None:
    """The 403 PodSecurity gives the pod in a namespace with these labels, or ``None``."""
    labels = namespace_labels or {}
    level = labels.get(ENFORCE_LABEL)
    if not level:
        return None
    version = labels.get(f"{ENFORCE_LABEL}-version") or "latest"
    violations = pod_security_violations(pod, level)
    if not violations:
        return None
    name = (pod.get("metadata") or {}).get("name") or None
    return forbidden(
        "pods", "", name, f'violates PodSecurity "{level}:{version}": ' + ", ".join(violations)
    )


# ----------------------------------------------------------------------------------------------
# OwnerReferencesPermissionEnforcement
# ----------------------------------------------------------------------------------------------


def _refs(obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return list(((obj or {}).get("metadata") or {}).get("ownerReferences") or [])


def owner_reference_checks(
    attrs: Attributes,
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    authorize: Callable[[Attributes], bool],
    resolve_kind: Callable[[str, str], tuple[str, str] | None],
) -> None:
    """Raise the plugin's 403 if the user may not set these ownerReferences.

    ``attrs`` are the request's (verb ``create`` or ``update``/``patch``); ``resolve_kind
    (apiVersion, kind)`` gives ``(group, plural)`` of an owner's resource.
    """
    if attrs.user.is_superuser or (attrs.resource == "pods" and attrs.subresource == "status"):
        return
    new_refs, old_refs = _refs(new), _refs(old)
    if old is not None and new_refs == old_refs:
        return
    name = (new.get("metadata") or {}).get("name") or None
    if old is not None:
        delete = dataclasses_replace(attrs, verb="delete")
        if not authorize(delete):
            raise forbidden(
                attrs.resource,
                attrs.api_group,
                name,
                "cannot set an ownerRef on a resource you can't delete: , <nil>",
            )
    old_blocking = {r.get("uid") for r in old_refs if r.get("blockOwnerDeletion")}
    for ref in new_refs:
        if not ref.get("blockOwnerDeletion") or ref.get("uid") in old_blocking:
            continue
        resolved = resolve_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if resolved is None:
            raise forbidden(
                attrs.resource,
                attrs.api_group,
                name,
                "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for "
                f"APIVersion {ref.get('apiVersion')} Kind {ref.get('kind')}: "
                f'no matches for kind "{ref.get("kind")}" in version "{ref.get("apiVersion")}"',
            )
        group, plural = resolved
        finalizers = Attributes(
            user=attrs.user,
            verb="update",
            api_group=group,
            api_version=str(ref.get("apiVersion", "")).rsplit("/", 1)[-1],
            resource=plural,
            subresource="finalizers",
            namespace=attrs.namespace,
            name=str(ref.get("name", "")),
        )
        if not authorize(finalizers):
            raise forbidden(
                attrs.resource,
                attrs.api_group,
                name,
                "cannot set blockOwnerDeletion if an ownerReference refers to a resource you "
                "can't set finalizers on: , <nil>",
            )


def dataclasses_replace(attrs: Attributes, **changes: Any) -> Attributes:
    import dataclasses

    return dataclasses.replace(attrs, **changes)


_ = copy
