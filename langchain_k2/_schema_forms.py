"""Tool and output schemas in the forms people have, turned into one OpenAI function form.

In: a dict passed to ``bind_tools`` or ``with_structured_output``: an OpenAI tool
(``{"type": "function", "function": {...}}``) or function (``{"name", "parameters"}``),
a Berkeley Function-Calling Leaderboard (BFCL) function doc (``"type": "dict"``,
``float``, ``tuple``, ``any``, Java and JavaScript type names), or a JSON schema (its
``title`` names it). Out: ``{"name", "description", "parameters"}`` with the *whole*
schema kept: a root ``oneOf``/``anyOf``/``allOf``, ``patternProperties`` or
``additionalProperties`` alone, ``$defs`` and a root ``$ref`` into them (resolved to the
definition it names). A root ``"type": ["object", "null"]`` takes its object branch.
Errors (`ToolDefinitionError`) say what is missing and how to add it.

BFCL types map as BFCL's own OpenAI handler maps them (its ``GORILLA_TO_OPENAPI``):
``dict``/``HashMap``/``Hashtable`` -> ``object``; ``float``/``double`` -> ``number``;
``tuple``/``list``/``ArrayList``/``Array``/``Queue``/``Stack`` -> ``array``;
``byte``/``short``/``long``/``Bigint`` -> ``integer``; ``bool`` -> ``boolean``;
``any``/``Any``/``char``/``String`` and unknown names -> ``string``. Dotted names
(``math.factorial``) are kept: K2 reads them in its prompt and calls come back under
the name that was bound.

Example:
    >>> doc = {"name": "math.gcd", "description": "GCD", "parameters": {"type": "dict",
    ...     "properties": {"a": {"type": "integer"}, "b": {"type": "float"}}}}
    >>> function_from_dict(doc)["parameters"]
    {'type': 'object', 'properties': {'a': {'type': 'integer'}, 'b': {'type': 'number'}}}
    >>> function_from_dict({"title": "Pet", "oneOf": [{"$ref": "#/$defs/Cat"}],
    ...     "$defs": {"Cat": {"type": "object"}}})["parameters"]["oneOf"]
    [{'$ref': '#/$defs/Cat'}]
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from langchain_k2.errors import ToolDefinitionError

__all__ = [
    "BFCL_TYPES",
    "DEFAULT_OUTPUT_NAME",
    "function_from_dict",
    "is_bfcl_doc",
    "is_handled",
    "object_root",
]

DEFAULT_OUTPUT_NAME = "response_format"
"""The name a structured-output schema without ``title`` gets (LangChain agents' prefix)."""

BFCL_TYPES: Mapping[str, str] = {
    "integer": "integer",
    "number": "number",
    "float": "number",
    "double": "number",
    "string": "string",
    "String": "string",
    "char": "string",
    "any": "string",
    "Any": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "Boolean": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "ArrayList": "array",
    "Array": "array",
    "Queue": "array",
    "Stack": "array",
    "dict": "object",
    "object": "object",
    "HashMap": "object",
    "Hashtable": "object",
    "byte": "integer",
    "short": "integer",
    "long": "integer",
    "Bigint": "integer",
}
"""BFCL's type names and the JSON-schema type each becomes (unknown names: ``string``)."""

_JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_SCHEMA_KEYS = frozenset(
    {"properties", "oneOf", "anyOf", "allOf", "$ref", "patternProperties",
     "additionalProperties", "type", "$defs", "definitions", "items", "enum", "const"}
)  # fmt: skip


def _uses_bfcl_types(node: Any) -> bool:
    if isinstance(node, Mapping):
        kind = node.get("type")
        if isinstance(kind, str) and kind not in _JSON_TYPES:
            return True
        return any(_uses_bfcl_types(v) for k, v in node.items() if k in {"properties", "items"})
    if isinstance(node, list):
        return any(_uses_bfcl_types(item) for item in node)
    return False


def is_bfcl_doc(spec: Mapping[str, Any]) -> bool:
    """Whether a function spec's parameters use BFCL's type names (``dict``, ``float``...).

    Example:
        >>> is_bfcl_doc({"name": "f", "parameters": {"type": "dict", "properties": {}}})
        True
        >>> is_bfcl_doc({"name": "f", "parameters": {"type": "object", "properties": {}}})
        False
    """
    return isinstance(spec.get("parameters"), Mapping) and _uses_bfcl_types(spec["parameters"])


def _bfcl_node(node: Any) -> Any:
    """A copy of a BFCL parameter schema with JSON-schema type names."""
    if isinstance(node, list):
        return [_bfcl_node(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = dict(node)
    kind = out.get("type")
    if isinstance(kind, str) and kind not in _JSON_TYPES:
        out["type"] = BFCL_TYPES.get(kind, "string")
    elif "type" not in out and "properties" not in out and "items" not in out:
        out.setdefault("type", "string")  # BFCL's converter: a property with no type
    if isinstance(out.get("properties"), Mapping):
        out["properties"] = {k: _bfcl_node(v) for k, v in out["properties"].items()}
    if "items" in out:
        out["items"] = _bfcl_node(out["items"])
    return out


def object_root(schema: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``schema`` as an object schema for tool arguments, nothing of it lost.

    A root ``$ref`` into the schema's own ``$defs``/``definitions`` is replaced by the
    definition (the definitions stay, for the refs inside). A root ``"type"`` listing
    ``"object"`` with ``"null"`` becomes ``"object"``.

    Raises:
        ToolDefinitionError: the root ``$ref`` points nowhere in the schema.

    Example:
        >>> object_root({"type": ["object", "null"], "properties": {}}, "f")
        {'type': 'object', 'properties': {}}
    """
    out = dict(schema)
    ref = out.get("$ref")
    if isinstance(ref, str):
        target = _local_definition(out, ref)
        if target is None:
            msg = (
                f"the schema of {name!r} is a $ref to {ref!r}, which is not one of its own "
                "$defs/definitions; inline the referenced schema (remote references are not "
                "fetched)"
            )
            raise ToolDefinitionError(msg)
        del out["$ref"]
        out = {**target, **out}
    kind = out.get("type")
    if isinstance(kind, list) and "object" in kind and set(kind) <= {"object", "null"}:
        out["type"] = "object"
    return out


def _outside_refs(node: Any) -> list[str]:
    """The ``$ref`` values of ``node`` that point outside the document (URLs, files)."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            ref = item.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                found.append(ref)
            stack.extend(v for k, v in item.items() if k not in {"enum", "const", "default"})
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _check_refs(schema: Mapping[str, Any], name: str) -> None:
    outside = _outside_refs(schema)
    if outside:
        msg = (
            f"the schema of {name!r} refers to {outside[0]!r} outside itself ({len(outside)} "
            "such $ref); nothing is fetched, so it could be neither constrained nor validated: "
            "bundle the referenced schemas into its $defs and point at '#/$defs/<name>'"
        )
        raise ToolDefinitionError(msg)


def _local_definition(schema: Mapping[str, Any], ref: str) -> Mapping[str, Any] | None:
    parts = ref.split("/")
    if len(parts) != 3 or parts[0] != "#" or parts[1] not in {"$defs", "definitions"}:
        return None
    definitions = schema.get(parts[1])
    name = parts[2].replace("~1", "/").replace("~0", "~")
    target = definitions.get(name) if isinstance(definitions, Mapping) else None
    if not isinstance(target, Mapping):
        return None
    if "$ref" in target:  # a definition that is itself a reference
        return _local_definition(schema, str(target["$ref"]))
    return target


def is_handled(tool: Mapping[str, Any]) -> bool:
    """Whether `function_from_dict` reads this dict (else LangChain's converter does).

    OpenAI tools and functions, BFCL docs and JSON schemas are read here; other
    providers' forms (Anthropic's ``input_schema``, Bedrock's ``toolSpec``) are not.

    Example:
        >>> is_handled({"title": "T", "anyOf": []}), is_handled({"name": "f", "input_schema": {}})
        (True, False)
    """
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        return True
    if "name" in tool:
        return "parameters" in tool or set(tool) <= {"name", "description", "strict"}
    return "title" in tool or any(key in tool for key in _SCHEMA_KEYS)


_META_KEYS = ("title", "description")
"""Taken out of a JSON schema into the function (``$schema`` stays: it picks the dialect)."""
_TITLE_HINT = (
    'give it a name: add "title": "<tool_name>" (and a "description") to the schema, or '
    'pass {"type": "function", "function": {"name": ..., "description": ..., '
    '"parameters": <the schema>}}'
)


def function_from_dict(
    tool: Mapping[str, Any], *, default_name: str | None = None
) -> dict[str, Any]:
    """The OpenAI function spec (``name``, ``description``, ``parameters``) of a dict.

    Args:
        tool: an OpenAI tool or function dict, a BFCL doc, or a JSON schema.
        default_name: the name of a JSON schema without ``title`` (structured output);
            ``None`` refuses such a schema (a tool needs a name).

    Raises:
        ToolDefinitionError: no name can be found, or a root ``$ref`` points nowhere.
    """
    spec: Mapping[str, Any] = tool
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        spec = tool["function"]
    if isinstance(spec.get("name"), str) and ("parameters" in spec or "title" not in spec):
        name = str(spec["name"])
        raw = spec.get("parameters")
        if raw is None:
            raw = {"type": "object", "properties": {}}
        if not isinstance(raw, Mapping):
            msg = f"the 'parameters' of tool {name!r} must be a JSON schema object"
            raise ToolDefinitionError(msg)
        parameters = _bfcl_node(raw) if _uses_bfcl_types(raw) else copy.deepcopy(dict(raw))
        _check_refs(parameters, name)
        return {
            "name": name,
            "description": str(spec.get("description") or ""),
            "parameters": object_root(parameters, name),
        }
    title = spec.get("title")
    if not isinstance(title, str) or not title.strip():
        if default_name is None:
            keys = ", ".join(sorted(str(k) for k in spec)[:8])
            msg = f"this JSON schema (keys: {keys}) has no 'title', so the tool has no name; "
            raise ToolDefinitionError(msg + _TITLE_HINT)
        title = default_name
    parameters = {k: copy.deepcopy(v) for k, v in spec.items() if k not in _META_KEYS}
    _check_refs(parameters, title)
    parameters = object_root(parameters, title)
    if not any(key in parameters for key in _SCHEMA_KEYS):
        parameters = {"type": "object", "properties": {}, **parameters}
    return {
        "name": title,
        "description": str(spec.get("description") or ""),
        "parameters": parameters,
    }
