"""The grammar of a forced or repaired call, and the sink that reads a constrained call.

In: the bound tools (OpenAI-style dicts). Out: `call_grammar`'s JSON `Grammar` for one call of
one of them, and `ConstrainedCall`, the output parser of a grammar-constrained generation
(``feed``/``close`` to a `ToolBlock`). Moved out of `langchain_k2._turn` unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_k2._schema_refs import hoist_definitions
from langchain_k2._tool_calls import ToolBlock, parse_block
from langchain_k2._tool_schema import function_of, grammar_parameters
from langchain_k2.backends._base import Grammar, json_grammar


def call_grammar(tools: Sequence[Mapping[str, Any]], engine: str | None = None) -> Grammar:
    """The JSON grammar constraining output to one call of ``tools`` (as ``engine`` takes it).

    One tool: ``{"name": <const>, "arguments": <the tool's schema>}``. Several: TGI
    refuses a grammar without top-level ``properties``, so the schema carries both
    ``properties`` (``name`` an ``enum``, ``arguments`` an ``anyOf`` of the schemas: what
    TGI's outlines compiles) and a top-level ``anyOf`` of the exact per-tool calls (what
    llama.cpp compiles; nested ``anyOf`` of objects derails its grammar). Either way a
    name paired with another tool's arguments fails validation and is repaired. The
    tools' ``$defs``/``definitions`` move to the grammar's top level, where their ``$ref``
    pointers (read from the document root) find them (`hoist_definitions`).

    Example:
        >>> call_grammar([{"name": "f", "parameters": {"type": "object", "properties": {}}}])
        Grammar(kind='json', value={'type': 'object', 'properties': {'name': {'const': 'f'}, \
'arguments': {'type': 'object', 'properties': {}}}, 'required': ['name', 'arguments']})
    """
    functions = [function_of(tool) for tool in tools]
    schemas, definitions = hoist_definitions(
        [grammar_parameters(fn, engine) for fn in functions]  # what the engine enforces
    )
    calls: list[dict[str, Any]] = []
    for fn, params in zip(functions, schemas, strict=True):
        params.setdefault("type", "object")
        calls.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    if len(calls) == 1:
        return json_grammar(calls[0] if not definitions else {**calls[0], "$defs": definitions})
    names = [c["properties"]["name"]["const"] for c in calls]
    arguments = [c["properties"]["arguments"] for c in calls]
    schema = {
        "type": "object",
        "properties": {"name": {"enum": names}, "arguments": {"anyOf": arguments}},
        "required": ["name", "arguments"],
        "anyOf": calls,
    }
    if definitions:
        schema["$defs"] = definitions
    return json_grammar(schema)


class ConstrainedCall:
    """The sink for a grammar-constrained call: the whole completion is one JSON call.

    A grammar makes the output exactly the call's JSON, so the close tag is not looked
    for (a string value may legitimately contain ``</tool_call>``); the block is read
    once, when generation ends.
    """

    def __init__(
        self, tools: Sequence[Mapping[str, Any]] | None, *, open_tag: str, close_tag: str
    ) -> None:
        self._tools = tools
        self._open, self._close = open_tag, close_tag
        self._parts: list[str] = []

    def feed(self, delta: str) -> list[str | ToolBlock]:
        self._parts.append(delta)
        return []

    def close(self) -> list[str | ToolBlock]:
        raw = "".join(self._parts)
        self._parts = []
        if not raw.startswith(self._open):
            raw = self._open + raw
        return [parse_block(raw, self._tools, open_tag=self._open, close_tag=self._close)]


__all__ = ["ConstrainedCall", "call_grammar"]
