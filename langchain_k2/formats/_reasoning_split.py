"""The reasoning splitter shared by the K2 families: thought first, then the answer.

In: generated text, whole or in deltas, and the effort's tags (``<think_fast>`` /
``</think_fast>``, ``<ifm|think>`` / ``</ifm|think>``...). Out: `Reasoning` pieces and
answer text (``str``, still to be searched for tool calls), in order. Partial tags at the end
of a delta are held back until the next delta tells what they are, so any split of a text
yields pieces that join to the whole-text result. `SplitOutput` is the output parser both
families build on: this splitter for the thought, the family's reader for the answer.

The rules (``shared/spec/k2-family.md`` sections 3 and 7):

* The prompt normally opens the reasoning (``opened=True``): the output starts inside it.
  One opening tag generated anyway at the start (after whitespace) is dropped. With
  ``opened=False`` the output is reasoning only if it starts with the opening tag.
* Reasoning ends at the effort's close tag, which is dropped. Any other tag (another
  effort's close tag, tool-call markup) is reasoning text: a call drafted in the thought is
  never a call.
* A missing close tag (``unclosed``): ``"reasoning"`` keeps everything as reasoning
  (K2-V2, vLLM ``k2_v2``); ``"content"`` is upstream vLLM ``k2_horizon``'s whole-output
  rule for K2-V3: if the ``boundary`` (``<ifm|tool_calls>``) occurs the reasoning ends
  just before it, else there was no reasoning and everything is answer. That can only be
  decided at the close tag or at the end, so under ``"content"`` the reasoning is held
  until then. ``"boundary"`` is upstream's streaming rule: the reasoning ends at the close
  tag or at the first boundary, whichever comes first, and is streamed as it comes.
  ``"live"`` (a K2-V3 option) streams the reasoning as it comes and still never
  runs a call drafted in the thought: from a boundary met inside the reasoning, the text
  is held until the close tag (then it was reasoning) or the end (then the reasoning ended
  at the boundary, as under ``"content"``); text with neither is all reasoning.

Example:
    >>> split = ReasoningSplitter("<think>", "</think>")
    >>> split.feed("Two and two.</th") + split.feed("ink>Four.") + split.close()
    [Reasoning(text='Two and two.'), 'Four.']
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from langchain_k2._tool_block import partial_suffix
from langchain_k2.formats._pieces import Piece, Reasoning

__all__ = ["ReasoningSplitter", "Trim", "Unclosed"]

Unclosed = Literal["reasoning", "content", "boundary", "live"]
"""What text is when the reasoning's close tag never comes (see the module docstring)."""

_START, _THINK, _ANSWER = 0, 1, 2


