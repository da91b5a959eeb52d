"""Echo replies for the fake TGI server (used by `tests/integration/test_soak.py`), kept apart.

A reply spec without the field below behaves exactly as before; the server calls in here at two
marked places (`# echo:` in `protocol.py` and `server.py`).

Reply-spec field:
  echo: `{"pattern": <regex with one group>, "template": <text holding "{echo}">}`: the reply's
    text is `template` with every `{echo}` replaced by the group of the LAST match of `pattern`
    in the request's `inputs` (the prompt), cut into tokens by the server's tokenizer like a
    `text` reply. The spec still needs `text` (or `tokens`): that is the reply when the prompt
    has no match. All other fields (`delay_s`, `cut_after`, `error_event_after`...) apply as
    usual, so a fault can hit an echoed reply.

Why: under concurrency, which request reaches which replica (and in which order) is not
deterministic, so pre-scripted replies cannot carry a per-request marker; an echo lets every
request's reply carry the number its own prompt holds, and the client check that no call was
lost, duplicated or handed to the wrong request.
"""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from typing import Any

ECHO_SPEC_KEYS = frozenset({"echo"})
PLACEHOLDER = "{echo}"


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def echo_field_problem(raw: dict[str, Any]) -> str | None:
    """What is wrong with the `echo` field of a raw reply spec, or None (also when absent)."""
    if "echo" not in raw:
        return None
    echo = raw["echo"]
    if (
        not isinstance(echo, dict)
        or set(echo) != {"pattern", "template"}
        or not isinstance(echo["pattern"], str)
        or not isinstance(echo["template"], str)
    ):
        return "echo must be {'pattern': <regex>, 'template': <text with '{echo}'>}"
    try:
        compiled = _compiled(echo["pattern"])
    except re.error as exc:
        return f"echo pattern is not a regex: {exc}"
    if compiled.groups != 1:
        return "echo pattern must have exactly one group"
    if PLACEHOLDER not in echo["template"]:
        return "echo template must contain '{echo}'"
    if raw.get("text") is None and raw.get("tokens") is None:
        return "an echo reply needs 'text' (or 'tokens'): the reply when nothing matches"
    return None


def check_echo_field(raw: dict[str, Any]) -> None:
    """Raise the fake's `SpecError` when the `echo` field of a raw reply spec is malformed."""
    problem = echo_field_problem(raw)
    if problem is not None:
        from .protocol import SpecError  # here: protocol imports this module

        raise SpecError(problem)


def materialize(spec: Any, inputs: str) -> Any:
    """The concrete reply spec for one request: specs without `echo` are returned unchanged."""
    echo = spec.raw.get("echo") if isinstance(getattr(spec, "raw", None), dict) else None
    if not echo:
        return spec
    matches = _compiled(echo["pattern"]).findall(inputs)
    if not matches:
        return spec
    return replace(spec, text=echo["template"].replace(PLACEHOLDER, matches[-1]), tokens=None)


__all__ = ["ECHO_SPEC_KEYS", "PLACEHOLDER", "check_echo_field", "echo_field_problem", "materialize"]
