r"""Output parser of K2-V2-Instruct and K2-Think-V2: reasoning, answer, Hermes-style calls.

In: the generated text (whole, or streamed in deltas), the bound tools' `ToolIndex` and
the reasoning effort the prompt was rendered with. Out: `langchain_k2.formats._pieces.Piece`
items: `Reasoning`, answer text and `ToolBlock` s (``shared/spec/k2-family.md`` sections
3, 4.1 and 7).

* Reasoning is tagged per effort: ``<think>`` (high), ``<think_fast>`` (medium),
  ``<think_faster>`` (low). The prompt opens the tag, so the output is
  ``reasoning</think_fast>answer``; a generated opening tag is dropped. Only the effort's
  own close tag ends the reasoning (``</think>`` under ``low`` is reasoning text).
* A missing close tag leaves everything as reasoning and the answer empty (vLLM
  ``k2_v2``, the DeepSeek-R1 rule): calls are never read from the reasoning.
* Calls are read only after the reasoning: one JSON object per
  ``<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`` block, several blocks in
  a row. Each block is read by K2-Chat's block reader (`langchain_k2._tool_block`): a JSON
  list of calls, ``arguments`` as a JSON string and the other habits it accepts are accepted
  here too, and every call is checked against its tool's schema. A block that cannot be read
  becomes an invalid call holding its raw text; the other blocks keep their calls (BFCL's
  reading; the spec's "no calls if any block fails" is an unverified library policy, and a
  stream could not take back a block already emitted).
* Reasoning and answer are returned stripped of surrounding whitespace.

Example:
    >>> parse_k2_v2(
    ...     'Need the weather.\n</think_fast>\n<tool_call>\n{"name": "weather", '
    ...     '"arguments": {"city": "Paris"}}\n</tool_call>', effort="medium")[0]
    Reasoning(text='Need the weather.')
"""

from __future__ import annotations

from langchain_k2._tool_block import CLOSE_TAG, OPEN_TAG
from langchain_k2._tool_calls import ToolCallStreamParser
from langchain_k2._tool_schema import ToolIndex
from langchain_k2.formats._pieces import Piece
from langchain_k2.formats._reasoning_split import ReasoningSplitter, SplitOutput

__all__ = ["EFFORT_TAGS", "K2V2OutputParser", "parse_k2_v2"]

EFFORT_TAGS: dict[str, tuple[str, str]] = {
    "high": ("<think>", "</think>"),
    "medium": ("<think_fast>", "</think_fast>"),
    "low": ("<think_faster>", "</think_faster>"),
}
"""Reasoning tags of K2-V2-Instruct and K2-Think-V2 by effort (spec section 3)."""


def effort_tags(effort: str, table: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """The ``(open, close)`` tags of ``effort``.

    Raises:
        ValueError: ``effort`` is not one of the table's efforts (they are named).
    """
    try:
        return table[effort]
    except (KeyError, TypeError):
        choices = ", ".join(repr(name) for name in table)
        msg = f"reasoning_effort must be one of {choices}; got {effort!r}"
        raise ValueError(msg) from None


class K2V2OutputParser(SplitOutput):
    """Incremental parser of one K2-V2 / K2-Think-V2 generation.

    For any split of a text into deltas, the pieces of ``feed`` and ``close`` join (texts
    joined, reasoning joined, blocks equal but for call ids) to `parse_k2_v2` of the text.
    """

    markers: frozenset[str] = frozenset(
        [tag for pair in EFFORT_TAGS.values() for tag in pair] + [OPEN_TAG, CLOSE_TAG]
    )
    """The output's own markers: an engine reporting one as a special token has not ended
    the turn."""

    def __init__(
        self,
        tools: ToolIndex | None = None,
        *,
        effort: str,
        think: bool = True,
        opened: bool = True,
    ) -> None:
        """Create a parser for one generation.

        Args:
            tools: The bound tools' index (``None``: no name or schema checks).
            effort: ``"low"``, ``"medium"`` or ``"high"``: the effort the prompt opened.
            think: Whether the model reasons of its own accord (K2-Think-V2): with
                ``opened=False`` an output that opens the effort's tag is still reasoning.
                With ``think=False`` and ``opened=False`` the output is answer and calls
                only.
            opened: The prompt ends with the effort's opening tag (the output starts
                inside the reasoning), as every K2-V2 generation prompt does.

        Raises:
            ValueError: an unknown ``effort``.
        """
        start, close = effort_tags(effort, EFFORT_TAGS)
        self._split: ReasoningSplitter | None = (
            ReasoningSplitter(start, close, opened=opened, unclosed="reasoning")
            if think or opened
            else None
        )
        self._calls = ToolCallStreamParser(tools, open_tag=OPEN_TAG, close_tag=CLOSE_TAG)
        self._reader = self._calls
        super().__init__()

    @property
    def in_block(self) -> bool:
        """Whether the parser is inside an open ``<tool_call>`` block."""
        return self._calls.in_block


def parse_k2_v2(
    text: str,
    tools: ToolIndex | None = None,
    *,
    effort: str,
    think: bool = True,
    opened: bool = True,
) -> list[Piece]:
    """Parse a whole generation: ``feed(text) + close()`` of a fresh `K2V2OutputParser`."""
    parser = K2V2OutputParser(tools, effort=effort, think=think, opened=opened)
    return parser.feed(text) + parser.close()
