"""Structured output: schemas in, grammars, instructions and validating parsers out.

In: a pydantic class, TypedDict or JSON-schema dict, and a method (``json_schema``,
``function_calling``, ``json_mode``). Out: the pieces ``ChatK2.with_structured_output``
assembles: the JSON schema, the JSON `Grammar`, an instruction for the system
prompt, and a parser from ``AIMessage`` to the validated value. Nothing here talks to a
backend; a retry loop re-asks the model when validation fails, telling it why (`feedback`),
so no re-ask repeats a request byte for byte. `structured_output` binds the chat model
through `Bindable` (this module does not import ``chat_models``).

Reading JSON answers is forgiving where K2-Chat's habits are known: a markdown fence, an
answer in K2's own call form (``<tool_call>{"name": "<Schema>", "arguments": {...}}
</tool_call>``, as it answers when the server has grammars off), and, when decoding was not
constrained (``strict=False``, or the server refused the grammar), a JSON object after a
sentence of prose.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ValidationError

from langchain_k2._model_text import answer_reask, call_reask, json_answer
from langchain_k2._repair import Budget
from langchain_k2._schema_forms import DEFAULT_OUTPUT_NAME, function_from_dict
from langchain_k2._schema_support import grammar_schema, warn_dropped
from langchain_k2._tool_calls import OPEN_TAG, parse_block, strip_fences
from langchain_k2._tool_schema import compiled_validator
from langchain_k2.backends._base import Grammar, json_grammar
from langchain_k2.errors import K2ConfigError, ToolDefinitionError

METHODS: tuple[str, ...] = ("json_schema", "function_calling", "json_mode")

JSON_MODE_GRAMMAR: Grammar = json_grammar(
    {"type": "object", "properties": {}, "additionalProperties": True}
)
"""Any JSON object (TGI requires a top-level ``properties`` key in every JSON grammar)."""


@dataclass(frozen=True)
class StructuredSpec:
    """What one ``with_structured_output`` call needs.

    Attributes:
        name: the schema's name (the tool name for ``function_calling``).
        json_schema: the JSON schema the output must satisfy (``None``: any object).
        grammar: the JSON grammar constraining decoding, or ``None``.
        instruction: text appended to the system prompt.
        parse: ``AIMessage`` -> value; raises ``OutputParserException`` when invalid.
    """

    name: str
    json_schema: dict[str, Any] | None
    grammar: Grammar | None
    instruction: str | None
    parse: Callable[[AIMessage], Any]


def schema_name_and_json(schema: Any) -> tuple[str, dict[str, Any]]:
    """The name and JSON schema of a pydantic class, TypedDict or JSON-schema dict.

    A dict keeps its whole schema (a root ``anyOf``, ``$ref``, ``patternProperties``...;
    `langchain_k2._schema_forms`); one without ``title`` is named ``response_format``.

    Example:
        >>> schema_name_and_json({"type": "object", "properties": {"a": {"type": "integer"}}})
        ('response_format', {'type': 'object', 'properties': {'a': {'type': 'integer'}}})
    """
    if isinstance(schema, Mapping):
        try:
            function = function_from_dict(schema, default_name=DEFAULT_OUTPUT_NAME)
        except ToolDefinitionError as exc:
            raise K2ConfigError(f"Cannot use this schema for structured output: {exc}") from exc
        json_schema = dict(function["parameters"])
        json_schema.setdefault("type", "object")
        _check_schema(json_schema)
        return str(function["name"]), json_schema
    try:
        function = convert_to_openai_tool(schema)["function"]
        json_schema = convert_to_json_schema(schema)
    except (TypeError, ValueError, KeyError) as exc:
        raise K2ConfigError(
            f"Cannot use {schema!r:.80} as a structured-output schema: pass a pydantic class, "
            f"a TypedDict or a JSON-schema dict. ({exc})"
        ) from exc
    json_schema = {k: v for k, v in json_schema.items() if k not in {"title", "description"}}
    json_schema.setdefault("type", "object")
    json_schema.setdefault("properties", {})
    return str(function["name"]), json_schema


def _check_schema(json_schema: Mapping[str, Any]) -> Any:
    """The schema's validator; `K2ConfigError` when it is not a valid JSON schema."""
    import jsonschema

    try:
        return compiled_validator(json_schema)
    except jsonschema.exceptions.SchemaError as exc:
        hint = (
            " (answers are checked with Python's re module, which cannot compile it: "
            "rewrite the pattern, e.g. without \\p{...} classes)"
            if exc.validator == "format"
            else ""
        )
        msg = f"The structured-output schema is not valid: {exc.message}{hint}"
        raise K2ConfigError(msg) from exc
    except (TypeError, ValueError) as exc:
        raise K2ConfigError(f"The structured-output schema is not JSON: {exc}") from exc


