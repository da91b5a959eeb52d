"""The engine-neutral wire kit: SSE framing, size caps, ``Retry-After``, deadlines.

In: the raw bytes of an HTTP body as they arrive (with its ``Content-Encoding``), a
``Retry-After`` header, a request's ``max_new_tokens`` and ``request_deadline``. Out: the
body's lines (split on CR, LF and CRLF only, as the SSE spec says: U+2028, U+2029 and U+0085
are text), each server-sent event's data, the decoded body (refused past its cap with
`BodyTooLargeError`), seconds to wait, and the `Limits` and `Deadline` of one request.

Every engine's backend reads through these, so one hostile server costs the same bounded
amount whichever engine it claims to be (``docs/limits.md``). No sockets here: the I/O
that applies them lives in `langchain_k2.backends._bounded`.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "MAX_ERROR_BODY",
    "BodyDecoder",
    "BodyTooLargeError",
    "Deadline",
    "DeadlineExceededError",
    "HeadDeadline",
    "Limits",
    "LineSplitter",
    "SSEDecoder",
    "WireError",
    "default_deadline",
    "read_capped",
    "retry_after",
]

KIB = 1024
MIB = 1024 * KIB

#: Error bodies longer than this are cut when read (a proxy's HTML page, say).
MAX_ERROR_BODY = 64 * KIB

#: The largest answer of an info probe (``/info``, ``/v1/models``, ``/props``...).
MAX_PROBE_BODY = 4 * MIB

#: The most characters of one server-sent event's data (its ``data:`` lines together).
MAX_EVENT_DATA = 16 * MIB

#: Seconds of ``request_deadline="auto"``: this much, plus `DEADLINE_PER_TOKEN` a token.
DEADLINE_BASE = 300.0
DEADLINE_PER_TOKEN = 1.0


class WireError(ValueError):
    """A body that cannot be read as sent: too large, corrupt, or in a refused encoding."""


class BodyTooLargeError(WireError):
    """A body, line or event grew past its cap (``what`` says which, ``limit`` in bytes)."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} exceeded {limit} bytes")
        self.what = what
        self.limit = limit


class DeadlineExceededError(TimeoutError):
    """A request ran past its bound: ``phase`` is ``"headers"`` or ``"deadline"``."""

    def __init__(self, phase: str, seconds: float) -> None:
        super().__init__(f"{phase} bound of {seconds:g} s passed")
        self.phase = phase
        self.seconds = seconds


@dataclass(frozen=True)
class Limits:
    """What one request may cost: bytes of the body, of one line, and events of a stream.

    Derived from ``max_new_tokens`` (`for_generation`), from the text's length
    (`for_tokenize`), or fixed (`PROBE`).

    Example:
        >>> Limits.for_generation(1024)
        Limits(body=2097152, line=1114112, events=2304)
        >>> Limits.for_tokenize(10).body
        4194304
    """

    body: int
    """Most bytes of a decoded non-streamed body (and of one SSE event's data)."""
    line: int
    """Most bytes of one line of an event stream."""
    events: int | None = None
    """Most token events a stream may bring before it is cut with finish reason "length"."""

    @classmethod
    def for_generation(cls, max_new_tokens: int) -> Limits:
        """Limits of a generation of at most ``max_new_tokens`` tokens.

        1 MiB plus 1 KiB a token for a body; 64 KiB plus 1 KiB a token for a line;
        ``2 * max_new_tokens + 256`` events (clearly more than the engine was asked for).
        """
        return cls(
            body=MIB + KIB * max_new_tokens,
            line=64 * KIB + KIB * max_new_tokens,
            events=2 * max_new_tokens + 256,
        )

    @classmethod
    def for_tokenize(cls, text_length: int) -> Limits:
        """A token list of ``text_length`` characters: at most 256 bytes a character."""
        body = max(MAX_PROBE_BODY, 256 * text_length)
        return cls(body=body, line=body)


PROBE = Limits(body=MAX_PROBE_BODY, line=MAX_PROBE_BODY)
"""The limits of an info probe."""


def default_deadline(max_new_tokens: int) -> float:
    """Seconds a whole request may take under ``request_deadline="auto"``.

    Generous: 300 s, plus one second a token (a slow CPU engine makes a few a second).

    Example:
        >>> default_deadline(1024)
        1324.0
    """
    return DEADLINE_BASE + DEADLINE_PER_TOKEN * max_new_tokens


