"""Stop strings: cut generated text where the first stop string begins.

In: the stop strings, then generated text as deltas (or as one piece per token, with a
flag carried along for each token). Out: the text that can be released now, holding back
only a tail that could still become a stop string; once a stop string is complete, the
text before it, and nothing after. Used by the turn (`langchain_k2._turn`, on any backend's
text) and by the llama.cpp backend (which stops generating there, token by token).

`stop_strings` reads ``stop`` as LangChain users pass it (a string is ONE stop string, as
in OpenAI's API, not one per character), and `sent_stops` merges the ``stop`` field with a
call's: what is sent, and what ``ls_stop`` reports.

Example:
    >>> stop_strings("STOP"), sent_stops(["END"], "STOP")
    (('STOP',), ('END', 'STOP'))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from langchain_k2.errors import K2ConfigError

__all__ = ["StopFilter", "TokenStopFilter", "sent_stops", "stop_strings"]


def stop_strings(value: Any) -> tuple[str, ...]:
    """``stop`` as a tuple of stop strings: ``None`` is none, a string is one.

    Raises:
        K2ConfigError: neither a string nor a sequence of strings.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise K2ConfigError(
        f"stop must be a string or a list of strings, got {type(value).__name__}: "
        "pass stop='END' or stop=['END', 'STOP']."
    )


def sent_stops(field: Any, call: Any) -> tuple[str, ...]:
    """The stop strings of a call: the ``stop`` field's, then the call's, without repeats."""
    return tuple(dict.fromkeys([*stop_strings(field), *stop_strings(call)]))


T = TypeVar("T")


class StopFilter:
    """Cuts text at the first stop string, holding back only a possible stop prefix.

    Example:
        >>> f = StopFilter(["<|endoftext|>"])
        >>> f.feed("Hello<|end"), f.feed("oftext|> ignored"), f.stopped, f.stop_found
        ('Hello', '', True, '<|endoftext|>')
        >>> g = StopFilter(["END"])
        >>> g.feed("a bit of E"), g.flush()
        ('a bit of ', 'E')
    """

    def __init__(self, stops: Sequence[str]) -> None:
        """Filter for ``stops`` (empty strings are ignored; none: text passes through)."""
        self._stops = tuple(dict.fromkeys(s for s in stops if s))
        self._longest = max((len(s) for s in self._stops), default=0)
        self._pending = ""
        self.stopped = False
        """Whether a stop string was found (or `end` was called); nothing more is released."""
        self.stop_found: str | None = None
        """The stop string found (the one listed first when two begin at one place)."""

    def feed(self, delta: str) -> str:
        """Return the text of ``delta`` that can be released now."""
        if self.stopped or not delta:
            return ""
        if not self._stops:
            return delta
        start = max(0, len(self._pending) - self._longest + 1)
        text = self._pending + delta
        cut = -1
        for stop in self._stops:
            index = text.find(stop, start)
            if index != -1 and (cut == -1 or index < cut):
                cut, self.stop_found = index, stop
        if cut != -1:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        hold = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:size]):
                    hold = size
                    break
        self._pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def end(self) -> str:
        """Stop here (the turn ended otherwise); release held text, which was no stop."""
        held = self.flush()
        self.stopped = True
        return held

    def flush(self) -> str:
        """Release held text at the end of generation (it did not become a stop)."""
        held, self._pending = self._pending, ""
        return "" if self.stopped else held


@dataclass
class _Held(Generic[T]):
    text: str
    tag: T
    end: int
    """Offset in the whole text just after this token's text."""


class TokenStopFilter(Generic[T]):
    """`StopFilter` for one piece per token: each token comes out whole, or cut at the stop.

    A token is held back, whole, while any of its text could start a stop string, so every
    token still gives exactly one ``(text, tag)`` pair, except the token in which the stop
    string begins (cut there) and the tokens after it (dropped). ``tag`` is carried as is.

    Example:
        >>> f = TokenStopFilter[bool](["</s>"])
        >>> f.add("Hi", False), f.add(" <", False), f.add("/", False)
        (([('Hi', False)], False), ([], False), ([], False))
        >>> f.add("s> more", False)
        ([(' ', False)], True)
    """

    def __init__(self, stops: Sequence[str]) -> None:
        """Filter for ``stops`` (see `StopFilter`)."""
        self._filter = StopFilter(stops)
        self._total = 0  # characters of all tokens taken so far
        self._released = 0  # characters the text filter has let through
        self._held: list[_Held[T]] = []

    def add(self, piece: str, tag: T) -> tuple[list[tuple[str, T]], bool]:
        """Take one token's text; return the tokens now safe to emit and whether it stopped."""
        self._total += len(piece)
        self._held.append(_Held(piece, tag, self._total))
        released = self._filter.feed(piece)
        if not self._filter.stopped:
            self._released += len(released)
            return self._release(self._released), False
        hit = self._released + len(released)  # where the stop string begins
        ready = self._release(hit)
        if self._held:
            first = self._held[0]
            first_start = first.end - len(first.text)
            if first_start < hit:
                ready.append((first.text[: hit - first_start], first.tag))
        self._held.clear()
        return ready, True

    def flush(self) -> list[tuple[str, T]]:
        """Every token still held back (generation ended without completing a stop string)."""
        self._released += len(self._filter.flush())
        return self._release(self._total)

    def _release(self, upto: int) -> list[tuple[str, T]]:
        ready: list[tuple[str, T]] = []
        while self._held and self._held[0].end <= upto:
            held = self._held.pop(0)
            ready.append((held.text, held.tag))
        return ready
