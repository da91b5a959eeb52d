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

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_k2.backends._base import BackendInfo, FinalEvent, GenerationEvent, GenerationParams
from langchain_k2.backends._engines.tgi import HOOKS
from langchain_k2.backends._http import (
    HTTPBackend,
    HTTPResponse,
    map_error,
)
from langchain_k2.backends._tgi_wire import (
    StreamDecoder,
    error_body,
    error_from,
    request_kwargs,
)
from langchain_k2.backends._wire import retry_after
from langchain_k2.errors import K2BackendError

__all__ = ["TGIBackend", "map_error", "request_kwargs"]


def _failure(response: HTTPResponse, body: bytes, url: str) -> K2BackendError:
    """The K2 error for an HTTP error answer."""
    message, error_type = error_body(body)
    return error_from(
        response.status_code,
        message,
        error_type,
        url,
        retry_after_s=retry_after(response.headers.get("retry-after")),
    )


def _not_a_stream(response: HTTPResponse, body: bytes, url: str) -> K2BackendError:
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


class TGIBackend(HTTPBackend):
    """A text-generation-inference server (or a managed endpoint that speaks its API).

    Args:
        endpoint_url: the server's base URL, e.g. ``http://127.0.0.1:8080``, or a list
            of replicas' URLs: requests are spread over them and a replica that fails
            (429, 503, timeout, refused connection) sits out ``cooldown`` seconds.
            ``http://user:password@host`` sends ``user:password`` as Basic auth.
        token: bearer token to send, or ``None`` to send none.
        timeout: seconds a socket may stay silent, and within which the status line and
            headers must arrive (``None``: no such bound).
        headers: extra HTTP headers for every request.
        cooldown: seconds a failed replica is skipped (with several replicas).
        deadline: seconds one whole request may take (``"auto"``: from max_new_tokens;
            ``None``: none).
    """

    name = HOOKS.name
    server = HOOKS.label
    hooks = HOOKS
    """TGI's hooks (`langchain_k2.backends._engines.tgi`): routes, info, counts, decoding."""

    prompt_header = True
    """Whether non-streamed answers carry ``x-prompt-tokens``. The first answer without
    it (a proxy dropped it) turns this off: that answer's prompt is counted with
    ``/tokenize``, and later whole answers are fetched as streams."""

    # -------------------------------------------------------------- info and tokens

    @staticmethod
    def _parse_info(response: HTTPResponse, url: str) -> BackendInfo:
        if response.status_code == 404:  # not TGI's router (some proxies): limits unknown
            return BackendInfo()
        if response.status_code >= 400:  # a 503 while loading is retried, not cached
            raise _failure(response, response.content, f"{url}{HOOKS.info_route}")
        return HOOKS.info(_json(response.content, f"{url}{HOOKS.info_route}"))

    def info(self) -> BackendInfo:
        """``GET /info``, read once; unknown limits are ``None`` if the route is missing."""
        if self._info is None:
            url = self.replicas.pick()
            with self._errors(url):
                response = self._send(self._request("GET", f"{url}{HOOKS.info_route}"))
                self._info = self._parse_info(response, url)
        return self._recorded(self._info)

    async def ainfo(self) -> BackendInfo:
        """Async twin of `info`."""
        if self._info is None:
            url = self.replicas.pick()
            with self._errors(url):
                response = await self._asend(self._request("GET", f"{url}{HOOKS.info_route}"))
                self._info = self._parse_info(response, url)
        return self._recorded(self._info)

    def _tokenize(self, url: str, text: str) -> dict[str, Any]:
        route = f"{url}{HOOKS.tokenize_route}"
        return self._request("POST", route, json=HOOKS.tokenize_body(text))

    @staticmethod
    def _token_count(response: HTTPResponse, url: str) -> int:
        route = f"{url}{HOOKS.tokenize_route}"
        if response.status_code >= 400:
            raise _failure(response, response.content, route)
        count = HOOKS.token_count(_json(response.content, route))
        if count is None:
            raise K2BackendError(f"TGI at {route} answered no token list to a token count.")
        return count

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` per the server's own tokenizer (``POST /tokenize``)."""
        url = self.replicas.pick()
        with self._errors(url):
            response = self._send(self._tokenize(url, text), text=text)
            return self._token_count(response, url)

    def token_starts(self, text: str) -> list[int]:
        """Where each token of ``text`` starts (``POST /tokenize``'s offsets), in order.

        One request counts many pieces of a prompt at once (`langchain_k2._counting`).
        """
        url = self.replicas.pick()
        with self._errors(url):
            response = self._send(self._tokenize(url, text), text=text)
            if response.status_code >= 400:
                raise _failure(response, response.content, f"{url}{HOOKS.tokenize_route}")
            tokens = _json(response.content, f"{url}{HOOKS.tokenize_route}")
            return [int(token.get("start") or 0) for token in tokens]

    async def acount_tokens(self, text: str) -> int:
        """Async twin of `count_tokens`."""
        url = self.replicas.pick()
        with self._errors(url):
            response = await self._asend(self._tokenize(url, text), text=text)
            return self._token_count(response, url)

    # -------------------------------------------------------------- generation

    def _generate(self, url: str, prompt: str, params: GenerationParams, *, stream: bool) -> Any:
        grammar = params.grammar
        constraint = {} if grammar is None else HOOKS.constraint(grammar, None)
        body = HOOKS.request_body(prompt, params, stream=stream, model=None, constraint=constraint)
        return self._request("POST", f"{url}{HOOKS.generate_route}", json=body)

    def _whole(self, response: HTTPResponse, url: str) -> list[GenerationEvent]:
        """The events of a non-streamed answer (raises for an error answer)."""
        if response.status_code >= 400:
            raise _failure(response, response.content, url)
        if response.headers.get("x-prompt-tokens") is None:
            self.prompt_header = False
        return HOOKS.answer_events(_json(response.content, url), response.headers, url)

    def _opened(self, response: HTTPResponse, body: bytes | None, url: str) -> StreamDecoder:
        """The decoder for a streamed answer, once its headers (and an error's body) are in."""
        if response.status_code >= 400:
            raise _failure(response, body or b"", url)
        if "text/event-stream" not in response.headers.get("content-type", ""):
            raise _not_a_stream(response, body or b"", url)
        return HOOKS.stream_decoder(url)

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
                events = self._whole(self._send(request, params), url)
                if not self.prompt_header:  # this answer came without its prompt count
                    events = _with_count(events, self._count_or_none(prompt))
                yield from events
                return
            yield from self._events(self._generate(url, prompt, params, stream=True), url, params)

    async def astream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> AsyncIterator[GenerationEvent]:
        """Async twin of `stream`."""
        url = self.replicas.pick()
        with self._errors(url):
            if not live and self.prompt_header:
                request = self._generate(url, prompt, params, stream=False)
                events = self._whole(await self._asend(request, params), url)
                if not self.prompt_header:
                    events = _with_count(events, await self._acount_or_none(prompt))
                for event in events:
                    yield event
                return
            request = self._generate(url, prompt, params, stream=True)
            async for event in self._aevents(request, url, params):
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
