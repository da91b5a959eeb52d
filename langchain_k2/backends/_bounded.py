"""Bounded HTTP exchanges: every read capped in bytes and time, sync and async alike.

In: an ``httpx`` client (huggingface_hub's session, or ``httpx2``'s under hub 2), the
keyword arguments of one request, its `Limits` and `Deadline`. Out: an `Answer` (status,
headers and the whole decoded body, capped), or an open event stream's lines; raises
`BodyTooLargeError` or `DeadlineExceededError` (the backends turn them into K2 errors naming the
engine and URL).

How the time bounds hold: ``httpx``'s own ``timeout`` bounds each socket read, so a server
sending one byte a second never trips it. `bound_client` wraps the client's connection
pool's network backend once (a pass-through outside a bounded exchange); inside one, each
socket read and write waits at most until the exchange's current deadline: the status line
and headers must arrive within ``timeout`` (and the request's deadline), the body and
events within the deadline. Between chunks the deadline is checked again, which still
bounds body and event drips on a client whose pool cannot be wrapped (a custom transport).
The bytes come raw (``iter_raw``) and are decoded here by `BodyDecoder`, so a compressed
body is capped after inflating, not before.
"""

from __future__ import annotations

import contextvars
import inspect
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from langchain_k2.backends._wire import (
    MAX_ERROR_BODY,
    BodyDecoder,
    Deadline,
    HeadDeadline,
    Limits,
    LineSplitter,
    WireError,
)

__all__ = ["Answer", "afetch", "alines", "bound_client", "fetch", "lines"]

_BOUND: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "langchain_k2_bound", default=None
)


@contextmanager
def _within(deadline: Deadline) -> Iterator[None]:
    token = _BOUND.set(deadline)
    try:
        yield
    finally:
        _BOUND.reset(token)


def _timeout(timeout: float | None, *, reading: bool) -> tuple[Deadline | None, float | None]:
    """The bound in force and the timeout a socket operation may use under it.

    A read starts the headers' clock (`HeadDeadline`); a write only answers to the
    request's own deadline. A bound already passed still allows a read of what is waiting
    (a millisecond), so an answer that arrived in time is not lost to a busy event loop.
    """
    bound = _BOUND.get()
    if bound is None:
        return None, timeout
    if isinstance(bound, HeadDeadline):
        if reading:
            bound.start()
        else:
            bound = bound.outer
    left = bound.remaining()
    if left is None:
        return None, timeout
    left = max(left, 0.001)
    if timeout is None or left < timeout:
        return bound, left
    return None, timeout


class _Bounded:
    """One socket operation under the bound in force: ``with`` gives its timeout.

    An operation that fails once its bound has passed raises the deadline's error.
    """

    __slots__ = ("bound", "timeout")

    def __init__(self, timeout: float | None, *, reading: bool) -> None:
        self.bound, self.timeout = _timeout(timeout, reading=reading)

    def __enter__(self) -> float | None:
        return self.timeout

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        bound = self.bound
        if isinstance(exc, Exception) and bound is not None and bound.passed():
            raise bound.exceeded() from exc


