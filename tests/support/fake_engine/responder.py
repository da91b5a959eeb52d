"""Responder replies for the fake servers: a reply computed by a function from each prompt.

A reply spec without the field below behaves exactly as before; the servers call in here at
the marked places (`# responder:` in `protocol.py`, `server.py` and `engines.py`).

Reply-spec field:
  responder: `"package.module:function"`, a function importable in the server's process
    (it runs from the repository root) called as `function(prompt, body)` with the request's
    raw prompt and its whole JSON body; it returns the reply's text, which the server's
    tokenizer cuts into tokens like a `text` reply. The spec still needs `text` (or
    `tokens`): that is the reply if the function returns None. All other fields apply.

Why: a scripted engine that must answer a suite it does not control (LangChain's standard
tests) cannot know the order or number of requests in advance; a function of the prompt
answers each one as the model would (see `tests/support/family_responder.py`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .echo import check_echo_field

RESPONDER_SPEC_KEYS = frozenset({"responder"})
Responder = Callable[[str, Any], "str | None"]


@functools.lru_cache(maxsize=16)
def _load(target: str) -> Responder:
    module_name, _, attr = target.partition(":")
    function: Responder = getattr(importlib.import_module(module_name), attr)
    return function


def check_responder_field(raw: dict[str, Any]) -> None:
    """Raise the fake's `SpecError` when the `responder` field of a raw reply spec is bad."""
    if "responder" not in raw:
        return
    from .protocol import SpecError  # here: protocol imports this module

    target = raw["responder"]
    if not isinstance(target, str) or target.count(":") != 1:
        raise SpecError("responder must be 'package.module:function'")
    try:
        _load(target)
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"responder {target!r} cannot be loaded: {exc}") from exc
    if raw.get("text") is None and raw.get("tokens") is None:
        raise SpecError("a responder reply needs 'text' (or 'tokens'): the reply for None")


def check_computed_fields(raw: dict[str, Any]) -> None:
    """Check the fields of a raw reply spec that compute its text per request (echo, here)."""
    check_echo_field(raw)
    check_responder_field(raw)


def materialize(spec: Any, prompt: str, body: Any) -> Any:
    """The concrete reply spec for one request: specs without `responder` are unchanged."""
    raw = getattr(spec, "raw", None)
    target = raw.get("responder") if isinstance(raw, dict) else None
    if not target:
        return spec
    text = _load(target)(prompt, body)
    if text is None:
        return spec
    return replace(spec, text=text, tokens=None)


__all__ = [
    "RESPONDER_SPEC_KEYS",
    "check_computed_fields",
    "check_responder_field",
    "materialize",
]
