"""vLLM: its OpenAI-style ``/v1/completions`` route, sent K2's raw prompt.

In: a prompt, `GenerationParams`, a `Grammar`, the served model's id. Out: the request
body, and the text, finish reason and usage of its answers (`OpenAICompletions`'s codec).

vLLM keeps special tokens only when asked (``skip_special_tokens: false`` and no spaces
between them), ends on a stop string without echoing it, reports usage in a stream only
with ``stream_options.include_usage``, and takes a constraint under
``structured_outputs`` (JSON schema or regex; a constraint after the reasoning as an
xgrammar ``structural_tag``: the thought free up to its close tag, then the part). The
prompt format's end-of-turn ids go as ``stop_token_ids``, and a prompt holding its own BOS
(K2-V3) is sent with ``add_special_tokens: false``. ``GET /v1/models`` names the served
model and its ``max_model_len``; ``POST /tokenize`` counts tokens. A probe recognises vLLM
by its ``/version`` answer: ``{"version": ...}`` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_k2.backends._base import GenerationParams, Grammar
from langchain_k2.backends._engines._base import OpenAICompletions, as_int
from langchain_k2.backends._gbnf import GBNF
from langchain_k2.backends._thought import structural_tag_text

__all__ = ["HOOKS", "VLLM"]


@dataclass(frozen=True, kw_only=True)
class VLLM(OpenAICompletions):
    """vLLM's hooks.

    Example:
        >>> HOOKS.constraint(Grammar("regex", "[0-9]+"), None)
        {'structured_outputs': {'regex': '[0-9]+'}}
        >>> HOOKS.identify("/version", {"version": "0.11.0"})
        True
    """

    def identify(self, route: str, doc: Mapping[str, Any]) -> bool:
        """``/version`` answering ``{"version": <str>}`` and nothing else."""
        return isinstance(doc.get("version"), str) and len(doc) == 1

    def tokenize_body(self, text: str) -> dict[str, Any]:
        """``{"prompt": text, "add_special_tokens": true}``."""
        return {"prompt": text, "add_special_tokens": True}

    def token_count(self, doc: Any) -> int | None:
        """``count``."""
        return as_int(doc.get("count")) if isinstance(doc, dict) else None

    def constraint(self, grammar: Grammar, gbnf: GBNF | None) -> dict[str, Any]:
        """``structured_outputs.json`` or ``.regex``; reasoning first: ``.structural_tag``."""
        if grammar.kind == "thought":
            return {"structured_outputs": {"structural_tag": structural_tag_text(grammar.value)}}
        if grammar.kind == "gbnf":
            raise self.refuse(grammar)
        return {"structured_outputs": {grammar.kind: grammar.value}}

    def fields(self, params: GenerationParams) -> dict[str, Any]:
        """Special tokens kept, stop strings not echoed, the format's stop ids and BOS.

        ``stop_token_ids`` end the turn on the special tokens themselves (a stop string
        cannot match a skipped special token); a prompt that already starts with its BOS
        (K2-V3) is sent with ``add_special_tokens: false`` so vLLM adds no second one.

        >>> HOOKS.fields(GenerationParams(stop_token_ids=(250019, 1), bos_in_prompt=True))
        ... # doctest: +NORMALIZE_WHITESPACE
        {'skip_special_tokens': False, 'spaces_between_special_tokens': False,
         'include_stop_str_in_output': False, 'stop_token_ids': [250019, 1],
         'add_special_tokens': False}
        """
        fields: dict[str, Any] = {
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
            "include_stop_str_in_output": False,
        }
        if params.stop_token_ids:
            fields["stop_token_ids"] = list(params.stop_token_ids)
        if params.bos_in_prompt:
            fields["add_special_tokens"] = False
        return fields

    def request_body(
        self,
        prompt: str,
        params: GenerationParams,
        *,
        stream: bool,
        model: str | None,
        constraint: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The OpenAI-style body, asking for usage in a stream."""
        body = super().request_body(
            prompt, params, stream=stream, model=model, constraint=constraint
        )
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body


HOOKS = VLLM(
    name="vllm",
    label="vLLM",
    tokenize_route="/tokenize",
    context_setting="vLLM --max-model-len",
    probes=("/version",),
    probe_rank=20,
    repetition_field="repetition_penalty",
    takes_stop_ids=True,
    bos_switch=True,
)
