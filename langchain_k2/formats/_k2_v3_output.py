r"""Output parser of K2-V3 (K2 Horizon): reasoning, answer and one ``<ifm|tool_calls>`` group.

In: the generated text (whole, or streamed in deltas), the bound tools' `ToolIndex`, the
reasoning effort and ``tool_call_format`` the prompt was rendered with. Out:
`langchain_k2.formats._pieces.Piece` items (``shared/spec/k2-family.md`` sections 3, 4.2
and 7, following upstream vLLM's ``k2_horizon`` parsers):

* Reasoning is tagged per effort: ``<ifm|think>`` (high), ``<ifm|think_fast>`` (medium),
  ``<ifm|think_faster>`` (low); the prompt opens it, one generated opening tag is dropped,
  only the effort's own close tag ends it. Calls drafted before the close tag are
  reasoning text and never run.
* Missing close tag (``unclosed``): ``"content"`` (default, vLLM's whole-output rule): if a
  ``<ifm|tool_calls>`` group occurs, the text before it is reasoning; otherwise there was
  no reasoning and everything is the answer ("prefer a visible answer"). Since a close tag
  could come at any point, a stream holds the reasoning back until the close tag (or the
  end) decides. ``"boundary"`` (vLLM's streaming rule): the reasoning ends at the close tag
  or the first group, and streams as it comes; text with neither is all reasoning.
  ``"reasoning"`` (sglang's detector): everything unclosed is reasoning. ``"live"``
  (an option through `K2V3Format.unclosed`): the reasoning streams as it comes;
  from a group met inside it the text is held until the close tag (a call drafted in the
  thought stays reasoning) or the end (the group is the answer, as under ``"content"``);
  text with neither close tag nor group is all reasoning.
* The first group after the reasoning is read by `langchain_k2.formats._k2_v3_calls`
  (fail closed, values typed from the schema); text around it is the answer, and later
  groups stay answer text as vLLM leaves them. A bare ``<ifm|tool_call>`` is text; a group
  never closed is one invalid call holding its text.
* Reasoning and answer are returned stripped of surrounding whitespace.

Example:
    >>> parse_k2_v3("Paris is sunny.</ifm|think_fast>\nSunny.", effort="medium")
    [Reasoning(text='Paris is sunny.'), 'Sunny.']
"""

from __future__ import annotations

from langchain_k2._tool_block import partial_suffix
from langchain_k2._tool_schema import ToolIndex
from langchain_k2.formats._k2_v2_output import effort_tags
from langchain_k2.formats._k2_v3_calls import (
    CALL_FORMATS,
    GROUP_CLOSE,
    GROUP_OPEN,
    MARKERS,
    CallFormat,
    read_group,
    unclosed_group,
)
from langchain_k2.formats._pieces import Piece
from langchain_k2.formats._reasoning_split import ReasoningSplitter, SplitOutput, Unclosed

__all__ = ["EFFORT_TAGS", "K2V3OutputParser", "parse_k2_v3"]

EFFORT_TAGS: dict[str, tuple[str, str]] = {
    "high": ("<ifm|think>", "</ifm|think>"),
    "medium": ("<ifm|think_fast>", "</ifm|think_fast>"),
    "low": ("<ifm|think_faster>", "</ifm|think_faster>"),
}
"""Reasoning tags of K2-V3 by effort (spec section 3)."""

_OUT, _IN, _DONE = 0, 1, 2


class _GroupFinder:
    """Streams answer text, cutting out the first ``<ifm|tool_calls>`` group as a block."""

    def __init__(self, fmt: CallFormat, tools: ToolIndex | None) -> None:
        self._fmt, self._tools = fmt, tools
        self._state = _OUT
        self._held = ""  # outside: a partial open tag
        self._parts: list[str] = []  # inside: the group so far (linear time)
        self._tail = ""  # inside: its last len(GROUP_CLOSE) - 1 characters

    @property
    def in_group(self) -> bool:
        return self._state == _IN

    def feed(self, delta: str) -> list[str | Piece]:
        if self._state == _DONE:
            return [delta] if delta else []
        out: list[str | Piece] = []
        if self._state == _OUT:
            text = self._held + delta
            start = text.find(GROUP_OPEN)
            if start == -1:
                keep = partial_suffix(text, GROUP_OPEN)
                self._held = text[len(text) - keep :]
                body = text[: len(text) - keep]
                return [body] if body else []
            if start:
                out.append(text[:start])
            self._state, self._held = _IN, ""
            self._parts, self._tail = [GROUP_OPEN], ""
            delta = text[start + len(GROUP_OPEN) :]
        window = self._tail + delta
        end = window.find(GROUP_CLOSE)
        if end == -1:
            self._parts.append(delta)
            keep = len(GROUP_CLOSE) - 1
            self._tail = window[len(window) - keep :] if keep < len(window) else window
            return out
        held = "".join(self._parts)
        cut = len(held) - len(self._tail) + end + len(GROUP_CLOSE)
        text = held + delta
        out.append(read_group(text[:cut], self._fmt, self._tools))
        self._state, self._parts, self._tail = _DONE, [], ""
        if cut < len(text):
            out.append(text[cut:])
        return out

    def close(self) -> list[str | Piece]:
        held, state, group = self._held, self._state, "".join(self._parts)
        self._state, self._held, self._parts, self._tail = _OUT, "", [], ""
        if state == _IN:
            return [unclosed_group(group)]
        return [held] if held else []


