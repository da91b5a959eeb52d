"""The text-generation-inference (TGI) backend, over ``huggingface_hub``'s HTTP sessions.

In: a prompt and `GenerationParams`. Out: `TokenEvent` values rebuilt from the token texts
TGI reports (so special-token tags that it drops from ``generated_text`` survive) and one
`FinalEvent`.

A live caller (``stream``, ``astream``) gets TGI's server-sent events as they arrive; the
last one carries the prompt's token count. A caller that only wants the whole answer
(``live=False``, as invoke does) gets one non-streamed JSON answer, whose ``x-prompt-tokens``
header carries that count. Both go to TGI's ``/`` route with the body `tgi_wire` builds and
are decoded by `tgi_wire`'s pure functions, which also turn error answers and error events
into `langchain_k2.errors` exceptions.

Requests go through ``huggingface_hub.get_session()`` (sync) and one
``huggingface_hub.get_async_session()`` client per event loop (async), huggingface_hub's
own HTTP clients: a factory set with ``set_client_factory`` (proxies, certificates)
applies, and ``HF_HUB_OFFLINE`` is honoured. Async requests beyond the pool's size wait
for a slot here rather than in httpcore's pool queue (`_LoopSession`). ``InferenceClient``
is not used for generation: it parses every streamed event into nested dataclasses, which
cost more than the rest of a call put together (``docs/benchmarks.md``).

Credentials (``k2-format.md`` section 5): only the token passed in is sent; the token
``hf auth login`` saved on disk is never attached to requests. A URL's userinfo
(``http://user:password@host``) is sent as a Basic ``Authorization`` header to the URL
without it, so it never reaches a log line or an error message.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import warnings
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlparse

import httpx
from huggingface_hub import __version__ as hub_version
from huggingface_hub import get_async_session, get_session
from pydantic import SecretStr

from langchain_k2._urls import redact_url, split_credentials
from langchain_k2._version import __version__
from langchain_k2.backends.base import BackendInfo, FinalEvent, GenerationEvent, GenerationParams
from langchain_k2.backends.replicas import ReplicaSet
from langchain_k2.backends.tgi_wire import (
    MAX_ERROR_BODY,
    StreamDecoder,
    answer_events,
    error_body,
    error_from,
    request_body,
    request_kwargs,
    retry_after,
)
from langchain_k2.errors import K2BackendError, K2ConfigError, K2TimeoutError, K2UnavailableError

__all__ = ["TGIBackend", "map_error", "request_kwargs"]

_USER_AGENT = f"langchain-k2/{__version__}; hf_hub/{hub_version}"


def map_error(exc: BaseException, url: str) -> BaseException:
    """Translate a transport exception (``httpx``, ``huggingface_hub``) into a K2 error.

    K2 errors pass through; an exception this does not know is returned unchanged.

    Example:
        >>> err = map_error(httpx.ConnectError("connection refused"), "http://tgi")
        >>> type(err).__name__, err.retryable
        ('K2UnavailableError', True)
    """
    if isinstance(exc, K2BackendError):
        return exc
    text = str(exc).strip()
    detail = text.splitlines()[0].rstrip(".") if text else type(exc).__name__
    if type(exc).__name__ == "OfflineModeIsEnabled":
        return K2BackendError(
            f"HF_HUB_OFFLINE is set, so huggingface_hub refuses every request, even to your "
            f"own TGI server at {url}: unset HF_HUB_OFFLINE in this process to use it."
        )
    if isinstance(exc, httpx.PoolTimeout):
        return K2TimeoutError(
            f"No connection to TGI at {url} came free in time ({detail}): this process "
            "already had as many requests in flight as its HTTP pool allows. Send fewer at "
            "once (abatch's max_concurrency), raise `timeout`, or give huggingface_hub a "
            "client with a larger pool (set_async_client_factory)."
        )
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return K2TimeoutError(
            f"TGI at {url} did not answer in time ({detail}); raise `timeout` or check the server."
        )
    if isinstance(exc, (httpx.TransportError, ConnectionError)):
        return K2UnavailableError(f"Could not reach TGI at {url}: {detail}.")
    return exc


def _failure(response: httpx.Response, body: bytes, url: str) -> K2BackendError:
    """The K2 error for an HTTP error answer."""
    message, error_type = error_body(body)
    return error_from(
        response.status_code,
        message,
        error_type,
        url,
        retry_after_s=retry_after(response.headers.get("retry-after")),
    )


def _not_a_stream(response: httpx.Response, body: bytes, url: str) -> K2BackendError:
    kind = response.headers.get("content-type", "no content type")
    return K2BackendError(
        f"TGI at {url} answered a streamed request with {kind} instead of an event stream "
        f"({body[:200]!r}); endpoint_url must be a text-generation-inference server.",
        status=response.status_code,
    )


def _json(content: bytes, url: str) -> Any:
    try:
        return json.loads(content)
    except ValueError as exc:
        raise K2BackendError(
            f"TGI at {url} answered {content[:200]!r}, which is not JSON; endpoint_url must "
            "be a text-generation-inference server."
        ) from exc


def _with_count(events: list[GenerationEvent], count: int | None) -> list[GenerationEvent]:
    """``events`` with the prompt's token count filled into the final event."""
    final = events[-1]
    if count is None or not isinstance(final, FinalEvent) or final.input_tokens is not None:
        return events
    counted = FinalEvent(final.finish_reason, count, final.output_tokens, final.seed)
    return [*events[:-1], counted]


