"""The official schemas of every served kind: what a field may hold, and how server-side apply merges it.

Built-in kinds use the schemas kubernetes-validate ships (generated from the Kubernetes OpenAPI, strict: unknown
fields are refused), for the minor version the stand-in serves. The Gateway API kinds use the openAPIV3Schema of
their official CRDs in tests/schemas/gateway-api-v1.6.1/. Both carry the extensions the field manager reads
(`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`, and for older lists
`x-kubernetes-patch-strategy`/`-merge-key`), which `Node` answers exactly as kube-openapi's schemaconv turns them
into structured-merge-diff types: a list-type wins; else patch strategy "merge" with a merge key is a map keyed
by it; else the list is atomic.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

from tests.standin.errors import FieldError, OMITTED, not_supported, required
from tests.standin.kinds import Kind

_BUILT_IN = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
CRD_DIR = Path(__file__).resolve().parents[1] / "schemas" / "gateway-api-v1.6.1"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def schema_version(served: str) -> str:
    """The newest schema set not newer than the served minor version ("1.36.2" -> "1.36")."""
    wanted = tuple(int(part) for part in served.split(".")[:2])
    available = sorted(tuple(int(p) for p in m.group(1).split(".")) for d in _BUILT_IN.iterdir()
                       if (m := re.match(r"v(\d+\.\d+)\.0-local-strict$", d.name)))
    return ".".join(str(p) for p in max(v for v in available if v <= wanted))


@functools.lru_cache(maxsize=None)
def _definitions(version: str) -> dict:
    return json.loads((_BUILT_IN / f"v{version}.0-local-strict" / "_definitions.json").read_text())


@functools.lru_cache(maxsize=None)
def _kind_file(version: str, kind: Kind) -> dict:
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", kind.api_version)
    return json.loads((_BUILT_IN / f"v{version}.0-local-strict" / f"{kind.kind.lower()}-{api_version}.json").read_text())


@functools.lru_cache(maxsize=None)
def crd(kind: Kind) -> dict:
    """The openAPIV3Schema of a custom resource's served version, from its official CRD file."""
    document = yaml.load((CRD_DIR / kind.crd).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in document["spec"]["versions"] if v["name"] == kind.version)
    return version["schema"]["openAPIV3Schema"]


class Node:
    """One position in a kind's schema: what a field holds and how server-side apply merges it."""

    __slots__ = ("schema", "ext", "defs")

    def __init__(self, schema: dict, defs: dict):
        ext = {k: v for k, v in schema.items() if k.startswith("x-kubernetes-")}
        while "$ref" in schema:
            schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
            # The referring property's extensions win over the definition's (a list-type is set on the property).
            ext = {**{k: v for k, v in schema.items() if k.startswith("x-kubernetes-")}, **ext}
        self.schema, self.ext, self.defs = schema, ext, defs

    def child(self, name: str) -> Node | None:
        """The schema of a field of this object; None for a field the schema does not declare."""
        properties = self.schema.get("properties") or {}
        if name in properties:
            return Node(properties[name], self.defs)
        extra = self.schema.get("additionalProperties")
        if isinstance(extra, dict):
            return Node(extra, self.defs)
        if extra is True or self.ext.get("x-kubernetes-preserve-unknown-fields") or self._untyped():
            return ANY
        return None

    def _untyped(self) -> bool:
        return not self.schema.get("properties") and "additionalProperties" not in self.schema and (
            "type" not in self.schema or "oneOf" in self.schema or "anyOf" in self.schema)

    @property
    def is_map(self) -> bool:
        """A map whose keys are data (labels, annotations, data), not declared fields."""
        return isinstance(self.schema.get("additionalProperties"), dict) and not self.schema.get("properties")

    @property
    def items(self) -> Node:
        return Node(self.schema["items"], self.defs) if "items" in self.schema else ANY

    @property
    def list_type(self) -> str:
        declared = self.ext.get("x-kubernetes-list-type")
        if declared in ("atomic", "set", "map"):
            return declared
        if declared is None and "merge" in (self.ext.get("x-kubernetes-patch-strategy") or "").split(",") and (
                self.ext.get("x-kubernetes-patch-merge-key")):
            return "map"
        return "atomic"

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.ext.get("x-kubernetes-list-map-keys") or [self.ext.get("x-kubernetes-patch-merge-key")])

    @property
    def atomic(self) -> bool:
        return self.ext.get("x-kubernetes-map-type") == "atomic"


