"""vLLM, SGLang and the llama.cpp servers through their raw-completion routes.

In: a prompt and `GenerationParams`. Out: `TokenEvent` values (the text as the engine
decodes it, special tokens kept) and one `FinalEvent` (finish reason, token counts).

The HTTP side only: replicas, auth, retries-friendly errors and sessions come from
`langchain_k2.backends.http` (shared with TGI); bodies, stream decoding and error mapping
come from the pure `completions_wire`. ``live=False`` (invoke) fetches one non-streamed
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
``llama-cpp-python``   unknown (``context_window``  ``POST /extras/tokenize``
                       sets it)
=====================  ===========================  ==================================
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from pydantic import SecretStr

from langchain_k2.backends.base import BackendInfo, GenerationEvent, GenerationParams
from langchain_k2.backends.completions_wire import (
    GBNF,
    LABELS,
    ROUTES,
    StreamDecoder,
    answer_events,
    error_body,
    error_from,
    request_body,
)
from langchain_k2.backends.http import (
    HTTPBackend,
    HTTPResponse,
    is_event_stream,
    parse_json,
)
from langchain_k2.backends.wire import retry_after
from langchain_k2.errors import K2BackendError, K2ConfigError

__all__ = ["CompletionsBackend"]

_INFO_ROUTES = {
    "vllm": ("GET", "/v1/models"),
    "sglang": ("GET", "/server_info"),
    "llama.cpp": ("GET", "/props"),
}


def _window(engine: str, data: Any) -> tuple[int | None, str | None]:
    """``(context window, model id)`` from the engine's info document."""
    if not isinstance(data, dict):
        return None, None
    if engine == "vllm":
        models = data.get("data")
        first = models[0] if isinstance(models, list) and models else {}
        first = first if isinstance(first, dict) else {}
        return _int(first.get("max_model_len")), first.get("id")
    if engine == "sglang":
        return _int(data.get("context_length")), data.get("model_path")
    settings = data.get("default_generation_settings")
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return _int(n_ctx if n_ctx is not None else data.get("n_ctx")), data.get("model_path")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class CompletionsBackend(HTTPBackend):
    """A vLLM, SGLang, llama-server or llama-cpp-python server, sent K2's raw prompt.

    Args:
        engine: ``"vllm"``, ``"sglang"``, ``"llama.cpp"`` (llama-server) or
            ``"llama-cpp-python"`` (that package's server).
        endpoint_url: the server's base URL, or a list of replicas' URLs (one engine).
        token: bearer token to send (vLLM's ``--api-key``, llama-server's ``--api-key``).
        timeout: seconds a socket may stay silent, and within which the status line and
            headers must arrive (``None``: no such bound).
        headers: extra HTTP headers for every request.
        cooldown: seconds a failed replica is skipped (with several replicas).
        gbnf: JSON-schema-to-GBNF converter for llama-cpp-python (default: its own).
        deadline: seconds one whole request may take (``"auto"``: from max_new_tokens).

    Example:
        >>> backend = CompletionsBackend("vllm", "http://127.0.0.1:8000")
        >>> backend.name, backend.route
        ('vllm', '/v1/completions')
    """

    def __init__(
        self,
        engine: str,
        endpoint_url: str | Sequence[str],
        *,
        token: SecretStr | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        cooldown: float = 10.0,
        gbnf: GBNF | None = None,
        deadline: float | str | None = "auto",
    ) -> None:
        if engine not in ROUTES:
            raise K2ConfigError(f"engine={engine!r} is not one of {tuple(ROUTES)}.")
        self.name = engine
        self.server = LABELS[engine]
        self.route = ROUTES[engine]
        self._gbnf = gbnf
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
            self.name,
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
        route = _INFO_ROUTES.get(self.name)
        return None if route is None else self._request(route[0], f"{url}{route[1]}")

    def _parse_info(self, response: HTTPResponse, url: str) -> BackendInfo:
        if response.status_code == 404:  # a gateway or proxy in front: limits unknown
            return BackendInfo(supports_grammar=True)
        window, model = _window(self.name, self._json(response, url))
        return BackendInfo(
            model_id=model if isinstance(model, str) else None,
            max_total_tokens=window,
            supports_grammar=True,
        )

    def info(self) -> BackendInfo:
        """The context window the engine reports (read once; ``None`` when unknown)."""
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
        if self.name == "vllm":
            body: dict[str, Any] = {"prompt": text, "add_special_tokens": True}
            return self._request("POST", f"{url}/tokenize", json=body)
        if self.name == "sglang":
            sampling = {"max_new_tokens": 0}
            body = {"text": text, "sampling_params": sampling, "stream": False}
            return self._request("POST", f"{url}/generate", json=body)
        if self.name == "llama.cpp":
            body = {"content": text, "add_special": True}
            return self._request("POST", f"{url}/tokenize", json=body)
        return self._request("POST", f"{url}/extras/tokenize", json={"input": text})

    def _token_count(self, response: HTTPResponse, url: str) -> int:
        data = self._json(response, url)
        if self.name == "sglang":
            meta = data.get("meta_info") if isinstance(data, dict) else None
            count = meta.get("prompt_tokens") if isinstance(meta, dict) else None
        elif self.name == "vllm":
            count = data.get("count") if isinstance(data, dict) else None
        else:
            tokens = data.get("tokens") if isinstance(data, dict) else None
            count = len(tokens) if isinstance(tokens, list) else None
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

    def _generate(self, url: str, prompt: str, params: GenerationParams, *, stream: bool) -> Any:
        body = request_body(self.name, prompt, params, stream=stream, gbnf=self._gbnf)
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
        return StreamDecoder(self.name, url)

    def stream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> Iterator[GenerationEvent]:
        """Generate from ``prompt``: the engine's stream as it arrives (``live=False``: whole)."""
        url = self.replicas.pick()
        request = self._generate(url, prompt, params, stream=live)
        with self._errors(url):
            if not live:
                response = self._send(request, params)
                yield from answer_events(self.name, self._json(response, url), url)
                return
            yield from self._events(request, url, params)

    async def astream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> AsyncIterator[GenerationEvent]:
        """Async twin of `stream`."""
        url = self.replicas.pick()
        request = self._generate(url, prompt, params, stream=live)
        with self._errors(url):
            if not live:
                response = await self._asend(request, params)
                for event in answer_events(self.name, self._json(response, url), url):
                    yield event
                return
            async for event in self._aevents(request, url, params):
                yield event