class Deadline:
    """A point in time (on ``clock``, monotonic by default); ``None`` seconds: never.

    Example:
        >>> now = [100.0]
        >>> deadline = Deadline(5.0, clock=lambda: now[0])
        >>> deadline.remaining(), deadline.passed()
        (5.0, False)
        >>> now[0] = 106.0
        >>> deadline.remaining(), deadline.passed()
        (0.0, True)
        >>> Deadline(None).remaining() is None
        True
    """

    def __init__(
        self,
        seconds: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        phase: str = "deadline",
    ) -> None:
        self.seconds = seconds
        self.phase = phase
        self._clock = clock
        self.at: float | None = None if seconds is None else clock() + seconds

    def remaining(self) -> float | None:
        """Seconds left (never negative), ``None`` when there is no deadline."""
        return None if self.at is None else max(0.0, self.at - self._clock())

    def passed(self) -> bool:
        """Whether the deadline has passed."""
        return self.at is not None and self._clock() >= self.at

    def exceeded(self) -> DeadlineExceededError:
        """The error to raise now that it has passed."""
        return DeadlineExceededError(self.phase, self.seconds or 0.0)


class HeadDeadline(Deadline):
    """The bound of an answer's status line and headers: ``seconds`` from the first read.

    The clock starts when the first read of the answer starts (`start`), not when the
    request was queued or written, and the bound never runs past ``outer``, the request's
    own deadline.

    Example:
        >>> now = [0.0]
        >>> outer = Deadline(10.0, clock=lambda: now[0])
        >>> head = HeadDeadline(outer, 2.0)
        >>> head.remaining()  # not started: only the request's deadline counts
        10.0
        >>> now[0] = 5.0
        >>> head.start(); head.remaining()
        2.0
        >>> now[0] = 7.5
        >>> head.passed(), head.exceeded().phase
        (True, 'headers')
        >>> HeadDeadline(outer, 30.0).remaining()  # the request's deadline is sooner
        2.5
    """

    def __init__(self, outer: Deadline, seconds: float | None) -> None:
        super().__init__(None, clock=outer._clock, phase="headers")
        self.seconds = seconds
        self.outer = outer

    def start(self) -> None:
        """The first read of the answer begins: the clock runs from now (once)."""
        if self.at is None and self.seconds is not None:
            self.at = self._clock() + self.seconds

    def remaining(self) -> float | None:
        """Seconds left: the sooner of the headers' bound (once started) and ``outer``."""
        mine = super().remaining()
        theirs = self.outer.remaining()
        if mine is None or (theirs is not None and theirs < mine):
            return theirs
        return mine

    def passed(self) -> bool:
        """Whether either bound has passed."""
        left = self.remaining()
        return left is not None and left <= 0

    def exceeded(self) -> DeadlineExceededError:
        """The error of whichever bound passed."""
        if self.outer.passed():
            return self.outer.exceeded()
        return DeadlineExceededError(self.phase, self.seconds or 0.0)


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date).

    Example:
        >>> retry_after("7"), retry_after("soon"), retry_after(None)
        (7.0, None, None)
        >>> retry_after("Wed, 25 Nov 2026 06:00:10 GMT", now=1795586400.0)
        10.0
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        seconds = when - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


class LineSplitter:
    r"""Bytes in, lines out: split on CR, LF and CRLF only, each line at most ``limit`` bytes.

    A CR at the end of one chunk and an LF at the start of the next are one line break.
    Lines are decoded as UTF-8 (bad bytes become U+FFFD); Unicode's other line breaks
    (U+2028, U+2029, U+0085) stay inside the line, as the SSE spec says.

    Example:
        >>> splitter = LineSplitter()
        >>> splitter.feed(b"data: a\xe2\x80\xa8b\r")
        ['data: a\u2028b']
        >>> splitter.feed(b"\ndata: c\n\nda")
        ['data: c', '']
        >>> splitter.feed(b"ta: d"), splitter.end()
        ([], ['data: d'])
        >>> LineSplitter(limit=4).feed(b"12345")
        Traceback (most recent call last):
        ...
        langchain_k2.backends._wire.BodyTooLargeError: a line of the event stream exceeded 4 bytes
    """

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._pending = 0  # bytes in _parts
        self._after_cr = False  # the last chunk ended with CR: skip a leading LF

    def feed(self, chunk: bytes) -> list[str]:
        """The lines that ``chunk`` completes."""
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._after_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        pieces = chunk.split(b"\n")
        tail = pieces.pop()
        lines: list[str] = []
        if pieces:
            first = pieces[0]
            if self._parts:
                first = b"".join([*self._parts, first])
                self._parts = []
                self._pending = 0
            pieces[0] = first
            limit = self._limit
            for piece in pieces:
                if limit is not None and len(piece) > limit:
                    raise BodyTooLargeError("a line of the event stream", limit)
                lines.append(piece.decode("utf-8", errors="replace"))
        if tail:
            self._parts.append(tail)
            self._pending += len(tail)
            if self._limit is not None and self._pending > self._limit:
                raise BodyTooLargeError("a line of the event stream", self._limit)
        return lines

    def end(self) -> list[str]:
        """The last line, when the body ended without a line break after it."""
        if not self._parts:
            return []
        line = b"".join(self._parts).decode("utf-8", errors="replace")
        self._parts = []
        self._pending = 0
        return [line]