ANY = Node({"x-kubernetes-preserve-unknown-fields": True}, {})


@functools.lru_cache(maxsize=None)
def root(version: str, kind: Kind) -> Node:
    if not kind.crd:
        return Node(_kind_file(version, kind), _definitions(version)["$defs"])
    schema = copy.deepcopy(crd(kind))
    # A custom resource's metadata is an ObjectMeta whatever its CRD says (the API server validates it as one).
    schema["properties"]["metadata"] = {"$ref": f"#/$defs/{_OBJECT_META}"}
    return Node(schema, _definitions(version)["$defs"])


@functools.lru_cache(maxsize=None)
def _validator(version: str, kind: Kind):
    if kind.crd:
        return jsonschema.validators.Draft202012Validator(crd(kind))
    registry = Resource.from_contents(_kind_file(version, kind)) @ Registry()
    registry = Resource.from_contents(_definitions(version)) @ registry
    return jsonschema.validators.Draft202012Validator(_kind_file(version, kind), registry=registry)


def json_path(parts) -> str:
    """A field path as validation errors print it: spec.containers[0].image."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def schema_errors(version: str, kind: Kind, obj: dict) -> list[FieldError]:
    """What the schema refuses in obj, unknown fields aside (callers prune or refuse those first)."""
    found = []
    for error in sorted(_validator(version, kind).iter_errors(obj), key=lambda e: json_path(e.absolute_path)):
        if error.validator == "additionalProperties" or (error.validator in ("oneOf", "anyOf") and any(
                e.validator == "additionalProperties" for e in error.context)):
            continue
        found.append(_field_error(error))
    return found


def _field_error(error) -> FieldError:
    """The words the API server's OpenAPI validation uses for each kind of schema failure (kube-openapi)."""
    path = json_path(error.absolute_path)
    value = error.instance
    check = error.validator
    if check == "required":
        missing = re.search(r"'([^']+)' is a required property", error.message)
        return required(f"{path}.{missing.group(1)}" if path and missing else (missing.group(1) if missing else path))
    if check == "enum":
        return not_supported(path, value, [str(v) for v in error.validator_value])
    if check == "pattern":
        return FieldError("Invalid value", path, value, f"{path} in body should match '{error.validator_value}'")
    if check == "maxLength":
        return FieldError("Too long", path, detail=f"may not be more than {error.validator_value} bytes")
    if check == "minLength":
        return FieldError("Invalid value", path, value,
                          f"{path} in body should be at least {error.validator_value} chars long")
    if check == "maxItems":
        return FieldError("Too many", path, len(value), f"must have at most {error.validator_value} items")
    if check in ("minimum", "maximum"):
        relation = "greater" if check == "minimum" else "less"
        return FieldError("Invalid value", path, value,
                          f"{path} in body should be {relation} than or equal to {error.validator_value}")
    if check == "type":
        return FieldError("Invalid value", path, value if not isinstance(value, (dict, list)) else OMITTED,
                          f"{path} in body must be of type {error.validator_value}")
    return FieldError("Invalid value", path, value if isinstance(value, (str, int, float, bool)) else OMITTED,
                      error.message)


def unknown_fields(obj, node: Node, path: tuple = ()) -> list[tuple[tuple, dict, str]]:
    """Every field the schema does not declare: (path of JSON parts, the dict holding it, its key)."""
    found = []
    if isinstance(obj, dict) and node is not ANY:
        for key, value in obj.items():
            child = node.child(key)
            if child is None:
                found.append((path + (key,), obj, key))
            else:
                found += unknown_fields(value, child, path + (key,))
    elif isinstance(obj, list) and node is not ANY:
        for index, item in enumerate(obj):
            found += unknown_fields(item, node.items, path + (index,))
    return found


def apply_defaults(obj, node: Node) -> None:
    """Structural defaulting of a custom resource: every absent field whose schema has a `default`, top down."""
    if isinstance(obj, dict) and node is not ANY:
        for name, schema in (node.schema.get("properties") or {}).items():
            if name not in obj and "default" in schema:
                obj[name] = copy.deepcopy(schema["default"])
        for key, value in obj.items():
            child = node.child(key)
            if child is not None:
                apply_defaults(value, child)
    elif isinstance(obj, list) and node is not ANY:
        for item in obj:
            apply_defaults(item, node.items)
