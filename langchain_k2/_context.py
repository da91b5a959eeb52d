"""Fit a conversation into the model's context window, or say exactly why it cannot.

In: the messages of one turn, a ``count`` function (messages -> tokens of the prompt they
render into, system prompt and tools included), the limits (from TGI's ``/info``, the
llama.cpp context, or a user override) and ``max_new_tokens``. Out: the messages
unchanged when they fit; with trimming on, the newest whole turns that fit; otherwise a
`langchain_k2.errors.ContextWindowExceededError` stating both counts.

Pure: no I/O of its own. ``count`` may do I/O (TGI's ``/tokenize``): it is called once
when the prompt fits, and about ``log2(len(messages)) + 2`` times when trimming.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

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


WINDOW_SETTINGS: dict[str, tuple[str, str]] = {
    "tgi": ("TGI's", "--max-total-tokens"),
    "vllm": ("vLLM's", "--max-model-len"),
    "sglang": ("SGLang's", "--context-length"),
    "llama.cpp": ("llama-server's", "--ctx-size"),
    "llama-cpp-python": ("llama-cpp-python's", "--n_ctx"),
    "llamacpp": ("llama.cpp's", "n_ctx (context_window=)"),
}
"""Per engine: whose setting sets the context window, and its name."""


def _exceeded(
    prompt_tokens: int,
    *,
    engine: str,
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
    whose, setting = WINDOW_SETTINGS.get(engine, WINDOW_SETTINGS["tgi"])
    if over_total:
        reasons.append(
            f"together {prompt_tokens + max_new_tokens} tokens, more than the context window "
            f"of {window} (prompt + new tokens, {whose} {setting})"
        )
        flags.append(setting)
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
    engine: str = "tgi",
) -> list[BaseMessage]:
    """Return ``messages`` if their prompt fits, else the newest whole turns that fit.

    The prompt fits when ``count(messages) + max_new_tokens <= window`` and, if given,
    ``count(messages) <= max_input_tokens``. With no limit known, nothing is counted.

    Trimming (``trim=True``) drops the oldest turns. Before the latest ``HumanMessage``
    a turn is a ``HumanMessage`` and everything up to the next one; after it (an agent's
    tool loop) a turn is an ``AIMessage`` and the ``ToolMessage`` answers that follow it.
    So the leading ``SystemMessage`` is kept, the latest ``HumanMessage`` and the newest
    model turn are kept, an ``AIMessage`` with ``tool_calls`` always stays with its
    answers (parallel calls included), and the kept history renders validly. Among the
    cuts that fit, the one keeping the most history is found by bisection (counts only
    grow with history). ``langchain_core``'s ``trim_messages`` is not used: it has no
    notion of tool-call groups inside one user turn, which is where agents grow.

    Args:
        messages: the conversation, as it would be rendered.
        count: tokens of the prompt a list of messages renders into, with the same
            tools, default system prompt and options as the real request.
        window: most prompt + new tokens (``None``: unknown).
        max_new_tokens: tokens the request may generate.
        trim: drop the oldest turns instead of raising.
        max_input_tokens: most prompt tokens (``None``: unknown).
        engine: the engine serving the model, whose setting the error names (`WINDOW_SETTINGS`).

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
        engine=engine,
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
    cuts = _cut_points(body)
    if not cuts:  # nothing can be dropped
        raise exceeded(total, minimal=True)
    latest = _latest_human(body)

    def kept(cut: int) -> list[BaseMessage]:
        if latest is None or cut <= latest:
            return body[cut:]
        return [body[latest], *body[cut:]]

    # Dropping more never makes the prompt longer, so the cut keeping the most history
    # that still fits is found by bisection: a few counts, each maybe a /tokenize call.
    low, high = 0, len(cuts) - 1
    smallest = count([*head, *kept(cuts[high])])
    if smallest > budget:
        raise exceeded(smallest, minimal=True)
    while low < high:
        middle = (low + high) // 2
        if count([*head, *kept(cuts[middle])]) <= budget:
            high = middle
        else:
            low = middle + 1
    return [*head, *kept(cuts[low])]


def _latest_human(body: Sequence[BaseMessage]) -> int | None:
    humans = [i for i, message in enumerate(body) if isinstance(message, HumanMessage)]
    return humans[-1] if humans else None


def _cut_points(body: Sequence[BaseMessage]) -> list[int]:
    """Where the kept history may start, from most kept to least (excluding 0).

    Before the latest user turn, whole turns are dropped (a turn starts at a
    ``HumanMessage``). After it, the user turn itself stays pinned and whole model turns
    go, oldest first: an ``AIMessage`` with the ``ToolMessage`` answers that follow it,
    never one without the other. The newest model turn always stays.
    """
    latest = _latest_human(body)
    first_ai = (latest or 0) + (1 if latest is not None else 0)
    cuts = [i for i, m in enumerate(body) if isinstance(m, HumanMessage) and i > 0]
    ai_starts = [i for i in range(first_ai, len(body)) if isinstance(body[i], AIMessage)]
    cuts += ai_starts[1:]
    return cuts
