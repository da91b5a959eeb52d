"""TGI's OpenAPI 3.0 components as JSON Schemas (draft 2020-12), to validate wire documents.

Flows in: `openapi.json` beside this file (TGI 3.3.6's own description) and a component name.
Flows out: a `jsonschema` validator for that component, with `$ref`s resolved against the
components and OpenAPI's `nullable: true` translated to a JSON-Schema `null` alternative. With
`strict=True` every object schema that lists `properties` also forbids other keys, so a document
carrying a key the OpenAPI description does not declare fails.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
_ROOT_URI = "urn:tgi-openapi"
_DROP = {"discriminator", "example", "xml", "externalDocs"}


def _convert(node: Any, strict: bool) -> Any:
    """Translate one OpenAPI schema node (recursively)."""
    if isinstance(node, list):
        return [_convert(item, strict) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v, strict) for k, v in node.items() if k not in _DROP and k != "nullable"}
    if "$ref" in out and out["$ref"].startswith("#/"):
        out["$ref"] = _ROOT_URI + out["$ref"]
    if strict and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _registry(strict: bool) -> Registry[Any]:
    spec = json.loads(OPENAPI_PATH.read_text())
    schemas = {name: _convert(s, strict) for name, s in spec["components"]["schemas"].items()}
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    root["components"] = {"schemas": schemas}  # type: ignore[assignment]
    resource: Resource[Any] = Resource.from_contents(root, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_ROOT_URI, resource)
    return registry


def component_schema(name: str, strict: bool = False) -> dict[str, Any]:
    """The converted schema of component `name` (its `$ref`s point into the registry)."""
    contents = _registry(strict).contents(_ROOT_URI)
    return copy.deepcopy(contents["components"]["schemas"][name])


def validator(name: str, strict: bool = False) -> Draft202012Validator:
    """A validator for component `name` (e.g. `StreamResponse`, `GenerateResponse`, `Info`)."""
    schema = {"$ref": f"{_ROOT_URI}#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=_registry(strict))


def validate(document: Any, name: str, strict: bool = False) -> None:
    """Raise `jsonschema.ValidationError` unless `document` matches component `name`."""
    validator(name, strict).validate(document)