class ReasoningSplitter:
    """Incremental splitter of one generation into reasoning and answer text."""

    def __init__(
        self,
        start: str,
        close: str,
        *,
        opened: bool = True,
        unclosed: Unclosed = "reasoning",
        boundary: str | None = None,
    ) -> None:
        """Create a splitter for one generation.

        Args:
            start: The effort's opening tag.
            close: The effort's close tag.
            opened: The prompt opened the reasoning (the output starts inside it).
            unclosed: What text is when ``close`` never comes (module docstring).
            boundary: The answer-side marker that ends a reasoning left unclosed
                (``unclosed`` ``"content"`` or ``"boundary"``); it stays in the answer.

        Raises:
            ValueError: a tag is empty, or ``boundary`` is missing where it is needed.
        """
        if not start or not close:
            msg = "the reasoning tags must be non-empty strings"
            raise ValueError(msg)
        if unclosed in {"boundary", "live"} and not boundary:
            msg = f"unclosed={unclosed!r} needs the boundary marker"
            raise ValueError(msg)
        self._start_tag, self._close = start, close
        self._opened = opened
        self._unclosed = unclosed
        self._boundary = boundary or ""
        # A tag can only start at one of these characters: a delta with none of them, and
        # nothing held, is reasoning as it stands (the common case, checked first).
        self._firsts = (
            {close[0], boundary[0]} if boundary and unclosed in {"boundary", "live"} else {close[0]}
        )
        self._holding = False  # "live": a boundary came inside the reasoning; held since
        self._state = _START
        self._held = ""  # text not yet released: a partial tag, or the start so far
        # Under "content": the reasoning held until the close tag, in parts (linear time),
        # and its last len(close) - 1 characters, where a split close tag may begin.
        self._parts: list[str] = []
        self._tail = ""

    @property
    def in_reasoning(self) -> bool:
        """Whether the text fed so far ends inside the reasoning (or may still start one)."""
        return self._state != _ANSWER

    def plain(self, delta: str) -> bool:
        """Whether ``delta`` is reasoning as it stands (no tag can start in it, none held).

        `feed` would return it as one `Reasoning` piece; a caller may skip the call.
        """
        return (
            self._state == _THINK
            and not self._held
            and self._unclosed != "content"
            and not self._holding
            and not any(first in delta for first in self._firsts)
        )

    def feed(self, delta: str) -> list[Reasoning | str]:
        """Take the next delta; return reasoning pieces and answer text now known."""
        if self._state == _ANSWER:
            return [delta] if delta else []
        if self._state == _THINK and (self._unclosed == "content" or self._holding):
            return self._hold(delta)
        if self.plain(delta):
            return [Reasoning(delta)] if delta else []
        self._held += delta
        if self._state == _START and not self._leave_start():
            return []
        if self._state == _ANSWER or self._unclosed == "content":
            text, self._held = self._held, ""
            if self._state == _THINK:
                return self._hold(text)
            return [text] if text else []
        return self._think()

    def close(self) -> list[Reasoning | str]:
        """End of generation: release what is held, applying the missing-close rule."""
        held = "".join(self._parts) + self._held
        state, self._state, self._held, self._parts, self._tail = self._state, _START, "", [], ""
        holding, self._holding = self._holding, False
        if holding:  # "live": no close tag after the boundary: the answer starts there
            return [held] if held else []
        if state == _ANSWER or (state == _START and not self._opened):
            return [held] if held else []
        if self._unclosed == "content":
            cut = held.find(self._boundary) if self._boundary else -1
            if cut == -1:
                return [held] if held else []
            return [piece for piece in (Reasoning(held[:cut]), held[cut:]) if _has_text(piece)]
        return [Reasoning(held)] if held else []

    def _leave_start(self) -> bool:
        """Decide whether the output opens with the start tag; False while undecided."""
        head = self._held.lstrip()
        if self._start_tag.startswith(head) and len(head) < len(self._start_tag):
            return False  # blank, or a prefix of the tag: wait for more
        if head.startswith(self._start_tag):
            self._held = head[len(self._start_tag) :]
            self._state = _THINK
        else:
            self._state = _THINK if self._opened else _ANSWER
        return True

    def _hold(self, delta: str) -> list[Reasoning | str]:
        """Under "content": hold ``delta`` too, unless the close tag has come."""
        window = self._tail + delta
        end = window.find(self._close)
        if end == -1:
            self._parts.append(delta)
            keep = len(self._close) - 1
            self._tail = window[len(window) - keep :] if keep < len(window) else window
            return []
        held = "".join(self._parts)
        cut = len(held) - len(self._tail) + end
        text = held + delta
        return self._end(Reasoning(text[:cut]), text[cut + len(self._close) :])

    def _think(self) -> list[Reasoning | str]:
        text = self._held
        end = text.find(self._close)
        cut = text.find(self._boundary) if self._unclosed in {"boundary", "live"} else -1
        if cut != -1 and (end == -1 or cut < end) and self._unclosed == "live":
            self._held, self._parts, self._tail, self._holding = "", [], "", True
            before = [Reasoning(text[:cut])] if cut else []
            return before + self._hold(text[cut:])
        if cut != -1 and (end == -1 or cut < end):
            return self._end(Reasoning(text[:cut]), text[cut:])
        if end != -1:
            return self._end(Reasoning(text[:end]), text[end + len(self._close) :])
        keep = partial_suffix(text, self._close)
        if self._unclosed in {"boundary", "live"}:
            keep = max(keep, partial_suffix(text, self._boundary))
        self._held = text[len(text) - keep :]
        out = text[: len(text) - keep]
        return [Reasoning(out)] if out else []

    def _end(self, reasoning: Reasoning, answer: str) -> list[Reasoning | str]:
        self._state, self._held, self._parts, self._tail = _ANSWER, "", [], ""
        self._holding = False
        return [piece for piece in (reasoning, answer) if _has_text(piece)]


