"""Output parser of K2-V2-Instruct and K2-Think-V2: reasoning, answer, Hermes-style calls.

In: the generated text (whole, or streamed in deltas), the bound tools' `ToolIndex`, the
reasoning effort the prompt was rendered with. Out: `langchain_k2.formats._pieces.Piece`
items (skeleton: the parsing is being written; see ``shared/spec/k2-family.md`` sections 3,
4.1 and 7).
"""

from __future__ import annotations

from langchain_k2.formats._pieces import Piece
from langchain_k2.tool_schema import ToolIndex

__all__ = ["K2V2OutputParser", "parse_k2_v2"]


class K2V2OutputParser:
    """Incremental parser of one K2-V2 / K2-Think-V2 generation."""

    def __init__(
        self,
        tools: ToolIndex | None = None,
        *,
        effort: str,
        think: bool = True,
        opened: bool = True,
    ) -> None:
        """Create a parser for one generation (``opened``: the prompt opened the tag)."""
        self._tools = tools
        self._effort = effort
        self._think = think
        self._opened = opened

    @property
    def in_block(self) -> bool:
        """Whether the parser is inside an open tool-call block."""
        return False

    def feed(self, delta: str) -> list[Piece]:
        """Take the next piece of generated text; return the pieces now known."""
        raise NotImplementedError

    def close(self) -> list[Piece]:
        """End of generation: flush held text and apply the missing-close rule."""
        raise NotImplementedError


def parse_k2_v2(
    text: str, tools: ToolIndex | None = None, *, effort: str, think: bool = True
) -> list[Piece]:
    """Parse a whole generation: ``feed(text) + close()`` of a fresh parser."""
    parser = K2V2OutputParser(tools, effort=effort, think=think)
    return parser.feed(text) + parser.close()