class _Wrapper:
    """Wraps an ``httpcore`` object, forwarding what it does not override."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Stream(_Wrapper):
    """A sync network stream whose reads and writes stop at the bound in force."""

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _Bounded(timeout, reading=True) as left:
            data: bytes = self._inner.read(max_bytes, left)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _Bounded(timeout, reading=False) as left:
            self._inner.write(buffer, left)

    def start_tls(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.start_tls(*args, **kwargs))


class _AsyncStream(_Wrapper):
    """Async twin of `_Stream`."""

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _Bounded(timeout, reading=True) as left:
            data: bytes = await self._inner.read(max_bytes, left)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _Bounded(timeout, reading=False) as left:
            await self._inner.write(buffer, left)

    async def start_tls(self, *args: Any, **kwargs: Any) -> _AsyncStream:
        return _AsyncStream(await self._inner.start_tls(*args, **kwargs))


class _Backend(_Wrapper):
    """A sync network backend whose streams are `_Stream` (everything else forwarded)."""

    def connect_tcp(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.connect_unix_socket(*args, **kwargs))


class _AsyncBackend(_Wrapper):
    """Async twin of `_Backend`."""

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> _AsyncStream:
        return _AsyncStream(await self._inner.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _AsyncStream:
        return _AsyncStream(await self._inner.connect_unix_socket(*args, **kwargs))


def bound_client(client: Any) -> Any:
    """``client``, its pools' network backends wrapped (once) so bounds reach each read.

    A transport without an ``httpcore`` pool is left alone (bounds then hold between
    chunks only). Returns ``client``.
    """
    transports = [getattr(client, "_transport", None)]
    transports += list((getattr(client, "_mounts", None) or {}).values())
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is None or isinstance(backend, (_Backend, _AsyncBackend)):
            continue
        connect = getattr(backend, "connect_tcp", None)
        wrapper = _AsyncBackend if inspect.iscoroutinefunction(connect) else _Backend
        pool._network_backend = wrapper(backend)  # type: ignore[union-attr]
    return client


@dataclass(frozen=True)
class Answer:
    """A whole HTTP answer, read within its bounds."""

    status_code: int
    headers: Any
    """The response's headers (case-insensitive ``httpx.Headers``)."""
    content: bytes

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` when it is not)."""
        return json.loads(self.content)


_DECODABLE = {"identity", "gzip", "x-gzip", "deflate"}


def _build(client: Any, request: dict[str, Any]) -> Any:
    return client.build_request(**request)


def _decoder(response: Any, limits: Limits) -> BodyDecoder:
    failed = response.status_code >= 400
    limit = MAX_ERROR_BODY if failed else limits.body
    what = "the error body" if failed else "the body"
    encoding = response.headers.get("content-encoding")
    if failed and encoding and encoding.strip().lower() not in _DECODABLE:
        encoding = None  # an error answer is shown as it came
    return BodyDecoder(encoding, limit, what=what)


def _chunks(response: Any, deadline: Deadline) -> Iterator[bytes]:
    """The body's raw chunks as they arrive, each read within ``deadline``.

    A body already read (a mock's) comes at once.
    """
    consumed = getattr(response, "is_stream_consumed", False)
    raw: Iterator[bytes] = iter((response.content,)) if consumed else response.iter_raw()
    while True:
        token = _BOUND.set(deadline)  # a context manager per chunk costs more than a read
        try:
            chunk = next(raw, None)
        finally:
            _BOUND.reset(token)
        if chunk is None:
            return
        if deadline.passed():
            raise deadline.exceeded()
        yield chunk


async def _araw(response: Any) -> AsyncIterator[bytes]:
    """The body's raw chunks (a body already read, as a mock's: at once)."""
    if getattr(response, "is_stream_consumed", False):
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


async def _achunks(response: Any, deadline: Deadline) -> AsyncIterator[bytes]:
    """Async twin of `_chunks`."""
    raw = _araw(response)
    while True:
        token = _BOUND.set(deadline)
        try:
            chunk = await anext(raw, None)
        finally:
            _BOUND.reset(token)
        if chunk is None:
            return
        if deadline.passed():
            raise deadline.exceeded()
        yield chunk


def _head(request: dict[str, Any], deadline: Deadline) -> HeadDeadline:
    """The bound of the status line and headers: ``timeout``, within the deadline."""
    return HeadDeadline(deadline, request.get("timeout"))


def _take(response: Any, decoder: BodyDecoder, body: bytearray, chunk: bytes) -> bool:
    """Decode ``chunk`` onto ``body``; False once an error body is cut at `MAX_ERROR_BODY`."""
    try:
        for piece in decoder.feed(chunk):
            body += piece
    except WireError:
        if response.status_code >= 400:  # cut, not refused: the status says enough
            del body[MAX_ERROR_BODY:]
            return False
        raise
    return True


def _body(response: Any, deadline: Deadline, limits: Limits) -> bytes:
    """The whole decoded body; an error body is cut at `MAX_ERROR_BODY` rather than refused."""
    decoder, body = _decoder(response, limits), bytearray()
    for chunk in _chunks(response, deadline):
        if not _take(response, decoder, body, chunk):
            break
    return bytes(body)


async def _abody(response: Any, deadline: Deadline, limits: Limits) -> bytes:
    """Async twin of `_body`."""
    decoder, body = _decoder(response, limits), bytearray()
    async for chunk in _achunks(response, deadline):
        if not _take(response, decoder, body, chunk):
            break
    return bytes(body)


def fetch(client: Any, request: dict[str, Any], limits: Limits, deadline: Deadline) -> Answer:
    """Send ``request`` and read its whole answer within ``limits`` and ``deadline``."""
    with _within(_head(request, deadline)):
        response = client.send(_build(client, request), stream=True)
    try:
        body = _body(response, deadline, limits)
    finally:
        response.close()
    return Answer(response.status_code, response.headers, body)


async def afetch(
    client: Any, request: dict[str, Any], limits: Limits, deadline: Deadline
) -> Answer:
    """Async twin of `fetch`."""
    with _within(_head(request, deadline)):
        response = await client.send(_build(client, request), stream=True)
    try:
        body = await _abody(response, deadline, limits)
    finally:
        await response.aclose()
    return Answer(response.status_code, response.headers, body)


def _is_event_stream(response: Any) -> bool:
    return response.status_code < 400 and "text/event-stream" in response.headers.get(
        "content-type", ""
    )


@contextmanager
def lines(
    client: Any, request: dict[str, Any], limits: Limits, deadline: Deadline
) -> Iterator[tuple[Any, bytes | None, Iterator[str]]]:
    """Open a streamed request: ``(response, body, lines)``.

    ``body`` is the whole (capped) body when the answer is no event stream (an error,
    say), else ``None`` and ``lines`` yields the stream's lines as they arrive, each within
    ``limits.line`` and all within ``deadline``.
    """
    with _within(_head(request, deadline)):
        response = client.send(_build(client, request), stream=True)
    try:
        if not _is_event_stream(response):
            yield response, _body(response, deadline, limits), iter(())
            return
        yield response, None, _lines(response, deadline, limits)
    finally:
        response.close()


def _stream_reader(response: Any, limits: Limits) -> tuple[BodyDecoder, LineSplitter]:
    decoder = BodyDecoder(response.headers.get("content-encoding"), what="the stream")
    return decoder, LineSplitter(limits.line)


def _lines(response: Any, deadline: Deadline, limits: Limits) -> Iterator[str]:
    decoder, splitter = _stream_reader(response, limits)
    for chunk in _chunks(response, deadline):
        for piece in decoder.feed(chunk):
            yield from splitter.feed(piece)
    yield from splitter.end()


@asynccontextmanager
async def alines(
    client: Any, request: dict[str, Any], limits: Limits, deadline: Deadline
) -> AsyncIterator[tuple[Any, bytes | None, AsyncIterator[str]]]:
    """Async twin of `lines`."""
    with _within(_head(request, deadline)):
        response = await client.send(_build(client, request), stream=True)
    try:
        if not _is_event_stream(response):
            yield response, await _abody(response, deadline, limits), _no_lines()
            return
        yield response, None, _alines(response, deadline, limits)
    finally:
        await response.aclose()


async def _no_lines() -> AsyncIterator[str]:
    return
    yield


async def _alines(response: Any, deadline: Deadline, limits: Limits) -> AsyncIterator[str]:
    decoder, splitter = _stream_reader(response, limits)
    async for chunk in _achunks(response, deadline):
        for piece in decoder.feed(chunk):
            for line in splitter.feed(piece):
                yield line
    for line in splitter.end():
        yield line