def _validator(schema: Any, json_schema: dict[str, Any] | None) -> Callable[[Any], Any]:
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        model = cast("type[BaseModel]", schema)
        if hasattr(model, "model_validate"):
            return model.model_validate
        return cast("Callable[[Any], Any]", model.parse_obj)  # pydantic.v1 models
    if json_schema is None:
        return lambda value: value
    import jsonschema

    validator = _check_schema(json_schema)

    def validate(value: Any) -> Any:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            path = "/".join(str(p) for p in error.absolute_path)
            raise ValueError(error.message + (f" (at {path})" if path else ""))
        return value

    return validate


def _call_of(message: AIMessage, name: str) -> ToolCall | None:
    """The call answering in K2's own form: one named ``name``, else the only call.

    A block may have come back as a call (no tools were bound) or as an invalid call
    holding the raw block (calls of tools never offered are not valid calls).
    """
    calls = list(message.tool_calls)
    for bad in message.invalid_tool_calls:
        raw = bad.get("args") or ""
        if raw.startswith(OPEN_TAG):
            calls += parse_block(raw).tool_calls
    named = [call for call in calls if call["name"] == name]
    if named:
        return named[0]
    return calls[0] if len(calls) == 1 else None


def _object_after_prose(text: str) -> Any:
    """The first JSON object in ``text`` that runs to its end (prose before it), or None."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict) and not strip_fences(text[end:]).strip("`. \n"):
            return value
        start = text.find("{", start + 1)
    return None


def _json_of(message: AIMessage, name: str, *, lenient: bool) -> Any:
    text = message.content if isinstance(message.content, str) else message.text
    body = strip_fences(text)
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        call = _call_of(message, name)
        if call is not None:
            return call["args"]
        found = _object_after_prose(body) if lenient else None
        if found is not None:
            return found
        raise OutputParserException(
            f"Expected a JSON object, got {text!r:.200}: {exc}", llm_output=text
        ) from exc


def output_grammar(json_schema: Mapping[str, Any], name: str, engine: str | None) -> Grammar:
    """The grammar for an output schema: what ``engine`` enforces of it (`grammar_schema`).

    Keywords the engine would drop or refuse are taken out (said once, `K2SchemaWarning`);
    the answer is still validated against the whole schema. An object root without
    ``properties`` gets an empty one (TGI refuses a JSON grammar without it).
    """
    simplified = grammar_schema(json_schema, engine)
    warn_dropped(f"structured output {name!r}", engine, simplified.dropped)
    schema = simplified.schema
    if schema.get("type") == "object" and "properties" not in schema:
        schema = {**schema, "properties": {}}
    return json_grammar(schema)


def build_spec(
    schema: Any, method: str, *, constrain: bool = True, engine: str | None = None
) -> StructuredSpec:
    """Assemble grammar, instruction and parser for ``schema`` and ``method``.

    ``constrain=False`` leaves decoding free (no grammar): instructions and validation only.
    ``engine`` (``None``: not known) decides which keywords the grammar can carry.
    """
    if method not in METHODS:
        raise K2ConfigError(f"method={method!r} is not one of {list(METHODS)}.")
    if schema is None:
        if method != "json_mode":
            raise K2ConfigError(f"method={method!r} needs a schema; only 'json_mode' takes none.")
        name, json_schema = "json", None
    else:
        name, json_schema = schema_name_and_json(schema)
    validate = _validator(schema, json_schema)

    def checked(value: Any, raw: str) -> Any:
        try:
            return validate(value)
        except (ValidationError, ValueError, TypeError) as exc:
            raise OutputParserException(
                f"Output does not satisfy the schema {name!r}: {exc}", llm_output=raw
            ) from exc

    if method == "function_calling":

        def parse_call(message: AIMessage) -> Any:
            for call in message.tool_calls:
                if call["name"] == name:
                    return checked(call["args"], json.dumps(call["args"]))
            problems = [c.get("error") for c in message.invalid_tool_calls]
            raise OutputParserException(
                f"The model made no valid call of {name!r} (invalid calls: {problems}).",
                llm_output=str(message.content),
            )

        return StructuredSpec(name, json_schema, None, None, parse_call)  # grammar: forced call

    def parse_json(message: AIMessage) -> Any:
        # Prose before the JSON is read only where decoding was free.
        lenient = not constrain or "grammar_fallback" in message.response_metadata
        return checked(_json_of(message, name, lenient=lenient), str(message.content))

    instruction = json_answer(json_schema)
    if json_schema is None:
        grammar: Grammar | None = JSON_MODE_GRAMMAR
    else:
        grammar = (
            output_grammar(json_schema, name, engine)
            if method == "json_schema"
            else JSON_MODE_GRAMMAR
        )
    return StructuredSpec(
        name, json_schema, grammar if constrain else None, instruction, parse_json
    )


def with_instruction(messages: Sequence[BaseMessage], instruction: str | None) -> list[BaseMessage]:
    """Append ``instruction`` to the leading system message (creating one if needed)."""
    result = list(messages)
    if not instruction:
        return result
    if result and isinstance(result[0], SystemMessage):
        first = result[0]
        text = first.content if isinstance(first.content, str) else first.text
        result[0] = SystemMessage(f"{text}\n\n{instruction}")
    else:
        result.insert(0, SystemMessage(instruction))
    return result


def _reason(error: BaseException) -> str:
    """The error's message without LangChain's troubleshooting link."""
    return str(error).split("\nFor troubleshooting", 1)[0]


def feedback(raw: AIMessage, error: BaseException, name: str) -> list[BaseMessage]:
    """What a re-ask adds to the conversation: the failed answer and why it failed.

    A call of the schema's tool (``function_calling``) is answered by a tool message
    holding the error, as ``create_agent``'s ``ToolStrategy`` does; any other answer by a
    user message. The next request is then never a byte-identical copy of the last.

    Example:
        >>> [m.type for m in feedback(AIMessage("no"), ValueError("bad"), "Person")]
        ['ai', 'human']
    """
    reason = _reason(error)
    calls = [call for call in raw.tool_calls if call["name"] == name][:1]
    if calls:
        return [
            AIMessage(content=raw.text, tool_calls=calls),
            ToolMessage(
                call_reask(reason, name),
                tool_call_id=calls[0]["id"] or "",
                name=name,
                status="error",
            ),
        ]
    written = raw.text + "".join(bad.get("args") or "" for bad in raw.invalid_tool_calls)
    return [
        AIMessage(content=written),
        HumanMessage(answer_reask(reason)),
    ]


def raw_result(raw: AIMessage, parsed: Any, error: BaseException | None) -> Mapping[str, Any]:
    """The ``include_raw=True`` shape LangChain users expect."""
    return {"raw": raw, "parsed": parsed, "parsing_error": error}


def _repairs(raw: AIMessage) -> int:
    """Tool-call repairs the model made inside the request that produced ``raw``."""
    count = raw.response_metadata.get("tool_call_retries", 0)
    return count if isinstance(count, int) else 0


@dataclass
class ReAsk:
    """Structured output's repair strategy: ask again, telling the model why (`feedback`).

    The second strategy beside the turn's `langchain_k2._repair.Continuation`, drawing on the
    same `Budget`: each request may repair its calls with what is left (passed as
    ``max_tool_call_retries``), the repairs it made are spent, then a re-ask spends one.
    Feed each answer to `answer` until `done`; `outcome` is the value (or raises).
    """

    spec: StructuredSpec
    messages: list[BaseMessage]
    budget: Budget
    include_raw: bool
    attempt: int = 0
    done: bool = False
    _outcome: Any = None
    _error: Exception | None = None

    def options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The call options of the next request: the budget left for its repairs."""
        return {**options, "max_tool_call_retries": self.budget.left}

    def answer(self, raw: AIMessage) -> None:
        """Read the model's answer: done, or the conversation grows by a re-ask."""
        self.budget.spend(_repairs(raw))
        parsed, error = None, None
        try:
            parsed = self.spec.parse(raw)
        except OutputParserException as exc:
            if not self.budget.exhausted:
                self.messages = [*self.messages, *feedback(raw, exc, self.spec.name)]
                self.budget.spend(1)
                self.attempt += 1
                return
            error = exc
        raw.response_metadata["structured_output_retries"] = self.attempt
        self.done = True
        if self.include_raw:
            self._outcome = raw_result(raw, parsed, error)
        else:
            self._outcome, self._error = parsed, error

    def outcome(self) -> Any:
        """The parsed value (``include_raw``: the raw/parsed/parsing_error mapping)."""
        if self._error is not None:
            raise self._error
        return self._outcome


