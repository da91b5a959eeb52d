"""Structured output: schemas in, grammars, instructions and validating parsers out.

In: a pydantic class, TypedDict or JSON-schema dict, and a method (``json_schema``,
``function_calling``, ``json_mode``). Out: the pieces ``ChatK2.with_structured_output``
assembles: the JSON schema, the TGI-shaped grammar, an instruction for the system
prompt, and a parser from ``AIMessage`` to the validated value. Nothing here talks to a
backend; a retry loop re-asks the model when validation fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ValidationError

from langchain_k2.backends.base import json_grammar
from langchain_k2.errors import K2ConfigError
from langchain_k2.tool_calls import strip_fences

METHODS: tuple[str, ...] = ("json_schema", "function_calling", "json_mode")

JSON_MODE_GRAMMAR: dict[str, Any] = json_grammar(
    {"type": "object", "properties": {}, "additionalProperties": True}
)
"""Any JSON object (TGI requires a top-level ``properties`` key in every JSON grammar)."""


@dataclass(frozen=True)
class StructuredSpec:
    """What one ``with_structured_output`` call needs.

    Attributes:
        name: the schema's name (the tool name for ``function_calling``).
        json_schema: the JSON schema the output must satisfy (``None``: any object).
        grammar: TGI-shaped grammar constraining decoding, or ``None``.
        instruction: text appended to the system prompt.
        parse: ``AIMessage`` -> value; raises ``OutputParserException`` when invalid.
    """

    name: str
    json_schema: dict[str, Any] | None
    grammar: dict[str, Any] | None
    instruction: str | None
    parse: Callable[[AIMessage], Any]


def schema_name_and_json(schema: Any) -> tuple[str, dict[str, Any]]:
    """The name and JSON schema of a pydantic class, TypedDict or JSON-schema dict."""
    try:
        function = convert_to_openai_tool(schema)["function"]
        json_schema = convert_to_json_schema(schema)
    except (TypeError, ValueError, KeyError) as exc:
        raise K2ConfigError(
            f"Cannot use {schema!r:.80} as a structured-output schema: pass a pydantic class, "
            f"a TypedDict or a JSON-schema dict with a 'title'. ({exc})"
        ) from exc
    json_schema = {k: v for k, v in json_schema.items() if k not in {"title", "description"}}
    json_schema.setdefault("type", "object")
    json_schema.setdefault("properties", {})
    return str(function["name"]), json_schema


def _validator(schema: Any, json_schema: dict[str, Any] | None) -> Callable[[Any], Any]:
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        model = cast("type[BaseModel]", schema)
        if hasattr(model, "model_validate"):
            return model.model_validate
        return cast("Callable[[Any], Any]", model.parse_obj)  # pydantic.v1 models
    if json_schema is None:
        return lambda value: value
    import jsonschema

    def validate(value: Any) -> Any:
        jsonschema.validate(value, json_schema)
        return value

    return validate


def _json_of(message: AIMessage) -> Any:
    text = message.content if isinstance(message.content, str) else message.text
    body = strip_fences(text)
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise OutputParserException(
            f"Expected a JSON object, got {text!r:.200}: {exc}", llm_output=text
        ) from exc


def build_spec(schema: Any, method: str, *, constrain: bool = True) -> StructuredSpec:
    """Assemble grammar, instruction and parser for ``schema`` and ``method``.

    ``constrain=False`` leaves decoding free (no grammar): instructions and validation only.
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
        return checked(_json_of(message), str(message.content))

    if json_schema is None:
        instruction = "Respond with a single JSON object and nothing else."
        grammar: dict[str, Any] | None = JSON_MODE_GRAMMAR
    else:
        instruction = (
            "Respond with a single JSON object and nothing else. It must satisfy this JSON "
            f"schema: {json.dumps(json_schema)}"
        )
        grammar = json_grammar(json_schema) if method == "json_schema" else JSON_MODE_GRAMMAR
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


def raw_result(raw: AIMessage, parsed: Any, error: BaseException | None) -> Mapping[str, Any]:
    """The ``include_raw=True`` shape LangChain users expect."""
    return {"raw": raw, "parsed": parsed, "parsing_error": error}


def _repairs(raw: AIMessage) -> int:
    """Tool-call repairs the model made inside the request that produced ``raw``."""
    count = raw.response_metadata.get("tool_call_retries", 0)
    return count if isinstance(count, int) else 0


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
    again. Those re-asks and the repairs of a malformed tool call inside a request share
    one budget of ``retries`` (passed to ``bound`` as ``max_tool_call_retries``, what is
    left of it), so one call sends at most ``retries + 1`` generation requests. The raw
    message records the re-asks in ``response_metadata["structured_output_retries"]``.
    """

    def finish(raw: AIMessage, attempt: int, parsed: Any, error: Exception | None) -> Any:
        raw.response_metadata["structured_output_retries"] = attempt
        if include_raw:
            return raw_result(raw, parsed, error)
        if error is not None:
            raise error
        return parsed

    def settle(raw: AIMessage, attempt: int, last: bool) -> tuple[bool, Any]:
        try:
            return True, finish(raw, attempt, spec.parse(raw), None)
        except OutputParserException as exc:
            if last:
                return True, finish(raw, attempt, None, exc)
            return False, None

    def run(value: Any, config: RunnableConfig, **options: Any) -> Any:
        messages = with_instruction(to_messages(value), spec.instruction)
        left, attempt = retries, 0
        while True:
            raw = bound.invoke(messages, config, **{**options, "max_tool_call_retries": left})
            left -= _repairs(raw)
            done, result = settle(raw, attempt, last=left < 1)
            if done:
                return result
            left, attempt = left - 1, attempt + 1

    async def arun(value: Any, config: RunnableConfig, **options: Any) -> Any:
        messages = with_instruction(to_messages(value), spec.instruction)
        left, attempt = retries, 0
        while True:
            options = {**options, "max_tool_call_retries": left}
            raw = await bound.ainvoke(messages, config, **options)
            left -= _repairs(raw)
            done, result = settle(raw, attempt, last=left < 1)
            if done:
                return result
            left, attempt = left - 1, attempt + 1

    return RunnableLambda(run, afunc=arun, name="ChatK2StructuredOutput")
