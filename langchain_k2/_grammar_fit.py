"""A call's own JSON-schema grammar, checked and made fit for the engine.

In: the `Grammar` a call carries (``bind(grammar=...)``, ``bind(response_format=...)`` or
``bind_tools(..., response_format=...)`` without tools offered, ``with_structured_output``'s
bound grammar) and the engine's name. Out: the grammar the engine is sent. A JSON schema
is checked against its metaschema on the client (a broken one is refused, naming the
fix, before any engine answers 400 or llama.cpp's converter fails) and simplified as tool
and output schemas are (`langchain_k2._schema_support.grammar_schema`): keywords the
engine drops or refuses taken out, ``maxLength``/``maxItems`` above the cap left out (so
no schema can make llama.cpp build a rule per repetition and crash), said once as a
`langchain_k2.K2SchemaWarning`. Regex and GBNF grammars pass as given.

Example:
    >>> import warnings
    >>> from langchain_k2.backends._base import Grammar
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     fit_grammar(Grammar("json", {"type": "string", "maxLength": 90000}), "llamacpp")
    Grammar(kind='json', value={'type': 'string'})
    >>> fit_grammar(Grammar("regex", "[0-9]+"), "vllm")
    Grammar(kind='regex', value='[0-9]+')
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from langchain_k2._schema_support import GrammarSchema, grammar_schema, warn_dropped
from langchain_k2._tool_schema import compiled_validator
from langchain_k2.backends._base import Grammar, json_grammar
from langchain_k2.errors import K2ConfigError

__all__ = ["fit_grammar"]


@functools.lru_cache(maxsize=128)
def _fitted(schema_json: str, engine: str | None) -> GrammarSchema:
    """The checked, simplified schema (cached by its JSON text: a bound grammar repeats).

    Raises:
        K2ConfigError: the schema is not a valid JSON schema.
    """
    schema = json.loads(schema_json)
    try:
        compiled_validator(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(part) for part in exc.path) or "the root"
        raise K2ConfigError(
            f"The grammar's JSON schema is not valid ({exc.message}, at {where}). Fix that "
            "part of the schema passed as grammar= or response_format=."
        ) from exc
    return grammar_schema(schema, engine)


def _label(schema: Mapping[str, Any]) -> str:
    title = schema.get("title")
    named = f" {title!r}" if isinstance(title, str) else ""
    return f"the grammar{named} (grammar= or response_format=)"


def fit_grammar(grammar: Grammar | None, engine: str | None) -> Grammar | None:
    """``grammar`` as ``engine`` takes it (see the module docstring).

    Raises:
        K2ConfigError: the JSON schema is not a valid JSON schema.
        K2ValidationError: the JSON schema cannot be written as JSON.
    """
    if grammar is None or grammar.kind != "json" or not isinstance(grammar.value, Mapping):
        return grammar
    fitted = _fitted(grammar.schema_text(), engine)  # key order kept: it orders the grammar
    warn_dropped(_label(grammar.value), engine, fitted.dropped, checked=False)
    return grammar if fitted.schema == grammar.value else json_grammar(fitted.schema)
