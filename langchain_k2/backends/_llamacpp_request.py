"""What one request asks of llama.cpp: sampling keywords, a grammar's schema, reusable state.

In: `langchain_k2.backends._base.GenerationParams` (sampling, a `Grammar`), and the
token ids of the previous and the next prompt. Out: ``Llama.generate`` keyword arguments and
whether decoding is greedy, a grammar's cache key (checked before loading), and how many
leading prompt tokens may keep the state the previous prompt left. Pure: nothing here loads
a model; every parameter is checked before `langchain_k2.backends._llamacpp` loads one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_k2.backends._base import GenerationParams, Grammar
from langchain_k2.errors import K2GrammarUnsupportedError, K2ValidationError

__all__ = ["SAMPLING_DEFAULTS", "grammar_key", "reusable_prefix", "sampling_kwargs"]

SAMPLING_DEFAULTS: dict[str, float] = {
    "temp": 0.8,
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.05,
    "repeat_penalty": 1.0,
}
"""llama-cpp-python's own defaults, used for parameters left ``None``."""


def sampling_kwargs(params: GenerationParams) -> tuple[dict[str, Any], bool]:
    """llama.cpp sampling keywords for ``params``, and whether decoding is greedy.

    Example:
        >>> sampling_kwargs(GenerationParams(temperature=0, max_new_tokens=8))
        ({'temp': 0.0, 'top_k': 1, 'top_p': 1.0, 'min_p': 0.0, 'repeat_penalty': 1.0}, True)

    Raises:
        K2ValidationError: a parameter is out of range (named, with its range).
    """
    if isinstance(params.max_new_tokens, bool) or params.max_new_tokens < 1:
        raise K2ValidationError(
            f"max_new_tokens must be >= 1, got {params.max_new_tokens!r}",
            error_type="validation",
        )
    temperature = params.temperature
    if temperature is not None and temperature < 0:
        raise K2ValidationError(
            f"temperature must be >= 0 (0 means greedy), got {temperature!r}",
            error_type="validation",
        )
    if params.top_p is not None and not 0 < params.top_p <= 1:
        raise K2ValidationError(
            f"top_p must be in (0, 1], got {params.top_p!r}", error_type="validation"
        )
    if params.top_k is not None and params.top_k < 0:
        raise K2ValidationError(
            f"top_k must be >= 0 (0 disables it), got {params.top_k!r}",
            error_type="validation",
        )
    penalty = params.repetition_penalty
    if penalty is not None and penalty <= 0:
        raise K2ValidationError(
            f"repetition_penalty must be > 0, got {penalty!r}", error_type="validation"
        )
    kwargs: dict[str, Any] = dict(SAMPLING_DEFAULTS)
    if penalty is not None:
        kwargs["repeat_penalty"] = float(penalty)
    if temperature == 0:
        kwargs.update(temp=0.0, top_k=1, top_p=1.0, min_p=0.0)
        return kwargs, True
    if temperature is not None:
        kwargs["temp"] = float(temperature)
    if params.top_k is not None:
        kwargs["top_k"] = int(params.top_k)
    if params.top_p is not None:
        kwargs["top_p"] = float(params.top_p)
    return kwargs, False


def grammar_key(grammar: Grammar | None) -> str | None:
    """A grammar's cache key (its kind and text), validated before any loading.

    Example:
        >>> grammar_key(Grammar("json", {"type": "object"}))
        'json:{"type": "object"}'

    Raises:
        K2GrammarUnsupportedError: a regex grammar (llama.cpp has none).
        K2ValidationError: a JSON schema that cannot be written as JSON.
    """
    if grammar is None:
        return None
    if grammar.kind == "regex":
        raise K2GrammarUnsupportedError(
            "llama.cpp has no regex grammar: constrain the output with a JSON schema "
            '({"type": "json", "value": <schema>}) or use the TGI backend.',
            error_type="validation",
        )
    if grammar.kind == "thought":
        then = grammar.value.then
        grammar_key(then)  # the part after the thought is checked the same way
        return "thought:" + json.dumps(grammar.value.as_json(), sort_keys=True)
    text = str(grammar.value) if grammar.kind == "gbnf" else grammar.schema_text()
    return f"{grammar.kind}:{text}"


def reusable_prefix(evaluated: Sequence[int], tokens: Sequence[int], chunk: int) -> int:
    """How many leading ``tokens`` may keep the llama.cpp state an earlier prompt left.

    ``evaluated`` holds the earlier prompt's tokens whose state came from whole, aligned
    chunks of ``chunk`` tokens. The answer is a multiple of ``chunk`` (so the rest is
    evaluated in the same aligned chunks a fresh context would use) and leaves at least
    one token to evaluate (its logits pick the first new token).

    >>> reusable_prefix([1, 2, 3, 4], [1, 2, 3, 4, 5, 6], chunk=2)
    4
    >>> reusable_prefix([1, 2, 3, 4], [1, 2, 3, 9, 5], chunk=2)
    2
    >>> reusable_prefix([1, 2, 3, 4], [1, 2, 3, 4], chunk=2)  # same prompt: redo last chunk
    2
    >>> reusable_prefix([], [1, 2, 3], chunk=2)
    0
    """
    limit = min(len(evaluated), len(tokens) - 1)
    common = 0
    while common < limit and evaluated[common] == tokens[common]:
        common += 1
    return common // chunk * chunk
