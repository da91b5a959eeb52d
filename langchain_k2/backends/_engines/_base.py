"""The hooks one engine module defines, and the pieces its codecs share.

In: nothing but the engine-neutral values of `langchain_k2.backends._base`. Out:
`EngineHooks` (a frozen dataclass: label, routes, info and tokenize parsing, probe
recognition, how a constraint is sent, request body, answer and stream decoding, the
engine's own hint words), `Piece` (what one answer or stream event says), `NotThisEngineError`
(raised by a hook when a document is not this engine's), and `OpenAICompletions`, the
OpenAI-style ``/v1/completions`` codec vLLM and llama-cpp-python's server share.

A hook is pure: it reads and builds JSON documents, never a socket. The backends
(`langchain_k2.backends._completions`, `langchain_k2.backends._tgi`) do the I/O and turn a
`NotThisEngineError` into an error naming the server's URL and ``engine=``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from langchain_k2.backends._base import BackendInfo, GenerationParams, Grammar
from langchain_k2.backends._error_table import GRAMMAR_WORDS
from langchain_k2.backends._gbnf import GBNF
from langchain_k2.errors import K2ConfigError


class NotThisEngineError(Exception):
    """A document that is not this engine's answer; ``what`` says what it was."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Piece(NamedTuple):
    """What one answer, or one stream event, says (a tuple: one is made per token).

    ``text`` is the new text (the whole text so far for an engine whose stream is
    cumulative); ``counts`` the prompt and generated token counts when the document has
    them; ``last`` that the stream's final event is due now (no ``[DONE]`` follows).
    """

    text: str
    finish: str | None = None
    counts: tuple[int | None, int | None] | None = None
    last: bool = False


def as_int(value: Any) -> int | None:
    """``value`` when it is an int (not a bool), else ``None``.

    >>> as_int(4096), as_int("4096"), as_int(True)
    (4096, None, None)
    """
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def int_or_none(value: Any) -> int | None:
    """``int(value)``, or ``None`` when it is no number.

    >>> int_or_none("7"), int_or_none(None)
    (7, None)
    """
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def sampling(
    params: GenerationParams, *, repetition: str, marker_stops: bool = False
) -> dict[str, Any]:
    """The sampling fields that are set, under the engine's name for the repetition penalty.

    ``marker_stops``: the engine takes no ``stop_token_ids``, so the format's end markers
    (``params.stop_markers``) are sent as stop strings after the caller's.

    >>> sampling(GenerationParams(temperature=0, stop=("x",)), repetition="repeat_penalty")
    {'temperature': 0, 'stop': ['x']}
    >>> params = GenerationParams(stop=("x",), stop_markers=("<|im_end|>", "x"))
    >>> sampling(params, repetition="repeat_penalty", marker_stops=True)
    {'stop': ['x', '<|im_end|>']}
    """
    fields: dict[str, Any] = {}
    if params.temperature is not None:
        fields["temperature"] = params.temperature
    if params.top_p is not None:
        fields["top_p"] = params.top_p
    if params.top_k is not None:
        fields["top_k"] = params.top_k
    if params.repetition_penalty is not None:
        fields[repetition] = params.repetition_penalty
    stops = list(params.stop)
    if marker_stops:
        stops += [m for m in params.stop_markers if m not in stops]
    if stops:
        fields["stop"] = stops
    return fields