class K2V3OutputParser(SplitOutput):
    """Incremental parser of one K2-V3 generation.

    For any split of a text into deltas, the pieces of ``feed`` and ``close`` join (texts
    joined, reasoning joined, blocks equal but for call ids) to `parse_k2_v3` of the text.
    """

    markers: frozenset[str] = frozenset(
        [tag for pair in EFFORT_TAGS.values() for tag in pair] + list(MARKERS)
    )
    """The output's own markers: an engine reporting one as a special token has not ended
    the turn."""

    def __init__(
        self,
        tools: ToolIndex | None = None,
        *,
        effort: str,
        tool_call_format: CallFormat = "xml",
        think: bool = True,
        opened: bool = True,
        unclosed: Unclosed = "content",
    ) -> None:
        """Create a parser for one generation.

        Args:
            tools: The bound tools' index (``None``: no name or schema checks, values of
                undeclared arguments stay strings).
            effort: ``"low"``, ``"medium"`` or ``"high"``: the effort the prompt opened.
            tool_call_format: The call form the prompt asked for: ``"xml"``,
                ``"xml_typed"`` or ``"json"`` (the parser does not guess it).
            think: Whether an output that opens the effort's tag itself is reasoning
                when the prompt did not open it (``opened=False``). With ``think=False``
                and ``opened=False`` (thinking turned off) the output is answer and calls
                only.
            opened: The prompt ends with the effort's opening tag (the output starts
                inside the reasoning).
            unclosed: What text is when the close tag never comes: ``"content"``
                (vLLM's whole-output rule, default here), ``"boundary"`` (vLLM's
                streaming rule), ``"reasoning"`` (sglang) or ``"live"`` (reasoning
                streamed as it comes); see the module docstring.

        Raises:
            ValueError: an unknown ``effort``, ``tool_call_format`` or ``unclosed``.
        """
        start, close = effort_tags(effort, EFFORT_TAGS)
        if tool_call_format not in CALL_FORMATS:
            choices = ", ".join(repr(name) for name in CALL_FORMATS)
            msg = f"tool_call_format must be one of {choices}; got {tool_call_format!r}"
            raise ValueError(msg)
        if unclosed not in {"content", "boundary", "reasoning", "live"}:
            msg = f"unclosed must be 'live', 'content', 'boundary' or 'reasoning'; got {unclosed!r}"
            raise ValueError(msg)
        self._split: ReasoningSplitter | None = (
            ReasoningSplitter(start, close, opened=opened, unclosed=unclosed, boundary=GROUP_OPEN)
            if think or opened
            else None
        )
        self._groups = _GroupFinder(tool_call_format, tools)
        self._reader = self._groups
        super().__init__()

    @property
    def in_block(self) -> bool:
        """Whether the parser is inside an open ``<ifm|tool_calls>`` group."""
        return self._groups.in_group


def parse_k2_v3(
    text: str,
    tools: ToolIndex | None = None,
    *,
    effort: str,
    tool_call_format: CallFormat = "xml",
    think: bool = True,
    opened: bool = True,
    unclosed: Unclosed = "content",
) -> list[Piece]:
    """Parse a whole generation: ``feed(text) + close()`` of a fresh `K2V3OutputParser`."""
    parser = K2V3OutputParser(
        tools,
        effort=effort,
        tool_call_format=tool_call_format,
        think=think,
        opened=opened,
        unclosed=unclosed,
    )
    return parser.feed(text) + parser.close()