def _has_text(piece: Reasoning | str) -> bool:
    return bool(piece.text if isinstance(piece, Reasoning) else piece)


class Trim:
    r"""Strips one channel's text (reasoning, or content) as it streams.

    Leading whitespace is dropped; trailing whitespace is held until more text follows it,
    and dropped at the end, so the joined output is the channel's text ``.strip()``-ped
    (spec section 7) whatever the split.

    Example:
        >>> trim = Trim()
        >>> "|".join(trim.text(s) for s in ("\n ", "Hi ", " there\n"))
        '|Hi|  there'
    """

    def __init__(self) -> None:
        """Start a channel with nothing emitted."""
        self._started = False
        self._space = ""

    def text(self, text: str) -> str:
        """The part of ``text`` to emit now (it may be empty)."""
        if self._started and not self._space and text and not text[-1].isspace():
            return text  # the common case: nothing held, nothing to hold
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        body = text.rstrip()
        if not body:
            self._space += text
            return ""
        out = self._space + body
        self._space = text[len(body) :]
        return out


class AnswerReader(Protocol):
    """What reads the answer side of a family's output: text in; text and call blocks out."""

    def feed(self, text: str) -> list[Any]:
        """The next answer text; the text and blocks it completes."""
        ...

    def close(self) -> list[Any]:
        """The end of the answer; what was held."""
        ...


class SplitOutput:
    """A family's output parser: the reasoning split off, the answer read by ``reader``.

    Subclasses set ``_split`` (``None``: no reasoning) and ``_reader``; this class owns
    the streaming plumbing both K2 families share (whitespace trimmed at both ends of the
    reasoning and of the answer, held text flushed at the end).
    """

    _split: ReasoningSplitter | None
    _reader: AnswerReader

    def __init__(self) -> None:
        self._reasoning = Trim()
        self._content = Trim()

    @property
    def in_reasoning(self) -> bool:
        """Whether the text so far ends inside (or may still be) the reasoning."""
        return self._split is not None and self._split.in_reasoning

    def feed(self, delta: str) -> list[Piece]:
        """Take the next piece of generated text; return the pieces now known."""
        if self._split is not None and self._split.plain(delta):  # the common case
            text = self._reasoning.text(delta)
            return [Reasoning(text)] if text else []
        parts: list[Reasoning | str] = [delta]
        if self._split is not None:
            parts = self._split.feed(delta)
        return self._pieces(parts, end=False)

    def close(self) -> list[Piece]:
        """End of generation: flush held text and apply the family's missing-close rule."""
        parts = self._split.close() if self._split is not None else []
        out = self._pieces(parts, end=True)
        self._reasoning, self._content = Trim(), Trim()
        return out

    def _pieces(self, parts: list[Reasoning | str], *, end: bool) -> list[Piece]:
        out: list[Piece] = []
        for part in parts:
            if isinstance(part, Reasoning):
                text = self._reasoning.text(part.text)
                if text:
                    out.append(part if text is part.text else Reasoning(text))
            else:
                out += self._answer(self._reader.feed(part))
        if end:
            out += self._answer(self._reader.close())
        return out

    def _answer(self, items: list[Any]) -> list[Piece]:
        out: list[Piece] = []
        for item in items:
            if not isinstance(item, str):
                out.append(item)
            elif text := self._content.text(item):
                out.append(text)
        return out
