"""The text-generation-inference (TGI) backend, on ``huggingface_hub``'s inference clients.

In: a prompt and `GenerationParams`. Out: `TokenEvent` per token (rebuilt
from each token's text, so special-token tags that TGI drops from ``generated_text``
survive) and a `FinalEvent` from the stream's last event.

Every request is streamed on the wire (SSE): the stream's last event carries
``input_length``, which a non-streamed TGI answer lacks, so invoke and stream share one
path. Server errors, error events inside the stream and transport faults become
`langchain_k2.errors` exceptions whose messages say what to change.

Credentials (``k2-format.md`` section 5): only the token passed in is sent; the token
``hf auth login`` saved on disk is never attached to requests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import warnings
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

import httpx
from huggingface_hub import AsyncInferenceClient, InferenceClient, get_async_session
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    TextGenerationError,
    ValidationError,
)
from pydantic import SecretStr

from langchain_k2.backends.base import (
    BackendInfo,
    FinalEvent,
    GenerationEvent,
    GenerationParams,
    TokenEvent,
)
from langchain_k2.backends.replicas import ReplicaSet
from langchain_k2.errors import (
    K2BackendError,
    K2ConfigError,
    K2GenerationError,
    K2GrammarUnsupportedError,
    K2IncompleteGenerationError,
    K2OverloadedError,
    K2TimeoutError,
    K2UnavailableError,
    K2ValidationError,
)


def request_kwargs(params: GenerationParams) -> dict[str, Any]:
    """Map `GenerationParams` to ``text_generation`` keyword arguments.

    ``temperature == 0`` is greedy: ``do_sample=False`` and no temperature (TGI answers
    422 to ``temperature=0``); ``top_p == 1.0`` is not sent (TGI requires ``top_p < 1``).

    Example:
        >>> request_kwargs(GenerationParams(max_new_tokens=8, temperature=0, top_p=1.0))
        {'max_new_tokens': 8, 'do_sample': False}
    """
    kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens}
    greedy = params.temperature == 0
    if greedy:
        kwargs["do_sample"] = False
    else:
        if params.temperature is not None:
            kwargs["temperature"] = params.temperature
            kwargs["do_sample"] = True
        if params.top_p is not None and params.top_p < 1.0:
            kwargs["top_p"] = params.top_p
        if params.top_k is not None:
            kwargs["top_k"] = params.top_k
    if params.repetition_penalty is not None:
        kwargs["repetition_penalty"] = params.repetition_penalty
    if params.seed is not None:
        kwargs["seed"] = params.seed
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.grammar is not None:
        kwargs["grammar"] = dict(params.grammar)
    return kwargs


def events_of(output: Any) -> Iterator[GenerationEvent]:
    """The events of one ``TextGenerationStreamOutput`` (a token, maybe the end)."""
    token = output.token
    if token is not None:
        yield TokenEvent(text=token.text, special=bool(token.special))
    details = output.details
    if details is not None:
        yield FinalEvent(
            finish_reason=details.finish_reason,
            input_tokens=getattr(details, "input_length", None),
            output_tokens=details.generated_tokens,
            seed=details.seed,
        )


_HINTS = (
    ("temperature", "use temperature=0 for greedy decoding (ChatK2 then sends do_sample=false)"),
    ("top_p", "top_p must be in (0, 1); leave it unset or 1.0 to disable nucleus sampling"),
    ("stop", "pass fewer stop strings; the server's limit is its --max-stop-sequences"),
    (
        "max_new_tokens",
        "shorten the conversation, lower max_new_tokens, or raise the server's "
        "--max-total-tokens / --max-input-tokens",
    ),
    (
        "inputs",
        "shorten the conversation, lower max_new_tokens, or raise the server's "
        "--max-total-tokens / --max-input-tokens",
    ),
)


def _retry_after(exc: BaseException) -> float | None:
    for candidate in (exc, exc.__cause__):
        response = getattr(candidate, "response", None)
        if response is None:
            continue
        value = response.headers.get("retry-after")
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def _status(exc: BaseException) -> int | None:
    for candidate in (exc, exc.__cause__):
        response = getattr(candidate, "response", None)
        if response is not None:
            return int(response.status_code)
    return None


def map_error(exc: BaseException, url: str) -> BaseException:
    """Translate a ``huggingface_hub`` / ``httpx`` exception into a K2 error."""
    if isinstance(exc, K2BackendError):
        return exc
    text = str(exc).strip()
    detail = text.splitlines()[0].rstrip(".") if text else type(exc).__name__
    status = _status(exc)
    if type(exc).__name__ == "OfflineModeIsEnabled":
        return K2BackendError(
            f"HF_HUB_OFFLINE is set, so huggingface_hub refuses every request, even to your "
            f"own TGI server at {url}: unset HF_HUB_OFFLINE in this process to use it."
        )
    if isinstance(exc, ValidationError) or status == 422:
        text = str(exc)
        if "grammar" in text.lower() and "not supported" in text.lower():
            return K2GrammarUnsupportedError(
                f"TGI at {url} refuses grammars ({detail}); it was started with "
                "--disable-grammar-support. ChatK2 falls back to prompting.",
                status=422,
                error_type="validation",
            )
        hint = next((h for key, h in _HINTS if key in text), "check the request parameters")
        return K2ValidationError(
            f"TGI at {url} rejected the request: {text.strip()} -- {hint}.",
            status=422,
            error_type="validation",
        )
    if isinstance(exc, OverloadedError) or status == 429:
        return K2OverloadedError(
            f"TGI at {url} is overloaded (429): {detail}. Retried with backoff up to "
            "max_retries; raise max_retries or add replicas.",
            status=429,
            error_type="overloaded",
            retry_after=_retry_after(exc),
        )
    if isinstance(exc, IncompleteGenerationError):
        return K2IncompleteGenerationError(
            f"TGI at {url} reported an incomplete generation: {detail}.",
            status=500,
            error_type="incomplete_generation",
        )
    if isinstance(exc, GenerationError):
        return K2GenerationError(
            f"Generation failed on TGI at {url}: {detail}.", status=424, error_type="generation"
        )
    if isinstance(exc, (InferenceTimeoutError, httpx.TimeoutException, TimeoutError)):
        return K2TimeoutError(
            f"TGI at {url} did not answer in time ({detail}); raise `timeout` or check the server."
        )
    if status in {502, 503, 504}:
        return K2UnavailableError(
            f"TGI at {url} is unavailable ({status}): {detail}. It may still be loading "
            "the model; retried with backoff.",
            status=status,
            retry_after=_retry_after(exc),
        )
    if status in {401, 403}:
        return K2BackendError(
            f"TGI at {url} refused the credentials ({status}): set hf_token (or HF_TOKEN) "
            "to a token that may use this endpoint.",
            status=status,
        )
    if status == 404:
        return K2BackendError(
            f"No TGI route at {url} (404): endpoint_url must be the server's base URL, "
            "e.g. http://host:8080.",
            status=404,
        )
    if isinstance(exc, (httpx.TransportError, ConnectionError)):
        return K2UnavailableError(f"Could not reach TGI at {url}: {detail}.")
    if isinstance(exc, (TextGenerationError, HfHubHTTPError)):
        return K2BackendError(f"TGI at {url} failed: {detail}.", status=status)
    return exc


_ASYNC_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _share_async_session(client: AsyncInferenceClient) -> None:
    """Give ``client`` this event loop's shared ``httpx.AsyncClient``.

    ``AsyncInferenceClient`` otherwise builds a new ``httpx.AsyncClient`` per instance
    (an SSL context and CA bundle each, about 18 ms of CPU, and no keep-alive). One
    instance per request keeps each stream's response closed with its client; the
    session underneath, with huggingface_hub's own settings and a pool of 100
    connections, is shared by all requests on the loop and never closed by them.
    """
    if not hasattr(client, "_async_client"):  # a huggingface_hub without this detail
        return
    loop = asyncio.get_running_loop()
    session = _ASYNC_SESSIONS.get(loop)
    if session is None or session.is_closed:
        session = _ASYNC_SESSIONS[loop] = get_async_session()
    client._async_client = session


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
        urls = [endpoint_url] if isinstance(endpoint_url, str) else list(endpoint_url)
        for url in urls:
            parsed = urlparse(url)
            if parsed.scheme not in {"http", "https"} or not parsed.netloc:
                raise K2ConfigError(
                    f"endpoint_url={url!r} is not an http(s) URL; pass the TGI server's "
                    "base URL, e.g. 'http://127.0.0.1:8080'."
                )
            if token is not None and parsed.scheme == "http" and not _is_loopback(parsed.hostname):
                warnings.warn(
                    f"hf_token will be sent over plain http to {parsed.hostname}; use https.",
                    stacklevel=3,
                )
        self.replicas = ReplicaSet([u.rstrip("/") for u in urls], cooldown=cooldown)
        self._token = token
        self.timeout = timeout
        self._headers = dict(headers or {})
        self._info: BackendInfo | None = None

    @property
    def url(self) -> str:
        """The first replica's URL (the only one, usually)."""
        return self.replicas.urls[0]

    def __repr__(self) -> str:
        return f"TGIBackend(urls={self.replicas.urls!r})"

    def _mapped(self, exc: BaseException, url: str) -> BaseException:
        mapped = map_error(exc, url)
        if isinstance(mapped, K2BackendError) and mapped.retryable:
            self.replicas.failed(url)
        return mapped

    # -------------------------------------------------------------- clients

    def _client_kwargs(self, url: str) -> dict[str, Any]:
        headers: dict[str, Any] = dict(self._headers)
        if self._token is None:
            # huggingface_hub would attach the token saved by `hf auth login`; a None
            # header is dropped after the merge, so no Authorization header is sent.
            headers["authorization"] = None
        return {
            "base_url": url,
            "token": self._token.get_secret_value() if self._token is not None else None,
            "timeout": self.timeout,
            "headers": headers,
        }

    def _auth_headers(self) -> dict[str, str]:
        headers = {k: v for k, v in self._headers.items() if v is not None}
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token.get_secret_value()}"
        return headers

    # -------------------------------------------------------------- info

    @staticmethod
    def _parse_info(response: httpx.Response) -> BackendInfo:
        if response.status_code == 404:  # not TGI's router (some proxies): limits unknown
            return BackendInfo()
        response.raise_for_status()  # a 503 while loading is retried, not cached
        data = response.json()
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
            try:
                with httpx.Client(timeout=self.timeout) as client:
                    response = client.get(f"{url}/info", headers=self._auth_headers())
                    info = self._parse_info(response)
            except httpx.HTTPError as exc:
                raise self._mapped(exc, url) from exc
            self._info = info
        return self._info

    async def ainfo(self) -> BackendInfo:
        """Async twin of `info`."""
        if self._info is None:
            url = self.replicas.pick()
            try:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.get(f"{url}/info", headers=self._auth_headers())
                    info = self._parse_info(response)
            except httpx.HTTPError as exc:
                raise self._mapped(exc, url) from exc
            self._info = info
        return self._info

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` per the server's own tokenizer (``POST /tokenize``)."""
        url = self.replicas.pick()
        try:
            with httpx.Client(timeout=self.timeout) as client:
                response = client.post(
                    f"{url}/tokenize", json={"inputs": text}, headers=self._auth_headers()
                )
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise self._mapped(exc, url) from exc
        return len(response.json())

    # -------------------------------------------------------------- generation

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[GenerationEvent]:
        """Stream one generation (SSE); the client is closed when the iterator is."""
        url = self.replicas.pick()
        client = InferenceClient(**self._client_kwargs(url))
        try:
            outputs = client.text_generation(
                prompt, stream=True, details=True, return_full_text=False, **request_kwargs(params)
            )
            for output in outputs:
                yield from events_of(output)
        except Exception as exc:
            mapped = self._mapped(exc, url)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            client.close()  # type: ignore[no-untyped-call]

    async def astream(
        self, prompt: str, params: GenerationParams
    ) -> AsyncIterator[GenerationEvent]:
        """Async twin of `stream`."""
        url = self.replicas.pick()
        client = AsyncInferenceClient(**self._client_kwargs(url))
        _share_async_session(client)
        try:
            outputs = await client.text_generation(
                prompt, stream=True, details=True, return_full_text=False, **request_kwargs(params)
            )
            async for output in outputs:
                for event in events_of(output):
                    yield event
        except Exception as exc:
            mapped = self._mapped(exc, url)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            await client.close()  # type: ignore[no-untyped-call]
