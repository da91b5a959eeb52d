"""The one small protocol every backend implements, and the values that cross it.

In: a prompt string and `GenerationParams` (its constraint a typed `Grammar`: a JSON
schema, a regex or GBNF, built by `Grammar.of` / `json_grammar`). Out: a stream of
`TokenEvent` (one per generated token, special tokens included with their text)
ending with one `FinalEvent` (finish reason, token counts, seed).

Backends know nothing of messages, tools or LangChain; ``ChatK2`` knows nothing of
wire formats. Non-streamed calls consume the same events (asking with ``live=False``,
which lets a backend fetch the answer whole and join runs of ordinary tokens into one
event), so there is one path from a backend event to a message chunk.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from langchain_k2.errors import K2ConfigError, K2ValidationError

GrammarKind = Literal["json", "regex", "gbnf", "thought"]
"""What a `Grammar` holds: a JSON schema, a regular expression, a GBNF grammar's text, or
(``thought``) a `langchain_k2.backends._thought.ThoughtFirst`: free reasoning up to the
effort's close tag, then a JSON-schema or GBNF constraint (issue 21 item 4)."""

_GRAMMAR_SHAPES = (
    '{"type": "json", "value": <JSON schema>}, {"type": "regex", "value": <pattern>} or '
    '{"type": "gbnf", "value": <GBNF text>}'
)


@dataclass(frozen=True)
class Grammar:
    """A decoding constraint: a JSON schema, a regular expression, or a GBNF grammar.

    Built in one place (`Grammar.of`, `json_grammar`); every engine's hooks read it and
    send it the way that engine takes it (TGI's ``grammar``, vLLM's ``structured_outputs``,
    SGLang's ``json_schema``, GBNF for the llama.cpp flavours).

    Example:
        >>> Grammar.of({"type": "json", "value": {"type": "object", "properties": {}}})
        Grammar(kind='json', value={'type': 'object', 'properties': {}})
        >>> Grammar.of({"type": "regex", "value": "[0-9]+"}).tgi()
        {'type': 'regex', 'value': '[0-9]+'}
    """

    kind: GrammarKind
    value: Any
    """The JSON schema (a dict, or a bool) for ``json``; the text for ``regex`` and ``gbnf``;
    a ``ThoughtFirst`` for ``thought``."""

    @classmethod
    def of(cls, given: Grammar | Mapping[str, Any] | None) -> Grammar | None:
        """The grammar a caller passed as ``grammar=`` (TGI's dict shape, or a `Grammar`).

        ``{"type": "json_schema", "value": {"schema": ...}}`` (OpenAI's wrapper) and a
        schema given as JSON text are taken too.

        Raises:
            K2ConfigError: another shape; the message shows the accepted ones.
        """
        if given is None or isinstance(given, Grammar):
            return given
        kind = given.get("type") if isinstance(given, Mapping) else None
        value = given.get("value") if isinstance(given, Mapping) else None
        if kind == "json_schema" and isinstance(value, Mapping):
            kind, value = "json", value.get("schema")
        if kind == "json" and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                message = f"grammar= holds a JSON schema that is not JSON: {exc}"
                raise K2ConfigError(message) from exc
        if kind == "json" and isinstance(value, Mapping | bool):
            return cls("json", dict(value) if isinstance(value, Mapping) else value)
        if kind in {"regex", "gbnf"} and isinstance(value, str):
            return cls(kind, value)
        raise K2ConfigError(f"grammar={given!r:.160} is not understood: pass {_GRAMMAR_SHAPES}.")

    def schema_text(self) -> str:
        """The JSON schema as JSON text (``json`` grammars).

        Raises:
            K2ValidationError: the schema cannot be written as JSON.
        """
        try:
            return json.dumps(self.value)
        except (TypeError, ValueError) as exc:
            raise K2ValidationError(
                f"grammar JSON schema is not JSON-serializable: {exc}", error_type="validation"
            ) from exc

    def as_option(self) -> dict[str, Any]:
        """The ``grammar=`` call option that `Grammar.of` reads back (plain JSON data).

        >>> Grammar("gbnf", 'root ::= "a"').as_option()
        {'type': 'gbnf', 'value': 'root ::= "a"'}
        """
        if self.kind == "thought":
            return {"type": self.kind, "value": self.value.as_json()}
        return {"type": self.kind, "value": self.value}

    def tgi(self) -> dict[str, Any]:
        """TGI's ``grammar`` object (``json`` or ``regex``; TGI takes no GBNF)."""
        if self.kind in {"gbnf", "thought"}:
            raise K2ConfigError(
                "TGI takes no GBNF grammar: pass a JSON schema or a regex as grammar=."
            )
        return self.as_option()


