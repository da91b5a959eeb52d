"""What every HTTP backend shares: sessions, transport errors, replicas, auth headers.

In: the replicas' base URLs, a token, a timeout, a request deadline and extra headers.
Out: `HTTPBackend`, a base class holding the `ReplicaSet`, building each request's keyword
arguments (auth, user agent, ``Accept-Encoding: identity``, timeout) and sending it through
`langchain_k2.backends._bounded` within the `langchain_k2.backends._wire` limits of its
kind (`_send`/`_asend` for whole answers, `_events`/`_aevents` for streams, cut at
finish reason "length" once far more tokens came than asked for); ``map_error`` turning
``httpx`` failures, passed deadlines and oversized bodies into K2 errors; one
``httpx.AsyncClient`` per event loop (`_async_session`), closed when its loop ends, with a
slot gate in front of its pool. The TGI backend and the completions backends (vLLM,
SGLang, llama.cpp servers) build on it, so they retry, cool down, bound their reads and
report transport failures the same way (``docs/limits.md``).

Requests go through ``huggingface_hub.get_session()`` (sync) and one
``huggingface_hub.get_async_session()`` client per event loop (async): a factory set with
``set_client_factory`` (proxies, certificates) applies to every engine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

import httpx
from huggingface_hub import __version__ as hub_version
from huggingface_hub import get_async_session, get_session
from pydantic import SecretStr

from langchain_k2._urls import redact_url, scrub_exception, split_credentials
from langchain_k2._version import __version__
from langchain_k2.backends._base import (
    BackendInfo,
    FinalEvent,
    GenerationEvent,
    GenerationParams,
    TokenEvent,
)
from langchain_k2.backends._bounded import Answer, afetch, alines, bound_client, fetch, lines
from langchain_k2.backends._replicas import ReplicaSet
from langchain_k2.backends._wire import (
    DEADLINE_BASE,
    PROBE,
    BodyTooLargeError,
    Deadline,
    DeadlineExceededError,
    Limits,
    WireError,
    default_deadline,
)
from langchain_k2.errors import (
    K2BackendError,
    K2ConfigError,
    K2ConnectionError,
    K2GrammarUnsupportedError,
    K2TimeoutError,
)

if TYPE_CHECKING:  # the engines' package imports this module (indirectly)
    from langchain_k2.backends._engines import EngineHooks

__all__ = ["HTTPBackend", "map_error"]

_USER_AGENT = f"langchain-k2/{__version__}; hf_hub/{hub_version}"


def _httpx_modules() -> tuple[Any, ...]:
    """``httpx``, and ``httpx2`` where installed: huggingface_hub 2 builds its sessions on it."""
    try:
        import httpx2  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return (httpx,)
    return (httpx, httpx2)


_HTTPX = _httpx_modules()
_POOL_TIMEOUTS: tuple[type[BaseException], ...] = tuple(m.PoolTimeout for m in _HTTPX)
_TIMEOUTS: tuple[type[BaseException], ...] = (
    *(m.TimeoutException for m in _HTTPX),
    TimeoutError,
)
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    *(m.TransportError for m in _HTTPX),
    ConnectionError,
)


def map_error(exc: BaseException, url: str, server: str = "TGI") -> BaseException:
    """Translate a transport exception (``httpx``, ``huggingface_hub``) into a K2 error.

    K2 errors pass through; an exception this does not know is returned unchanged. The
    exceptions of ``httpx2`` (huggingface_hub 2's HTTP stack) map like httpx's own.
    ``server`` names the engine in the messages (``"TGI"``, ``"vLLM"``...).

    Example:
        >>> err = map_error(httpx.ConnectError("connection refused"), "http://tgi")
        >>> type(err).__name__, err.retryable
        ('K2ConnectionError', True)
    """
    if isinstance(exc, K2BackendError):
        return exc
    text = str(exc).strip()
    detail = text.splitlines()[0].rstrip(".") if text else type(exc).__name__
    if type(exc).__name__ == "OfflineModeIsEnabled":
        return K2BackendError(
            f"HF_HUB_OFFLINE is set, so huggingface_hub refuses every request, even to your "
            f"own {server} server at {url}: unset HF_HUB_OFFLINE in this process to use it."
        )
    if isinstance(exc, DeadlineExceededError):
        if exc.phase == "headers":
            return K2TimeoutError(
                f"{server} at {url} sent no complete status line and headers within "
                f"{exc.seconds:g} s (`timeout`); raise `timeout` or check the server."
            )
        late = K2TimeoutError(
            f"{server} at {url} did not finish the request within its deadline of "
            f"{exc.seconds:g} s (`request_deadline`); raise request_deadline (None: no "
            "deadline) or check the server."
        )
        late.retryable = False  # another try would run as long: the deadline is spent
        late.is_retryable = False  # and so for langchain-core's ModelRetryMiddleware
        return late
    if isinstance(exc, WireError):
        capped = " (see docs/limits.md)" if isinstance(exc, BodyTooLargeError) else ""
        return K2BackendError(
            f"{server} at {url} answered with {exc}{capped}; check that endpoint_url is "
            f"a {server} server and that nothing in between rewrites its answers."
        )
    if isinstance(exc, _POOL_TIMEOUTS):
        return K2TimeoutError(
            f"No connection to {server} at {url} came free in time ({detail}): this process "
            "already had as many requests in flight as its HTTP pool allows. Send fewer at "
            "once (abatch's max_concurrency), raise `timeout`, or give huggingface_hub a "
            "client with a larger pool (set_async_client_factory)."
        )
    if isinstance(exc, _TIMEOUTS):
        return K2TimeoutError(
            f"{server} at {url} did not answer in time ({detail}); raise `timeout` or check "
            "the server."
        )
    if isinstance(exc, _TRANSPORT_ERRORS):
        return K2ConnectionError(f"Could not reach {server} at {url}: {detail}.")
    return exc


HTTPResponse = Any
"""A response of huggingface_hub's session: ``httpx.Response``, or ``httpx2.Response`` under
huggingface_hub 2 (its own fork of httpx, with the same interface)."""


class _LoopSession:
    """One event loop's ``httpx.AsyncClient`` and the slots that keep its pool's queue empty.

    httpx queues the requests beyond its pool's ``max_connections`` inside the pool, and
    httpcore rescans that whole queue each time a connection frees up (encode/httpcore#1035:
    quadratic in a burst's size). Waiting for a slot here first keeps that queue empty: a
    burst of 256 ``ainvoke`` spends about a third less CPU (``docs/benchmarks.md``). A
    client whose pool limit cannot be read (a custom transport) is not gated.
    """

    def __init__(self, client: Any) -> None:  # httpx.AsyncClient, or httpx2's under hub 2
        self.client = client
        pool = getattr(getattr(client, "_transport", None), "_pool", None)
        limit = getattr(pool, "_max_connections", None)
        self.limit: int | None = limit if isinstance(limit, int) and limit > 0 else None
        """Most requests in flight on this loop (the pool's ``max_connections``)."""
        self._slots = None if self.limit is None else asyncio.Semaphore(self.limit)
        self.closer: asyncio.Task[None] | None = None
        """The task closing the client when its loop ends (held here: tasks are weak)."""

    @asynccontextmanager
    async def slot(self, timeout: float | None) -> AsyncIterator[None]:
        """Hold one of the pool's connections' worth of room while a request runs.

        Waiting longer than ``timeout`` raises ``httpx.PoolTimeout``, as httpx's own pool
        does when it is full.
        """
        slots = self._slots
        if slots is None:
            yield
            return
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), timeout)
            except asyncio.TimeoutError as exc:
                raise httpx.PoolTimeout(
                    f"all {self.limit} connections of this event loop's pool stayed busy "
                    f"for {timeout} s"
                ) from exc
        else:
            await slots.acquire()
        try:
            yield
        finally:
            slots.release()


_ASYNC_SESSIONS: dict[asyncio.AbstractEventLoop, _LoopSession] = {}


def _async_session() -> _LoopSession:
    """This event loop's ``httpx.AsyncClient``, from huggingface_hub's factory, shared.

    ``get_async_session()`` builds a new client per call (an SSL context and CA bundle
    each, about 18 ms of CPU, and no keep-alive); one per loop, with huggingface_hub's
    settings and a pool of 100 connections, serves every request on it. A loop's client
    is closed when the loop ends (`_close_at_loop_end`), and clients of loops closed
    otherwise are dropped, so ``asyncio.run`` per request leaks neither sockets nor loops.
    """
    loop = asyncio.get_running_loop()
    session = _ASYNC_SESSIONS.get(loop)
    if session is None or session.client.is_closed:
        for other in [other for other in _ASYNC_SESSIONS if other.is_closed()]:
            del _ASYNC_SESSIONS[other]
        session = _ASYNC_SESSIONS[loop] = _LoopSession(bound_client(get_async_session()))
        session.closer = loop.create_task(
            _close_at_loop_end(loop, session), name="langchain-k2: close HTTP client"
        )
        # A loop closed without cancelling its tasks drops it unrun: nothing to report.
        session.closer._log_destroy_pending = False  # type: ignore[attr-defined]
    return session


async def _close_at_loop_end(loop: asyncio.AbstractEventLoop, session: _LoopSession) -> None:
    """Wait until the loop ends (``asyncio.run`` cancels what still runs), then close.

    Without this a client bound to a finished loop keeps its sockets open, and the loop
    itself alive, until the process ends.
    """
    try:
        await asyncio.Event().wait()
    finally:
        if _ASYNC_SESSIONS.get(loop) is session:
            del _ASYNC_SESSIONS[loop]
        if not loop.is_closed():  # else collected after a bare close: its sockets go with it
            await session.client.aclose()


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_json(content: bytes, url: str, server: str, wanted: str) -> Any:
    """``content`` as JSON, or a `K2BackendError` saying the server is not ``wanted``."""
    try:
        return json.loads(content)
    except ValueError as exc:
        raise K2BackendError(
            f"{server} at {url} answered {content[:200]!r}, which is not JSON; endpoint_url "
            f"must be {wanted}."
        ) from exc


class HTTPBackend:
    """Replicas, auth and transport-error handling shared by the HTTP backends.

    Args:
        endpoint_url: the server's base URL, or a list of replicas' URLs: requests are
            spread over them and a replica that fails (429, 503, timeout, refused
            connection) sits out ``cooldown`` seconds.
        token: bearer token to send, or ``None`` to send none.
        timeout: seconds a socket may stay silent, and within which the status line and
            headers must arrive (``None``: no such bound).
        headers: extra HTTP headers for every request.
        cooldown: seconds a failed replica is skipped (with several replicas).
        deadline: seconds one whole request may take; ``"auto"`` (300 s plus one a
            token of ``max_new_tokens``), or ``None`` for none (``docs/limits.md``).
    """

    name = "http"
    server = "TGI"
    """The engine's name in messages."""
    hooks: EngineHooks | None = None
    """The engine's hooks (`langchain_k2.backends._engines`), for the backends of one engine."""

    def __init__(
        self,
        endpoint_url: str | Sequence[str],
        *,
        token: SecretStr | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        cooldown: float = 10.0,
        deadline: float | str | None = "auto",
    ) -> None:
        self.deadline = deadline
        given = [endpoint_url] if isinstance(endpoint_url, str) else list(endpoint_url)
        urls: list[str] = []
        # Userinfo in a URL becomes a Basic Authorization header and requests go to the
        # bare URL, so neither httpx's request log nor any error ever shows the password.
        self._auth: dict[str, SecretStr] = {}
        for given_url in given:
            url, auth = split_credentials(given_url)
            parsed = urlparse(url)
            if parsed.scheme not in {"http", "https"} or not parsed.netloc:
                whose = (
                    f"{self.server}'s"
                    if self.server.startswith("the ")
                    else f"the {self.server} server's"
                )
                raise K2ConfigError(
                    f"endpoint_url={redact_url(given_url)!r} is not an http(s) URL; pass "
                    f"{whose} base URL, e.g. 'http://127.0.0.1:8080'."
                )
            if auth is not None and token is not None:
                raise K2ConfigError(
                    f"endpoint_url={redact_url(given_url)!r} carries credentials and hf_token "
                    "is set too: both would be the Authorization header. Pass the token as "
                    "hf_token (api_key) or the credentials in the URL, not both."
                )
            plain = parsed.scheme == "http" and not _is_loopback(parsed.hostname)
            for secret, what in ((token, "hf_token"), (auth, "endpoint_url's credentials")):
                if secret is not None and plain:
                    warnings.warn(
                        f"{what} will be sent over plain http to {parsed.hostname}; use https.",
                        stacklevel=3,
                    )
            urls.append(url.rstrip("/"))
            if auth is not None:
                self._auth[url.rstrip("/")] = auth
        self.replicas = ReplicaSet(urls, cooldown=cooldown, server=self.server)
        self._token = token
        self.timeout = timeout
        self._headers = {k.lower(): v for k, v in (headers or {}).items() if v is not None}
        self._info: BackendInfo | None = None
        self._grammar_refused = False
        """Set when the server refused a grammar: `_recorded` then reports none supported."""

    def _parse_info(self, response: HTTPResponse, url: str) -> BackendInfo:
        """The engine's info from its answer to its info route (each engine reads its own)."""
        raise NotImplementedError

    def adopt_info(self, response: HTTPResponse, url: str) -> None:
        """Keep the info a probe read already (its answer to this engine's info route)."""
        self._info = self._parse_info(response, url)

    def _recorded(self, info: BackendInfo) -> BackendInfo:
        """``info`` with what requests taught: a refused grammar means none is supported."""
        return replace(info, supports_grammar=False) if self._grammar_refused else info

    @property
    def url(self) -> str:
        """The first replica's URL (the only one, usually)."""
        return self.replicas.urls[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(urls={self.replicas.urls!r})"

    @contextmanager
    def _errors(self, url: str) -> Iterator[None]:
        """Raise K2 errors for what fails inside; a retryable failure benches ``url``."""
        try:
            yield
        except Exception as exc:
            # A transport's message may quote the Authorization header: never copy it out.
            secrets = (s.get_secret_value() for s in (self._token, *self._auth.values()) if s)
            scrub_exception(exc, secrets)
            mapped = map_error(exc, url, self.server)
            # TGI's refusal is the server's (--disable-grammar-support): info() says so from
            # now on. The other engines refuse one schema they cannot compile (a bad
            # pattern): the next request is constrained again.
            hooks = self.hooks
            if isinstance(mapped, K2GrammarUnsupportedError) and (
                hooks is not None and hooks.refuses_all_grammars
            ):
                self._grammar_refused = True
            # A full pool on this side (httpx.PoolTimeout) is no fault of the replica's.
            if (
                isinstance(mapped, K2BackendError)
                and mapped.retryable
                and not isinstance(exc, _POOL_TIMEOUTS)
            ):
                self.replicas.failed(url)
            if mapped is exc:
                raise
            raise mapped from exc

    def _request(self, method: str, url: str, **fields: Any) -> dict[str, Any]:
        """Keyword arguments of one ``httpx`` request (auth and user agent included)."""
        headers = {"user-agent": _USER_AGENT, "accept-encoding": "identity", **self._headers}
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token.get_secret_value()}"
        elif self._auth:
            base = next((b for b in self._auth if url == b or url.startswith(b + "/")), None)
            if base is not None:
                headers["authorization"] = self._auth[base].get_secret_value()
        return {"method": method, "url": url, "headers": headers, "timeout": self.timeout, **fields}

    def _deadline(self, max_new_tokens: int | None) -> Deadline:
        """A request's deadline, from now (``max_new_tokens`` ``None``: a probe)."""
        seconds = self.deadline
        if seconds == "auto":
            tokens = max_new_tokens or 0
            seconds = default_deadline(tokens) if tokens else DEADLINE_BASE
        return Deadline(float(seconds) if seconds is not None else None)

    @staticmethod
    def _limits(params: GenerationParams | None, text: str | None) -> Limits:
        if params is not None:
            return Limits.for_generation(params.max_new_tokens)
        return PROBE if text is None else Limits.for_tokenize(len(text))

    def _send(
        self,
        request: dict[str, Any],
        params: GenerationParams | None = None,
        *,
        text: str | None = None,
    ) -> Answer:
        """One request, its whole answer read within bounds.

        ``params`` (a generation) or ``text`` (a tokenize probe) size the caps
        (`langchain_k2.backends._wire.Limits`); neither: an info probe.
        """
        max_new = params.max_new_tokens if params is not None else None
        client = bound_client(get_session())
        return fetch(client, request, self._limits(params, text), self._deadline(max_new))

    async def _asend(
        self,
        request: dict[str, Any],
        params: GenerationParams | None = None,
        *,
        text: str | None = None,
    ) -> Answer:
        """Async twin of `_send`, on this loop's shared client once a slot is free."""
        max_new = params.max_new_tokens if params is not None else None
        deadline = self._deadline(max_new)
        session = _async_session()
        async with session.slot(self.timeout):
            return await afetch(session.client, request, self._limits(params, text), deadline)

    def _opened(self, response: HTTPResponse, body: bytes | None, url: str) -> LineDecoder:
        """The decoder for a streamed answer, once its headers (and an error's body) are in.

        Each engine's backend raises its own error for an error answer or a body that is
        no event stream.
        """
        raise NotImplementedError

    def _events(
        self, request: dict[str, Any], url: str, params: GenerationParams
    ) -> Iterator[GenerationEvent]:
        """The events of one streamed request, as its lines arrive (at most `_cut` many)."""
        limits = Limits.for_generation(params.max_new_tokens)
        deadline = self._deadline(params.max_new_tokens)
        client = bound_client(get_session())
        with lines(client, request, limits, deadline) as (response, body, stream):
            decoder = self._opened(response, body, url)
            count = _Count(limits)
            lines_left = count.max_lines
            for line in stream:
                lines_left -= 1
                if lines_left < 0:
                    raise count.flooded()
                events = decoder.line(line)
                if events:
                    yield from events
                    if count.over(events):
                        yield count.final()
                        return
            yield from decoder.end()

    async def _aevents(
        self, request: dict[str, Any], url: str, params: GenerationParams
    ) -> AsyncIterator[GenerationEvent]:
        """Async twin of `_events` (on this loop's shared client, once a slot is free)."""
        limits = Limits.for_generation(params.max_new_tokens)
        deadline = self._deadline(params.max_new_tokens)
        session = _async_session()
        async with (
            session.slot(self.timeout),
            alines(session.client, request, limits, deadline) as (response, body, stream),
        ):
            decoder = self._opened(response, body, url)
            count = _Count(limits)
            lines_left = count.max_lines
            async for line in stream:
                lines_left -= 1
                if lines_left < 0:
                    raise count.flooded()
                events = decoder.line(line)
                if events:
                    for event in events:
                        yield event
                    if count.over(events):
                        yield count.final()
                        return
            for event in decoder.end():
                yield event


class _Count:
    """The tokens and lines a stream brought so far, against `Limits.events`."""

    def __init__(self, limits: Limits) -> None:
        self.tokens = 0
        self._limit = limits.events
        self.max_lines = sys.maxsize if limits.events is None else 8 * limits.events + 4096
        """Lines a stream may bring: far more than its token events need."""

    def flooded(self) -> WireError:
        """The error for a stream past `max_lines`."""
        return WireError(
            f"more than {self.max_lines} lines of event stream, too many for "
            f"{self._limit} token events"
        )

    def over(self, events: list[GenerationEvent]) -> bool:
        """Count ``events``; whether the stream has now brought clearly too many."""
        for event in events:
            if isinstance(event, TokenEvent):
                self.tokens += event.tokens
            elif isinstance(event, FinalEvent):
                return False
        return self._limit is not None and self.tokens > self._limit

    def final(self) -> FinalEvent:
        """The end of a stream cut here: finish reason "length", as if max_new_tokens hit."""
        return FinalEvent(finish_reason="length", output_tokens=self.tokens)


class LineDecoder(Protocol):
    """An engine's SSE decoder: one line of the stream in, the events it completes out."""

    def line(self, line: str) -> list[GenerationEvent]:
        """The events this line completes."""

    def end(self) -> list[GenerationEvent]:
        """The events the end of the stream completes (or raise: it ended too early)."""


def is_event_stream(response: HTTPResponse) -> bool:
    """Whether ``response`` is a successful server-sent-event stream."""
    return response.status_code < 400 and "text/event-stream" in response.headers.get(
        "content-type", ""
    )
