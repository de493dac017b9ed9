"""Custom resources against their CRD's ``openAPIV3Schema``, as the API server treats them.

For every create, update, patch (on the patched object) and ``/status`` write of a custom
resource, in Kubernetes' order (``apiextensions-apiserver``):

1. :func:`prune` -- fields the structural schema does not declare are dropped silently
   (``x-kubernetes-preserve-unknown-fields`` keeps a subtree; ``apiVersion``, ``kind``
   and ``metadata`` are kept at the root). The dropped paths come back as warnings
   (``unknown field "spec.foo"``), or as a 400 with ``fieldValidation=Strict``.
2. :func:`prune_nulls` and :func:`apply_defaults` -- a ``null`` in a field that is not
   ``nullable`` is dropped, or replaced by the field's ``default``; missing fields that
   have a ``default`` get it.
3. :func:`validate` -- ``type``, ``nullable``, ``required``, ``enum``, ``minimum``/
   ``maximum`` (with ``exclusiveMinimum``/``exclusiveMaximum``), ``multipleOf``,
   ``minLength``/``maxLength``, ``pattern``, ``minItems``/``maxItems``,
   ``minProperties``/``maxProperties``, ``properties``/``additionalProperties``/``items``,
   ``x-kubernetes-int-or-string``, ``x-kubernetes-list-type: set|map`` duplicates,
   ``allOf``/``anyOf``/``oneOf``/``not``. Errors are :class:`~.errors.FieldError` with the
   texts of kube-openapi, e.g. ``spec.budget.maxTrials: Invalid value: 0:
   spec.budget.maxTrials in body should be greater than or equal to 1``.

Not emulated: ``x-kubernetes-validations`` (CEL), ``format`` checks,
``x-kubernetes-embedded-resource`` metadata checks.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from .errors import FieldError

__all__ = ["apply_defaults", "prune", "prune_nulls", "validate"]

Schema = Mapping[str, Any]
_ROOT_META = ("apiVersion", "kind", "metadata")


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _item(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _additional(schema: Schema) -> Schema | None:
    """``additionalProperties`` as a schema (``true``: anything), or ``None`` when absent."""
    extra = schema.get("additionalProperties")
    if extra is True:
        return {"x-kubernetes-preserve-unknown-fields": True}
    return extra if isinstance(extra, Mapping) else None


# ----------------------------------------------------------------------------------------------
# Pruning
# ----------------------------------------------------------------------------------------------


def prune(obj: dict[str, Any], schema: Schema | None) -> list[str]:
    """Drop, in place, every field of a whole object that ``schema`` does not declare.

    Returns the dropped fields' paths (``spec.foo``, ``spec.items[0].bar``).
    """
    pruned: list[str] = []
    root = dict(schema or {})
    for key in list(obj):
        if key in _ROOT_META and isinstance(obj[key], dict if key == "metadata" else str):
            continue
        if root.get("x-kubernetes-preserve-unknown-fields"):
            child = _field_schema(root, key)
            if child is not None:
                _prune(obj[key], child, key, pruned)
        else:
            _prune_key(obj, key, root, "", pruned)
    return pruned


def _prune_key(obj: dict[str, Any], key: str, schema: Schema, path: str, pruned: list[str]) -> None:
    properties = schema.get("properties") or {}
    if key in properties:
        _prune(obj[key], properties[key], _child(path, key), pruned)
    elif (extra := _additional(schema)) is not None:
        _prune(obj[key], extra, _child(path, key), pruned)
    else:
        pruned.append(_child(path, key))
        del obj[key]


def _prune(value: Any, schema: Schema | None, path: str, pruned: list[str]) -> None:
    if schema is not None and schema.get("x-kubernetes-preserve-unknown-fields"):
        _skip_prune(value, schema, path, pruned)
        return
    if isinstance(value, dict):
        if schema is None:
            pruned.extend(_child(path, k) for k in value)
            value.clear()
            return
        for key in list(value):
            _prune_key(value, key, schema, path, pruned)
    elif isinstance(value, list):
        items = None if schema is None else schema.get("items")
        for index, item in enumerate(value):
            _prune(item, items, _item(path, index), pruned)


def _skip_prune(value: Any, schema: Schema, path: str, pruned: list[str]) -> None:
    """Under ``x-kubernetes-preserve-unknown-fields``: keep unknown keys, prune known ones."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = _additional(schema)
        for key, child in value.items():
            if key in properties:
                _prune(child, properties[key], _child(path, key), pruned)
            elif extra is not None:
                _prune(child, extra, _child(path, key), pruned)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            _skip_prune(item, schema["items"], _item(path, index), pruned)