class SSEDecoder:
    r"""Server-sent-event framing: feed lines, get each event's data when it completes.

    ``data:`` lines accumulate (joined by newlines) until a blank line dispatches them;
    comments (``:``), ``event:``, ``id:`` and ``retry:`` lines are skipped. An event's
    data may not pass ``limit`` characters (`BodyTooLargeError`; default `MAX_EVENT_DATA`).

    Example:
        >>> decoder = SSEDecoder()
        >>> tuple(decoder.feed(line) for line in ['data: {"a": 1}', '', ': keep-alive', ''])
        (None, '{"a": 1}', None, None)
        >>> decoder.feed("data: a\u2028b"), decoder.flush()
        (None, 'a\u2028b')
    """

    def __init__(self, limit: int | None = MAX_EVENT_DATA) -> None:
        self._data: list[str] = []
        self._size = 0
        self._limit = limit

    def feed(self, line: str) -> str | None:
        """One line (without its line break); the event's data when ``line`` ends one."""
        if not line:
            if not self._data:
                return None
            data = self._data[0] if len(self._data) == 1 else "\n".join(self._data)
            self._data = []
            self._size = 0
            return data
        if line.startswith("data:"):
            value = line[5:]
            if value.startswith(" "):
                value = value[1:]
            self._data.append(value)
            if self._limit is not None:
                self._size += len(value) + 1
                if self._size > self._limit:
                    raise BodyTooLargeError("an event of the event stream", self._limit)
        return None

    def flush(self) -> str | None:
        """Data of an event the stream ended without a blank line after."""
        return self.feed("")


class BodyDecoder:
    """A body's raw bytes in, its decoded bytes out, never more than ``limit`` in all.

    ``encoding`` is the ``Content-Encoding`` header: identity (none), ``gzip`` or
    ``deflate``. Inflating is done in pieces of at most ``step`` bytes and stops at the
    cap, so a small bomb costs no more than the cap (or one step, without a cap). Any other
    encoding raises `WireError` (ChatK2 asks for identity).

    Example:
        >>> import gzip
        >>> decoder = BodyDecoder("gzip", limit=10)
        >>> decoder.feed(gzip.compress(b"hello"))
        [b'hello']
        >>> BodyDecoder("gzip", limit=10).feed(gzip.compress(b"x" * 100_000))
        Traceback (most recent call last):
        ...
        langchain_k2.backends._wire.BodyTooLargeError: the body exceeded 10 bytes
        >>> [len(piece) for piece in BodyDecoder("gzip", step=40_000).feed(
        ...     gzip.compress(b"x" * 100_000))]
        [40000, 40000, 20000]
    """

    def __init__(
        self,
        encoding: str | None,
        limit: int | None = None,
        *,
        what: str = "the body",
        step: int = 64 * KIB,
    ) -> None:
        kind = (encoding or "identity").strip().lower()
        self._inflate: Any
        if kind in {"", "identity"}:
            self._inflate = None
        elif kind in {"gzip", "x-gzip"}:
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif kind == "deflate":
            self._inflate = zlib.decompressobj()
        else:
            raise WireError(f"Content-Encoding {encoding!r}, though identity was asked for")
        self._limit = limit
        self._what = what
        self._step = step
        self.size = 0
        """Decoded bytes so far."""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The decoded pieces of ``chunk`` (raises `BodyTooLargeError` past the cap)."""
        inflate = self._inflate
        if inflate is None:
            return [self._counted(chunk)]
        pieces = []
        while chunk:
            step = self._step
            if self._limit is not None:
                step = min(step, self._limit - self.size + 1)
            try:
                piece = inflate.decompress(chunk, step)
            except zlib.error as exc:
                raise WireError(f"a corrupt compressed body ({exc})") from exc
            chunk = inflate.unconsumed_tail
            if piece:
                pieces.append(self._counted(piece))
        return pieces

    def _counted(self, piece: bytes) -> bytes:
        self.size += len(piece)
        if self._limit is not None and self.size > self._limit:
            raise BodyTooLargeError(self._what, self._limit)
        return piece


def read_capped(chunks: Iterable[bytes], limit: int) -> bytes:
    """The chunks joined, stopping once ``limit`` bytes are in (the rest is not read).

    For error bodies, which are cut rather than refused.

    Example:
        >>> read_capped([b"abc", b"def", b"ghi"], 4)
        b'abcd'
    """
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])
