"""SGLang: its native ``/generate`` route, sent K2's raw prompt.

In: a prompt, `GenerationParams`, a `Grammar`. Out: the request body, and the text,
finish reason and counts of its answers.

The native route is used because SGLang's Model Gateway forwards it as is (the gateway
refuses ``/v1/completions`` without a ``model``); it carries no model name. Sampling goes
under ``sampling_params``, special tokens are kept, a JSON schema is sent as a JSON
*string* under ``json_schema`` and a regex under ``regex`` (a constraint after the
reasoning as an xgrammar ``structural_tag``, a JSON string too); there is no per-request seed.
The format's end-of-turn ids go as ``sampling_params.stop_token_ids``. ``/generate`` has
no per-request switch for the BOS: SGLang tokenizes ``text`` as its tokenizer does (a
K2-V3 prompt, which holds its BOS text, gets a second BOS only if the model's tokenizer
adds one; see docs/k2-v3.md).
A stream holds the whole text so far in every event (`cumulative_stream`). ``GET
/server_info`` has ``context_length`` (none behind the gateway); a count is a
``/generate`` with ``max_new_tokens: 0`` (``meta_info.prompt_tokens``). A probe recognises
SGLang, or its gateway, by its server-info keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_k2.backends._base import BackendInfo, GenerationParams, Grammar
from langchain_k2.backends._engines._base import (
    EngineHooks,
    NotThisEngineError,
    Piece,
    as_int,
    int_or_none,
    sampling,
)
from langchain_k2.backends._gbnf import GBNF
from langchain_k2.backends._thought import structural_tag_text
from langchain_k2.errors import K2ConfigError

__all__ = ["HOOKS", "SGLang"]

_SERVER_KEYS = {"context_length", "model_path", "tp_size", "tokenizer_path"}
_GATEWAY_KEYS = {"router_manager", "routers_count", "workers_count"}


def _finish(meta: Mapping[str, Any]) -> str | None:
    reason = meta.get("finish_reason")
    if not isinstance(reason, dict):
        return None
    kind, matched = reason.get("type"), reason.get("matched")
    if kind == "length":
        return "length"
    if kind == "stop":
        return "stop_sequence" if isinstance(matched, str) else "eos_token"
    return str(kind) if kind is not None else None


@dataclass(frozen=True, kw_only=True)
class SGLang(EngineHooks):
    """SGLang's hooks.

    Example:
        >>> HOOKS.stream_piece({"text": "Hel", "meta_info": {"finish_reason":
        ...     {"type": "stop", "matched": 2}, "prompt_tokens": 5, "completion_tokens": 2}})
        Piece(text='Hel', finish='eos_token', counts=(5, 2), last=False)
    """

    def identify(self, route: str, doc: Mapping[str, Any]) -> bool:
        """Server args (or the gateway's counts) at ``/server_info``; ``model_path`` else."""
        if route == "/model_info":
            return "model_path" in doc
        return bool(_SERVER_KEYS & doc.keys() or _GATEWAY_KEYS & doc.keys())

    def info(self, doc: Any) -> BackendInfo:
        """``context_length`` and ``model_path``."""
        doc = doc if isinstance(doc, dict) else {}
        model = doc.get("model_path")
        return BackendInfo(
            model_id=model if isinstance(model, str) else None,
            max_total_tokens=as_int(doc.get("context_length")),
            supports_grammar=True,
        )

    def tokenize_body(self, text: str) -> dict[str, Any]:
        """A generation of no token."""
        return {"text": text, "sampling_params": {"max_new_tokens": 0}, "stream": False}

    def token_count(self, doc: Any) -> int | None:
        """``meta_info.prompt_tokens``."""
        meta = doc.get("meta_info") if isinstance(doc, dict) else None
        return as_int(meta.get("prompt_tokens")) if isinstance(meta, dict) else None

    def constraint(self, grammar: Grammar, gbnf: GBNF | None) -> dict[str, Any]:
        """``json_schema`` (a JSON string) or ``regex``; reasoning first: ``structural_tag``."""
        if grammar.kind == "thought":
            return {"structural_tag": structural_tag_text(grammar.value)}
        if grammar.kind == "json":
            return {"json_schema": json.dumps(grammar.value)}
        if grammar.kind == "regex":
            return {"regex": grammar.value}
        raise self.refuse(grammar)

    def request_body(
        self,
        prompt: str,
        params: GenerationParams,
        *,
        stream: bool,
        model: str | None,
        constraint: Mapping[str, Any],
    ) -> dict[str, Any]:
        """``text``, ``sampling_params`` (the constraint inside), ``stream``."""
        if params.seed is not None:
            raise K2ConfigError(
                "seed= cannot be sent to SGLang: its /generate sampling parameters have no "
                "per-request seed. Unset seed (or start SGLang with --random-seed)."
            )
        fields: dict[str, Any] = {"max_new_tokens": params.max_new_tokens}
        fields.update(sampling(params, repetition="repetition_penalty"))
        fields["skip_special_tokens"] = False
        fields["spaces_between_special_tokens"] = False
        if params.stop_token_ids:
            fields["stop_token_ids"] = list(params.stop_token_ids)
        fields.update(constraint)
        return {"text": prompt, "sampling_params": fields, "stream": stream}

    def answer(self, doc: Mapping[str, Any]) -> Piece:
        """``text`` and ``meta_info``."""
        text, meta = doc.get("text"), doc.get("meta_info")
        if not isinstance(text, str) or not isinstance(meta, dict):
            raise NotThisEngineError("without text and meta_info")
        counts = int_or_none(meta.get("prompt_tokens")), int_or_none(meta.get("completion_tokens"))
        return Piece(text, _finish(meta), counts)

    def stream_piece(self, doc: Mapping[str, Any]) -> Piece:
        """The whole text so far; the counts may still grow (final at ``[DONE]``)."""
        text, meta = doc.get("text"), doc.get("meta_info")
        if not isinstance(text, str) or not isinstance(meta, dict):
            raise NotThisEngineError("a stream event without text")
        counts = int_or_none(meta.get("prompt_tokens")), int_or_none(meta.get("completion_tokens"))
        return Piece(text, _finish(meta), counts)


HOOKS = SGLang(
    name="sglang",
    label="SGLang",
    generate_route="/generate",
    info_route="/server_info",
    tokenize_route="/generate",
    context_setting="SGLang --context-length",
    probes=("/server_info", "/get_server_info", "/model_info"),
    probe_rank=10,
    cumulative_stream=True,
)