def structured_runnable(
    bound: Runnable[Any, AIMessage],
    to_messages: Callable[[Any], list[BaseMessage]],
    spec: StructuredSpec,
    *,
    include_raw: bool,
    retries: int,
) -> Runnable[Any, Any]:
    """The runnable ``with_structured_output`` returns.

    It adds the spec's instruction to the system prompt, calls ``bound`` (the model with
    its grammar or forced tool) and parses; output that fails validation is asked for
    again (`ReAsk`). Those re-asks and the repairs of a malformed tool call inside a request
    share one `Budget` of ``retries``, so one call sends at most ``retries + 1`` generation
    requests. The raw message records the re-asks in
    ``response_metadata["structured_output_retries"]``.
    """

    def asking(value: Any) -> ReAsk:
        messages = with_instruction(to_messages(value), spec.instruction)
        return ReAsk(spec, messages, Budget(retries), include_raw)

    def run(value: Any, config: RunnableConfig, **options: Any) -> Any:
        ask = asking(value)
        while not ask.done:
            ask.answer(bound.invoke(ask.messages, config, **ask.options(options)))
        return ask.outcome()

    async def arun(value: Any, config: RunnableConfig, **options: Any) -> Any:
        ask = asking(value)
        while not ask.done:
            ask.answer(await bound.ainvoke(ask.messages, config, **ask.options(options)))
        return ask.outcome()

    return RunnableLambda(run, afunc=arun, name="ChatK2StructuredOutput")


