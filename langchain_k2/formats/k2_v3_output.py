"""Output parser of K2-V3 (K2 Horizon): reasoning, answer and one ``<ifm|tool_calls>`` group.

In: the generated text (whole, or streamed in deltas), the bound tools' `ToolIndex`, the
reasoning effort and ``tool_call_format`` the prompt was rendered with. Out:
`langchain_k2.formats._pieces.Piece` items (skeleton: the parsing is being written; see
``shared/spec/k2-family.md`` sections 3, 4.2 and 7).
"""

from __future__ import annotations

from typing import Literal

from langchain_k2.formats._pieces import Piece
from langchain_k2.tool_schema import ToolIndex

__all__ = ["K2V3OutputParser", "parse_k2_v3"]

CallFormat = Literal["xml", "xml_typed", "json"]


class K2V3OutputParser:
    """Incremental parser of one K2-V3 generation."""

    def __init__(
        self,
        tools: ToolIndex | None = None,
        *,
        effort: str,
        tool_call_format: CallFormat = "xml",
        think: bool = True,
        opened: bool = True,
    ) -> None:
        """Create a parser for one generation (``opened``: the prompt opened the tag)."""
        self._tools = tools
        self._effort = effort
        self._format = tool_call_format
        self._think = think
        self._opened = opened

    @property
    def in_block(self) -> bool:
        """Whether the parser is inside an open ``<ifm|tool_calls>`` group."""
        return False

    def feed(self, delta: str) -> list[Piece]:
        """Take the next piece of generated text; return the pieces now known."""
        raise NotImplementedError

    def close(self) -> list[Piece]:
        """End of generation: flush held text and apply the missing-close rule."""
        raise NotImplementedError


def parse_k2_v3(
    text: str,
    tools: ToolIndex | None = None,
    *,
    effort: str,
    tool_call_format: CallFormat = "xml",
    think: bool = True,
) -> list[Piece]:
    """Parse a whole generation: ``feed(text) + close()`` of a fresh parser."""
    parser = K2V3OutputParser(tools, effort=effort, tool_call_format=tool_call_format, think=think)
    return parser.feed(text) + parser.close()
