"""One GBNF builder for every llama.cpp flavour that takes GBNF from the client.

In: a `Grammar` (JSON schema, regex or GBNF) and, optionally, a JSON-schema-to-GBNF
converter. Out: GBNF text, or a K2 error naming the schema and the fix.

The in-process llama.cpp backend and llama-cpp-python's server both build their grammars
here, so both get the converter workarounds of `llamacpp_compat` (JSON's own string
characters; the stock any-object grammar for JSON mode), and both report a schema the
converter cannot take the same way. llama-server converts JSON schemas itself and takes
GBNF as given (its hooks). A ``thought`` grammar (reasoning first) becomes one GBNF
grammar: the reasoning automaton of `langchain_k2.backends._thought`, then the part.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_k2._schema_support import grammar_schema, warn_dropped
from langchain_k2.backends._base import Grammar
from langchain_k2.backends._llamacpp_compat import schema_to_gbnf
from langchain_k2.errors import K2ConfigError, K2GrammarUnsupportedError, K2ValidationError

__all__ = ["GBNF", "default_converter", "grammar_gbnf", "schema_label"]

GBNF = Callable[[str], str]
"""A JSON-schema-text to GBNF converter."""


def default_converter() -> GBNF:
    """llama-cpp-python's converter with the `llamacpp_compat` workarounds, imported now.

    Raises:
        K2ConfigError: llama-cpp-python is not installed.
    """
    try:
        import llama_cpp
        import llama_cpp.llama_grammar  # what schema_to_gbnf reads
    except ImportError as exc:
        raise K2ConfigError(
            "A JSON schema is converted to a GBNF grammar on the client (llama-cpp-python's "
            "server takes constraints only as GBNF) with llama-cpp-python's "
            "json_schema_to_gbnf: pip install 'langchain-k2[local]' (or llama-cpp-python) "
            "in this process."
        ) from exc

    def convert(schema_text: str) -> str:
        return schema_to_gbnf(llama_cpp, schema_text)

    return convert


def schema_label(schema: Any) -> str:
    """How a message names a schema: its tools (a call grammar), its title, or its start.

    Example:
        >>> schema_label({"properties": {"name": {"const": "get_weather"}}})
        "the call of tool 'get_weather'"
        >>> schema_label({"properties": {"name": {"enum": ["a", "b"]}}})
        "the calls of tools 'a', 'b'"
        >>> schema_label({"title": "Answer", "type": "object"})
        "the schema 'Answer'"
    """
    if isinstance(schema, dict):
        name = schema.get("properties", {}).get("name")
        if isinstance(name, dict) and isinstance(name.get("const"), str):
            return f"the call of tool {name['const']!r}"
        if isinstance(name, dict) and isinstance(name.get("enum"), list):
            return "the calls of tools " + ", ".join(repr(n) for n in name["enum"])
        if isinstance(schema.get("title"), str):
            return f"the schema {schema['title']!r}"
    return f"the schema {json.dumps(schema, default=str)[:120]}"


def grammar_gbnf(grammar: Grammar, convert: GBNF | None = None, *, label: str) -> str:
    """GBNF text for ``grammar``, for llama.cpp flavour ``label`` (named in errors).

    Example:
        >>> grammar_gbnf(Grammar("gbnf", 'root ::= "a"'), label="llama.cpp")
        'root ::= "a"'
        >>> grammar_gbnf(Grammar("json", {"title": "T"}), lambda s: 1 / 0, label="llama.cpp")
        Traceback (most recent call last):
        ...
        langchain_k2.errors.K2ValidationError: llama.cpp: llama-cpp-python's \
JSON-schema-to-GBNF converter cannot turn the schema 'T' into a grammar (ZeroDivisionError: \
division by zero). Simplify that schema (or fix it: an unknown $ref, an unsupported \
keyword), or constrain nothing: bind_tools(..., strict=False) or \
with_structured_output(..., strict=False) sends no grammar and validates on the client.

    Raises:
        K2GrammarUnsupportedError: a regex grammar (llama.cpp has none).
        K2ValidationError: the converter cannot take the schema (the message names it).
    """
    if grammar.kind == "gbnf":
        return str(grammar.value)
    if grammar.kind == "thought":  # free reasoning, then the constrained part
        from langchain_k2.backends._thought import thought_gbnf

        return thought_gbnf(grammar.value, lambda then: grammar_gbnf(then, convert, label=label))
    if grammar.kind == "regex":
        raise K2GrammarUnsupportedError(
            f"{label} has no regex grammar: constrain the output with a JSON schema "
            '({"type": "json", "value": <schema>}) or use TGI, vLLM or SGLang.',
            error_type="validation",
        )
    text = grammar.schema_text()
    if isinstance(grammar.value, dict):  # the last guard: ChatK2's turns send it fitted
        fitted = grammar_schema(grammar.value, "llama-cpp-python")
        warn_dropped(schema_label(grammar.value), "llama-cpp-python", fitted.dropped)
        text = Grammar("json", fitted.schema).schema_text()
    converter = convert or default_converter()
    try:
        return converter(text)
    except Exception as exc:  # the converter raises bare Exception/ValueError/KeyError
        raise K2ValidationError(
            f"{label}: llama-cpp-python's JSON-schema-to-GBNF converter cannot turn "
            f"{schema_label(grammar.value)} into a grammar ({type(exc).__name__}: {exc}). "
            "Simplify that schema (or fix it: an unknown $ref, an unsupported keyword), or "
            "constrain nothing: bind_tools(..., strict=False) or "
            "with_structured_output(..., strict=False) sends no grammar and validates on "
            "the client.",
            error_type="validation",
        ) from exc
