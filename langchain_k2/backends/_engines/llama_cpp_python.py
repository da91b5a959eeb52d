"""llama-cpp-python's server: its OpenAI-style ``/v1/completions``, sent K2's raw prompt.

In: a prompt, `GenerationParams`, a `Grammar`, the served model's id. Out: the request
body, and the text, finish reason and usage of its answers (`OpenAICompletions`'s codec).

It takes a constraint only as a GBNF ``grammar``: a JSON schema is converted on the client
by `langchain_k2.backends._gbnf`, the same builder (with the same workarounds) as the in-
process llama.cpp backend's. It takes no stop ids: the format's end markers go as ``stop``
strings (`OpenAICompletions` does it for an engine without ``takes_stop_ids``), and the
GGUF's ``add_bos_token`` decides the BOS. ``GET /v1/models`` names the served model (no
context window: ``context_window`` sets it); ``POST /extras/tokenize`` counts tokens. A
probe recognises it by the ``/extras/tokenize`` route its ``/openapi.json`` lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_k2.backends._base import Grammar
from langchain_k2.backends._engines._base import OpenAICompletions
from langchain_k2.backends._gbnf import GBNF, grammar_gbnf

__all__ = ["HOOKS", "LlamaCppPython"]


@dataclass(frozen=True, kw_only=True)
class LlamaCppPython(OpenAICompletions):
    """llama-cpp-python's server's hooks.

    Example:
        >>> HOOKS.constraint(Grammar("gbnf", 'root ::= "yes"'), None)
        {'grammar': 'root ::= "yes"'}
        >>> HOOKS.token_count({"tokens": [1, 2, 3]})
        3
    """

    def identify(self, route: str, doc: Mapping[str, Any]) -> bool:
        """``/openapi.json`` listing ``/extras/tokenize``."""
        paths = doc.get("paths")
        return isinstance(paths, dict) and "/extras/tokenize" in paths

    def tokenize_body(self, text: str) -> dict[str, Any]:
        """``{"input": text}``."""
        return {"input": text}

    def token_count(self, doc: Any) -> int | None:
        """How many ``tokens``."""
        tokens = doc.get("tokens") if isinstance(doc, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    def constraint(self, grammar: Grammar, gbnf: GBNF | None) -> dict[str, Any]:
        """``grammar``: GBNF, converted from a JSON schema on the client."""
        if grammar.kind == "regex":
            raise self.refuse(grammar)
        return {"grammar": grammar_gbnf(grammar, gbnf, label=self.label)}


HOOKS = LlamaCppPython(
    name="llama-cpp-python",
    label="llama-cpp-python's server",
    tokenize_route="/extras/tokenize",
    context_setting="llama-cpp-python's --n_ctx",
    probes=("/openapi.json",),
    probe_rank=40,
)
