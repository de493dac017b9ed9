"""Validation of built-in objects (pods above all), as the API server's decoding and
``ValidatePod`` do it.

1. :class:`BuiltinSchemas` -- the JSON schemas of ``kubernetes-validate`` (its newest
   Kubernetes version, "strict" variant): a field the type does not have is an unknown
   field (dropped with a warning, or 400 with ``fieldValidation=Strict``, as Kubernetes
   does); a value of the wrong JSON type is a 400 (a decoding error in Kubernetes); a
   missing required field is a 422.
2. :func:`validate_pod` -- the rules of ``ValidatePod`` that matter here: containers need a
   unique DNS-label name and an image; enums (``restartPolicy``, ``imagePullPolicy``,
   ``dnsPolicy``, port protocols, toleration operators and effects); ports in range;
   quantities that parse; resource names that are standard or domain-prefixed; requests
   not above limits; extended resources (a domain other than ``kubernetes.io``, e.g.
   ``nvidia.com/gpu``) whole numbers, in limits, and equal to the limit when also in
   requests; volumes with one source and unique names; mounts that name a volume;
   ``activeDeadlineSeconds`` >= 1; and, on update, a spec that changes only what Kubernetes
   lets change (images, ``activeDeadlineSeconds``, added tolerations; plus, for the fake
   kubelet's binding, ``nodeName`` when it was empty).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from .errors import FieldError, bad_request

__all__ = [
    "BuiltinSchemas",
    "is_extended_resource",
    "parse_quantity",
    "pod_spec_update_errors",
    "validate_pod",
]

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
QUANTITY_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
    "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder",
    "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume",
    "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
    "storageos", "csi", "ephemeral", "image",
)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Quantities and resource names
# ----------------------------------------------------------------------------------------------


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity (``"500m"``, ``"1Gi"``, ``2``); ValueError if it is not one."""
    from kubernetes.utils.quantity import parse_quantity as _parse

    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(QUANTITY_ERROR)
    if isinstance(value, str) and not QUANTITY.match(value):
        raise ValueError(QUANTITY_ERROR)
    try:
        return Decimal(_parse(value))
    except (ValueError, ArithmeticError):
        raise ValueError(QUANTITY_ERROR) from None


def _quantity_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_extended_resource(name: str) -> bool:
    """Not native: has a domain, and the domain is not (a subdomain of) kubernetes.io."""
    if "/" not in name:
        return False
    return "kubernetes.io/" not in name


def _overcommit_allowed(name: str) -> bool:
    return not is_extended_resource(name) and not name.startswith("hugepages-")


def _resource_name_errors(name: str, path: str) -> list[FieldError]:
    if "/" in name:
        domain, _, short = name.partition("/")
        if not DNS1123_SUBDOMAIN.match(domain) or not re.match(
            r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", short
        ):
            return [FieldError.invalid(path, name, "must be a standard resource for containers")]
        return []
    if name in STANDARD_CONTAINER_RESOURCES or name.startswith("hugepages-"):
        return []
    return [FieldError.invalid(path, name, "must be a standard resource for containers")]


