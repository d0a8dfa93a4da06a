"""Check custom resources against the CRDs in ``crds/`` the way the API server would, without one.

There is no API server in these tests (see /work/shared/TESTING.md), so this module does, in order,
what kube-apiserver does to a custom resource on create or update:

1. prune fields the schema does not declare, and report each one as an error (like
   ``kubectl apply --validate=strict``), so typos in manifests are caught;
2. apply structural defaults, recursively, so nested defaults inside a defaulted ``{}`` apply too;
3. validate with ``openapi_schema_validator.OAS30Validator`` (``x-kubernetes-*`` keys stripped);
4. enforce ``x-kubernetes-list-type: set`` (no duplicates) and ``map`` (unique keys);
5. evaluate every ``x-kubernetes-validations`` CEL rule with cel-python at its location.
   Transition rules (those using ``oldSelf``) run only when an old object is given, and only
   where the old object has a value at the same place (objects by key, map-lists by their keys).
   As in the API server, a type error anywhere skips all CEL rules.

Errors are strings in the API server's style, each starting with the field path, e.g.
``spec.assignment.stopAt: Invalid value: 0.99: spec.assignment.stopAt in body should be less
than or equal to 0.95``.

Usage::

    from .crd_schema import validate_manifest
    errors = validate_manifest(manifest)                 # create
    errors = validate_manifest(new, old=old_manifest)    # update (runs transition rules)
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
EXAMPLES_DIR = REPO_ROOT / "examples"
BAD_MANIFESTS_DIR = REPO_ROOT / "tests" / "bad_manifests"

Schema = dict[str, Any]
FieldPath = tuple[str | int, ...]

# Wording of kube-apiserver when a type error stops it from running the CEL rules.
RULES_NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)
# Prefix of the error reported when a CEL rule itself fails to evaluate (a bug in the rule).
RULE_EVALUATION_ERROR = "rule evaluation error"

# The API server keeps these at the root of every object, declared in the schema or not.
_ALWAYS_KNOWN_AT_ROOT = ("apiVersion", "kind", "metadata")
_OLD_SELF = re.compile(r"\boldSelf\b")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomResourceDefinition:
    """One CustomResourceDefinition document from ``crds/``."""

    name: str
    group: str
    kind: str
    plural: str
    scope: str
    raw: Mapping[str, Any]
    source: Path

    @property
    def versions(self) -> list[dict[str, Any]]:
        """The ``spec.versions`` entries."""
        return list(self.raw["spec"]["versions"])

    def version(self, name: str) -> dict[str, Any]:
        """The ``spec.versions`` entry called ``name``."""
        for version in self.versions:
            if version["name"] == name:
                return dict(version)
        raise KeyError(f"{self.name} has no version {name!r}")

    def schema(self, version: str) -> Schema:
        """The ``openAPIV3Schema`` of ``version``."""
        return dict(self.version(version)["schema"]["openAPIV3Schema"])


def load_yaml_documents(path: Path) -> list[Any]:
    """All non-empty YAML documents in ``path``."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


@cache
def load_crds(crd_dir: Path = CRD_DIR) -> tuple[CustomResourceDefinition, ...]:
    """Every CRD document in every ``*.yaml`` file of ``crd_dir``."""
    crds = []
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            names = doc["spec"]["names"]
            crds.append(
                CustomResourceDefinition(
                    name=doc["metadata"]["name"],
                    group=doc["spec"]["group"],
                    kind=names["kind"],
                    plural=names["plural"],
                    scope=doc["spec"]["scope"],
                    raw=doc,
                    source=path,
                )
            )
    return tuple(crds)


def crd_named(name: str, crd_dir: Path = CRD_DIR) -> CustomResourceDefinition:
    """The CRD whose ``metadata.name`` is ``name`` (e.g. ``linepools.linepool.dev``)."""
    for crd in load_crds(crd_dir):
        if crd.name == name:
            return crd
    raise KeyError(f"no CRD named {name!r} in {crd_dir}")


