"""What a turn asks its driver for next: the Turn<->Driver seam's values.

In: nothing but values (a prompt, generation parameters, window limits). Out: the steps a
`langchain_k2._turn.Turn` yields (`GenerationRequest`, `CountTokens`, `Finished`) and the pure
checks both sides share (`surely_fits`, `fit_request`).

A driver loops on ``turn.step()``: it runs a `GenerationRequest` and feeds its events back
(``turn.feed``, ``None`` once they end, reading while ``turn.reading``), answers a
`CountTokens` with ``turn.counted``, reports any fault with ``turn.failed``, and stops at
`Finished`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from langchain_core.outputs import ChatGenerationChunk, ChatResult

from langchain_k2.backends._base import GenerationParams
from langchain_k2.errors import K2StreamInterruptedError


@dataclass(frozen=True)
class GenerationRequest:
    """A prompt and the parameters to generate from it (the step *generate*).

    ``repair``: the request repairs a broken call (its failure keeps the call unrepaired);
    ``live``: the caller streams (``invoke`` wants only the whole answer).
    """

    prompt: str
    params: GenerationParams
    repair: bool = False
    live: bool = True


@dataclass(frozen=True)
class CountTokens:
    """The step *count*: the tokens of ``prompt``, as the server counts them.

    ``usage``: the count only completes the turn's usage (a failure counts nothing);
    otherwise it sizes a repair prompt against the window (a failure ends the turn).
    """

    prompt: str
    usage: bool = False


@dataclass(frozen=True)
class Finished:
    """The step *finished*: the whole result, and the last chunk when the turn streams."""

    last: ChatGenerationChunk | None
    result: ChatResult


Step = GenerationRequest | CountTokens | Finished


def surely_fits(
    prompt: str, max_new_tokens: int, window: int | None, max_input_tokens: int | None
) -> bool:
    """True when no tokenizer can make ``prompt`` overflow the limits.

    A token covers at least one UTF-8 byte, so the byte count (plus two for BOS/EOS)
    bounds the token count without asking the backend.

    Example:
        >>> surely_fits("hello", 10, window=20, max_input_tokens=None)
        True
        >>> surely_fits("hello", 10, window=16, max_input_tokens=None)
        False
    """
    bound = len(prompt.encode("utf-8")) + 2
    if window is not None and bound + max_new_tokens > window:
        return False
    return max_input_tokens is None or bound <= max_input_tokens


def fit_request(
    request: GenerationRequest, prompt_tokens: int, window: int | None, max_input: int | None
) -> GenerationRequest | None:
    """``request`` with ``max_new_tokens`` cut to what the window leaves its prompt.

    ``None`` when the ``prompt_tokens``-token prompt leaves no room (or is longer than the
    backend takes): the server would refuse the request.

    Example:
        >>> request = GenerationRequest("p", GenerationParams(max_new_tokens=64))
        >>> fit_request(request, 950, window=1000, max_input=None).params.max_new_tokens
        50
        >>> fit_request(request, 1000, window=1000, max_input=None) is None
        True
    """
    room = None if window is None else window - prompt_tokens
    too_long = max_input is not None and prompt_tokens > max_input
    if too_long or (room is not None and room < 1):
        return None
    if room is None or room >= request.params.max_new_tokens:
        return request
    return replace(request, params=replace(request.params, max_new_tokens=room))


def interrupted(partial: str, error: BaseException) -> K2StreamInterruptedError:
    """The error for a stream cut after ``partial`` (part of it) was delivered."""
    return K2StreamInterruptedError(
        f"The stream broke after {len(partial)} characters had been received ({error}); it was "
        "not retried because part of it was already delivered. The partial text is on "
        "this exception's partial_text.",
        partial_text=partial,
        cause=error,
    )


__all__ = [
    "CountTokens",
    "Finished",
    "GenerationRequest",
    "Step",
    "fit_request",
    "interrupted",
    "surely_fits",
]