def _resources_errors(resources: Mapping[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    parsed: dict[str, dict[str, Decimal]] = {"limits": {}, "requests": {}}
    for kind, values in (("limits", limits), ("requests", requests)):
        for name, raw in values.items():
            key_path = f"{path}.{kind}[{name}]"
            errors.extend(_resource_name_errors(name, key_path))
            try:
                quantity = parse_quantity(raw)
            except ValueError:
                raise bad_request(
                    f'Pod in version "v1" cannot be handled as a Pod: {QUANTITY_ERROR}'
                ) from None
            text = _quantity_text(raw)
            if quantity < 0:
                errors.append(
                    FieldError.invalid(key_path, text, "must be greater than or equal to 0")
                )
            if is_extended_resource(name) and quantity != quantity.to_integral_value():
                errors.append(FieldError.invalid(key_path, text, "must be an integer"))
            parsed[kind][name] = quantity
    for name, quantity in parsed["requests"].items():
        text = _quantity_text(requests[name])
        if name in parsed["limits"]:
            limit = parsed["limits"][name]
            limit_text = _quantity_text(limits[name])
            if quantity != limit and not _overcommit_allowed(name):
                errors.append(
                    FieldError.invalid(
                        f"{path}.requests", text, f"must be equal to {name} limit of {limit_text}"
                    )
                )
            elif quantity > limit:
                errors.append(
                    FieldError.invalid(
                        f"{path}.requests",
                        text,
                        f"must be less than or equal to {name} limit of {limit_text}",
                    )
                )
        elif not _overcommit_allowed(name):
            errors.append(
                FieldError.required(
                    f"{path}.limits", "Limit must be set for non overcommitable resources"
                )
            )
    return errors


# ----------------------------------------------------------------------------------------------
# Pods
# ----------------------------------------------------------------------------------------------


def _enum(value: Any, path: str, allowed: Sequence[str], errors: list[FieldError]) -> None:
    if value is not None and value not in allowed:
        errors.append(FieldError.not_supported(path, value, allowed))


def _container_errors(
    container: Mapping[str, Any], path: str, volume_names: set[str]
) -> list[FieldError]:
    errors: list[FieldError] = []
    name = container.get("name")
    if not name:
        errors.append(FieldError.required(f"{path}.name"))
    elif not DNS1123_LABEL.match(name) or len(name) > 63:
        errors.append(FieldError.invalid(f"{path}.name", name, LABEL_MESSAGE))
    if not container.get("image"):
        errors.append(FieldError.required(f"{path}.image"))
    _enum(
        container.get("imagePullPolicy"),
        f"{path}.imagePullPolicy",
        ["Always", "IfNotPresent", "Never"],
        errors,
    )
    for index, port in enumerate(container.get("ports") or []):
        port_path = f"{path}.ports[{index}]"
        number = port.get("containerPort")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            errors.append(
                FieldError.invalid(
                    f"{port_path}.containerPort", number, "must be between 1 and 65535, inclusive"
                )
            )
        _enum(port.get("protocol"), f"{port_path}.protocol", ["SCTP", "TCP", "UDP"], errors)
    for index, env in enumerate(container.get("env") or []):
        if not env.get("name"):
            errors.append(FieldError.required(f"{path}.env[{index}].name"))
    for index, mount in enumerate(container.get("volumeMounts") or []):
        mount_path = f"{path}.volumeMounts[{index}]"
        if not mount.get("name"):
            errors.append(FieldError.required(f"{mount_path}.name"))
        elif mount["name"] not in volume_names:
            errors.append(FieldError.not_found(f"{mount_path}.name", mount["name"]))
        if not mount.get("mountPath"):
            errors.append(FieldError.required(f"{mount_path}.mountPath"))
    errors.extend(_resources_errors(container.get("resources") or {}, f"{path}.resources"))
    return errors


def _volume_errors(volumes: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for index, volume in enumerate(volumes):
        path = f"spec.volumes[{index}]"
        name = volume.get("name")
        if not name:
            errors.append(FieldError.required(f"{path}.name"))
        elif not DNS1123_LABEL.match(name) or len(name) > 63:
            errors.append(FieldError.invalid(f"{path}.name", name, LABEL_MESSAGE))
        elif name in seen:
            errors.append(FieldError.duplicate(f"{path}.name", name))
        seen.add(name or "")
        sources = [s for s in VOLUME_SOURCES if volume.get(s) is not None]
        if not sources:
            errors.append(FieldError.required(path, "must specify a volume type"))
        elif len(sources) > 1:
            errors.append(
                FieldError.forbidden(
                    f"{path}.{sources[1]}", "may not specify more than 1 volume type"
                )
            )
    return errors


def validate_pod(pod: Mapping[str, Any]) -> list[FieldError]:
    """The essentials of Kubernetes' ``ValidatePod`` (metadata is checked elsewhere)."""
    spec = pod.get("spec") or {}
    errors: list[FieldError] = []
    volumes = spec.get("volumes") or []
    errors.extend(_volume_errors(volumes))
    volume_names = {v.get("name") for v in volumes if v.get("name")}
    containers = spec.get("containers") or []
    if not containers:
        errors.append(FieldError.required("spec.containers"))
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(field) or []):
            path = f"spec.{field}[{index}]"
            errors.extend(_container_errors(container, path, volume_names))
            name = container.get("name")
            if name and name in names:
                errors.append(FieldError.duplicate(f"{path}.name", name))
            names.add(name or "")
    _enum(spec.get("restartPolicy"), "spec.restartPolicy", ["Always", "OnFailure", "Never"], errors)
    _enum(
        spec.get("dnsPolicy"),
        "spec.dnsPolicy",
        ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        errors,
    )
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or not 1 <= deadline <= 2**31 - 1):
        errors.append(
            FieldError.invalid(
                "spec.activeDeadlineSeconds",
                deadline,
                "must be between 1 and 2147483647, inclusive",
            )
        )
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        errors.append(
            FieldError.invalid(
                "spec.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"
            )
        )
    account = spec.get("serviceAccountName")
    if account and (not DNS1123_SUBDOMAIN.match(account) or len(account) > 253):
        errors.append(FieldError.invalid("spec.serviceAccountName", account, SUBDOMAIN_MESSAGE))
    for index, toleration in enumerate(spec.get("tolerations") or []):
        path = f"spec.tolerations[{index}]"
        operator = toleration.get("operator")
        _enum(operator, f"{path}.operator", ["Equal", "Exists"], errors)
        if operator == "Exists" and toleration.get("value"):
            errors.append(
                FieldError.invalid(
                    f"{path}.operator",
                    toleration["value"],
                    "value must be empty when `operator` is 'Exists'",
                )
            )
        _enum(
            toleration.get("effect") or None,
            f"{path}.effect",
            ["NoSchedule", "PreferNoSchedule", "NoExecute"],
            errors,
        )
    for index, secret in enumerate(spec.get("imagePullSecrets") or []):
        if not secret.get("name"):
            errors.append(FieldError.required(f"spec.imagePullSecrets[{index}].name"))
    return errors


_UPDATE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def pod_spec_update_errors(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """A pod's spec is immutable but for images, the deadline and added tolerations."""
    old_spec = copy.deepcopy(dict(old.get("spec") or {}))
    new_spec = copy.deepcopy(dict(new.get("spec") or {}))
    for spec in (old_spec, new_spec):
        for field in ("containers", "initContainers"):
            for container in spec.get(field) or []:
                container.pop("image", None)
        spec.pop("activeDeadlineSeconds", None)
    old_tolerations = old_spec.pop("tolerations", None) or []
    new_tolerations = new_spec.pop("tolerations", None) or []
    # Scheduling gates may only be removed (that is how Kueue admits a pod), never added.
    old_gates = [gate.get("name") for gate in old_spec.pop("schedulingGates", None) or []]
    for gate in new_spec.pop("schedulingGates", None) or []:
        if gate.get("name") not in old_gates:
            return [
                FieldError.forbidden(
                    "spec.schedulingGates",
                    f"only deletion is allowed, but found new scheduling gate '{gate.get('name')}'",
                )
            ]
    if not old_spec.get("nodeName"):  # binding (the fake kubelet patches nodeName)
        old_spec.pop("nodeName", None)
        new_spec.pop("nodeName", None)
    tolerations_ok = all(t in new_tolerations for t in old_tolerations)
    if old_spec != new_spec or not tolerations_ok:
        return [FieldError.forbidden("spec", _UPDATE_MESSAGE)]
    return []


# ----------------------------------------------------------------------------------------------
# kubernetes-validate's JSON schemas
# ----------------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _path_text(parts: Sequence[Any]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int) or "/" in part or "." in part:
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


class BuiltinSchemas:
    """Validators for built-in kinds from the ``kubernetes-validate`` package, made lazily."""

    def __init__(self) -> None:
        import kubernetes_validate.utils as kv

        self.version = kv.latest_version()
        self._dir = f"kubernetes-json-schema/v{self.version}-local-strict"
        self._kv = kv
        self._validators: dict[tuple[str, str], Any] = {}

    @functools.cached_property
    def _registry(self) -> Any:
        from referencing import Registry, Resource

        definitions = self._kv.schema_contents(f"{self._dir}/_definitions.json", self.version)
        return Resource.from_contents(definitions) @ Registry()

    def validator(self, api_version: str, kind: str) -> Any | None:
        """A jsonschema validator for the kind, or ``None`` if kubernetes-validate has none."""
        if (api_version, kind) not in self._validators:
            self._validators[(api_version, kind)] = self._make_validator(api_version, kind)
        return self._validators[(api_version, kind)]

    def _make_validator(self, api_version: str, kind: str) -> Any | None:
        import jsonschema

        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        try:
            schema = self._kv.schema_contents(
                f"{self._dir}/{kind.lower()}-{group_version}.json", self.version
            )
        except (FileNotFoundError, self._kv.VersionNotSupportedError):
            return None
        return jsonschema.validators.Draft202012Validator(schema, registry=self._registry)

    @functools.cached_property
    def object_meta(self) -> Any:
        import jsonschema

        ref = {
            "$ref": "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        }
        return jsonschema.validators.Draft202012Validator(ref, registry=self._registry)

    def check(
        self,
        obj: dict[str, Any],
        *,
        validator: Any,
        kind: str,
        version: str,
        strict: bool,
        prefix: Sequence[str] = (),
    ) -> tuple[list[str], list[FieldError]]:
        """Drop unknown fields of ``obj`` in place; return (warnings, 422 field errors).

        Raises the 400 of a decoding error: a wrong JSON type, or unknown fields with
        ``strict`` (``fieldValidation=Strict``).
        """
        unknown: list[tuple[Any, str, str]] = []  # (container, key, path)
        errors: list[FieldError] = []
        decode_errors: list[str] = []
        for error in validator.iter_errors(obj):
            parts = [*prefix, *error.absolute_path]
            path = _path_text(parts)
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                known = set((error.schema.get("properties") or {}).keys())
                for key in error.instance:
                    if key not in known:
                        unknown.append((error.instance, key, _path_text([*parts, key])))
            elif error.validator == "required":
                for name in error.validator_value:
                    if isinstance(error.instance, dict) and name not in error.instance:
                        errors.append(FieldError.required(_path_text([*parts, name])))
            elif error.validator in ("type", "oneOf", "anyOf"):
                wanted = error.schema.get("type") or "int-or-string"
                if isinstance(wanted, list):
                    wanted = next((t for t in wanted if t != "null"), wanted[0])
                decode_errors.append(
                    f"json: cannot unmarshal {_type_name(error.instance)} into Go struct field "
                    f"{path} of type {wanted}"
                )
            elif error.validator == "enum" and parts and parts[-1] in ("apiVersion", "kind"):
                continue  # the emulator sets these from the URL
            else:
                errors.append(FieldError.invalid(path, error.instance, error.message))
        handled = f"{kind} in version {json.dumps(version)} cannot be handled as a {kind}"
        if decode_errors:
            raise bad_request(f"{handled}: {decode_errors[0]}")
        if unknown and strict:
            listed = ", ".join(f"unknown field {json.dumps(path)}" for _, _, path in unknown)
            raise bad_request(f"{handled}: strict decoding error: {listed}")
        for container, key, _ in unknown:
            container.pop(key, None)
        return [f"unknown field {json.dumps(path)}" for _, _, path in unknown], errors


@functools.cache
def builtin_schemas() -> BuiltinSchemas:
    """The process-wide :class:`BuiltinSchemas`."""
    return BuiltinSchemas()


def raise_if(errors: Sequence[FieldError], kind: str, group: str, name: str) -> None:
    """422 Invalid if there are errors."""
    from .errors import invalid

    if errors:
        raise invalid(kind, group, name, errors)
