"""``ChatK2``: LLM360's K2-Chat as a LangChain chat model with tool calling.

In: LangChain messages, bound tools and call options. Out: ``AIMessage`` /
``AIMessageChunk`` with ``tool_calls``, ``invalid_tool_calls``, ``usage_metadata`` and
``response_metadata``.

The turn logic lives in `langchain_k2._turn.Turn` (sans-IO) and its I/O in
`langchain_k2._driver` (sync and async twins, retries, the grammar-refusal handshake);
this module holds the fields, the turn setup (messages and options in, a ``Turn`` out)
and the LangChain plumbing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import partial
from os import PathLike
from typing import Any, Literal, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import (
    BaseChatModel,
    LangSmithParams,
    LanguageModelInput,
    ModelProfile,
)
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils import from_env
from pydantic import ConfigDict, Field, PositiveFloat, PrivateAttr, SecretStr, field_serializer

from langchain_k2._arguments import given
from langchain_k2._bind_options import bind_options
from langchain_k2._call_options import (
    CallOptions,
    bound_options,
    parse_call_options,
)
from langchain_k2._counting import PieceCounter, backend_pieces, count_messages
from langchain_k2._driver import Count, Driver
from langchain_k2._fields import checked_arguments, token_from_env
from langchain_k2._profile import lazy_profile, profile_from_info
from langchain_k2._served import warn_if_other_model
from langchain_k2._settings import settings_of
from langchain_k2._structured import structured_output
from langchain_k2._tokenizer import Tokenizer, load_tokenizer
from langchain_k2._tool_binding import ToolChoice, tools_bound
from langchain_k2._tracing import identifying_params, ls_params
from langchain_k2._turn import Turn
from langchain_k2._turn_setup import prepare_turn
from langchain_k2._urls import has_credentials, redact
from langchain_k2.backends._base import Backend, BackendInfo
from langchain_k2.backends._engines import ENGINE_CHOICES, EngineChoice
from langchain_k2.backends._factory import backend_for
from langchain_k2.errors import K2ConfigError, K2Error
from langchain_k2.formats import PromptFormat, format_for_model
from langchain_k2.formats._selection import check_fields, chosen_format


def _resolve_target(values: dict[str, Any]) -> dict[str, Any]:
    """Pick the backend from explicit fields first, then from the environment."""
    given = {k for k in ("endpoint_url", "model_path", "backend") if values.get(k) is not None}
    if {"endpoint_url", "model_path"} <= given:
        raise K2ConfigError(
            "Both endpoint_url and model_path are set: pass endpoint_url for a TGI server "
            "or model_path for a local GGUF model, not both."
        )
    if values.get("engine") is None:  # from K2_ENGINE: checked here, naming the variable
        named = from_env("K2_ENGINE", default=None)()
        if named is not None and named not in ENGINE_CHOICES:
            raise K2ConfigError(
                f"K2_ENGINE={named!r} (an environment variable) is not one of "
                f"{ENGINE_CHOICES}: set it to one of them, or unset it to probe the server."
            )
    if values.get("model_path") is not None and values.get("engine") not in {None, "auto"}:
        raise K2ConfigError(
            f"engine={values['engine']!r} names the server at endpoint_url, but model_path "
            "runs the model in this process (llama.cpp): drop engine= or pass endpoint_url= "
            "instead of model_path."
        )
    if given:
        return values
    url = from_env("K2_ENDPOINT_URL", default=None)()
    path = from_env("K2_MODEL_PATH", default=None)()
    if url and path:
        raise K2ConfigError(
            "Both K2_ENDPOINT_URL and K2_MODEL_PATH are set: unset one, or pass "
            "endpoint_url= or model_path= explicitly."
        )
    if not url and not path:
        raise K2ConfigError(
            "No model to talk to: pass endpoint_url='http://host:8080' (a TGI, vLLM, SGLang or "
            "llama.cpp server serving LLM360/K2-Chat) or model_path='/path/model.gguf', or set "
            "K2_ENDPOINT_URL / "
            "K2_MODEL_PATH."
        )
    urls = [u.strip() for u in url.split(",") if u.strip()] if url else []
    endpoint: str | list[str] | None = urls if len(urls) > 1 else url
    return {**values, "endpoint_url": endpoint, "model_path": path}


class ChatK2(BaseChatModel):
    """LLM360's K2 models (K2-Chat, K2-V2-Instruct, K2-Think-V2, K2-V3) as a chat model.

    Talks to a serving engine at ``endpoint_url`` (TGI, vLLM, SGLang or a llama.cpp server;
    ``engine``) or runs a GGUF model in process with llama.cpp (``model_path``). Messages
    are rendered into the family's prompt format (``prompt_format``), bound tools into its
    tools prompt, and the model's reasoning and calls are parsed back (``tool_calls``);
    malformed calls are repaired (``max_tool_call_retries``) or reported as ``invalid_tool_calls``.

    Setup: ``pip install langchain-k2`` and point ``endpoint_url`` (or the environment
    variable ``K2_ENDPOINT_URL``) at a server serving ``LLM360/K2-Chat``; or pass
    ``model_path`` to a GGUF file (``pip install "langchain-k2[local]"``). The
    documentation's pages show every feature with examples that the test suite runs.

    Example:
        >>> from langchain_core.tools import tool
        >>> @tool
        ... def multiply(a: int, b: int) -> int:
        ...     '''Multiply two integers.'''
        ...     return a * b
        >>> llm = ChatK2(endpoint_url="http://127.0.0.1:8080", temperature=0)
        >>> bound = llm.bind_tools([multiply], tool_choice="multiply")
        >>> (tool,) = bound.kwargs["tools"]
        >>> function = tool["function"]
        >>> function["name"], bound.kwargs["tool_choice"]
        ('multiply', 'multiply')
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    endpoint_url: str | list[str] | None = None
    """The serving engine's base URL, or a list of replicas' URLs (default: env
    ``K2_ENDPOINT_URL``, which may hold several, comma-separated). Credentials in it
    (``https://user:password@host``) are sent as Basic auth and shown nowhere else."""
    engine: EngineChoice = Field(
        default_factory=cast("Callable[[], Any]", from_env("K2_ENGINE", default="auto"))
    )
    """The engine at ``endpoint_url`` (default: env ``K2_ENGINE``, else ``"auto"``: ask the
    server once, on first use; ``K2ConfigError`` naming what was tried if it cannot tell).
    ``"llama.cpp"`` is llama-server, ``"llama-cpp-python"`` that package's server."""
    model_path: str | None = None
    """Path to a GGUF file (default: env ``K2_MODEL_PATH``). Selects the llama.cpp backend."""
    hf_token: SecretStr | None = Field(default_factory=token_from_env, alias="api_key")
    """Bearer token for the endpoint (default: env ``HF_TOKEN``). Only this token is sent."""
    model_name: str = Field(default="LLM360/K2-Chat", alias="model")
    """Model name reported in metadata and LangSmith."""
    max_new_tokens: int = Field(default=1024, ge=1)
    """Most tokens to generate per request."""
    temperature: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    """Sampling temperature; ``0`` means greedy decoding; ``None``: the server's default."""
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    """Nucleus sampling in (0, 1]; ``1.0`` (or ``None``) disables it."""
    top_k: int | None = Field(default=None, ge=1)
    """Sample from the ``top_k`` most likely tokens."""
    repetition_penalty: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    """Penalty for repeated tokens; ``1.0`` means none."""
    seed: int | None = Field(default=None, ge=0)
    """Random seed for sampling."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Stop strings; generation ends before them and they never appear in content."""
    timeout: float | None = Field(default=120.0, gt=0.0, allow_inf_nan=False)
    """Seconds a socket may stay silent, and within which status and headers must arrive."""
    request_deadline: PositiveFloat | Literal["auto"] | None = "auto"
    """Seconds one whole HTTP request may take: ``"auto"`` is 300 plus one per new token;
    ``None``: none (``docs/limits.md``)."""
    max_retries: int = Field(default=2, ge=0)
    """Retries of a request after 429, 503, timeouts or refused connections."""
    retry_backoff: float = Field(default=0.5, ge=0.0, allow_inf_nan=False)
    """First retry delay in seconds; doubles with jitter each retry, up to 30 s."""
    replica_cooldown: float = Field(default=10.0, ge=0.0, allow_inf_nan=False)
    """Seconds a replica that failed (429, 503, timeout, refused) is skipped, when
    ``endpoint_url`` lists several."""
    streaming: bool = False
    """Whether ``invoke`` streams through the callbacks (``on_llm_new_token``)."""
    system_prompt: str | None = None
    """System text used when the messages carry no ``SystemMessage``."""
    prompt_format: str | PromptFormat | None = None
    """The model family's prompt format: ``"k2-chat"``, ``"k2-v2"`` (K2-V2-Instruct),
    ``"k2-think-v2"``, ``"k2-v3"`` (K2 Horizon), or a format object (``K2Format(...)``,
    ``K2Format.chatml()`` for a stand-in). ``None``: the family of the model the engine
    reports serving, else K2-Chat; ``response_metadata["prompt_format"]`` says which."""
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    """Reasoning effort of the reasoning families (also per call); ``None``: the family's
    default (K2-V2-Instruct medium, K2-Think-V2 and K2-V3 high). Refused for K2-Chat."""
    tool_call_format: Literal["xml", "xml_typed", "json"] | None = None
    """K2-V3's call form, taught in the tools prompt and parsed back (also per call);
    ``None``: ``"xml"``. Refused for the other families."""
    max_tool_call_retries: int = Field(default=2, ge=0)
    """Repairs of malformed tool calls per turn; then they stay ``invalid_tool_calls``."""
    neutralize_markers: bool = True
    """Escape K2 markers found in message text so it cannot forge turns or tool calls."""
    backend: Backend | None = Field(default=None, exclude=True)
    """A ready backend instance (advanced; overrides ``endpoint_url``/``model_path``)."""
    tokenizer: str | PathLike[str] | Tokenizer | None = Field(default=None, exclude=True)
    """K2-Chat's tokenizer: a local directory or a loaded ``transformers`` tokenizer
    (``pip install "langchain-k2[tokenizer]"``). With it, tokens are counted locally;
    without it, the backend counts (TGI ``/tokenize``, llama.cpp)."""
    context_window: int | None = Field(default=None, ge=1)
    """Prompt plus new tokens, at most. Default: TGI's ``max_total_tokens`` from ``/info``
    or llama.cpp's ``n_ctx``; a value here can only narrow what a server reports. With
    ``model_path`` it is the ``n_ctx`` llama.cpp is loaded with (default 4096)."""
    trim_history: bool = False
    """When the prompt would not fit the window, drop the oldest turns (keeping the
    system prompt, the tools and the latest user turn) instead of raising
    ``ContextWindowExceededError``."""

    _backend: Backend | None = PrivateAttr(default=None)
    _tokenizer: Tokenizer | None = PrivateAttr(default=None)
    _pieces: PieceCounter | None = PrivateAttr(default=None)
    _own_profile: bool = PrivateAttr(default=False)
    _seen_info: BackendInfo | None = PrivateAttr(default=None)
    _served: str | None = PrivateAttr(default=None)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**_resolve_target(checked_arguments(type(self), kwargs)))
        check_fields(self.prompt_format, self.reasoning_effort, self.tool_call_format)
        self._own_profile = given(kwargs, "profile")

    @property
    def format(self) -> PromptFormat:
        """The prompt format: ``prompt_format``, else the served (or GGUF file's) family."""
        return chosen_format(self.prompt_format, self._served or self.model_path)

    @property
    def _llm_type(self) -> str:
        return "k2-chat"

    @property
    def lc_secrets(self) -> dict[str, str]:
        """Fields that hold secrets, mapped to the environment variable that fills them.

        An ``endpoint_url`` with credentials in it (``http://user:password@host``) is one:
        ``dumpd`` names ``K2_ENDPOINT_URL`` in its place.
        """
        secrets = {"hf_token": "HF_TOKEN"}
        if has_credentials(self.endpoint_url):
            secrets["endpoint_url"] = "K2_ENDPOINT_URL"
        return secrets

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "endpoint_url" else value

    @field_serializer("endpoint_url")
    def _redacted_endpoint(self, value: str | list[str] | None) -> str | list[str] | None:
        """``model_dump`` shows a URL's credentials as ``***``, as it does ``hf_token``."""
        return redact(value)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """``dumpd`` writes a constructor with secrets replaced by their env names."""
        return True

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return identifying_params(self)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        served = self._seen_info.model_id if self._seen_info is not None else None
        return ls_params(self, stop, kwargs, served=served, found=self.backend or self._backend)

    def bind(self, **kwargs: Any) -> Any:  # langchain-core's own binding type is private
        """``Runnable.bind``, with sampling options and tools checked now."""
        return super().bind(**bound_options(self, kwargs))

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: ToolChoice = None,
        parallel_tool_calls: bool | None = None,
        strict: bool | None = None,
        response_format: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer ``tools`` to the model in K2's function-calling system prompt.

        Args:
            tools: ``@tool`` functions, ``BaseTool``, pydantic classes, TypedDicts,
                plain functions or OpenAI-format dicts.
            tool_choice: ``"auto"`` (default), ``"none"``, ``"any"``/``"required"``/
                ``True`` (a call is forced by ending the prompt with ``<tool_call>``),
                or a tool name / ``{"type": "function", "function": {"name": ...}}``.
            parallel_tool_calls: ``False``: at most one call per turn (asked for in the system
                prompt; extra calls go to ``response_metadata["dropped_tool_calls"]``).
            strict: ``True``/``None``: forced calls and repairs are decoded under a grammar
                of the tools' schemas (every call is validated); ``False``: no grammar.
            response_format: a pydantic class, TypedDict, JSON schema or OpenAI
                ``{"type": "json_schema", ...}`` dict (what ``create_agent``'s
                ``ProviderStrategy`` passes): the answer is a JSON object satisfying it,
                grammar-constrained when no tools are offered (see
                `langchain_k2._bind_options`).
            **kwargs: further call options bound with the tools.

        Raises:
            ToolDefinitionError: a tool has no name, a duplicate name or a bad schema.
            K2ConfigError: ``tool_choice`` names no bound tool, or one of the options
                above has a value of the wrong kind.
        """
        bound = tools_bound(tools, tool_choice)  # checked before the options below
        options = bind_options(
            parallel_tool_calls=parallel_tool_calls, strict=strict, response_format=response_format
        )
        return super().bind(**bound, **options, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """A runnable that returns output validated against ``schema``.

        Args:
            schema: a pydantic class (instances are returned), a TypedDict or a JSON-schema
                dict (dicts are returned); ``None`` only with ``method="json_mode"``.
            method: ``"json_schema"`` constrains decoding with the backend's JSON-schema
                grammar; ``"function_calling"`` forces a call of a tool whose parameters
                are the schema; ``"json_mode"`` constrains output to a JSON object.
                When the backend refuses grammars, instructions in the system prompt
                steer the model and ``response_metadata["grammar_fallback"]`` says so.
            include_raw: return ``{"raw", "parsed", "parsing_error"}`` instead of raising.
            strict: ``None``/``True`` constrain decoding with a grammar; ``False`` only
                instructs the model and validates (no grammar), like OpenAI's non-strict
                mode. Output is validated either way.
            **kwargs: none are accepted (an unknown option raises). Call options
                (``max_new_tokens``...) can be passed to the runnable's ``invoke``.

        Output that fails validation is asked for again; these re-asks and the repairs of
        a malformed call (``function_calling``) share ``max_tool_call_retries``, so one
        call sends at most ``max_tool_call_retries + 1`` requests. The re-asks are counted
        in the raw message's ``response_metadata["structured_output_retries"]``, the
        repairs in ``["tool_call_retries"]``.
        """
        return structured_output(
            self, schema, method=method, include_raw=include_raw, strict=strict, **kwargs
        )

    def _get_backend(self) -> Backend:
        if self.backend is not None:
            return self.backend
        if self._backend is None:
            self._backend = backend_for(self)
        return self._backend

    def _note_info(self, info: BackendInfo) -> None:
        """Take in what the engine reported, once per backend.

        Its limits go into ``profile`` (unless the user gave one), and the model it serves
        is checked against ``model_name`` (a warning when it is another).
        """
        if info is self._seen_info:
            return
        self._seen_info = info
        if self.prompt_format is None and format_for_model(info.model_id):
            self._served = info.model_id  # a K2 family: its format is used
        elif self.prompt_format is None:  # K2's own format: is K2 what the engine serves?
            warn_if_other_model(info, self.model_name, self._get_backend())
        if not self._own_profile:
            self.profile = profile_from_info(info, self.context_window, self.format)

    def _resolve_model_profile(self) -> ModelProfile | None:
        """The family's capabilities; the window from ``context_window`` until the engine's."""
        return lazy_profile(self, _engine_profile)  # asked when a limit is read before a call

    def _prepare_turn(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        options: CallOptions,
        info: BackendInfo,
        count: Count | None,
    ) -> Turn:
        """The turn for these messages (``count=None``: raise `MustCount` rather than count)."""
        self._note_info(info)  # the format may be the served family's: settings come after
        fields, engine = settings_of(self), self._get_backend().name
        return prepare_turn(fields, options, messages, stop, info=info, engine=engine, count=count)

    def _driver(self) -> Driver:
        return Driver(
            self._get_backend(),
            tokenizer=None if self.tokenizer is None else partial(self._local, self.tokenizer),
            attempts=self.max_retries + 1,
            backoff=self.retry_backoff,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,  # noqa: ARG002
        **kwargs: Any,
    ) -> ChatResult:
        options = parse_call_options(kwargs, self)  # once per call
        return self._driver().invoke(partial(self._prepare_turn, messages, stop, options))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,  # noqa: ARG002
        **kwargs: Any,
    ) -> ChatResult:
        options = parse_call_options(kwargs, self)  # once per call
        return await self._driver().ainvoke(partial(self._prepare_turn, messages, stop, options))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        options = parse_call_options(kwargs, self, streaming=True)  # once per call
        setup = partial(self._prepare_turn, messages, stop, options)
        for chunk in self._driver().stream(setup):
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        options = parse_call_options(kwargs, self, streaming=True)  # once per call
        setup = partial(self._prepare_turn, messages, stop, options)
        async for chunk in self._driver().astream(setup):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _local(self, tokenizer: str | PathLike[str] | Tokenizer) -> Tokenizer:
        """The ``tokenizer`` field, loaded once (on the first count)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(tokenizer)
        return self._tokenizer

    def get_num_tokens(self, text: str) -> int:
        """Tokens ``text`` takes (the local ``tokenizer`` if set, else the backend's)."""
        return self._driver().count(text)

    def get_num_tokens_from_messages(
        self,
        messages: list[BaseMessage],
        tools: Sequence[Any] | None = None,
        *,
        tool_choice: ToolChoice = None,
    ) -> int:
        """Tokens of the prompt these messages, tools and ``tool_choice`` render into.

        Any list counts, as ``trim_messages`` needs, through the renderer's own pieces
        (`langchain_k2._counting.count_messages`); without a local ``tokenizer`` each
        distinct piece is counted once per model and the counts summed.
        """
        settings, backend = settings_of(self), self._get_backend()
        counter: PieceCounter | Callable[[str], int]
        if self.tokenizer is not None:  # local and cheap: the whole prompt at once
            counter = self._driver().count
        else:  # the backend counts each distinct piece once per model
            counter = self._pieces = self._pieces or backend_pieces(backend, self._driver().count)
        skips = bool(getattr(backend, "bos_switch", False))  # told to add no BOS: none counted
        return count_messages(
            settings, messages, tools, tool_choice, counter, engine_skips_bos=skips
        )


def _engine_profile(chat: ChatK2) -> ModelProfile | None:
    """``chat``'s profile from what its engine reports (``None``: unreachable, or not K2)."""
    try:
        info = chat._get_backend().info()
    except K2Error:  # the limits stay unknown, asked again later
        return None
    chat._note_info(info)
    return profile_from_info(info, chat.context_window, chat.format)


__all__ = ["ChatK2"]