@dataclass(frozen=True, kw_only=True)
class EngineHooks:
    """Everything ChatK2 knows about one serving engine; one module defines one instance.

    Attributes:
        name: the ``engine=`` value.
        label: the engine's name in messages.
        generate_route: the route generation requests are POSTed to.
        info_route: the GET route of the engine's info document (``None``: none).
        tokenize_route: the POST route that counts a text's tokens.
        context_setting: the engine's own context-window setting, named in hints.
        probes: the GET routes whose answer `identify` recognises (``engine="auto"``).
        probe_rank: probes run in this order across engines (lower first): an engine
            whose probe route others also answer (SGLang has ``/version`` too) goes later.
        wire: which backend drives it: TGI's token-detail protocol or a raw-completion one.
        sends_model: whether requests carry the served model's id as ``model``.
        cumulative_stream: whether each stream event holds the whole text so far.
        grammar_words: words of its 400/422 that mean the constraint was refused.
        refuses_all_grammars: whether such a refusal is the server's for every grammar
            (TGI's ``--disable-grammar-support``), rather than about one schema it cannot
            compile (a bad pattern): later requests then carry none.
        bos_switch: whether a prompt holding its own BOS (``GenerationParams.bos_in_prompt``)
            is sent so the engine adds none of its own (vLLM's ``add_special_tokens``):
            counting then leaves out the BOS its ``tokenize_route`` adds.
    """

    name: str
    label: str
    generate_route: str
    info_route: str | None
    tokenize_route: str
    context_setting: str
    probes: tuple[str, ...] = ()
    probe_rank: int = 50
    wire: Literal["tgi", "completions"] = "completions"
    sends_model: bool = False
    cumulative_stream: bool = False
    grammar_words: tuple[str, ...] = GRAMMAR_WORDS
    refuses_all_grammars: bool = False
    bos_switch: bool = False

    # ------------------------------------------------------------------ probing and info

    def identify(self, route: str, doc: Mapping[str, Any]) -> bool:
        """Whether a 200 JSON answer to the probe ``route`` shows this engine."""
        return False

    def info(self, doc: Any) -> BackendInfo:
        """What the info document says (context window, served model id)."""
        return BackendInfo(supports_grammar=True)

    def tokenize_body(self, text: str) -> dict[str, Any]:
        """The JSON body POSTed to ``tokenize_route`` to count ``text``'s tokens."""
        raise NotImplementedError

    def token_count(self, doc: Any) -> int | None:
        """The count in ``tokenize_route``'s answer (``None``: the answer has none)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ requests

    def constraint(self, grammar: Grammar, gbnf: GBNF | None) -> dict[str, Any]:
        """The request fields carrying ``grammar``; `K2ConfigError` for a kind not taken."""
        raise self.refuse(grammar)

    def refuse(self, grammar: Grammar) -> K2ConfigError:
        """The error for a grammar kind this engine cannot take."""
        return K2ConfigError(
            f"{self.label} cannot take a {grammar.kind!r} grammar (JSON-schema constraints "
            "go to every engine, regex ones to TGI, vLLM and SGLang, GBNF to the llama.cpp "
            "servers): pass a JSON schema, or no grammar."
        )

    def request_body(
        self,
        prompt: str,
        params: GenerationParams,
        *,
        stream: bool,
        model: str | None,
        constraint: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The JSON body POSTed to ``generate_route``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ answers

    def answer(self, doc: Mapping[str, Any]) -> Piece:
        """The text, finish reason and counts of a non-streamed answer (or `NotThisEngineError`)."""
        raise NotImplementedError

    def stream_piece(self, doc: Mapping[str, Any]) -> Piece:
        """What one stream event says (or `NotThisEngineError`)."""
        raise NotImplementedError


def openai_finish(choice: Mapping[str, Any]) -> str | None:
    """TGI's word for an OpenAI-style choice's ``finish_reason``.

    >>> openai_finish({"finish_reason": "stop", "stop_reason": "</s>"})
    'stop_sequence'
    >>> openai_finish({"finish_reason": "stop", "stop_reason": None})
    'eos_token'
    """
    reason = choice.get("finish_reason")
    if reason is None:
        return None
    if reason == "stop":
        return "stop_sequence" if isinstance(choice.get("stop_reason"), str) else "eos_token"
    return str(reason)


def _usage(doc: Mapping[str, Any]) -> tuple[int | None, int | None] | None:
    usage = doc.get("usage")
    if not isinstance(usage, dict):
        return None
    return int_or_none(usage.get("prompt_tokens")), int_or_none(usage.get("completion_tokens"))


@dataclass(frozen=True, kw_only=True)
class OpenAICompletions(EngineHooks):
    """The OpenAI-style ``/v1/completions`` codec (vLLM, llama-cpp-python's server)."""

    generate_route: str = "/v1/completions"
    info_route: str | None = "/v1/models"
    sends_model: bool = True

    def info(self, doc: Any) -> BackendInfo:
        """The first served model's id (and ``max_model_len`` where the engine has it).

        >>> hooks = OpenAICompletions(name="x", label="X", tokenize_route="/t",
        ...                           context_setting="-c")
        >>> hooks.info({"data": [{"id": "k2", "max_model_len": 8192}]})
        ... # doctest: +NORMALIZE_WHITESPACE
        BackendInfo(model_id='k2', max_stop_sequences=None, max_input_tokens=None,
                    max_total_tokens=8192, supports_grammar=True)
        """
        models = doc.get("data") if isinstance(doc, dict) else None
        first = models[0] if isinstance(models, list) and models else {}
        first = first if isinstance(first, dict) else {}
        model = first.get("id")
        return BackendInfo(
            model_id=model if isinstance(model, str) else None,
            max_total_tokens=as_int(first.get("max_model_len")),
            supports_grammar=True,
        )

    def fields(self, params: GenerationParams) -> dict[str, Any]:
        """The engine's own fields after the sampling ones (none by default)."""
        return {}

    def request_body(
        self,
        prompt: str,
        params: GenerationParams,
        *,
        stream: bool,
        model: str | None,
        constraint: Mapping[str, Any],
    ) -> dict[str, Any]:
        """``prompt``, ``max_tokens``, the sampling fields, the constraint, ``stream``."""
        body: dict[str, Any] = {} if model is None else {"model": model}
        body.update(prompt=prompt, max_tokens=params.max_new_tokens)
        body.update(
            sampling(params, repetition=self.repetition_field, marker_stops=not self.takes_stop_ids)
        )
        if params.seed is not None:
            body["seed"] = params.seed
        body.update(self.fields(params))
        body.update(constraint)
        body["stream"] = stream
        return body

    repetition_field: str = "repeat_penalty"
    """The engine's name for the repetition penalty."""
    takes_stop_ids: bool = False
    """Whether the engine takes ``stop_token_ids`` (else the end markers go as stop strings)."""

    def answer(self, doc: Mapping[str, Any]) -> Piece:
        """``choices[0].text``, its finish reason and ``usage``."""
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise NotThisEngineError("without choices")
        text = choices[0].get("text")
        if not isinstance(text, str):
            raise NotThisEngineError("a choice without text")
        return Piece(text, openai_finish(choices[0]), _usage(doc) or (None, None))

    def stream_piece(self, doc: Mapping[str, Any]) -> Piece:
        """One chunk: its choice's text and finish reason, or (vLLM) the usage chunk."""
        counts = _usage(doc)
        choices = doc.get("choices")
        if not isinstance(choices, list):
            raise NotThisEngineError("a stream event without choices")
        if not choices:  # vLLM's usage chunk
            return Piece("", counts=counts)
        choice = choices[0]
        text = choice.get("text") if isinstance(choice, dict) else None
        if not isinstance(text, str) or not isinstance(choice, dict):
            raise NotThisEngineError("a choice without text")
        return Piece(text, openai_finish(choice), counts)
