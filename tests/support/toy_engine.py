"""A made-up engine, "toy", in one file: what a new raw-completion engine takes.

Its wire (served by `test_engine_registry`'s loopback server): ``POST /toy/run`` with
``{"input", "limit", "stream"}`` answers ``{"output", "why", "used": [prompt, generated]}``,
or streams ``data: {"delta": ..., "why": ...}`` events, the one with ``why`` last; ``GET
/toy/about`` is its info and its probe (``{"toy": true, "window": n, "model": id}``);
``POST /toy/count`` counts ``{"input"}``'s tokens as ``{"n": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_k2.backends._base import BackendInfo, GenerationParams, Grammar
from langchain_k2.backends._engines import GBNF, EngineHooks, NotThisEngineError, Piece

_WHY = {"eos": "eos_token", "stop": "stop_sequence", "limit": "length"}


@dataclass(frozen=True, kw_only=True)
class Toy(EngineHooks):
    """The toy engine's hooks."""

    def identify(self, route: str, doc: Mapping[str, Any]) -> bool:
        return doc.get("toy") is True

    def info(self, doc: Any) -> BackendInfo:
        return BackendInfo(
            model_id=doc.get("model"), max_total_tokens=doc.get("window"), supports_grammar=True
        )

    def tokenize_body(self, text: str) -> dict[str, Any]:
        return {"input": text}

    def token_count(self, doc: Any) -> int | None:
        return doc.get("n") if isinstance(doc, dict) else None

    def constraint(self, grammar: Grammar, gbnf: GBNF | None) -> dict[str, Any]:
        if grammar.kind != "json":
            raise self.refuse(grammar)
        return {"shape": grammar.value}

    def request_body(
        self,
        prompt: str,
        params: GenerationParams,
        *,
        stream: bool,
        model: str | None,
        constraint: Mapping[str, Any],
    ) -> dict[str, Any]:
        return {
            "input": prompt,
            "limit": params.max_new_tokens,
            "stream": stream,
            "model": model,
            **constraint,
        }

    def answer(self, doc: Mapping[str, Any]) -> Piece:
        if not isinstance(doc.get("output"), str):
            raise NotThisEngineError("without output")
        used = doc.get("used") or [None, None]
        return Piece(doc["output"], _WHY.get(str(doc.get("why"))), (used[0], used[1]))

    def stream_piece(self, doc: Mapping[str, Any]) -> Piece:
        if not isinstance(doc.get("delta"), str):
            raise NotThisEngineError("an event without delta")
        why = doc.get("why")
        if why is None:
            return Piece(doc["delta"])
        used = doc.get("used") or [None, None]
        return Piece(doc["delta"], _WHY.get(str(why)), (used[0], used[1]), last=True)


HOOKS = Toy(
    name="toy",
    label="Toy",
    generate_route="/toy/run",
    info_route="/toy/about",
    tokenize_route="/toy/count",
    context_setting="toy --window",
    probes=("/toy/about",),
    probe_rank=60,
    sends_model=True,
)