def json_grammar(schema: Mapping[str, Any] | bool) -> Grammar:
    """The grammar constraining output to ``schema`` (the one builder of JSON grammars).

    Example:
        >>> json_grammar({"type": "object", "properties": {}})
        Grammar(kind='json', value={'type': 'object', 'properties': {}})
    """
    return Grammar("json", dict(schema) if isinstance(schema, Mapping) else schema)


@dataclass(frozen=True)
class GenerationParams:
    """Sampling and decoding parameters of one generation request.

    ``temperature == 0`` means greedy decoding; ``None`` means the backend's default.
    ``grammar`` is a `Grammar` (built by `Grammar.of` or `json_grammar`).

    The prompt format's end-of-turn facts travel here too (spec k2-family section 5-6):
    ``stop_token_ids`` go to the engines that take ids (vLLM, SGLang, the in-process
    backend); ``stop_markers`` are the same ends as text, sent as stop strings by the
    engines that take no ids (llama-server, llama-cpp-python's server; TGI gets them
    within its ``max_stop_sequences`` through ``stop``); ``bos_in_prompt`` says the
    prompt text already starts with the BOS, so an engine that can be told not to add
    one is told (vLLM ``add_special_tokens: false``; the in-process backend).
    """

    max_new_tokens: int = 1024
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    grammar: Grammar | None = None
    stop_token_ids: tuple[int, ...] = ()
    stop_markers: tuple[str, ...] = ()
    bos_in_prompt: bool = False

    def __post_init__(self) -> None:
        # A grammar given in TGI's dict shape becomes a `Grammar` (the one builder).
        if self.grammar is not None and not isinstance(self.grammar, Grammar):
            object.__setattr__(self, "grammar", Grammar.of(self.grammar))

    def without_grammar(self) -> GenerationParams:
        """The same parameters with no grammar constraint."""
        return replace(self, grammar=None)


@dataclass(frozen=True)
class TokenEvent:
    """One generated token: its text (special tokens keep theirs) and whether it is special.

    ``tokens`` is how many generated tokens the text holds: more than one only when a
    backend joins a run of ordinary tokens (``live=False``), so usage counts stay exact.
    """

    text: str
    special: bool = False
    tokens: int = field(default=1, repr=False, compare=False)


@dataclass(frozen=True)
class FinalEvent:
    """The end of a generation: why it stopped and what it cost.

    ``finish_reason`` uses TGI's words: ``eos_token``, ``stop_sequence`` or ``length``.
    """

    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    seed: int | None = None


GenerationEvent = TokenEvent | FinalEvent


@dataclass(frozen=True)
class BackendInfo:
    """What a backend can do; ``None`` where it is unknown.

    Attributes:
        model_id: the model the backend serves.
        max_stop_sequences: how many stop strings one request may carry.
        max_input_tokens: the longest prompt accepted.
        max_total_tokens: prompt plus new tokens, at most (the context window).
        supports_grammar: whether ``GenerationParams.grammar`` is honoured.
    """

    model_id: str | None = None
    max_stop_sequences: int | None = None
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    supports_grammar: bool | None = None


@runtime_checkable
class Backend(Protocol):
    """A text-generation engine ChatK2 can drive.

    ``stream`` and ``astream`` yield `TokenEvent` objects and then exactly one
    `FinalEvent`. Errors are raised as `langchain_k2.errors` exceptions.

    A backend that raises ``K2GrammarUnsupportedError`` because the server refuses every
    grammar records it: its ``info()`` says ``supports_grammar=False`` from then on, so
    later turns do not ask again.

    ``live=False`` says nobody watches the tokens go by (invoke): the backend may then
    deliver the whole answer at once, joining consecutive ordinary tokens into one
    `TokenEvent` (special tokens stay single, in place). Ignoring it is always correct.
    """

    name: str
    """The engine, reported in ``response_metadata["engine"]`` and LangSmith's ``ls_engine``
    (``"tgi"``, ``"vllm"``, ``"sglang"``, ``"llama.cpp"``, ``"llama-cpp-python"``, or
    ``"llamacpp"`` for the in-process backend)."""

    def info(self) -> BackendInfo:
        """Capabilities and limits (may do I/O once, then cached)."""
        ...

    async def ainfo(self) -> BackendInfo:
        """Async twin of `info`."""
        ...

    def stream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> Iterator[GenerationEvent]:
        """Generate from ``prompt``, token by token (``live=False``: possibly all at once)."""
        ...

    def astream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> AsyncIterator[GenerationEvent]:
        """Async twin of `stream`."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` (a rendered prompt) takes."""
        ...

    async def acount_tokens(self, text: str) -> int:
        """Async twin of `count_tokens`."""
        ...
