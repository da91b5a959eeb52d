"""text-generation-inference (TGI): its ``/`` route, with token details.

In: a prompt, `GenerationParams`, a `Grammar`; TGI's answers. Out: the request body
(`langchain_k2.backends._tgi_wire`'s), and events rebuilt from the token texts TGI reports
(special tokens keep theirs), through `tgi_wire`'s decoders.

TGI is driven by its own backend (`langchain_k2.backends._tgi`, ``wire="tgi"``): its
answers carry per-token details rather than text. ``GET /info`` has the limits and the
model id; ``POST /tokenize`` lists the tokens. A constraint is TGI's ``grammar`` object
(JSON schema or regex). A probe recognises TGI by ``/info``'s ``model_id`` with its limits
or its router's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import langchain_k2.backends._tgi_wire as tgi_wire
from langchain_k2.backends._base import BackendInfo, GenerationEvent, GenerationParams, Grammar
from langchain_k2.backends._engines._base import EngineHooks, as_int
from langchain_k2.backends._gbnf import GBNF

__all__ = ["HOOKS", "TGI"]


@dataclass(frozen=True, kw_only=True)
class TGI(EngineHooks):
    """TGI's hooks.

    Example:
        >>> HOOKS.identify("/info", {"model_id": "LLM360/K2-Chat", "max_total_tokens": 4096})
        True
        >>> HOOKS.constraint(Grammar("json", {"type": "object"}), None)
        {'grammar': {'type': 'json', 'value': {'type': 'object'}}}
    """

    def identify(self, route: str, doc: Mapping[str, Any]) -> bool:
        """``model_id`` with ``max_total_tokens`` or TGI's router's name."""
        return "model_id" in doc and (
            "max_total_tokens" in doc or doc.get("router") == "text-generation-router"
        )

    def info(self, doc: Any) -> BackendInfo:
        """The model id and TGI's limits (grammar support unknown until refused)."""
        doc = doc if isinstance(doc, dict) else {}
        model = doc.get("model_id")
        return BackendInfo(
            model_id=model if isinstance(model, str) else None,
            max_stop_sequences=as_int(doc.get("max_stop_sequences")),
            max_input_tokens=as_int(doc.get("max_input_tokens")),
            max_total_tokens=as_int(doc.get("max_total_tokens")),
            supports_grammar=None,
        )

    def tokenize_body(self, text: str) -> dict[str, Any]:
        """``{"inputs": text}``."""
        return {"inputs": text}

    def token_count(self, doc: Any) -> int | None:
        """How many tokens ``/tokenize`` listed."""
        return len(doc) if isinstance(doc, list) else None

    def constraint(self, grammar: Grammar, gbnf: GBNF | None) -> dict[str, Any]:
        """TGI's ``grammar`` object, inside ``parameters``.

        A constraint after the reasoning is not sent: TGI's grammar is one JSON schema or
        one regex for the whole output, neither of which can leave a thought free before
        the schema. The output is validated after generation instead.
        """
        if grammar.kind == "thought":
            return {}
        return {"grammar": grammar.tgi()}

    def request_body(
        self,
        prompt: str,
        params: GenerationParams,
        *,
        stream: bool,
        model: str | None,
        constraint: Mapping[str, Any],
    ) -> dict[str, Any]:
        """``inputs`` and ``parameters`` (details on, the constraint inside)."""
        body = tgi_wire.request_body(prompt, params.without_grammar(), stream=stream)
        body["parameters"].update(constraint)
        return body

    def answer_events(
        self, doc: Any, headers: Mapping[str, str], url: str
    ) -> list[GenerationEvent]:
        """The events of a non-streamed answer (``x-prompt-tokens`` counts the prompt)."""
        return tgi_wire.answer_events(doc, headers, url)

    def stream_decoder(self, url: str) -> tgi_wire.StreamDecoder:
        """The decoder of a streamed answer's lines."""
        return tgi_wire.StreamDecoder(url)


HOOKS = TGI(
    name="tgi",
    label=tgi_wire.SERVER.label,
    generate_route="",  # the base URL itself (a managed endpoint's URL may have a path)
    info_route="/info",
    tokenize_route="/tokenize",
    context_setting=tgi_wire.SERVER.context_setting,
    grammar_words=tgi_wire.SERVER.grammar_words,
    refuses_all_grammars=True,
    probes=("/info",),
    probe_rank=0,
    wire="tgi",
)
