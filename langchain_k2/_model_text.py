"""Every sentence ChatK2 itself writes for the model to read, in one place.

In: what a sentence is about (a JSON schema, a tool's name, why an answer failed). Out: the
exact text the prompt carries. Changing any sentence here changes prompts: what the model
reads, the golden prompts the tests pin (``tests/unit/test_model_text.py``), and the
engine's prefix cache (a system prompt that changes is a new prefix for every request).

What is here:

- `ONE_CALL`: added to the system prompt under ``bind_tools(parallel_tool_calls=False)``
  when tools are offered (`langchain_k2._bind_options`).
- `json_answer`: the system-prompt instruction of structured output's ``json_schema`` and
  ``json_mode`` methods (`langchain_k2._structured`): one JSON object and nothing else,
  satisfying the schema when there is one. It is sent whether or not the server takes
  the grammar too, so a server that refuses grammars still gets the instruction.
- `response_format_answer`: the system-prompt instruction of a bound ``response_format``
  (``create_agent``'s ``ProviderStrategy``): the same sentence, prefixed with "When you
  answer without calling a function," when tools are offered (`langchain_k2._bind_options`).
- `call_reask`: the tool result a structured-output re-ask answers a failed call of the
  schema's tool with (``function_calling``), as ``create_agent``'s ``ToolStrategy`` does.
- `answer_reask`: the user turn a structured-output re-ask answers any other failed answer
  with (`langchain_k2._structured.feedback`).

What is not: the model cards' own fixed prompts (K2-Chat's function-calling prompt,
K2-V2's and K2-V3's tools sections and call instructions) are the format's data and stay
with their format (`langchain_k2.formats`); a repair by continuation
(`langchain_k2._repair`) adds no sentence, only the call's open tag. Error messages
(a parser's, a validator's, an invalid tool call's) are written for the user; a re-ask
quotes them as its ``reason``, but they stay with the code that raises them.

Example:
    >>> json_answer({"type": "object"})
    'Respond with a single JSON object and nothing else. It must satisfy this JSON schema: \
{"type": "object"}'
    >>> response_format_answer(None, tools_offered=True)
    'When you answer without calling a function, respond with a single JSON object and \
nothing else.'
    >>> print(answer_reask("Expected a JSON object"))
    That answer cannot be used: Expected a JSON object
    Answer again with a single JSON object and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ONE_CALL", "answer_reask", "call_reask", "json_answer", "response_format_answer"]

ONE_CALL = "Call at most one function per turn."
"""The system-prompt sentence of ``parallel_tool_calls=False`` (tools offered)."""

_JSON_ONLY = "respond with a single JSON object and nothing else."
_SCHEMA = " It must satisfy this JSON schema: {schema}"
_NO_CALL = "When you answer without calling a function, "
_CALL_REASK = "Error: {reason}\nCall {name} again with corrected arguments."
_ANSWER_REASK = (
    "That answer cannot be used: {reason}\nAnswer again with a single JSON object and nothing else."
)


def _json_only(schema: Mapping[str, Any] | None) -> str:
    """The JSON-only sentence (lower-case start), with the schema when there is one."""
    if schema is None:
        return _JSON_ONLY
    return _JSON_ONLY + _SCHEMA.format(schema=json.dumps(schema))


def json_answer(schema: Mapping[str, Any] | None) -> str:
    """Structured output's instruction: one JSON object (satisfying ``schema`` if given).

    >>> json_answer(None)
    'Respond with a single JSON object and nothing else.'
    """
    text = _json_only(schema)
    return text[0].upper() + text[1:]


def response_format_answer(schema: Mapping[str, Any] | None, *, tools_offered: bool) -> str:
    """A bound ``response_format``'s instruction; with tools offered, for the final answer.

    >>> response_format_answer({"type": "object"}, tools_offered=False)
    'Respond with a single JSON object and nothing else. It must satisfy this JSON schema: \
{"type": "object"}'
    """
    return _NO_CALL + _json_only(schema) if tools_offered else json_answer(schema)


def call_reask(reason: str, name: str) -> str:
    """The tool result answering a failed call of the schema's tool ``name``.

    >>> print(call_reask("age: must be >= 0", "Person"))
    Error: age: must be >= 0
    Call Person again with corrected arguments.
    """
    return _CALL_REASK.format(reason=reason, name=name)


def answer_reask(reason: str) -> str:
    """The user turn answering a failed structured answer (``reason``: why it failed)."""
    return _ANSWER_REASK.format(reason=reason)
