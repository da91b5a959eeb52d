"""Transport retries: attempt counts, waits (backoff and Retry-After), what is never retried.

``time.sleep`` / ``asyncio.sleep`` are replaced by recorders, so the waits asked for are
read exactly and the tests take no time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from langchain_k2 import K2OverloadedError, K2StreamInterruptedError, K2ValidationError
from langchain_k2 import _retries as retries_module
from langchain_k2._retries import (
    MAX_RETRY_AFTER,
    MAX_WAIT,
    acall_with_retries,
    backoff_delay,
    call_with_retries,
)


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, K2OverloadedError)


def flaky(failures: list[BaseException], result: str = "ok") -> Callable[[], str]:
    """A callable raising ``failures`` in order, then returning ``result``."""
    calls = iter(failures)

    def fn() -> str:
        exc = next(calls, None)
        if exc is not None:
            raise exc
        return result

    return fn


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait asked for, first attempt's (ours) and tenacity's alike."""
    asked: list[float] = []

    async def fake_async_sleep(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(retries_module.time, "sleep", asked.append)
    monkeypatch.setattr(retries_module.asyncio, "sleep", fake_async_sleep)
    monkeypatch.setattr("tenacity.nap.time.sleep", asked.append)
    monkeypatch.setattr(retries_module, "random", _NoJitter())
    return asked


class _NoJitter:
    @staticmethod
    def uniform(low: float, high: float) -> float:
        return 0.0


def busy(retry_after: float | None = None) -> K2OverloadedError:
    return K2OverloadedError("busy", status=429, retry_after=retry_after)


def test_backoff_grows_exponentially_to_the_cap() -> None:
    zero = lambda low, high: 0.0  # noqa: E731
    delays = [backoff_delay(n, None, 0.25, jitter=zero) for n in range(1, 12)]
    assert delays[:4] == [0.25, 0.5, 1.0, 2.0]
    assert delays[-1] == MAX_WAIT
    assert backoff_delay(10_000, None, 1.0) == MAX_WAIT  # no OverflowError


def test_jitter_is_added_within_the_initial_backoff() -> None:
    for _ in range(200):
        assert 0.5 <= backoff_delay(1, None, 0.5) <= 1.0


def test_retry_after_is_a_floor_and_is_capped() -> None:
    zero = lambda low, high: 0.0  # noqa: E731
    assert backoff_delay(1, busy(5), 0.5, jitter=zero) == 5.0
    assert backoff_delay(8, busy(5), 0.5, jitter=zero) == MAX_WAIT  # 64 s, capped
    assert backoff_delay(1, busy(10_000), 0.5, jitter=zero) == MAX_RETRY_AFTER
    cut = K2StreamInterruptedError("cut", partial_text="", cause=busy(7))
    assert backoff_delay(1, cut, 0.5, jitter=zero) == 7.0


def test_success_first_time_waits_nothing(waits: list[float]) -> None:
    fn = flaky([])
    assert call_with_retries(fn, attempts=3, initial=0.5, retryable=retryable) == "ok"
    assert waits == []


def test_retries_until_success_with_growing_waits(waits: list[float]) -> None:
    fn = flaky([busy(), busy(), busy()])
    assert call_with_retries(fn, attempts=4, initial=0.5, retryable=retryable) == "ok"
    assert waits == [0.5, 1.0, 2.0]


def test_gives_up_after_the_attempts_and_raises_the_last_error(waits: list[float]) -> None:
    errors = [busy(1), busy(2), busy(3), busy(4)]
    with pytest.raises(K2OverloadedError) as info:
        call_with_retries(flaky(errors), attempts=3, initial=0.5, retryable=retryable)
    assert info.value is errors[2]
    assert waits == [1.0, 2.0]  # Retry-After 1 and 2 beat 0.5 and 1.0


def test_one_attempt_means_no_retry(waits: list[float]) -> None:
    with pytest.raises(K2OverloadedError):
        call_with_retries(flaky([busy()]), attempts=1, initial=0.5, retryable=retryable)
    assert waits == []


def test_a_non_retryable_error_is_raised_at_once(waits: list[float]) -> None:
    error = K2ValidationError("bad", status=422)
    with pytest.raises(K2ValidationError) as info:
        call_with_retries(flaky([busy(), error]), attempts=5, initial=0.5, retryable=retryable)
    assert info.value is error
    assert waits == [0.5]


def test_arguments_are_passed_to_every_attempt(waits: list[float]) -> None:
    seen: list[Any] = []
    fail = iter([busy()])

    def fn(a: int, b: str) -> tuple[int, str]:
        seen.append((a, b))
        exc = next(fail, None)
        if exc is not None:
            raise exc
        return a, b

    assert call_with_retries(fn, 1, "x", attempts=2, initial=0.0, retryable=retryable) == (1, "x")
    assert seen == [(1, "x"), (1, "x")]


def test_async_twin_counts_and_waits_the_same(waits: list[float]) -> None:
    calls = iter([busy(), busy(3)])

    async def fn() -> str:
        exc = next(calls, None)
        if exc is not None:
            raise exc
        return "ok"

    result = asyncio.run(acall_with_retries(fn, attempts=3, initial=0.5, retryable=retryable))
    assert result == "ok"
    assert waits == [0.5, 3.0]


def test_async_gives_up_too(waits: list[float]) -> None:
    async def fn() -> str:
        raise busy()

    with pytest.raises(K2OverloadedError):
        asyncio.run(acall_with_retries(fn, attempts=2, initial=0.25, retryable=retryable))
    assert waits == [0.25]