# ----------------------------------------------------------------------------------------------
# Nulls and defaults
# ----------------------------------------------------------------------------------------------


def _field_schema(schema: Schema | None, key: str) -> Schema | None:
    if schema is None:
        return None
    properties = schema.get("properties") or {}
    return properties[key] if key in properties else _additional(schema)


def prune_nulls(value: Any, schema: Schema | None) -> None:
    """Drop map entries that are ``null`` where the schema is not ``nullable`` and has no
    ``default`` (``PruneNonNullableNullsWithoutDefaults``)."""
    if isinstance(value, dict):
        for key in list(value):
            child = _field_schema(schema, key)
            if child is None:
                continue
            if value[key] is None and not child.get("nullable") and "default" not in child:
                del value[key]
            else:
                prune_nulls(value[key], child)
    elif isinstance(value, list):
        items = None if schema is None else schema.get("items")
        for item in value:
            prune_nulls(item, items)


def apply_defaults(value: Any, schema: Schema | None) -> None:
    """Fill in ``default`` values in place, as Kubernetes' structural defaulting does."""
    if schema is None:
        return
    if isinstance(value, dict):
        for key, prop in (schema.get("properties") or {}).items():
            if "default" not in prop:
                continue
            if key not in value or (value[key] is None and not prop.get("nullable")):
                value[key] = copy.deepcopy(prop["default"])
        extra = _additional(schema)
        for key, child in list(value.items()):
            properties = schema.get("properties") or {}
            if key in properties:
                apply_defaults(child, properties[key])
            elif extra is not None:
                if child is None and not extra.get("nullable") and "default" in extra:
                    value[key] = child = copy.deepcopy(extra["default"])
                apply_defaults(child, extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        items = schema["items"]
        for index, item in enumerate(value):
            if item is None and not items.get("nullable") and "default" in items:
                value[index] = item = copy.deepcopy(items["default"])
            apply_defaults(item, items)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_type(value: Any, wanted: str) -> bool:
    actual = _json_type(value)
    if wanted == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    if wanted == "number":
        return actual in ("integer", "number")
    return actual == wanted


def _number(value: Any) -> Any:
    """Integral floats print as integers, as Kubernetes' JSON decoding makes them int64."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def validate(obj: Mapping[str, Any], schema: Schema | None) -> list[FieldError]:
    """Validate a whole (pruned, defaulted) object; ``metadata`` is checked elsewhere."""
    if not schema:
        return []
    root = dict(schema)
    properties = dict(root.get("properties") or {})
    properties.pop("metadata", None)
    root["properties"] = properties
    body = {k: v for k, v in obj.items() if k != "metadata"}
    errors: list[FieldError] = []
    _validate(body, root, "", errors)
    return errors


def _validate(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    in_body = f"{path} in body" if path else "body"

    if value is None:
        if schema.get("nullable"):
            return
        if schema.get("type") or schema.get("x-kubernetes-int-or-string"):
            wanted = schema.get("type") or "integer,string"
            errors.append(
                FieldError.type_invalid(path, "null", f'{in_body} must be of type {wanted}: "null"')
            )
        return
    int_or_string = schema.get("x-kubernetes-int-or-string")
    if int_or_string and not (_is_type(value, "integer") or _is_type(value, "string")):
        actual = _json_type(value)
        errors.append(
            FieldError.type_invalid(
                path, actual, f'{in_body} must be of type integer,string: "{actual}"'
            )
        )
        return
    wanted = schema.get("type")
    if wanted and not _is_type(value, wanted):
        actual = _json_type(value)
        errors.append(
            FieldError.type_invalid(path, actual, f'{in_body} must be of type {wanted}: "{actual}"')
        )
        return

    if "enum" in schema and value not in schema["enum"]:
        errors.append(FieldError.not_supported(path, _number(value), schema["enum"]))

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        shown = _number(value)
        if "minimum" in schema:
            low = _number(schema["minimum"])
            if schema.get("exclusiveMinimum") is True and value <= low:
                errors.append(
                    FieldError.invalid(path, shown, f"{in_body} should be greater than {low}")
                )
            elif value < low:
                errors.append(
                    FieldError.invalid(
                        path, shown, f"{in_body} should be greater than or equal to {low}"
                    )
                )
        if "maximum" in schema:
            high = _number(schema["maximum"])
            if schema.get("exclusiveMaximum") is True and value >= high:
                errors.append(
                    FieldError.invalid(path, shown, f"{in_body} should be less than {high}")
                )
            elif value > high:
                errors.append(
                    FieldError.invalid(
                        path, shown, f"{in_body} should be less than or equal to {high}"
                    )
                )
        step = schema.get("multipleOf")
        if step and (value / step) != int(value / step):
            errors.append(
                FieldError.invalid(
                    path, shown, f"{in_body} should be a multiple of {_number(step)}"
                )
            )

    if isinstance(value, str):
        length = len(value)
        if "minLength" in schema and length < schema["minLength"]:
            errors.append(
                FieldError.invalid(
                    path, value, f"{in_body} should be at least {schema['minLength']} chars long"
                )
            )
        if "maxLength" in schema and length > schema["maxLength"]:
            errors.append(FieldError.too_long(path, schema["maxLength"]))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(
                FieldError.invalid(path, value, f"{in_body} should match '{schema['pattern']}'")
            )

    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(
                FieldError.invalid(
                    path,
                    len(value),
                    f"{in_body} should have at least {schema['minItems']} items",
                )
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(FieldError.too_many(path, len(value), schema["maxItems"]))
        _check_list_type(value, schema, path, errors)
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                _validate(item, items, _item(path, index), errors)

    if isinstance(value, dict):
        for name in schema.get("required") or []:
            if name not in value:
                errors.append(FieldError.required(_child(path, name)))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            errors.append(
                FieldError.invalid(
                    path,
                    len(value),
                    f"{in_body} should have at least {schema['minProperties']} properties",
                )
            )
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(FieldError.too_many(path, len(value), schema["maxProperties"]))
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            if key in properties:
                _validate(child, properties[key], _child(path, key), errors)
            elif isinstance(extra, Mapping):
                _validate(child, extra, _child(path, key), errors)
            elif extra is False:
                errors.append(
                    FieldError.forbidden(_child(path, key), "additional properties are not allowed")
                )

    _check_combinators(value, schema, path, errors)


def _check_list_type(value: list[Any], schema: Schema, path: str, errors: list[FieldError]) -> None:
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                errors.append(FieldError.duplicate(_item(path, index), item))
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[Any] = []
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                continue
            key = [item.get(k) for k in keys]
            if key in seen_keys:
                shown = {k: item.get(k) for k in keys}
                errors.append(FieldError.duplicate(_item(path, index), shown))
            seen_keys.append(key)


def _check_combinators(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    in_body = f"{path} in body" if path else "body"

    def fails(sub: Schema) -> list[FieldError]:
        found: list[FieldError] = []
        _validate(value, sub, path, found)
        return found

    for sub in schema.get("allOf") or []:
        errors.extend(fails(sub))
    if schema.get("anyOf") and all(fails(sub) for sub in schema["anyOf"]):
        errors.append(
            FieldError.invalid(path, value, f"{in_body} must validate at least one schema (anyOf)")
        )
    if schema.get("oneOf"):
        passing = sum(1 for sub in schema["oneOf"] if not fails(sub))
        if passing != 1:
            errors.append(
                FieldError.invalid(
                    path, value, f"{in_body} must validate one and only one schema (oneOf)"
                )
            )
    if isinstance(schema.get("not"), Mapping) and not fails(schema["not"]):
        errors.append(
            FieldError.invalid(path, value, f"{in_body} must not validate the schema (not)")
        )
