"""Fit a conversation into the model's context window, or say exactly why it cannot.

In: the messages of one turn, a ``count`` function (messages -> tokens of the prompt they
render into, system prompt and tools included), the limits (from TGI's ``/info``, the
llama.cpp context, or a user override) and ``max_new_tokens``. Out: the messages
unchanged when they fit; with trimming on, the newest whole turns that fit; otherwise a
:class:`~langchain_k2.errors.ContextWindowExceededError` stating both counts.

Pure: no I/O of its own. ``count`` may do I/O (TGI's ``/tokenize``): it is called once
when the prompt fits, and about ``log2(len(messages)) + 2`` times when trimming.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, trim_messages

from langchain_k2.errors import ContextWindowExceededError, K2ConfigError

Counter = Callable[[list[BaseMessage]], int]
"""Tokens of the prompt the given messages render into (system prompt and tools included)."""


class ContextLimits(NamedTuple):
    """The limits a prompt must respect; ``None`` where unknown.

    Attributes:
        window: prompt plus ``max_new_tokens``, at most (TGI's ``--max-total-tokens``,
            llama.cpp's ``n_ctx``).
        max_input_tokens: the prompt alone, at most (TGI's ``--max-input-tokens``).
    """

    window: int | None
    max_input_tokens: int | None


def window_from_info(
    max_input_tokens: int | None, max_total_tokens: int | None, override: int | None = None
) -> ContextLimits:
    """Decide the limits from a backend's reported ones and a user's override.

    ``override`` (a ``context_window`` the user set) is used where the backend reports
    no window, and can only narrow a reported one: a larger value would only turn the
    clear error raised here into the server's HTTP 422.

    Example:
        >>> window_from_info(4095, 4096)
        ContextLimits(window=4096, max_input_tokens=4095)
        >>> window_from_info(None, 4096, override=2048)
        ContextLimits(window=2048, max_input_tokens=None)

    Raises:
        K2ConfigError: ``override`` is not a positive integer.
    """
    if override is not None and (isinstance(override, bool) or override < 1):
        raise K2ConfigError(
            f"context_window must be a positive number of tokens, got {override!r}."
        )
    known = [limit for limit in (max_total_tokens, override) if limit is not None]
    return ContextLimits(min(known) if known else None, max_input_tokens)


def _prompt_budget(
    window: int | None, max_new_tokens: int, max_input_tokens: int | None
) -> int | None:
    """The most prompt tokens the limits allow (``None``: no limit known)."""
    limits = [] if window is None else [window - max_new_tokens]
    if max_input_tokens is not None:
        limits.append(max_input_tokens)
    return min(limits, default=None)


def _exceeded(
    prompt_tokens: int,
    *,
    window: int | None,
    max_new_tokens: int,
    max_input_tokens: int | None,
    minimal: bool,
    trim: bool,
) -> ContextWindowExceededError:
    over_total = window is not None and prompt_tokens + max_new_tokens > window
    over_input = max_input_tokens is not None and prompt_tokens > max_input_tokens
    reasons: list[str] = []
    ways: list[str] = []
    flags: list[str] = []
    if over_total:
        reasons.append(
            f"together {prompt_tokens + max_new_tokens} tokens, more than the context window "
            f"of {window} (prompt + new tokens, TGI's --max-total-tokens)"
        )
        flags.append("--max-total-tokens")
        if not over_input and window is not None and prompt_tokens < window:
            ways.append(f"lower max_new_tokens to at most {window - prompt_tokens}")
    if over_input:
        reasons.append(f"the server takes at most {max_input_tokens} prompt tokens")
        flags.append("--max-input-tokens")
    if not trim:
        ways.append("set trim_history=True to drop the oldest turns")
    ways.append("shorten the conversation (long tool results, documents)")
    ways.append(f"use a server with a larger {' and '.join(flags)}")
    what = (
        "Even the shortest history trimming keeps (the system prompt and the latest user "
        "turn onward) takes"
        if minimal
        else "The prompt takes"
    )
    # The tightest bound on prompt + max_new_tokens, so prompt + max_new > window holds.
    bounds = [] if window is None else [window]
    if max_input_tokens is not None:
        bounds.append(max_input_tokens + max_new_tokens)
    return ContextWindowExceededError(
        f"{what} {prompt_tokens} tokens and max_new_tokens is {max_new_tokens}: "
        f"{'; '.join(reasons)}. Ways out: {', or '.join(ways)}.",
        prompt_tokens=prompt_tokens,
        max_new_tokens=max_new_tokens,
        window=min(bounds),
    )


def fit_messages(
    messages: Sequence[BaseMessage],
    *,
    count: Counter,
    window: int | None,
    max_new_tokens: int,
    trim: bool,
    max_input_tokens: int | None = None,
) -> list[BaseMessage]:
    """Return ``messages`` if their prompt fits, else the newest whole turns that fit.

    The prompt fits when ``count(messages) + max_new_tokens <= window`` and, if given,
    ``count(messages) <= max_input_tokens``. With no limit known, nothing is counted.

    Trimming (``trim=True``) drops the oldest turns, a turn being a ``HumanMessage`` and
    everything up to the next one. So the leading ``SystemMessage`` is kept, the latest
    ``HumanMessage`` and everything after it are kept, an ``AIMessage`` with
    ``tool_calls`` always stays with its ``ToolMessage`` answers (parallel calls
    included), and the kept history starts with a ``HumanMessage`` after the system
    prompt, so it renders validly. Among the cuts that fit, the one keeping the most
    history is chosen (``langchain_core``'s ``trim_messages`` searches it).

    Args:
        messages: the conversation, as it would be rendered.
        count: tokens of the prompt a list of messages renders into, with the same
            tools, default system prompt and options as the real request.
        window: most prompt + new tokens (``None``: unknown).
        max_new_tokens: tokens the request may generate.
        trim: drop the oldest turns instead of raising.
        max_input_tokens: most prompt tokens (``None``: unknown).

    Returns:
        ``messages`` (as a new list) when they fit; otherwise their trimmed tail, with
        the system message in front. The message objects are the caller's own.

    Raises:
        ContextWindowExceededError: the prompt does not fit and ``trim`` is off, or even
            the system prompt plus the latest user turn onward does not fit. The message
            states both counts and the ways out.
    """
    messages = list(messages)
    budget = _prompt_budget(window, max_new_tokens, max_input_tokens)
    if budget is None:
        return messages
    exceeded = partial(
        _exceeded,
        window=window,
        max_new_tokens=max_new_tokens,
        max_input_tokens=max_input_tokens,
        trim=trim,
    )
    total = count(messages)
    if total <= budget:
        return messages
    if not trim:
        raise exceeded(total, minimal=False)

    head = messages[:1] if messages and isinstance(messages[0], SystemMessage) else []
    body = messages[len(head) :]
    humans = [i for i, message in enumerate(body) if isinstance(message, HumanMessage)]
    if not humans or humans[-1] == 0:  # nothing before the latest user turn to drop
        raise exceeded(total, minimal=True)
    latest = humans[-1]

    # Prompt tokens of head + the given body messages from their first HumanMessage on (an
    # earlier start renders no valid history; trim_messages' start_on="human" cuts it too).
    # Cached: each count may be a /tokenize request.
    turn_starts = set(humans)
    counts: dict[tuple[int, ...], int] = {}
    if humans[0] == 0:
        counts[tuple(range(len(body)))] = total

    def measure(indices: Sequence[int]) -> int:
        ordered = sorted(indices)
        start = next((i for i in ordered if i in turn_starts), None)
        if start is None:
            return 0
        kept = tuple(i for i in ordered if i >= start)
        if kept not in counts:
            counts[kept] = count([*head, *(body[i] for i in kept)])
        return counts[kept]

    minimal = tuple(range(latest, len(body)))
    if (tokens := measure(minimal)) > budget:
        raise exceeded(tokens, minimal=True)

    # trim_messages hands its counter reversed partial lists, and would count a system
    # message alone; a prompt counter needs the real order, the system prompt and tools in
    # every count, and a valid start. Stand-ins map each candidate back to our messages.
    stand_ins = [message.model_copy() for message in body]
    index_of = {id(stand_in): i for i, stand_in in enumerate(stand_ins)}
    trimmed = trim_messages(
        stand_ins,
        max_tokens=budget,
        token_counter=lambda candidate: measure([index_of[id(m)] for m in candidate]),
        strategy="last",
        start_on="human",
        include_system=False,
        allow_partial=False,
    )
    kept = tuple(sorted(index_of[id(m)] for m in trimmed))
    # Keep it only as a whole tail from a turn start that was measured to fit (it is, as
    # long as trim_messages keeps its contract); else the minimal tail, measured above.
    is_tail = bool(kept) and kept == tuple(range(kept[0], len(body)))
    if not (is_tail and kept[0] in turn_starts and measure(kept) <= budget):
        kept = minimal
    return [*head, *(body[i] for i in kept)]


__all__ = ["ContextLimits", "Counter", "fit_messages", "window_from_info"]
