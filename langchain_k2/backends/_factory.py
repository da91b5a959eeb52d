"""Which backend serves an ``endpoint_url``: the engine named, or the one a probe finds.

In: ``engine`` (`ENGINE_CHOICES`; ``"auto"`` asks the server) and the connection
settings (`backend_for` reads them off a chat model through `BackendSource`; this module
does not import ``chat_models``). Out: a `Backend`: `TGIBackend`, a `CompletionsBackend`,
or an `AutoBackend` that probes the server once, on first use (sync or async alike), and
then delegates.

Probing reads a few GET routes, in this order, and stops at the first that answers like
its engine (`identify` is the pure part). Each engine's hooks name its probe routes and
recognise their answers (`langchain_k2.backends._engines`); the order follows their
``probe_rank``. Today that is:

=====================  ==========================================================
route                  answers like
=====================  ==========================================================
``/info``              TGI (``model_id`` with ``max_total_tokens`` or its router)
``/server_info``       SGLang (its server args: ``context_length``, ``model_path``)
``/get_server_info``   SGLang, or the SGLang Model Gateway (``workers_count``...)
``/model_info``        SGLang (``model_path``)
``/version``           vLLM (``{"version": ...}`` alone)
``/props``             llama-server (``default_generation_settings``)
``/openapi.json``      llama-cpp-python's server (its ``/extras/tokenize`` route)
=====================  ==========================================================

A server none of them recognises raises `K2ConfigError` listing what each route
answered and saying to pass ``engine=``. A refused connection or a 503 while loading
raises the retryable K2 error instead, so it is retried and probed again later.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Protocol
from urllib.parse import urlparse

from pydantic import SecretStr

from langchain_k2._urls import has_credentials
from langchain_k2.backends._base import Backend, BackendInfo, GenerationEvent, GenerationParams
from langchain_k2.backends._completions import CompletionsBackend
from langchain_k2.backends._engines import (
    ENGINE_CHOICES,
    ENGINES,
    LABELS,
    PROBES,
    EngineHooks,
    hooks_for,
    probes,
)
from langchain_k2.backends._http import HTTPBackend, HTTPResponse
from langchain_k2.backends._tgi import TGIBackend
from langchain_k2.errors import K2ConfigError, K2UnavailableError

__all__ = [
    "ENGINE_CHOICES",
    "PROBES",
    "AutoBackend",
    "BackendSource",
    "identify",
    "make_backend",
]

AUTO = "auto"
"""``engine=`` asking the server which engine it runs."""


def identify(route: str, status: int, doc: Any) -> str | None:
    """The engine a probe's answer shows (``None``: this answer shows none).

    Each engine's hooks recognise the answers of their own probe routes.

    Example:
        >>> identify("/version", 200, {"version": "0.11.0"})
        'vllm'
        >>> identify("/get_server_info", 200, {"router_manager": None, "routers_count": 1,
        ...          "workers_count": 2})
        'sglang'
        >>> identify("/info", 404, None) is None
        True
    """
    if status != 200 or not isinstance(doc, dict):
        return None
    ranked = sorted(ENGINES.values(), key=lambda hooks: hooks.probe_rank)
    return next((h.name for h in ranked if route in h.probes and h.identify(route, doc)), None)


def _tgi(_: EngineHooks, endpoint_url: str | Sequence[str], **settings: Any) -> Backend:
    return TGIBackend(endpoint_url, **settings)


def _completions(hooks: EngineHooks, endpoint_url: str | Sequence[str], **settings: Any) -> Backend:
    return CompletionsBackend(hooks, endpoint_url, **settings)


_WIRES: dict[str, Callable[..., Backend]] = {"tgi": _tgi, "completions": _completions}
"""The backend class that drives each kind of wire (`EngineHooks.wire`)."""


def make_backend(
    engine: str,
    endpoint_url: str | Sequence[str],
    *,
    token: SecretStr | None = None,
    timeout: float | None = None,
    cooldown: float = 10.0,
    model: str | None = None,
    deadline: float | str | None = "auto",
) -> Backend:
    """The backend for ``engine`` at ``endpoint_url`` (``"auto"``: probed on first use).

    ``model`` is sent as the model's name where the engine takes one (default: the id the
    engine reports).

    Example:
        >>> make_backend("sglang", "http://127.0.0.1:30000").name
        'sglang'
        >>> make_backend("auto", "http://127.0.0.1:30000").name
        'auto'
        >>> make_backend("ollama", "http://127.0.0.1:11434")
        Traceback (most recent call last):
        ...
        langchain_k2.errors.K2ConfigError: engine='ollama' is not one of ('auto', 'tgi', \
'vllm', 'sglang', 'llama.cpp', 'llama-cpp-python').
    """
    settings: dict[str, Any] = {
        "token": token,
        "timeout": timeout,
        "cooldown": cooldown,
        "deadline": deadline,
    }
    if engine not in ENGINES:
        if engine != AUTO:
            hooks_for(engine)  # raises, listing the engines
        return AutoBackend(endpoint_url, model=model, **settings)
    hooks = ENGINES[engine]
    if hooks.sends_model:
        settings["model"] = model
    return _WIRES[hooks.wire](hooks, endpoint_url, **settings)


class AutoBackend(HTTPBackend):
    """A server whose engine is learnt by probing it once, then the backend for that engine.

    ``name`` is ``"auto"`` until the probe ran, then the engine's. The replicas of one
    ``endpoint_url`` are one engine: only the first one picked is probed.
    """

    server = "the server"

    def __init__(
        self,
        endpoint_url: str | Sequence[str],
        *,
        token: SecretStr | None = None,
        timeout: float | None = None,
        cooldown: float = 10.0,
        model: str | None = None,
        deadline: float | str | None = "auto",
    ) -> None:
        super().__init__(
            endpoint_url, token=token, timeout=timeout, cooldown=cooldown, deadline=deadline
        )
        self.replicas.server = "endpoint"  # the engine's name once it is known
        self._endpoint = endpoint_url
        self._settings: dict[str, Any] = {
            "token": token,
            "timeout": timeout,
            "cooldown": cooldown,
            "model": model,
            "deadline": deadline,
        }
        self._inner: Backend | None = None
        self._lock = threading.Lock()
        self.name = "auto"
        """The engine found (``"auto"`` before the probe)."""

    @property
    def inner(self) -> Backend | None:
        """The engine's own backend, once probed."""
        return self._inner

    @property
    def bos_switch(self) -> bool:
        """The engine's ``bos_switch`` (`EngineHooks`), probing the server the first time."""
        return bool(getattr(self.detect(), "bos_switch", False))

    # ------------------------------------------------------------------ probing

    def _found(self, engine: str, route: str, response: HTTPResponse, url: str) -> Backend:
        inner = make_backend(engine, self._endpoint, **self._settings)
        if isinstance(inner, HTTPBackend):
            inner.replicas = self.replicas  # one cool-down state for every request
            self.replicas.server = inner.server
        if (
            isinstance(inner, TGIBackend | CompletionsBackend)
            and route == ENGINES[engine].info_route
        ):  # the probe read the engine's info already
            inner.adopt_info(response, url)
        self._inner = inner
        self.name = inner.name
        return inner

    def _verdict(self, route: str, response: HTTPResponse, tried: list[str]) -> str | None:
        if response.status_code in {502, 503, 504}:
            raise K2UnavailableError(
                f"The server at {self.url} answered {response.status_code} to {route} while "
                "ChatK2 probed which engine it runs; retried with backoff (pass engine= to "
                "skip probing).",
                status=response.status_code,
            )
        try:
            doc = response.json()
        except ValueError:
            doc = None
        engine = identify(route, response.status_code, doc)
        tried.append(f"GET {route} -> {response.status_code}")
        return engine

    def _unknown(self, url: str, tried: list[str]) -> K2ConfigError:
        path = urlparse(url).path
        hint = (
            f" endpoint_url must be the server's base URL, without a path like {path!r}."
            if path not in {"", "/"}
            else ""
        )
        return K2ConfigError(
            f"Could not tell which engine serves {url}: tried {'; '.join(tried)}. None "
            f"answered like {', '.join(LABELS.values())} (or the SGLang Model Gateway)."
            f"{hint} Pass engine= (one of "
            f"{', '.join(repr(e) for e in ENGINE_CHOICES[1:])}) to ChatK2."
        )

    def detect(self) -> Backend:
        """The engine's backend, probing the server the first time."""
        if self._inner is not None:
            return self._inner
        with self._lock:
            if self._inner is not None:
                return self._inner
            url = self.replicas.pick()
            tried: list[str] = []
            with self._errors(url):
                for route in probes():
                    response = self._send(self._request("GET", f"{url}{route}"))
                    engine = self._verdict(route, response, tried)
                    if engine is not None:
                        return self._found(engine, route, response, url)
            raise self._unknown(url, tried)

    async def adetect(self) -> Backend:
        """Async twin of `detect`."""
        if self._inner is not None:
            return self._inner
        url = self.replicas.pick()
        tried: list[str] = []
        with self._errors(url):
            for route in probes():
                response = await self._asend(self._request("GET", f"{url}{route}"))
                engine = self._verdict(route, response, tried)
                if engine is not None:
                    return self._inner or self._found(engine, route, response, url)
        raise self._unknown(url, tried)

    # ------------------------------------------------------------------ Backend

    def info(self) -> BackendInfo:
        """The engine's limits (probing first, once)."""
        return self.detect().info()

    async def ainfo(self) -> BackendInfo:
        """Async twin of `info`."""
        return await (await self.adetect()).ainfo()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` per the engine."""
        return self.detect().count_tokens(text)

    @property
    def token_starts(self) -> Callable[[str], list[int]] | None:
        """The engine's ``token_starts`` when it has one, else ``None`` (probing first).

        Token offsets let one request count many pieces of a prompt (`langchain_k2._counting`).
        """
        starts: Callable[[str], list[int]] | None = getattr(self.detect(), "token_starts", None)
        return starts

    async def acount_tokens(self, text: str) -> int:
        """Async twin of `count_tokens` (in a thread when the engine has none)."""
        inner = await self.adetect()
        counter = getattr(inner, "acount_tokens", None)
        if counter is not None:
            count: int = await counter(text)
            return count
        import asyncio

        return await asyncio.to_thread(inner.count_tokens, text)

    def stream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> Iterator[GenerationEvent]:
        """The engine's events for ``prompt``."""
        return self.detect().stream(prompt, params, live=live)

    async def astream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> AsyncIterator[GenerationEvent]:
        """Async twin of `stream`."""
        inner = await self.adetect()
        async for event in inner.astream(prompt, params, live=live):
            yield event


class Markers(Protocol):
    """What `backend_for` reads of a prompt format: the markers llama.cpp tokenizes whole."""

    @property
    def special_markers(self) -> tuple[str, ...]: ...


class BackendSource(Protocol):
    """What `backend_for` reads of a chat model (``ChatK2`` is one), read-only.

    ``model_fields_set`` is the fields the user set (pydantic's); ``format`` the prompt
    format in use.
    """

    @property
    def endpoint_url(self) -> str | list[str] | None: ...
    @property
    def engine(self) -> str: ...
    @property
    def hf_token(self) -> SecretStr | None: ...
    @property
    def model_name(self) -> str: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def replica_cooldown(self) -> float: ...
    @property
    def request_deadline(self) -> float | str | None: ...
    @property
    def model_path(self) -> str | None: ...
    @property
    def context_window(self) -> int | None: ...
    @property
    def model_fields_set(self) -> set[str]: ...
    @property
    def format(self) -> Markers: ...


def backend_for(chat: BackendSource) -> Backend:
    """``chat``'s backend: the engine at ``endpoint_url``, else llama.cpp.

    With ``model_path``, ``context_window`` is the ``n_ctx`` llama.cpp loads with; with a
    server, a ``model_name`` the user set is the name requests carry, and ``hf_token`` the
    bearer token (unless it came from ``HF_TOKEN`` and the URL carries credentials itself).
    """
    if chat.endpoint_url:
        secret = chat.hf_token
        token = secret if secret is not None and secret.get_secret_value() else None
        if "hf_token" not in chat.model_fields_set and has_credentials(chat.endpoint_url):
            token = None  # HF_TOKEN from the environment: the URL's own credentials win
        return make_backend(
            chat.engine,
            chat.endpoint_url,
            token=token,
            timeout=chat.timeout,
            cooldown=chat.replica_cooldown,
            model=chat.model_name if "model_name" in chat.model_fields_set else None,
            deadline=chat.request_deadline,
        )
    from langchain_k2.backends._llamacpp import DEFAULT_N_CTX, LlamaCppBackend

    return LlamaCppBackend(
        str(chat.model_path),
        special_markers=chat.format.special_markers,
        n_ctx=chat.context_window or DEFAULT_N_CTX,
    )
