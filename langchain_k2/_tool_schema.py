"""Bound tools and their argument checks: the tool-call parser asks here whether a call fits.

In: the bound tools as OpenAI-style function dicts (``{"name", "description", "parameters"}``
or ``{"type": "function", "function": {...}}``). Out: a `ToolIndex` that answers, for a
parsed call's name and arguments, ``None`` (the call fits) or a sentence saying why not (an
unknown name, or the first violation of the tool's JSON schema, found with ``jsonschema``).
Bad tool definitions (no name, two tools with one name, a schema that is not a JSON schema)
raise `ToolDefinitionError` when the index is built.

Example:
    >>> index = tool_index([{"name": "add", "parameters": {
    ...     "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}])
    >>> index.check("add", {"a": 1}) is None
    True
    >>> index.check("add", {})
    "arguments for 'add' fail its schema: 'a' is a required property"
    >>> index.check("mul", {})
    "unknown tool 'mul'; bound tools: add"
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jsonschema

from langchain_k2._memo import MemoByValue
from langchain_k2._schema_support import grammar_schema, warn_dropped
from langchain_k2.errors import ToolDefinitionError

__all__ = [
    "MAX_SCHEMA_DEPTH",
    "ToolIndex",
    "compiled_validator",
    "function_of",
    "grammar_parameters",
    "nesting_depth",
    "tool_index",
]

MAX_SCHEMA_DEPTH = 128
"""Deepest nesting (dicts and lists) of a tool's schema; a deeper one is refused, naming it."""


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply lists and dicts nest in ``value``, counted up to just past ``limit``.

    Iterative, so any depth is measured without a ``RecursionError``.

    Example:
        >>> nesting_depth({"a": [1, {"b": 2}]}, 10), nesting_depth([[[[]]]], 2)
        (3, 3)
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_depth(name: str, schema: Any) -> None:
    """Raise `ToolDefinitionError` naming tool ``name`` if ``schema`` nests too deeply."""
    if nesting_depth(schema, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
        msg = (
            f"the 'parameters' of tool {name!r} nest deeper than {MAX_SCHEMA_DEPTH} levels; "
            "flatten the schema (or use $defs and $ref for recursive types)"
        )
        raise ToolDefinitionError(msg)


def function_of(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """The function spec of a tool dict, unwrapping OpenAI's ``{"type": "function", ...}``.

    Example:
        >>> function_of({"type": "function", "function": {"name": "f"}})
        {'name': 'f'}
        >>> function_of({"name": "f", "parameters": {}})
        {'name': 'f', 'parameters': {}}
    """
    function = tool.get("function")
    return function if isinstance(function, Mapping) else tool


def grammar_parameters(function: Mapping[str, Any], engine: str | None) -> dict[str, Any]:
    """The part of a tool's parameters ``engine`` enforces, for its call grammar.

    Keywords the engine drops or refuses are taken out (said once, as a
    `langchain_k2._schema_support.K2SchemaWarning`); `ToolIndex` still checks the calls
    against the whole schema, and a failing call is repaired.

    Example:
        >>> grammar_parameters({"name": "f", "parameters": {"type": "object", "properties":
        ...     {"n": {"type": "integer", "multipleOf": 2}}}}, "tgi")  # doctest: +SKIP
        {'type': 'object', 'properties': {'n': {'type': 'integer'}}}
    """
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    simplified = grammar_schema(parameters, engine)
    warn_dropped(f"tool {function.get('name')!r}", engine, simplified.dropped)
    return simplified.schema


class ToolIndex:
    """The bound tools by name, each with its argument validator (built here, once)."""

    def __init__(self, tools: Sequence[Mapping[str, Any]]) -> None:
        """Index ``tools`` and compile their schemas.

        Raises:
            ToolDefinitionError: a tool has no name, a duplicate name or an invalid schema.
        """
        self._schemas: dict[str, Mapping[str, Any] | None] = {}
        self._validators: dict[str, Callable[[dict[str, Any]], str | None]] = {}
        for position, tool in enumerate(tools):
            spec = function_of(tool)
            name = spec.get("name")
            if not isinstance(name, str) or not name:
                msg = (
                    f"tool #{position} has no name; pass OpenAI-style function dicts "
                    '({"name", "description", "parameters"} or {"type": "function", '
                    '"function": {...}})'
                )
                raise ToolDefinitionError(msg)
            if name in self._schemas:
                msg = f"two bound tools are named {name!r}; tool names must be unique"
                raise ToolDefinitionError(msg)
            parameters = spec.get("parameters")
            if parameters is not None and not isinstance(parameters, Mapping):
                msg = f"the 'parameters' of tool {name!r} must be a JSON schema object"
                raise ToolDefinitionError(msg)
            check_depth(name, parameters)
            self._schemas[name] = parameters
            self._validators[name] = _make_validator(name, parameters)

    def __contains__(self, name: object) -> bool:
        """Whether a tool of this name is bound."""
        return name in self._schemas

    def check(self, name: str, args: dict[str, Any]) -> str | None:
        """Return why ``args`` cannot go to tool ``name``, or ``None`` if they can."""
        if name not in self._schemas:
            bound = ", ".join(self._schemas) or "(none)"
            return f"unknown tool {name!r}; bound tools: {bound}"
        problem = self._validators[name](args)
        if problem is None:
            return None
        return f"arguments for {name!r} fail its schema: {problem}"

    def parameters(self, name: str) -> Mapping[str, Any] | None:
        """The JSON schema of tool ``name``'s arguments (``None``: unknown tool or none given).

        Example:
            >>> tool_index([{"name": "f", "parameters": {"type": "object"}}]).parameters("f")
            {'type': 'object'}
        """
        return self._schemas.get(name)


def compiled_validator(schema: Mapping[str, Any]) -> Any:
    """A ``jsonschema`` validator of ``schema``'s own dialect (``$schema``), checked once.

    Cached by the schema's JSON text: checking a large schema against its metaschema takes
    seconds (JSON Schema Store's renovate.json: about 5 s), and bound schemas repeat.

    Raises:
        jsonschema.exceptions.SchemaError: the schema is not a valid JSON schema.
        TypeError: the schema is not JSON-serializable.
    """
    return _compiled_schema(json.dumps(schema, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _compiled_schema(schema_json: str) -> Any:
    """A ``jsonschema`` validator for a schema given as JSON (cached: tools repeat per call).

    Raises:
        jsonschema.exceptions.SchemaError: the schema is not a valid JSON schema.
    """
    schema = json.loads(schema_json)
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    return validator_cls(schema)


def _make_validator(
    name: str, schema: Mapping[str, Any] | None
) -> Callable[[dict[str, Any]], str | None]:
    """Build a function returning the first schema violation of some arguments, or None.

    Raises:
        ToolDefinitionError: the schema is not a valid JSON schema.
    """
    if not schema:
        return lambda _args: None
    try:
        validator = _compiled_schema(json.dumps(schema, sort_keys=True))
    except (TypeError, ValueError) as exc:  # not JSON-serializable: cannot be sent either
        msg = f"the 'parameters' of tool {name!r} are not JSON-serializable: {exc}"
        raise ToolDefinitionError(msg) from exc
    except jsonschema.exceptions.SchemaError as exc:
        msg = f"the 'parameters' of tool {name!r} are not a valid JSON schema: {exc.message}"
        raise ToolDefinitionError(msg) from exc
    best_match = jsonschema.exceptions.best_match

    def validate(args: dict[str, Any]) -> str | None:
        error = best_match(validator.iter_errors(args))
        if error is None:
            return None
        message = str(error.message)
        path = list(error.absolute_path)
        if path:
            message += " (at " + "/".join(str(p) for p in path) + ")"
        return message

    return validate


_indexes: MemoByValue[Sequence[Mapping[str, Any]], ToolIndex] = MemoByValue(ToolIndex)
"""One index per bound-tools list (a bound model passes the same list on every call)."""


def tool_index(tools: Sequence[Mapping[str, Any]] | None) -> ToolIndex | None:
    """The (memoized) index of ``tools``, or ``None`` when no tools are given (no checks).

    Raises:
        ToolDefinitionError: a tool has no name, a duplicate name or an invalid schema.
    """
    return None if tools is None else _indexes(tools)
