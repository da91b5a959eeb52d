r"""Where tool-call tags are: tag search that skips the tags inside JSON strings.

In: text (a whole completion or one stream delta), the open and close tags, and for a
block's body the string state carried over from the previous delta. Out: the next tag
occurrence (`TagFinder`), and whether a position lies inside a double-quoted string of
the body (`StringState`), so that ``</tool_call>`` written inside an argument does not end
the block and ``<tool_call>`` written inside one does not start a new block.

Both are linear: `TagFinder` remembers the next occurrence of each tag and searches again
only past it, and `StringState` counts quotes with ``str.count`` between backslashes (it
walks character by character only around a backslash).

Example:
    >>> state = StringState()
    >>> state.advance('{"code": "a \\" </tool_call>', 0, 14)
    >>> state.in_string
    True
"""

from __future__ import annotations

__all__ = ["StringState", "TagFinder", "check_tags"]


def check_tags(open_tag: str, close_tag: str) -> None:
    """Refuse tags the parsers cannot tell apart or find reliably.

    Raises:
        ValueError: a tag is empty, the open tag does not start with ``<``, one tag holds
            the other, or a tag holds a quote or a backslash (which would change the string
            state of the JSON around it).
    """
    if not open_tag.startswith("<") or not close_tag:
        msg = (
            f"tool-call tags must be non-empty and the open tag must start with '<' "
            f"(got {open_tag!r}, {close_tag!r}); invalid calls carry it so that they stay "
            "invalid when LangChain merges stream chunks"
        )
        raise ValueError(msg)
    if open_tag in close_tag or close_tag in open_tag:
        msg = (
            f"the tool-call tags {open_tag!r} and {close_tag!r} must not contain each other; "
            "choose two distinct tags such as '<tool_call>' and '</tool_call>'"
        )
        raise ValueError(msg)
    if any(ch in tag for tag in (open_tag, close_tag) for ch in '"\\'):
        msg = (
            f"tool-call tags must not contain '\"' or '\\\\' (got {open_tag!r}, {close_tag!r}): "
            "the parser reads JSON strings around them"
        )
        raise ValueError(msg)


class TagFinder:
    """The next occurrence of either tag in one text.

    Each tag is searched again only past the occurrence found last, so a scan over the
    whole text costs O(len(text)) in all.
    """

    __slots__ = ("_close", "_close_at", "_open", "_open_at", "_text")

    def __init__(self, text: str, open_tag: str, close_tag: str) -> None:
        self._text = text
        self._open = open_tag
        self._close = close_tag
        self._open_at = -2  # -2: not searched yet; -1: none left
        self._close_at = -2

    def next(self, start: int) -> tuple[int, bool]:
        """``(position, is_open)`` of the first tag starting at or after ``start``.

        ``(-1, False)`` when there is none. The tags never contain each other
        (`check_tags`), so two tags never start at the same position.
        """
        if self._open_at != -1 and self._open_at < start:
            self._open_at = self._text.find(self._open, start)
        if self._close_at != -1 and self._close_at < start:
            self._close_at = self._text.find(self._close, start)
        if self._open_at == -1:
            return self._close_at, False
        if self._close_at == -1 or self._open_at < self._close_at:
            return self._open_at, True
        return self._close_at, False


class StringState:
    r"""Whether the text read so far ends inside a double-quoted string.

    A backslash escapes the next character, inside strings and out (outside a JSON
    string it can only belong to a Python-literal string such as glaive's
    ``'{\"a\": 1}'``). Feeding the text in pieces gives the state of the whole.
    """

    __slots__ = ("escape", "in_string")

    def __init__(self) -> None:
        self.in_string = False
        self.escape = False

    def advance(self, text: str, start: int, end: int) -> None:
        """Read ``text[start:end]``."""
        if start >= end:
            return
        if self.escape:
            self.escape = False
            start += 1
        while start < end:
            slash = text.find("\\", start, end)
            stop = end if slash == -1 else slash
            if text.count('"', start, stop) % 2:
                self.in_string = not self.in_string
            if slash == -1:
                return
            if slash + 1 >= end:
                self.escape = True
                return
            start = slash + 2
