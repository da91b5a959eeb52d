"""What a family's output parser yields: answer text, reasoning text and tool-call blocks.

In: nothing (type definitions). Out: `Reasoning` (a piece of reasoning text, streamed in
deltas) and `Piece` = ``str | Reasoning | ToolBlock``: ``str`` is ordinary answer text and
`langchain_k2._tool_block.ToolBlock` holds the calls read from one block or call group, as
K2-Chat's `langchain_k2._tool_calls.ToolCallStreamParser` yields them.

Example:
    >>> pieces: list[Piece] = [Reasoning("Add them."), "It is 4."]
    >>> "".join(p.text for p in pieces if isinstance(p, Reasoning))
    'Add them.'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from langchain_k2._tool_block import ToolBlock

__all__ = ["Piece", "Reasoning"]


@dataclass(frozen=True)
class Reasoning:
    """A piece of the model's reasoning (its thought), never part of the answer.

    Attributes:
        text: The reasoning text of this piece; a stream's pieces join to the whole
            reasoning.
    """

    text: str


Piece: TypeAlias = str | Reasoning | ToolBlock
"""One piece of parsed output: answer text, reasoning text, or a block of tool calls."""