def input_messages(value: Any) -> list[BaseMessage]:
    """The messages a chat model's input stands for, read as ``invoke`` reads it.

    Example:
        >>> input_messages("Hi"), input_messages([("user", "Hi")])[0].type
        ([HumanMessage(content='Hi', additional_kwargs={}, response_metadata={})], 'human')
    """
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, Sequence):
        return convert_to_messages(value)
    raise ValueError(  # as BaseChatModel's own reading of its input
        f"Invalid input type {type(value)}. Must be a PromptValue, str, or list of BaseMessages."
    )


class Bindable(Protocol):
    """What `structured_output` uses of a chat model (``ChatK2`` is one)."""

    @property
    def model_path(self) -> str | None: ...
    @property
    def engine(self) -> str: ...
    @property
    def max_tool_call_retries(self) -> int: ...

    def bind(self, **kwargs: Any) -> Runnable[Any, AIMessage]:
        """The model with these call options bound."""

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str, **kwargs: Any
    ) -> Runnable[Any, AIMessage]:
        """The model with ``tools`` offered and ``tool_choice`` forced."""


def structured_output(
    model: Bindable,
    schema: dict[str, Any] | type | None,
    *,
    method: str,
    include_raw: bool,
    strict: bool | None,
    **kwargs: Any,
) -> Runnable[Any, Any]:
    """``ChatK2.with_structured_output``: ``model`` bound for ``schema``, then validated."""
    if kwargs:
        raise K2ConfigError(f"Unknown with_structured_output option(s): {sorted(kwargs)}.")
    engine = "llamacpp" if model.model_path else model.engine
    spec = build_spec(schema, method, constrain=strict is not False, engine=engine)
    # langchain-core reads this schema with its own converter, which crashes on a root
    # "type" list and drops a root anyOf: it gets the function form read here instead.
    function = (
        {"type": "function", "function": function_from_dict(schema, default_name=spec.name)}
        if isinstance(schema, Mapping)
        else None
    )
    ls_format = {"kwargs": {"method": method}, "schema": function or schema}
    if method == "function_calling":
        bound = model.bind_tools(
            [cast("Any", function or schema)],
            tool_choice=spec.name,
            ls_structured_output_format=ls_format,
            **({"tool_grammar": False} if strict is False else {}),
        )
    else:
        grammar = None if spec.grammar is None else spec.grammar.as_option()  # serializable
        bound = model.bind(grammar=grammar, ls_structured_output_format=ls_format)
    return structured_runnable(
        bound,
        input_messages,
        spec,
        include_raw=include_raw,
        retries=model.max_tool_call_retries,
    )
