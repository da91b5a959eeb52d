"""The OpenAI-style options of ``bind_tools``: checked at bind time, applied at turn setup.

In: ``parallel_tool_calls``, ``strict`` and ``response_format`` as LangChain passes them
(``create_agent``'s ``ProviderStrategy`` sends ``response_format={"type": "json_schema",
"json_schema": {"name", "schema", "strict"}}``). Out: the call options to bind (checked
once, so a bad value fails at ``bind_tools``, naming the keyword), and at turn setup the
system-prompt instruction and grammar they ask for.

- ``strict=True`` is what ChatK2 already does: forced calls and repairs are decoded under
  a grammar built from the tools' schemas, and every call is validated against them.
  ``strict=False`` sends no grammar for those calls (validation stays).
- ``parallel_tool_calls=False``: the system prompt asks for one call per turn, and
  `langchain_k2._turn.Turn` keeps the first call if the model makes more, reporting the
  rest in ``response_metadata["dropped_tool_calls"]``.
- ``response_format``: the answer is a JSON object (satisfying the schema, if given).
  Without tools offered, decoding is constrained by the JSON-schema grammar; with tools,
  a grammar would forbid calling them, so the instruction alone steers the final answer.

Example:
    >>> options = bind_options(parallel_tool_calls=False, strict=None, response_format=None)
    >>> options
    {'parallel_tool_calls': False}
    >>> bind_options(parallel_tool_calls="no", strict=None, response_format=None)
    Traceback (most recent call last):
    ...
    langchain_k2.errors.K2ConfigError: bind_tools(parallel_tool_calls='no'): pass True, \
False or None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, TypedDict

from langchain_core.messages import BaseMessage

from langchain_k2._model_text import ONE_CALL, response_format_answer
from langchain_k2._structured import schema_name_and_json, with_instruction
from langchain_k2.backends._base import GenerationParams, Grammar, json_grammar
from langchain_k2.errors import K2ConfigError

__all__ = [
    "ResponseFormat",
    "apply_bound_options",
    "bind_options",
    "checked_flag",
    "response_format_of",
    "response_grammar",
]


class ResponseFormat(TypedDict):
    """A bound ``response_format``, normalized: its name and JSON schema (``None``: any object)."""

    name: str
    schema: dict[str, Any] | None


def checked_flag(name: str, value: Any) -> bool | None:
    """``value`` of the flag ``name`` (``True``, ``False`` or ``None``).

    Raises:
        K2ConfigError: another value; the message names the keyword.
    """
    if value is None or isinstance(value, bool):
        return value
    raise K2ConfigError(f"bind_tools({name}={value!r}): pass True, False or None.")


def _response_format(value: Any) -> ResponseFormat:
    """``{"name": str, "schema": dict | None}`` for what ``response_format`` may be."""
    bad = K2ConfigError(
        f"bind_tools(response_format={value!r:.120}) is not understood: pass a pydantic class, "
        'a TypedDict, a JSON-schema dict with a "title", {"type": "json_schema", '
        '"json_schema": {"name": ..., "schema": {...}}} or {"type": "json_object"}.'
    )
    if isinstance(value, Mapping) and value.get("type") == "json_object":
        return {"name": "json", "schema": None}
    if isinstance(value, Mapping) and value.get("type") == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
            raise bad
        schema = dict(spec["schema"])
        if schema.get("type", "object") != "object":
            raise K2ConfigError(
                "bind_tools(response_format=...): the schema must describe a JSON object "
                f"(type 'object'), got type {schema.get('type')!r}."
            )
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        return {"name": str(spec.get("name") or "response"), "schema": schema}
    try:
        name, schema = schema_name_and_json(value)
    except K2ConfigError:
        raise bad from None
    return {"name": name, "schema": schema}


def response_format_of(value: Any) -> ResponseFormat | None:
    """A bound ``response_format`` normalized (as `bind_options` binds it); ``None``: none.

    Raises:
        K2ConfigError: a value that is not understood; the message shows the shapes taken.
    """
    if value is None:
        return None
    if isinstance(value, Mapping) and set(value) == {"name", "schema"}:  # normalized already
        return ResponseFormat(name=value["name"], schema=value["schema"])
    return _response_format(value)


def bind_options(*, parallel_tool_calls: Any, strict: Any, response_format: Any) -> dict[str, Any]:
    """The call options to bind for these keywords (``None`` ones are left out).

    Raises:
        K2ConfigError: a value of the wrong kind; the message names the keyword.
    """
    options: dict[str, Any] = {}
    parallel = checked_flag("parallel_tool_calls", parallel_tool_calls)
    if parallel is not None:
        options["parallel_tool_calls"] = parallel
    if checked_flag("strict", strict) is False:
        options["tool_grammar"] = False
    if response_format is not None:
        options["response_format"] = _response_format(response_format)
    return options


def response_grammar(response_format: ResponseFormat) -> Grammar:
    """The grammar constraining the answer to ``response_format`` (no tools offered)."""
    schema = response_format.get("schema")
    if schema is None:
        return json_grammar({"type": "object", "properties": {}, "additionalProperties": True})
    return json_grammar(dict(schema))


def apply_bound_options(
    messages: Sequence[BaseMessage],
    params: GenerationParams,
    *,
    parallel_tool_calls: bool | None,
    response_format: ResponseFormat | None,
    tools_offered: bool,
) -> tuple[list[BaseMessage], GenerationParams, bool]:
    """Apply the bound options (`langchain_k2._call_options.CallOptions`) at turn setup.

    Returns the messages (instructions added to the system prompt), the parameters (with
    the response grammar when no tools are offered) and whether only one call is kept.
    """
    one_call = tools_offered and parallel_tool_calls is False
    instructions = [ONE_CALL] if one_call else []  # the sentences: langchain_k2._model_text
    if response_format is not None:
        schema = response_format.get("schema")
        instructions.append(response_format_answer(schema, tools_offered=tools_offered))
        if not tools_offered and params.grammar is None:
            params = replace(params, grammar=response_grammar(response_format))
    return with_instruction(messages, " ".join(instructions)), params, one_call
