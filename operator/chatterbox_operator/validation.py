"""Defaulting and validation of custom resources against the CRD schema, as an apiserver would do.

A cluster applies the schema defaults and rejects invalid objects before the operator sees them, but
objects created before a CRD upgrade, clusters without CEL, and the test emulator do not; so the
operator runs the same schema itself and reports problems as a condition instead of crashing.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

from chatterbox_operator.crds import open_api_schema
from chatterbox_operator.schema import IMMUTABLE, RULES, Kind


class InvalidSpec(ValueError):
    """The object violates its CRD schema; the message names the field and the problem."""


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Return a copy of `value` with schema defaults filled in, the way the apiserver does."""
    value = copy.deepcopy(value)
    _fill_defaults(schema, value)
    return value


def _fill_defaults(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        for key, child_schema in schema.get("properties", {}).items():
            if key not in value and "default" in child_schema:
                value[key] = copy.deepcopy(child_schema["default"])
            if key in value:
                _fill_defaults(child_schema, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill_defaults(schema["items"], item)


def validate(schema: dict[str, Any], value: Any, path: str = "") -> None:
    """Raise InvalidSpec for the first schema or cross-field rule violation in `value`."""
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path)
    )
    if errors:
        error = errors[0]
        where = ".".join(str(p) for p in [path, *error.absolute_path] if p != "")
        raise InvalidSpec(f"{where or 'object'}: {error.message}")
    _check_rules(schema, value, path)


def _check_rules(schema: dict[str, Any], value: Any, path: str) -> None:
    if not isinstance(value, dict):
        return
    for rendered in schema.get("x-kubernetes-validations", []):
        if rendered["rule"] == IMMUTABLE:
            continue  # a transition rule: only the API server has the old object
        if not RULES[rendered["rule"]].check(value):
            raise InvalidSpec(f"{path or 'object'}: {rendered['message']}")
    for key, child_schema in schema.get("properties", {}).items():
        if key in value:
            _check_rules(child_schema, value[key], f"{path}.{key}" if path else key)


def checked_spec(kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    """The object's spec with defaults applied; raises InvalidSpec if it breaks the schema."""
    schema = open_api_schema(kind)
    obj = with_defaults(schema, {"spec": body.get("spec") or {}})
    validate(schema["properties"]["spec"], obj["spec"], "spec")
    named = bool(body.get("metadata", {}).get("name"))  # specs alone (tests, chart values) have no name
    for rule in kind.object_rules if named else ():
        if not rule.check(body):
            raise InvalidSpec(f"metadata.name: {rule.message}")
    return obj["spec"]