def crd_for(api_version: str, kind: str, crd_dir: Path = CRD_DIR) -> CustomResourceDefinition | None:
    """The CRD that serves ``kind`` at ``api_version`` (``group/version``), or None."""
    group, _, version = api_version.rpartition("/")
    for crd in load_crds(crd_dir):
        served = {v["name"] for v in crd.versions if v.get("served")}
        if crd.group == group and crd.kind == kind and version in served:
            return crd
    return None


# --------------------------------------------------------------------------------------------------
# Schema walking
# --------------------------------------------------------------------------------------------------


def format_path(path: FieldPath) -> str:
    """``("spec", "lines", 0, "id")`` -> ``spec.lines[0].id``; the empty path is ``<root>``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "<root>"


def iter_schema_nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node, with a display path: ``[*]`` for array items, ``.*`` for map values."""
    yield (path or "<root>"), schema
    for name, sub in schema.get("properties", {}).items():
        yield from iter_schema_nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from iter_schema_nodes(schema["items"], f"{path}[*]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_schema_nodes(schema["additionalProperties"], f"{path}.*")


def iter_validation_rules(schema: Schema) -> Iterator[tuple[str, Schema, dict[str, Any]]]:
    """Every ``x-kubernetes-validations`` rule as ``(display path, node, rule)``."""
    for path, node in iter_schema_nodes(schema):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, node, rule


def _properties(schema: Schema) -> dict[str, Schema]:
    return dict(schema.get("properties", {}))


def _map_values_schema(schema: Schema) -> Schema | None:
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _field_schema(schema: Schema, key: str) -> Schema | None:
    """The schema that governs ``key`` of an object: its property, else the map's value schema."""
    return _properties(schema).get(key, _map_values_schema(schema))


def _is_opaque(schema: Schema, path: FieldPath) -> bool:
    """Whether unknown fields are kept here (root metadata is validated by the server itself)."""
    return bool(schema.get("x-kubernetes-preserve-unknown-fields")) or path == ("metadata",)


# --------------------------------------------------------------------------------------------------
# 1. Pruning
# --------------------------------------------------------------------------------------------------


def prune(value: Any, schema: Schema, path: FieldPath = ()) -> tuple[Any, list[str]]:
    """Drop fields the schema does not declare; return the pruned copy and one error per field."""
    errors: list[str] = []
    return _prune(value, schema, path, errors), errors


def _prune(value: Any, schema: Schema, path: FieldPath, errors: list[str]) -> Any:
    if isinstance(value, dict) and schema.get("type") == "object":
        if _is_opaque(schema, path) and not schema.get("properties"):
            return copy.deepcopy(value)
        props = _properties(schema)
        values_schema = _map_values_schema(schema)
        pruned: dict[str, Any] = {}
        for key, sub_value in value.items():
            sub_path = (*path, key)
            if key in props:
                pruned[key] = _prune(sub_value, props[key], sub_path, errors)
            elif not path and key in _ALWAYS_KNOWN_AT_ROOT:
                pruned[key] = copy.deepcopy(sub_value)
            elif values_schema is not None:
                pruned[key] = _prune(sub_value, values_schema, sub_path, errors)
            elif schema.get("additionalProperties") is True or _is_opaque(schema, path):
                pruned[key] = copy.deepcopy(sub_value)
            else:
                errors.append(f'{format_path(sub_path)}: unknown field "{format_path(sub_path)}"')
        return pruned
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(item, schema["items"], (*path, index), errors) for index, item in enumerate(value)]
    return copy.deepcopy(value)


# --------------------------------------------------------------------------------------------------
# 2. Defaulting
# --------------------------------------------------------------------------------------------------


def apply_defaults(value: Any, schema: Schema) -> Any:
    """A copy of ``value`` with the schema's defaults applied, recursively, as the API server does.

    A property that is absent (or null where the schema is not nullable) gets a deep copy of its
    default; then defaulting continues inside it, so ``default: {}`` picks up nested defaults.
    """
    return _default(copy.deepcopy(value), schema)