class _LoopSession:
    """One event loop's ``httpx.AsyncClient`` and the slots that keep its pool's queue empty.

    httpx queues the requests beyond its pool's ``max_connections`` inside the pool, and
    httpcore rescans that whole queue each time a connection frees up (encode/httpcore#1035:
    quadratic in a burst's size). Waiting for a slot here first keeps that queue empty: a
    burst of 256 ``ainvoke`` spends about a third less CPU (``docs/benchmarks.md``). A
    client whose pool limit cannot be read (a custom transport) is not gated.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        pool = getattr(getattr(client, "_transport", None), "_pool", None)
        limit = getattr(pool, "_max_connections", None)
        self.limit: int | None = limit if isinstance(limit, int) and limit > 0 else None
        """Most requests in flight on this loop (the pool's ``max_connections``)."""
        self._slots = None if self.limit is None else asyncio.Semaphore(self.limit)

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


_ASYNC_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSession] = (
    weakref.WeakKeyDictionary()
)


def _async_session() -> _LoopSession:
    """This event loop's ``httpx.AsyncClient``, from huggingface_hub's factory, shared.

    ``get_async_session()`` builds a new client per call (an SSL context and CA bundle
    each, about 18 ms of CPU, and no keep-alive); one per loop, with huggingface_hub's
    settings and a pool of 100 connections, serves every request on it.
    """
    loop = asyncio.get_running_loop()
    session = _ASYNC_SESSIONS.get(loop)
    if session is None or session.client.is_closed:
        session = _ASYNC_SESSIONS[loop] = _LoopSession(get_async_session())
    return session


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TGIBackend:
    """A text-generation-inference server (or a managed endpoint that speaks its API).

    Args:
        endpoint_url: the server's base URL, e.g. ``http://127.0.0.1:8080``, or a list
            of replicas' URLs: requests are spread over them and a replica that fails
            (429, 503, timeout, refused connection) sits out ``cooldown`` seconds.
            ``http://user:password@host`` sends ``user:password`` as Basic auth.
        token: bearer token to send, or ``None`` to send none.
        timeout: seconds before a request is abandoned (``None``: wait forever).
        headers: extra HTTP headers for every request.
        cooldown: seconds a failed replica is skipped (with several replicas).
    """

    name = "tgi"

    def __init__(
        self,
        endpoint_url: str | Sequence[str],
        *,
        token: SecretStr | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        cooldown: float = 10.0,
    ) -> None:
        given = [endpoint_url] if isinstance(endpoint_url, str) else list(endpoint_url)
        urls: list[str] = []
        # Userinfo in a URL becomes a Basic Authorization header and requests go to the
        # bare URL, so neither httpx's request log nor any error ever shows the password.
        self._auth: dict[str, SecretStr] = {}
        for given_url in given:
            url, auth = split_credentials(given_url)
            parsed = urlparse(url)
            if parsed.scheme not in {"http", "https"} or not parsed.netloc:
                raise K2ConfigError(
                    f"endpoint_url={redact_url(given_url)!r} is not an http(s) URL; pass the "
                    "TGI server's base URL, e.g. 'http://127.0.0.1:8080'."
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
        self.replicas = ReplicaSet(urls, cooldown=cooldown)
        self._token = token
        self.timeout = timeout
        self._headers = {k.lower(): v for k, v in (headers or {}).items() if v is not None}
        self._info: BackendInfo | None = None
        self.prompt_header = True
        """Whether non-streamed answers carry ``x-prompt-tokens``. The first answer
        without it (a proxy dropped it) turns this off: that answer's prompt is counted
        with ``/tokenize``, and later whole answers are fetched as streams."""

    @property
    def url(self) -> str:
        """The first replica's URL (the only one, usually)."""
        return self.replicas.urls[0]

    def __repr__(self) -> str:
        return f"TGIBackend(urls={self.replicas.urls!r})"

    @contextmanager
    def _errors(self, url: str) -> Iterator[None]:
        """Raise K2 errors for what fails inside; a retryable failure benches ``url``."""
        try:
            yield
        except Exception as exc:
            mapped = map_error(exc, url)
            # A full pool on this side (httpx.PoolTimeout) is no fault of the replica's.
            if (
                isinstance(mapped, K2BackendError)
                and mapped.retryable
                and not isinstance(exc, httpx.PoolTimeout)
            ):
                self.replicas.failed(url)
            if mapped is exc:
                raise
            raise mapped from exc

    def _request(self, method: str, url: str, **fields: Any) -> dict[str, Any]:
        """Keyword arguments of one ``httpx`` request (auth and user agent included)."""
        headers = {"user-agent": _USER_AGENT, **self._headers}
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token.get_secret_value()}"
        elif self._auth:
            base = next((b for b in self._auth if url == b or url.startswith(b + "/")), None)
            if base is not None:
                headers["authorization"] = self._auth[base].get_secret_value()
        return {"method": method, "url": url, "headers": headers, "timeout": self.timeout, **fields}

    async def _asend(self, request: dict[str, Any]) -> httpx.Response:
        """One async request on this loop's shared client, sent once a slot is free."""
        session = _async_session()
        async with session.slot(self.timeout):
            return await session.client.request(**request)

    # -------------------------------------------------------------- info and tokens

    @staticmethod
    def _parse_info(response: httpx.Response, url: str) -> BackendInfo:
        if response.status_code == 404:  # not TGI's router (some proxies): limits unknown
            return BackendInfo()
        if response.status_code >= 400:  # a 503 while loading is retried, not cached
            raise _failure(response, response.content, f"{url}/info")
        data = _json(response.content, f"{url}/info")
        return BackendInfo(
            model_id=data.get("model_id"),
            max_stop_sequences=data.get("max_stop_sequences"),
            max_input_tokens=data.get("max_input_tokens"),
            max_total_tokens=data.get("max_total_tokens"),
            supports_grammar=None,
            extra={"version": data.get("version")},
        )

    def info(self) -> BackendInfo:
        """``GET /info``, read once; unknown limits are ``None`` if the route is missing."""
        if self._info is None:
            url = self.replicas.pick()
            with self._errors(url):
                response = get_session().request(**self._request("GET", f"{url}/info"))
                self._info = self._parse_info(response, url)
        return self._info

    async def ainfo(self) -> BackendInfo:
        """Async twin of `info`."""
        if self._info is None:
            url = self.replicas.pick()
            with self._errors(url):
                response = await self._asend(self._request("GET", f"{url}/info"))
                self._info = self._parse_info(response, url)
        return self._info

    def _tokenize(self, url: str, text: str) -> dict[str, Any]:
        return self._request("POST", f"{url}/tokenize", json={"inputs": text})

    @staticmethod
    def _token_count(response: httpx.Response, url: str) -> int:
        if response.status_code >= 400:
            raise _failure(response, response.content, f"{url}/tokenize")
        return len(_json(response.content, f"{url}/tokenize"))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` per the server's own tokenizer (``POST /tokenize``)."""
        url = self.replicas.pick()
        with self._errors(url):
            response = get_session().request(**self._tokenize(url, text))
            return self._token_count(response, url)

    def token_starts(self, text: str) -> list[int]:
        """Where each token of ``text`` starts (``POST /tokenize``'s offsets), in order.

        One request counts many pieces of a prompt at once (`langchain_k2.counting`).
        """
        url = self.replicas.pick()
        with self._errors(url):
            response = get_session().request(**self._tokenize(url, text))
            if response.status_code >= 400:
                raise _failure(response, response.content, f"{url}/tokenize")
            tokens = _json(response.content, f"{url}/tokenize")
            return [int(token.get("start") or 0) for token in tokens]

    async def acount_tokens(self, text: str) -> int:
        """Async twin of `count_tokens`."""
        url = self.replicas.pick()
        with self._errors(url):
            response = await self._asend(self._tokenize(url, text))
            return self._token_count(response, url)

    # -------------------------------------------------------------- generation

    def _generate(self, url: str, prompt: str, params: GenerationParams, *, stream: bool) -> Any:
        return self._request("POST", url, json=request_body(prompt, params, stream=stream))

    def _whole(self, response: httpx.Response, url: str) -> list[GenerationEvent]:
        """The events of a non-streamed answer (raises for an error answer)."""
        if response.status_code >= 400:
            raise _failure(response, response.content, url)
        if response.headers.get("x-prompt-tokens") is None:
            self.prompt_header = False
        return answer_events(_json(response.content, url), response.headers, url)

    def _opened(self, response: httpx.Response, body: bytes | None, url: str) -> StreamDecoder:
        """The decoder for a streamed answer, once its headers (and an error's body) are in."""
        if response.status_code >= 400:
            raise _failure(response, body or b"", url)
        if "text/event-stream" not in response.headers.get("content-type", ""):
            raise _not_a_stream(response, body or b"", url)
        return StreamDecoder(url)

    @staticmethod
    def _streamed(response: httpx.Response) -> bool:
        return response.status_code < 400 and "text/event-stream" in response.headers.get(
            "content-type", ""
        )

    def stream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> Iterator[GenerationEvent]:
        """Generate from ``prompt``: the events of TGI's stream as they arrive.

        With ``live=False`` the events of one non-streamed answer come all at once.
        """
        url = self.replicas.pick()
        with self._errors(url):
            if not live and self.prompt_header:
                request = self._generate(url, prompt, params, stream=False)
                events = self._whole(get_session().request(**request), url)
                if not self.prompt_header:  # this answer came without its prompt count
                    events = _with_count(events, self._count_or_none(prompt))
                yield from events
                return
            with get_session().stream(**self._generate(url, prompt, params, stream=True)) as r:
                body = None if self._streamed(r) else _read_capped(r.iter_bytes())
                decoder = self._opened(r, body, url)
                for line in r.iter_lines():
                    yield from decoder.line(line)
                yield from decoder.end()

    async def astream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> AsyncIterator[GenerationEvent]:
        """Async twin of `stream`."""
        url = self.replicas.pick()
        with self._errors(url):
            if not live and self.prompt_header:
                request = self._generate(url, prompt, params, stream=False)
                events = self._whole(await self._asend(request), url)
                if not self.prompt_header:
                    events = _with_count(events, await self._acount_or_none(prompt))
                for event in events:
                    yield event
                return
            session = _async_session()
            async with (
                session.slot(self.timeout),
                session.client.stream(**self._generate(url, prompt, params, stream=True)) as r,
            ):
                body = None if self._streamed(r) else await _aread_capped(r.aiter_bytes())
                decoder = self._opened(r, body, url)
                async for line in r.aiter_lines():
                    for event in decoder.line(line):
                        yield event
                for event in decoder.end():
                    yield event

    def _count_or_none(self, prompt: str) -> int | None:
        try:
            return self.count_tokens(prompt)
        except K2BackendError:
            return None

    async def _acount_or_none(self, prompt: str) -> int | None:
        try:
            return await self.acount_tokens(prompt)
        except K2BackendError:
            return None


def _read_capped(chunks: Iterator[bytes]) -> bytes:
    body = b""
    for chunk in chunks:
        body += chunk
        if len(body) >= MAX_ERROR_BODY:
            break
    return body


async def _aread_capped(chunks: AsyncIterator[bytes]) -> bytes:
    body = b""
    async for chunk in chunks:
        body += chunk
        if len(body) >= MAX_ERROR_BODY:
            break
    return body
