"""Transport retries: the first attempt runs bare, tenacity runs the ones after a failure.

In: a callable with its arguments, a number of attempts, the first backoff, and which
exceptions may be retried. Out: the callable's result, or the last exception raised.

Waits grow exponentially with jitter (``initial * 2**(n-1) + uniform(0, initial)``, at
most 30 s) and are at least what a server's ``Retry-After`` asked (honoured up to 60 s).
Most calls succeed the first time; running that attempt outside tenacity saves its
bookkeeping on every call (about 10 µs sync and 40 µs async each, three calls per
invoke), and tenacity drives every attempt after a failure.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception
from tenacity.stop import stop_after_attempt

from langchain_k2.errors import K2StreamInterruptedError

T = TypeVar("T")

MAX_WAIT = 30.0
"""Longest wait the exponential backoff reaches (seconds)."""

MAX_RETRY_AFTER = 60.0
"""Longest ``Retry-After`` honoured (seconds); a server asking more waits this long."""


def backoff_delay(
    attempt: int,
    exc: BaseException | None,
    initial: float,
    *,
    jitter: Callable[[float, float], float] | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based) raised ``exc``.

    ``jitter(low, high)`` draws the random part (default ``random.uniform``).

    Example:
        >>> no_jitter = lambda low, high: 0.0
        >>> tuple(backoff_delay(n, None, 0.5, jitter=no_jitter) for n in (1, 2, 3, 10))
        (0.5, 1.0, 2.0, 30.0)
        >>> from langchain_k2.errors import K2OverloadedError
        >>> busy = K2OverloadedError("busy", retry_after=7)
        >>> backoff_delay(1, busy, 0.5, jitter=no_jitter)
        7.0
        >>> backoff_delay(1, K2OverloadedError("busy", retry_after=3600), 0.5)
        60.0
    """
    spread = (jitter or random.uniform)(0.0, initial)
    try:
        delay = min(initial * 2 ** (attempt - 1) + spread, MAX_WAIT)
    except OverflowError:
        delay = MAX_WAIT
    if isinstance(exc, K2StreamInterruptedError):
        exc = exc.cause
    retry_after = getattr(exc, "retry_after", None)
    delay = max(0.0, float(delay))
    if not retry_after:
        return delay
    return max(delay, min(float(retry_after), MAX_RETRY_AFTER))


class _Wait:
    """Tenacity's wait for the attempts after the first (which ran outside it)."""

    def __init__(self, initial: float) -> None:
        self._initial = initial

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return backoff_delay(state.attempt_number + 1, exc, self._initial)


def _rest(attempts: int, initial: float, retryable: Callable[[BaseException], bool]) -> Any:
    """Keyword arguments of the tenacity loop over attempts 2..``attempts``."""
    return {
        "stop": stop_after_attempt(attempts - 1),
        "wait": _Wait(initial),
        "retry": retry_if_exception(retryable),
        "reraise": True,
    }


def call_with_retries(
    fn: Callable[..., T],
    *args: Any,
    attempts: int,
    initial: float,
    retryable: Callable[[BaseException], bool],
) -> T:
    """``fn(*args)``, tried up to ``attempts`` times while it raises retryable errors.

    Example:
        >>> calls = []
        >>> def flaky():
        ...     calls.append(1)
        ...     if len(calls) < 3:
        ...         raise ConnectionError("try again")
        ...     return "ok"
        >>> call_with_retries(flaky, attempts=3, initial=0.0,
        ...                   retryable=lambda e: isinstance(e, ConnectionError))
        'ok'
        >>> len(calls)
        3
    """
    try:
        return fn(*args)
    except Exception as exc:
        if attempts <= 1 or not retryable(exc):
            raise
        time.sleep(backoff_delay(1, exc, initial))
    return Retrying(**_rest(attempts, initial, retryable))(fn, *args)


async def acall_with_retries(
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    attempts: int,
    initial: float,
    retryable: Callable[[BaseException], bool],
) -> T:
    """Async twin of `call_with_retries` (``fn`` returns an awaitable)."""
    try:
        return await fn(*args)
    except Exception as exc:
        if attempts <= 1 or not retryable(exc):
            raise
        await asyncio.sleep(backoff_delay(1, exc, initial))
    result: T = await AsyncRetrying(**_rest(attempts, initial, retryable))(fn, *args)
    return result