def _default(value: Any, schema: Schema) -> Any:
    if isinstance(value, dict) and schema.get("type") == "object":
        props = _properties(schema)
        for key, sub in props.items():
            if "default" not in sub:
                continue
            if key not in value or (value[key] is None and not sub.get("nullable")):
                value[key] = copy.deepcopy(sub["default"])
        values_schema = _map_values_schema(schema)
        for key in list(value):
            if key in props:
                value[key] = _default(value[key], props[key])
            elif values_schema is not None:
                value[key] = _default(value[key], values_schema)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_default(item, schema["items"]) for item in value]
    return value


# --------------------------------------------------------------------------------------------------
# 3. OpenAPI validation
# --------------------------------------------------------------------------------------------------


def strip_kubernetes_extensions(schema: Schema) -> Schema:
    """A copy of ``schema`` without ``x-kubernetes-*`` keys, which OAS30Validator does not know."""
    clean: Schema = {}
    for key, sub in schema.items():
        if key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            clean[key] = {name: strip_kubernetes_extensions(prop) for name, prop in sub.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(sub, dict):
            clean[key] = strip_kubernetes_extensions(sub)
        elif key in ("allOf", "anyOf", "oneOf"):
            clean[key] = [strip_kubernetes_extensions(part) for part in sub]
        else:
            clean[key] = copy.deepcopy(sub)
    return clean


@cache
def _validator(schema_json: str) -> OAS30Validator:
    schema = strip_kubernetes_extensions(json.loads(schema_json))
    return OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(error: ValidationError) -> tuple[str, bool]:
    """An API-server-style message for one jsonschema error, and whether it is a type error."""
    path: FieldPath = tuple(error.absolute_path)
    where = format_path(path)
    value = error.instance
    limit = error.validator_value
    kind = error.validator
    invalid = f"{where}: Invalid value: {_show(value)}: {where} in body"
    if kind == "required":
        match = re.match(r"^'(.+)' is a required property$", error.message)
        missing = match.group(1) if match else str(limit)
        return f"{format_path((*path, missing))}: Required value", False
    if kind in ("type", "nullable"):
        return f"{invalid} must be of type {limit}", True
    if kind == "enum":
        supported = ", ".join(_show(option) for option in limit)
        return f"{where}: Unsupported value: {_show(value)}: supported values: {supported}", False
    messages = {
        "minimum": f"{invalid} should be greater than or equal to {limit}",
        "maximum": f"{invalid} should be less than or equal to {limit}",
        "pattern": f"{invalid} should match '{limit}'",
        "format": f"{invalid} must be of type {limit}",
        "minLength": f"{invalid} should be at least {limit} chars long",
        "maxLength": f"{where}: Too long: may not be longer than {limit}",
    }
    if kind in messages:
        return messages[kind], False
    if kind in ("maxItems", "maxProperties"):
        return f"{where}: Too many: {len(value)}: must have at most {limit} items", False
    if kind in ("minItems", "minProperties"):
        return (
            f"{where}: Invalid value: {len(value)}: {where} in body should have at least {limit} items",
            False,
        )
    return f"{where}: Invalid value: {_show(value)}: {error.message}", False


def openapi_errors(value: Any, schema: Schema) -> tuple[list[str], bool]:
    """OpenAPI validation errors, and whether any of them is a type error (which blocks CEL)."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors: list[str] = []
    blocking = False
    for error in sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]):
        message, is_type_error = _describe(error)
        errors.append(message)
        blocking = blocking or is_type_error
    return errors, blocking


# --------------------------------------------------------------------------------------------------
# 4. List types
# --------------------------------------------------------------------------------------------------


def list_type_errors(value: Any, schema: Schema, path: FieldPath = ()) -> list[str]:
    """Duplicates in ``x-kubernetes-list-type: set`` lists and duplicate keys in ``map`` lists."""
    errors: list[str] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        for key, sub_value in value.items():
            sub = _field_schema(schema, key)
            if sub is not None:
                errors += list_type_errors(sub_value, sub, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        list_type = schema.get("x-kubernetes-list-type", "atomic")
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: set[str] = set()
        for index, item in enumerate(value):
            if list_type == "set":
                identity: Any = item
            elif list_type == "map" and isinstance(item, dict) and all(k in item for k in keys):
                identity = {k: item[k] for k in keys}
            else:
                identity = None
            if identity is not None:
                marker = json.dumps(identity, sort_keys=True)
                if marker in seen:
                    errors.append(f"{format_path((*path, index))}: Duplicate value: {_show(identity)}")
                seen.add(marker)
            errors += list_type_errors(item, schema["items"], (*path, index))
    return errors


# --------------------------------------------------------------------------------------------------
# 5. CEL rules
# --------------------------------------------------------------------------------------------------


@cache
def _cel_environment() -> celpy.Environment:
    return celpy.Environment()


@cache
def compile_rule(rule: str) -> Any:
    """Parse a CEL rule with cel-python and return a runnable program (raises on syntax errors)."""
    environment = _cel_environment()
    return environment.program(environment.compile(rule))


def uses_old_self(rule: str) -> bool:
    """Whether ``rule`` is a transition rule (it refers to ``oldSelf``)."""
    return bool(_OLD_SELF.search(rule))


def to_cel(value: Any, schema: Schema) -> Any:
    """Convert a JSON value to CEL types the way the API server does, guided by the schema.

    ``type: number`` becomes a CEL double even when written as ``1``, and ``format: date-time``
    a timestamp, so rules compare like-typed values as they would in the API server.
    """
    kind = schema.get("type")
    if value is None:
        return None
    if kind == "object" and isinstance(value, dict):
        props = _properties(schema)
        values_schema = _map_values_schema(schema)
        if not props and values_schema is None:
            return json_to_cel(value)
        converted = {}
        for key, sub_value in value.items():
            sub = _field_schema(schema, key)
            converted[celtypes.StringType(key)] = to_cel(sub_value, sub) if sub else json_to_cel(sub_value)
        return celtypes.MapType(converted)
    if kind == "array" and isinstance(value, list):
        items = schema.get("items", {})
        return celtypes.ListType([to_cel(item, items) for item in value])
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return celtypes.IntType(value)
    if kind == "string" and isinstance(value, str) and schema.get("format") == "date-time":
        try:
            return celtypes.TimestampType(value)
        except Exception:
            return celtypes.StringType(value)
    return json_to_cel(value)


def _correlate_item(item: Any, old_list: Any, schema: Schema) -> Any:
    """The old element matching ``item`` by its map keys, for ``x-kubernetes-list-type: map``."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(old_list, list):
        return None
    keys = schema.get("x-kubernetes-list-map-keys", [])
    if not isinstance(item, dict) or not all(k in item for k in keys):
        return None
    for old_item in old_list:
        if isinstance(old_item, dict) and all(old_item.get(k) == item[k] for k in keys):
            return old_item
    return None


def rule_errors(value: Any, schema: Schema, old: Any = None, path: FieldPath = ()) -> list[str]:
    """Evaluate every CEL rule at its location in ``value`` and return the failures."""
    errors: list[str] = []
    if value is None:
        return errors
    for rule in schema.get("x-kubernetes-validations", []):
        text = rule["rule"]
        transition = uses_old_self(text)
        if transition and old is None:
            continue
        activation = {"self": to_cel(value, schema)}
        if transition:
            activation["oldSelf"] = to_cel(old, schema)
        where = format_path(path)
        if rule.get("fieldPath"):
            where = where + rule["fieldPath"] if path else rule["fieldPath"].lstrip(".")
        kind = schema.get("type", "object")
        try:
            result = compile_rule(text).evaluate(activation)
        except Exception as exc:  # a rule that cannot run is a bug in the rule: report it
            errors.append(f"{where}: Invalid value: {_show(kind)}: {RULE_EVALUATION_ERROR}: {text}: {exc}")
            continue
        if isinstance(result, CELEvalError):
            errors.append(f"{where}: Invalid value: {_show(kind)}: {RULE_EVALUATION_ERROR}: {text}: {result}")
        elif not bool(result):
            message = rule.get("message") or f"failed rule: {text}"
            errors.append(f"{where}: Invalid value: {_show(kind)}: {message}")
    if isinstance(value, dict) and schema.get("type") == "object":
        for key, sub_value in value.items():
            sub = _field_schema(schema, key)
            if sub is not None:
                old_value = old.get(key) if isinstance(old, dict) else None
                errors += rule_errors(sub_value, sub, old_value, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            old_item = _correlate_item(item, old, schema)
            errors += rule_errors(item, schema["items"], old_item, (*path, index))
    return errors


# --------------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------------


def _metadata_errors(manifest: Mapping[str, Any]) -> list[str]:
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict):
        return ["metadata: Required value"]
    name = metadata.get("name")
    if name is None and metadata.get("generateName") is None:
        return ["metadata.name: Required value: name or generateName is required"]
    if name is not None and (not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name)):
        return [f"metadata.name: Invalid value: {_show(name)}: must be a lowercase RFC 1123 subdomain"]
    return []


