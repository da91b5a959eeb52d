"""llama.cpp's llama-server (``engine="llama.cpp"``): its native ``/completion`` route.

In: a prompt, `GenerationParams`, a `Grammar`. Out: the request body, and the text, finish
reason and counts of its answers.

The limit is ``n_predict``, the repetition penalty ``repeat_penalty``. A JSON schema goes
under ``json_schema`` (llama-server converts it with its own C++ converter); a GBNF
grammar under ``grammar``. llama-server takes no stop ids (it ends on the GGUF's own end-of-
generation tokens): the format's end markers are sent as ``stop`` strings, which match
when the server shows special tokens (``--special``). It has no per-request BOS switch
either: the GGUF's ``add_bos_token`` decides (see docs/k2-v3.md). A stream ends with the
event that has ``stop`` set (no ``[DONE]``). ``GET /props`` has ``n_ctx`` (under
``default_generation_settings`` in older builds) and the model's path; ``POST /tokenize``
counts tokens. A probe recognises it by ``/props``' ``default_generation_settings``.
"""

from __future__ import annotations

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
from langchain_k2.backends._gbnf import GBNF, grammar_gbnf
from langchain_k2.backends._thought import lazy_gbnf
from langchain_k2.errors import K2ConfigError

__all__ = ["HOOKS", "LlamaServer"]

TRIGGER_WORD = 1
"""llama.cpp's ``COMMON_GRAMMAR_TRIGGER_TYPE_WORD`` (token 0, word 1, pattern 2, full 3)."""

_STOP_TYPES = {"eos": "eos_token", "word": "stop_sequence", "limit": "length"}


def _finish(doc: Mapping[str, Any]) -> str | None:
    if not doc.get("stop"):
        return None
    return _STOP_TYPES.get(str(doc.get("stop_type")), "eos_token")


@dataclass(frozen=True, kw_only=True)
class LlamaServer(EngineHooks):
    """llama-server's hooks.

    Example:
        >>> HOOKS.info({"default_generation_settings": {"n_ctx": 4096},
        ...             "model_path": "/m/k2.gguf"}).max_total_tokens
        4096
        >>> router = {"default_generation_settings": {"n_ctx": 0}, "model_path": "none"}
        >>> info = HOOKS.info(router)  # llama-server --models-dir: no model, no window
        >>> info.model_id, info.max_total_tokens
        (None, None)
        >>> HOOKS.constraint(Grammar("regex", "x"), None)
        Traceback (most recent call last):
        ...
        langchain_k2.errors.K2ConfigError: llama-server cannot take a 'regex' grammar \
(JSON-schema constraints go to every engine, regex ones to TGI, vLLM and SGLang, GBNF to \
the llama.cpp servers): pass a JSON schema, or no grammar.
    """

    def identify(self, route: str, doc: Mapping[str, Any]) -> bool:
        """``/props`` with ``default_generation_settings``."""
        return isinstance(doc.get("default_generation_settings"), dict)

    def info(self, doc: Any) -> BackendInfo:
        """``n_ctx`` and ``model_path``."""
        doc = doc if isinstance(doc, dict) else {}
        settings = doc.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        model = doc.get("model_path")
        window = as_int(n_ctx if n_ctx is not None else doc.get("n_ctx"))
        return BackendInfo(
            model_id=model if isinstance(model, str) and model != "none" else None,
            max_total_tokens=window if window else None,  # a router's /props: n_ctx 0
            supports_grammar=True,
        )

    def tokenize_body(self, text: str) -> dict[str, Any]:
        """``{"content": text, "add_special": true}``."""
        return {"content": text, "add_special": True}

    def token_count(self, doc: Any) -> int | None:
        """How many ``tokens``."""
        tokens = doc.get("tokens") if isinstance(doc, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    def constraint(self, grammar: Grammar, gbnf: GBNF | None) -> dict[str, Any]:
        """``json_schema`` (converted by the server) or ``grammar`` (GBNF as given).

        Reasoning first (``thought``): a lazy grammar, ``grammar_lazy`` with the effort's
        close tag as its trigger word (and preserved token), so the thought is sampled free
        and the grammar (the close tag, then the part) applies from the trigger on. A JSON
        part must be turned into GBNF on the client (llama-cpp-python's converter); without
        it nothing is sent and the output is validated after generation.
        """
        if grammar.kind == "thought":
            return self._lazy(grammar, gbnf)
        if grammar.kind == "json":
            return {"json_schema": grammar.value}
        if grammar.kind == "gbnf":
            return {"grammar": grammar.value}
        raise self.refuse(grammar)

    def _lazy(self, grammar: Grammar, gbnf: GBNF | None) -> dict[str, Any]:
        spec = grammar.value
        try:
            text = lazy_gbnf(spec, lambda then: grammar_gbnf(then, gbnf, label=self.label))
        except K2ConfigError:  # no converter in this process: validated after generation
            return {}
        return {
            "grammar": text,
            "grammar_lazy": True,
            # A trigger word that is one token (K2-V3's "</think>") must be listed as a
            # preserved token too, or llama-server answers 400 ("Grammar trigger word should
            # be marked as preserved token"); a word of several tokens ignores the list.
            "preserved_tokens": [spec.close],
            "grammar_triggers": [{"type": TRIGGER_WORD, "value": spec.close}],
        }

    def request_body(
        self,
        prompt: str,
        params: GenerationParams,
        *,
        stream: bool,
        model: str | None,
        constraint: Mapping[str, Any],
    ) -> dict[str, Any]:
        """``prompt``, ``n_predict``, the sampling fields, the constraint, ``stream``."""
        body: dict[str, Any] = {"prompt": prompt, "n_predict": params.max_new_tokens}
        body.update(sampling(params, repetition="repeat_penalty", marker_stops=True))
        if params.seed is not None:
            body["seed"] = params.seed
        body.update(constraint)
        body["stream"] = stream
        return body

    def answer(self, doc: Mapping[str, Any]) -> Piece:
        """``content``, ``stop_type``, ``tokens_evaluated`` / ``tokens_predicted``."""
        text = doc.get("content")
        if not isinstance(text, str):
            raise NotThisEngineError("without content")
        counts = int_or_none(doc.get("tokens_evaluated")), int_or_none(doc.get("tokens_predicted"))
        return Piece(text, _finish(doc), counts)

    def stream_piece(self, doc: Mapping[str, Any]) -> Piece:
        """One event's ``content``; the one with ``stop`` set is the last."""
        text = doc.get("content")
        if not isinstance(text, str):
            raise NotThisEngineError("a stream event without content")
        finish = _finish(doc)
        if finish is None:
            return Piece(text)
        counts = int_or_none(doc.get("tokens_evaluated")), int_or_none(doc.get("tokens_predicted"))
        return Piece(text, finish, counts, last=True)


HOOKS = LlamaServer(
    name="llama.cpp",
    label="llama-server",
    generate_route="/completion",
    info_route="/props",
    tokenize_route="/tokenize",
    context_setting="llama.cpp --ctx-size",
    probes=("/props",),
    probe_rank=30,
)
