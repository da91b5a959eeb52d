"""vLLM, SGLang and the llama.cpp servers through their raw-completion routes.

In: a prompt and `GenerationParams`. Out: `TokenEvent` values (the text as the engine
decodes it, special tokens kept) and one `FinalEvent` (finish reason, token counts).

The HTTP side only: replicas, auth, retries-friendly errors and sessions come from
`langchain_k2.backends._http` (shared with TGI); what differs per engine (routes, bodies,
info and token counts, decoding) comes from its hooks (`langchain_k2.backends._engines`),
driven through the pure `completions_wire`. Where the engine takes a ``model`` (the
OpenAI-style routes), every request names the served model: ``model_name`` when the user
set it, else the id the info route reports (routers such as vLLM's production stack route
by it). ``live=False`` (invoke) fetches one non-streamed
answer; ``stream``/``astream`` read the engine's event stream as it arrives.

What each engine reports (``engines.md``):

=====================  ===========================  ==================================
engine                 context window (``info``)    token counts (``count_tokens``)
=====================  ===========================  ==================================
``vllm``               ``GET /v1/models``           ``POST /tokenize`` (``count``)
                       ``max_model_len``
``sglang``             ``GET /server_info``         ``POST /generate`` with
                       ``context_length`` (none     ``max_new_tokens: 0``
                       behind the Model Gateway)    (``meta_info.prompt_tokens``)
``llama.cpp``          ``GET /props`` ``n_ctx``     ``POST /tokenize``
``llama-cpp-python``   ``GET /v1/models`` (the     ``POST /extras/tokenize``
                       model id; the window is
                       unknown: ``context_window``
                       sets it)
=====================  ===========================  ==================================
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from pydantic import SecretStr

from langchain_k2.backends._base import BackendInfo, GenerationEvent, GenerationParams
from langchain_k2.backends._completions_wire import (
    StreamDecoder,
    answer_events,
    error_body,
    error_from,
    request_body,
)
from langchain_k2.backends._engines import GBNF, EngineHooks, hooks_for
from langchain_k2.backends._http import (
    HTTPBackend,
    HTTPResponse,
    is_event_stream,
    parse_json,
)
from langchain_k2.backends._wire import retry_after
from langchain_k2.errors import K2BackendError

__all__ = ["CompletionsBackend"]


class CompletionsBackend(HTTPBackend):
    """A vLLM, SGLang, llama-server or llama-cpp-python server, sent K2's raw prompt.

    Args:
        engine: ``"vllm"``, ``"sglang"``, ``"llama.cpp"`` (llama-server) or
            ``"llama-cpp-python"`` (that package's server), or an engine's hooks.
        endpoint_url: the server's base URL, or a list of replicas' URLs (one engine).
        token: bearer token to send (vLLM's ``--api-key``, llama-server's ``--api-key``).
        timeout: seconds a socket may stay silent, and within which the status line and
            headers must arrive (``None``: no such bound).
        headers: extra HTTP headers for every request.
        cooldown: seconds a failed replica is skipped (with several replicas).
        gbnf: JSON-schema-to-GBNF converter for llama-cpp-python (default:
            `langchain_k2.backends._gbnf`'s).
        model: the model name to send as ``model`` (default: the served model's id, read
            from the info route).
        deadline: seconds one whole request may take (``"auto"``: from max_new_tokens;
            ``None``: none).

    Example:
        >>> backend = CompletionsBackend("vllm", "http://127.0.0.1:8000")
        >>> backend.name, backend.route
        ('vllm', '/v1/completions')
    """

    def __init__(
        self,
        engine: str | EngineHooks,
        endpoint_url: str | Sequence[str],
        *,
        token: SecretStr | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        cooldown: float = 10.0,
        gbnf: GBNF | None = None,
        model: str | None = None,
        deadline: float | str | None = "auto",
    ) -> None:
        self.hooks: EngineHooks = hooks_for(engine)
        self.name = self.hooks.name
        self.bos_switch = self.hooks.bos_switch
        """Whether a prompt holding its BOS gets no second one (`EngineHooks.bos_switch`)."""
        self.server = self.hooks.label
        self.route = self.hooks.generate_route
        self._gbnf = gbnf
        self._model = model
        super().__init__(
            endpoint_url,
            token=token,
            timeout=timeout,
            headers=headers,
            cooldown=cooldown,
            deadline=deadline,
        )

    # -------------------------------------------------------------- answers

    def _failure(self, response: HTTPResponse, body: bytes, url: str) -> K2BackendError:
        message, error_type = error_body(body)
        return error_from(
            self.hooks,
            response.status_code,
            message,
            error_type,
            url,
            retry_after_s=retry_after(response.headers.get("retry-after")),
        )

    def _json(self, response: HTTPResponse, url: str) -> Any:
        if response.status_code >= 400:
            raise self._failure(response, response.content, url)
        return parse_json(response.content, url, self.server, f"a {self.server} server")

    # -------------------------------------------------------------- info and tokens

    def _info_request(self, url: str) -> dict[str, Any] | None:
        route = self.hooks.info_route
        return None if route is None else self._request("GET", f"{url}{route}")

    def _parse_info(self, response: HTTPResponse, url: str) -> BackendInfo:
        if response.status_code == 404:  # a gateway or proxy in front: limits unknown
            return BackendInfo(supports_grammar=True)
        return self.hooks.info(self._json(response, url))

    def info(self) -> BackendInfo:
        """The context window and model the engine reports (read once; ``None``: unknown)."""
        if self._info is None:
            url = self.replicas.pick()
            request = self._info_request(url)
            if request is None:
                self._info = BackendInfo(supports_grammar=True)
            else:
                with self._errors(url):
                    response = self._send(request)
                    self._info = self._parse_info(response, request["url"])
        return self._recorded(self._info)

    async def ainfo(self) -> BackendInfo:
        """Async twin of `info`."""
        if self._info is None:
            url = self.replicas.pick()
            request = self._info_request(url)
            if request is None:
                self._info = BackendInfo(supports_grammar=True)
            else:
                with self._errors(url):
                    response = await self._asend(request)
                    self._info = self._parse_info(response, request["url"])
        return self._recorded(self._info)

    def _tokenize(self, url: str, text: str) -> dict[str, Any]:
        route = self.hooks.tokenize_route
        return self._request("POST", f"{url}{route}", json=self.hooks.tokenize_body(text))

    def _token_count(self, response: HTTPResponse, url: str) -> int:
        data = self._json(response, url)
        count = self.hooks.token_count(data)
        if not isinstance(count, int):
            raise K2BackendError(
                f"{self.server} at {url} answered {str(data)[:200]} to a token count; "
                "pass tokenizer= to count on the client."
            )
        return count

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` per the engine's own tokenizer."""
        url = self.replicas.pick()
        request = self._tokenize(url, text)
        with self._errors(url):
            return self._token_count(self._send(request, text=text), request["url"])

    async def acount_tokens(self, text: str) -> int:
        """Async twin of `count_tokens`."""
        url = self.replicas.pick()
        request = self._tokenize(url, text)
        with self._errors(url):
            return self._token_count(await self._asend(request, text=text), request["url"])

    # -------------------------------------------------------------- generation

    def _model_name(self) -> str | None:
        """The ``model`` to send: the user's, else the served one (info read first)."""
        if self._model is not None or not self.hooks.sends_model:
            return self._model
        return self.info().model_id

    async def _amodel_name(self) -> str | None:
        if self._model is not None or not self.hooks.sends_model:
            return self._model
        return (await self.ainfo()).model_id

    def _generate(
        self, url: str, prompt: str, params: GenerationParams, *, stream: bool, model: str | None
    ) -> Any:
        body = request_body(self.hooks, prompt, params, stream=stream, gbnf=self._gbnf, model=model)
        return self._request("POST", f"{url}{self.route}", json=body)

    def _opened(self, response: HTTPResponse, body: bytes | None, url: str) -> StreamDecoder:
        if response.status_code >= 400:
            raise self._failure(response, body or b"", url)
        if not is_event_stream(response):
            raise K2BackendError(
                f"{self.server} at {url} answered a streamed request with "
                f"{response.headers.get('content-type', 'no content type')} instead of an "
                f"event stream ({(body or b'')[:200]!r}); check endpoint_url and engine=.",
                status=response.status_code,
            )
        return StreamDecoder(self.hooks, url)

    def stream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> Iterator[GenerationEvent]:
        """Generate from ``prompt``: the engine's stream as it arrives (``live=False``: whole)."""
        model = self._model_name()
        url = self.replicas.pick()
        request = self._generate(url, prompt, params, stream=live, model=model)
        with self._errors(url):
            if not live:
                response = self._send(request, params)
                yield from answer_events(self.hooks, self._json(response, url), url)
                return
            yield from self._events(request, url, params)

    async def astream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> AsyncIterator[GenerationEvent]:
        """Async twin of `stream`."""
        model = await self._amodel_name()
        url = self.replicas.pick()
        request = self._generate(url, prompt, params, stream=live, model=model)
        with self._errors(url):
            if not live:
                response = await self._asend(request, params)
                for event in answer_events(self.hooks, self._json(response, url), url):
                    yield event
                return
            async for event in self._aevents(request, url, params):
                yield event