def admit(
    obj: Mapping[str, Any], schema: Schema, old: Mapping[str, Any] | None = None, run_rules: bool = True
) -> tuple[dict[str, Any], list[str]]:
    """Prune, default and validate ``obj`` against ``schema``; return the stored form and errors.

    ``old`` is the object being updated, if any; it enables transition rules (``oldSelf``).
    ``run_rules=False`` skips the CEL rules (used when the request would not get that far).
    """
    pruned, errors = prune(dict(obj), schema)
    stored = apply_defaults(pruned, schema)
    structural, blocking = openapi_errors(stored, schema)
    errors += structural
    errors += list_type_errors(stored, schema)
    if not run_rules:
        pass
    elif blocking:
        errors.append(f"<root>: Internal error: {RULES_NOT_CHECKED}")
    else:
        old_stored = apply_defaults(prune(dict(old), schema)[0], schema) if old is not None else None
        errors += rule_errors(stored, schema, old_stored)
    return stored, errors


def admit_manifest(
    manifest: Mapping[str, Any], old: Mapping[str, Any] | None = None, crd_dir: Path = CRD_DIR
) -> tuple[dict[str, Any], list[str]]:
    """Like :func:`admit`, finding the CRD from the manifest's ``apiVersion`` and ``kind``."""
    if not isinstance(manifest, Mapping):
        return {}, [f"<root>: Invalid value: {_show(manifest)}: a manifest must be a mapping"]
    api_version = str(manifest.get("apiVersion", ""))
    kind = str(manifest.get("kind", ""))
    crd = crd_for(api_version, kind, crd_dir)
    if crd is None:
        return dict(manifest), [f"kind: Invalid value: {_show(kind)}: no CRD in crds/ serves {api_version}"]
    schema = crd.schema(api_version.rpartition("/")[2])
    # Without a valid name the API server rejects the request before any CEL rule runs.
    metadata_errors = _metadata_errors(manifest)
    stored, errors = admit(manifest, schema, old, run_rules=not metadata_errors)
    return stored, metadata_errors + errors


def validate_manifest(
    manifest: Mapping[str, Any], old: Mapping[str, Any] | None = None, crd_dir: Path = CRD_DIR
) -> list[str]:
    """Errors the API server would report for ``manifest`` (an update of ``old``, if given)."""
    return admit_manifest(manifest, old, crd_dir)[1]


# --------------------------------------------------------------------------------------------------
# Test-case files
# --------------------------------------------------------------------------------------------------


def read_header(path: Path) -> dict[str, list[str]]:
    """``# key: value`` lines at the top of a file, before the first YAML content.

    A key may repeat (several ``# expect:`` lines); values keep their order.
    """
    header: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        match = re.match(r"^#\s*([A-Za-z][\w-]*):\s*(.*?)\s*$", stripped)
        if match:
            header.setdefault(match.group(1).lower(), []).append(match.group(2))
    return header
