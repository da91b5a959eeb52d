"""Embed JSON schemas inside a larger one without breaking their ``$ref`` pointers.

In: the tool schemas a wrapper grammar nests (under ``arguments``). Out: the same schemas
with their ``$defs``/``definitions`` taken out and their local ``$ref`` pointers rewritten,
and the one ``$defs`` dict the wrapper must carry at its top level. A local pointer is read
from the root of the whole document, so ``#/$defs/Address`` inside a nested schema points
at the wrapper's ``$defs``, which is where the definitions move (renamed on collision).
A pointer to elsewhere in a schema (``#``, ``#/properties/...``) points at a copy of that
schema kept in ``$defs`` too. Other references (URLs) are left as they are.

Example:
    >>> schema = {"type": "object", "properties": {"home": {"$ref": "#/$defs/Address"}},
    ...           "$defs": {"Address": {"type": "object"}}}
    >>> hoist_definitions([schema])
    ([{'type': 'object', 'properties': {'home': {'$ref': '#/$defs/Address'}}}], \
{'Address': {'type': 'object'}})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["hoist_definitions", "refs_in"]

_DEF_KEYS = ("$defs", "definitions")


def _unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _fresh(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... if taken; recorded as taken."""
    fresh, number = name, 2
    while fresh in taken:
        fresh, number = f"{name}_{number}", number + 1
    taken.add(fresh)
    return fresh


def _refs(node: Any) -> list[str]:
    """Every ``$ref`` string in ``node``."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.append(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _rewrite(node: Any, rename: Any) -> Any:
    """A copy of ``node`` with every ``$ref`` string passed through ``rename``."""
    if isinstance(node, Mapping):
        return {
            key: rename(value)
            if key == "$ref" and isinstance(value, str)
            else _rewrite(value, rename)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(item, rename) for item in node]
    return node


def _is_local(ref: str) -> bool:
    return ref == "#" or ref.startswith("#/")


def _hoist_one(
    schema: Mapping[str, Any], shared: dict[str, Any], taken: set[str], position: int
) -> dict[str, Any]:
    names: dict[tuple[str, str], str] = {}
    for kind in _DEF_KEYS:
        definitions = schema.get(kind)
        if isinstance(definitions, Mapping):
            for name in definitions:
                names[kind, str(name)] = _fresh(str(name), taken)
    # A pointer into the schema itself (not to one of its definitions) needs a copy of it.
    needs_root = any(
        _is_local(ref) and tuple(_unescape(p) for p in ref[2:].split("/")[:2]) not in names
        for ref in _refs(schema)
    )
    root = _fresh(f"arguments_{position}", taken) if needs_root else ""

    def rename(ref: str) -> str:
        if not _is_local(ref):
            return ref
        parts = ref[2:].split("/") if ref != "#" else []
        if len(parts) >= 2 and (parts[0], _unescape(parts[1])) in names:
            new = names[parts[0], _unescape(parts[1])]
            return "/".join(["#", "$defs", _escape(new), *parts[2:]])
        return "/".join(["#", "$defs", _escape(root), *parts])

    body: dict[str, Any] = _rewrite({k: v for k, v in schema.items() if k not in _DEF_KEYS}, rename)
    for (kind, name), new in names.items():
        shared[new] = _rewrite(schema[kind][name], rename)
    if needs_root:
        shared[root] = body
    return body


def hoist_definitions(
    schemas: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Take the definitions out of ``schemas`` so they can be nested in a wrapper schema.

    Args:
        schemas: JSON schemas (tool parameters), each a self-contained document.

    Returns:
        The schemas without ``$defs``/``definitions``, their local ``$ref`` pointers
        rewritten to ``#/$defs/<name>``, and the ``$defs`` the wrapper must hold at its top
        level (empty when no schema has definitions or local pointers). A schema with no
        local pointer and no definitions comes back equal to itself.
    """
    shared: dict[str, Any] = {}
    taken: set[str] = set()
    hoisted = []
    for position, schema in enumerate(schemas):
        has_defs = any(isinstance(schema.get(kind), Mapping) for kind in _DEF_KEYS)
        if has_defs or any(_is_local(ref) for ref in _refs(schema)):
            hoisted.append(_hoist_one(schema, shared, taken, position))
        else:
            hoisted.append(dict(schema))
    return hoisted, shared


refs_in = _refs
"""Every ``$ref`` string in a schema (`langchain_k2._tool_binding` finds recursive models)."""
