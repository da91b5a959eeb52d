"""Helpers for the K2-V2 / K2-V3 output-parser tests: pieces summed up as a user sees them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_k2._tool_block import ToolBlock
from langchain_k2.formats._pieces import Piece, Reasoning


@dataclass(frozen=True)
class Parsed:
    """What a message would hold: reasoning, content, calls (name, args), invalid calls."""

    reasoning: str
    content: str
    calls: list[tuple[str, dict[str, Any]]]
    invalid: list[tuple[str | None, str | None, str | None]]  # name, args, error
    blocks: list[str]  # each block's raw text


def summary(pieces: list[Piece]) -> Parsed:
    blocks = [p for p in pieces if isinstance(p, ToolBlock)]
    return Parsed(
        reasoning="".join(p.text for p in pieces if isinstance(p, Reasoning)),
        content="".join(p for p in pieces if isinstance(p, str)),
        calls=[(c["name"], c["args"]) for b in blocks for c in b.tool_calls],
        invalid=[(c["name"], c["args"], c["error"]) for b in blocks for c in b.invalid_tool_calls],
        blocks=[b.raw for b in blocks],
    )


WEATHER: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string"},
                    "days": {"type": "integer"},
                    "metric": {"type": "boolean"},
                    "ratio": {"type": "number"},
                    "note": {"type": ["string", "null"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "options": {"type": "object"},
                    "code": {"type": "string"},
                    "when": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                },
                "required": ["location"],
            },
        },
    },
    {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
]
