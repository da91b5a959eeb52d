"""ChatK2 against every fault the fake TGI server can inject, asserting what a user sees.

One test per fault (parametrized over invoke / ainvoke / stream / astream where the paths
differ): what is retried and how long the retry waited, what is raised and what it carries,
and how many requests reached the server. The replica tests run three fake servers and read
their request logs to see where traffic went while a replica cooled down.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import tool

from langchain_k2 import (
    ChatK2,
    K2AuthenticationError,
    K2BackendError,
    K2GenerationError,
    K2IncompleteGenerationError,
    K2OverloadedError,
    K2StreamInterruptedError,
    K2TimeoutError,
    K2UnavailableError,
    K2ValidationError,
)
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import (
    hang,
    http_error,
    reply,
    reset_before_headers,
    special,
    tokens_of,
)

Mode = Literal["invoke", "ainvoke", "stream", "astream"]
MODES: tuple[Mode, ...] = ("invoke", "ainvoke", "stream", "astream")
# A stream cut after output reached the caller is not retried; an invoke (nothing reached
# the caller yet) is run again from the start.
STREAM_MODES: tuple[Mode, ...] = ("stream", "astream")
HELLO = ("Hello", " wor", "ld", "!")


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


def eos() -> dict[str, Any]:
    return special("<|endoftext|>")


def ok(*parts: str) -> dict[str, Any]:
    return reply(tokens=tokens_of(*(parts or HELLO), eos()))


def chat(url: str | list[str], **kwargs: Any) -> ChatK2:
    kwargs.setdefault("retry_backoff", 0.0)
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("max_new_tokens", 64)
    return ChatK2(endpoint_url=url, **kwargs)


def generations(server: FakeEngine) -> list[dict[str, Any]]:
    return [r for r in server.requests() if r["path"] == "/" and r["method"] == "POST"]


async def call(
    llm: Runnable[Any, Any], mode: Mode, received: list[str] | None = None, prompt: str = "q"
) -> BaseMessage:
    """Run ``llm`` the way ``mode`` says; streamed chunks' text goes into ``received``."""
    received = [] if received is None else received
    if mode == "invoke":
        return llm.invoke(prompt)  # type: ignore[no-any-return]
    if mode == "ainvoke":
        return await llm.ainvoke(prompt)  # type: ignore[no-any-return]
    merged: AIMessageChunk | None = None
    if mode == "stream":
        for chunk in llm.stream(prompt):
            received.append(str(chunk.content))
            merged = chunk if merged is None else merged + chunk
    else:
        async for chunk in llm.astream(prompt):
            received.append(str(chunk.content))
            merged = chunk if merged is None else merged + chunk
    assert merged is not None
    return merged


# ------------------------------------------------------------------------------ retried faults


@pytest.mark.parametrize("mode", MODES)
async def test_429_with_retry_after_waits_at_least_that_long(tgi: FakeEngine, mode: Mode) -> None:
    tgi.script(http_error(429, "Model is overloaded", "overloaded", retry_after=1), ok())
    received: list[str] = []
    start = time.monotonic()
    message = await call(chat(tgi.url, max_retries=2, retry_backoff=0.01), mode, received)
    elapsed = time.monotonic() - start
    assert message.content == "Hello world!"
    if mode in {"stream", "astream"}:
        assert "".join(received) == "Hello world!"  # the refused attempt yielded nothing
    first, second = generations(tgi)
    assert first["status"] == 429
    assert second["status"] == 200
    # The client slept Retry-After (1 s) between the answer to the first and the second request;
    # the backoff alone (0.01 s, doubling) would have retried at once.
    assert elapsed >= 0.99
    assert second["received_at"] - first["received_at"] >= 0.99
    assert elapsed < 5


def test_429_after_the_last_retry_carries_retry_after(tgi: FakeEngine) -> None:
    tgi.set_default(http_error(429, "Model is overloaded", "overloaded", retry_after=7))
    with pytest.raises(K2OverloadedError, match="overloaded") as info:
        chat(tgi.url, max_retries=0).invoke("q")
    assert info.value.status == 429
    assert info.value.retry_after == 7.0
    assert len(generations(tgi)) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_503_loading_then_success(tgi: FakeEngine, mode: Mode) -> None:
    loading = http_error(503, "Model is loading", None)
    tgi.script(loading, loading, ok())
    received: list[str] = []
    message = await call(chat(tgi.url, max_retries=2), mode, received)
    assert message.content == "Hello world!"
    if mode in {"stream", "astream"}:
        assert "".join(received) == "Hello world!"
    assert [r["status"] for r in generations(tgi)] == [503, 503, 200]


async def test_503_loading_past_the_retries_is_unavailable(tgi: FakeEngine) -> None:
    tgi.set_default(http_error(503, "Model is loading", None))
    with pytest.raises(K2UnavailableError, match="loading") as info:
        await chat(tgi.url, max_retries=1).ainvoke("q")
    assert info.value.status == 503
    assert len(generations(tgi)) == 2


@pytest.mark.parametrize("abort", ["reset", "close"])
@pytest.mark.parametrize("mode", MODES)
async def test_connection_dropped_before_headers_is_retried(
    tgi: FakeEngine, mode: Mode, abort: str
) -> None:
    tgi.script(reset_before_headers(abort=abort), ok())
    received: list[str] = []
    message = await call(chat(tgi.url, max_retries=1), mode, received)
    assert message.content == "Hello world!"
    if mode in {"stream", "astream"}:
        assert "".join(received) == "Hello world!"
    records = generations(tgi)
    assert len(records) == 2
    assert records[0]["fault"] == "reset_before_headers"


@pytest.mark.parametrize("mode", MODES)
async def test_stream_cut_before_the_first_token_is_retried_once(
    tgi: FakeEngine, mode: Mode
) -> None:
    # The 200 and its headers arrived, but no token: nothing was delivered, so it is retried.
    tgi.script(reply(tokens=tokens_of(*HELLO, eos()), cut_after=0), ok())
    received: list[str] = []
    message = await call(chat(tgi.url, max_retries=1), mode, received)
    assert message.content == "Hello world!"
    if mode in {"stream", "astream"}:
        assert "".join(received) == "Hello world!"
    assert [r["fault"] for r in generations(tgi)] == ["cut", None]


# ------------------------------------------------------------------------------ broken streams


@pytest.mark.parametrize("abort", ["reset", "close"])
@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_invoke_cut_midway_is_run_again_whole(
    tgi: FakeEngine, mode: Mode, abort: str
) -> None:
    tgi.script(reply(tokens=tokens_of(*HELLO), cut_after=2, abort=abort), ok())
    received: list[str] = []
    message = await call(chat(tgi.url, max_retries=3), mode, received)
    assert message.content == "Hello world!"
    assert len(generations(tgi)) == 2
    assert tgi.pending() == 0


@pytest.mark.parametrize("abort", ["reset", "close"])
@pytest.mark.parametrize("mode", STREAM_MODES)
async def test_stream_cut_midway_raises_with_exactly_the_partial_text(
    tgi: FakeEngine, mode: Mode, abort: str
) -> None:
    tgi.script(reply(tokens=tokens_of(*HELLO), cut_after=2, abort=abort), ok())
    received: list[str] = []
    with pytest.raises(K2StreamInterruptedError, match="not retried") as info:
        await call(chat(tgi.url, max_retries=3), mode, received)
    assert info.value.partial_text == "Hello wor"
    assert isinstance(info.value.cause, K2UnavailableError)
    if mode in {"stream", "astream"}:
        # What the user already holds is the partial text, once: nothing duplicated, no retry.
        assert "".join(received) == "Hello wor"
    assert len(generations(tgi)) == 1
    assert tgi.pending() == 1


@pytest.mark.parametrize("mode", STREAM_MODES)
async def test_stream_cut_inside_a_tool_call_block_forges_no_call(
    tgi: FakeEngine, mode: Mode
) -> None:
    call_json = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    tgi.script(
        reply(
            tokens=tokens_of(
                "Checking.", special("<tool_call>"), call_json, special("</tool_call>")
            ),
            cut_after=3,
        )
    )
    received: list[str] = []
    llm = chat(tgi.url, max_retries=3).bind_tools([get_weather])
    with pytest.raises(K2StreamInterruptedError) as info:
        await call(llm, mode, received)
    # The block was never closed, so no call reached the user; partial_text is what was
    # delivered (the text before the block), not the half block held by the parser.
    assert info.value.partial_text == "Checking."
    if mode in {"stream", "astream"}:
        assert "".join(received) == "Checking."
    assert len(generations(tgi)) == 1


ERROR_EVENTS_AT_START = [
    ("generation", K2GenerationError, 1),
    ("validation", K2ValidationError, 1),
    ("overloaded", None, 2),
    ("incomplete_generation", None, 2),
]


@pytest.mark.parametrize(("error_type", "raised", "sent"), ERROR_EVENTS_AT_START)
@pytest.mark.parametrize("mode", MODES)
async def test_error_event_before_any_token(
    tgi: FakeEngine, mode: Mode, error_type: str, raised: type[Exception] | None, sent: int
) -> None:
    tgi.script(
        reply(
            tokens=tokens_of(*HELLO),
            error_event_after=0,
            error=f"scripted {error_type}",
            error_type=error_type,
        ),
        ok(),
    )
    received: list[str] = []
    llm = chat(tgi.url, max_retries=2)
    if raised is None:  # retryable (429 / 500 kinds): retried, then the good reply
        assert (await call(llm, mode, received)).content == "Hello world!"
    else:
        with pytest.raises(raised, match=f"scripted {error_type}") as info:
            await call(llm, mode, received)
        assert info.value.error_type == error_type  # type: ignore[attr-defined]
    if mode in {"stream", "astream"}:
        assert "".join(received) == ("Hello world!" if raised is None else "")
    assert len(generations(tgi)) == sent


@pytest.mark.parametrize(
    ("error_type", "cause"),
    [("generation", K2GenerationError), ("overloaded", K2OverloadedError)],
)
@pytest.mark.parametrize("mode", STREAM_MODES)
async def test_error_event_after_tokens_interrupts_without_retry(
    tgi: FakeEngine, mode: Mode, error_type: str, cause: type[Exception]
) -> None:
    tgi.script(
        reply(
            tokens=tokens_of(*HELLO), error_event_after=2, error="CUDA OOM", error_type=error_type
        ),
        ok(),
    )
    received: list[str] = []
    with pytest.raises(K2StreamInterruptedError, match="CUDA OOM") as info:
        await call(chat(tgi.url, max_retries=3), mode, received)
    assert info.value.partial_text == "Hello wor"
    assert isinstance(info.value.cause, cause)
    if mode in {"stream", "astream"}:
        assert "".join(received) == "Hello wor"
    assert len(generations(tgi)) == 1


def test_incomplete_generation_500_is_retried_then_surfaces(tgi: FakeEngine) -> None:
    tgi.set_default(http_error(500, "Incomplete generation", "incomplete_generation"))
    with pytest.raises(K2IncompleteGenerationError) as info:
        chat(tgi.url, max_retries=2).invoke("q")
    assert info.value.status == 500
    assert len(generations(tgi)) == 3


# ------------------------------------------------------------------------------ timeouts


@pytest.mark.parametrize("mode", MODES)
async def test_hung_response_times_out_after_the_retries(tgi: FakeEngine, mode: Mode) -> None:
    tgi.set_default(hang())
    received: list[str] = []
    start = time.monotonic()
    with pytest.raises(K2TimeoutError, match="raise `timeout`"):
        await call(chat(tgi.url, timeout=1, max_retries=1), mode, received)
    elapsed = time.monotonic() - start
    assert received == []
    # Two attempts of 1 s each (no backoff); a hung server must not hold the caller longer.
    assert 1.9 <= elapsed < 4.5
    assert [r["fault"] for r in generations(tgi)] == ["hang", "hang"]


@pytest.mark.parametrize("mode", STREAM_MODES)
async def test_stall_after_the_first_token_interrupts(tgi: FakeEngine, mode: Mode) -> None:
    tgi.script(reply(tokens=tokens_of(*HELLO, eos()), token_delay_s=5.0))
    received: list[str] = []
    start = time.monotonic()
    with pytest.raises(K2StreamInterruptedError) as info:
        await call(chat(tgi.url, timeout=1, max_retries=3), mode, received)
    assert time.monotonic() - start < 3.5
    assert info.value.partial_text == "Hello"
    assert isinstance(info.value.cause, K2TimeoutError)
    if mode in {"stream", "astream"}:
        assert "".join(received) == "Hello"
    assert len(generations(tgi)) == 1


# ------------------------------------------------------------------------------ never retried


@pytest.mark.parametrize("mode", MODES)
async def test_422_is_never_retried(tgi: FakeEngine, mode: Mode) -> None:
    tgi.set_default(
        http_error(422, "Input validation error: `top_k` must be strictly positive", "validation")
    )
    with pytest.raises(K2ValidationError, match="top_k") as info:
        await call(chat(tgi.url, max_retries=5), mode)
    assert info.value.status == 422
    assert len(generations(tgi)) == 1


def test_401_is_not_retried_and_names_the_fix(tgi: FakeEngine) -> None:
    tgi.set_default(http_error(401, "Unauthorized", None))
    with pytest.raises(K2AuthenticationError, match="hf_token") as info:
        chat(tgi.url, max_retries=5).invoke("q")
    assert isinstance(info.value, K2BackendError)
    assert info.value.status == 401
    assert not info.value.retryable
    assert len(generations(tgi)) == 1


# ------------------------------------------------------------------------------ replicas


@pytest.fixture(scope="module")
def replica_servers() -> Iterator[list[FakeEngine]]:
    servers = [FakeEngine() for _ in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def replicas(replica_servers: list[FakeEngine]) -> list[FakeEngine]:
    for server in replica_servers:
        server.reset()
        server.set_default(ok())
    return replica_servers


def urls(servers: list[FakeEngine]) -> list[str]:
    return [s.url for s in servers]


def order_of_generations(servers: list[FakeEngine]) -> list[int]:
    """Which server (by index) answered each generation request, in the order received."""
    stamped = [(r["received_at"], i) for i, s in enumerate(servers) for r in generations(s)]
    return [i for _, i in sorted(stamped)]


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_requests_go_round_robin_over_healthy_replicas(
    replicas: list[FakeEngine], mode: Mode
) -> None:
    llm = chat(urls(replicas))
    for _ in range(9):
        assert (await call(llm, mode)).content == "Hello world!"
    order = order_of_generations(replicas)
    assert sorted(order) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(order[k + 1] == (order[k] + 1) % 3 for k in range(len(order) - 1))


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_failing_replica_is_skipped_for_the_cooldown(
    replicas: list[FakeEngine], mode: Mode
) -> None:
    a, b, c = replicas
    b.set_default(http_error(503, "Model is loading", None))
    llm = chat(urls(replicas), replica_cooldown=30, max_retries=2)
    for _ in range(8):
        assert (await call(llm, mode)).content == "Hello world!"
    # B was tried once, failed, and then sat out its cool-down: all later traffic went to
    # A and C, alternating, and the request B failed was retried on another replica.
    assert len(generations(b)) == 1
    assert len(generations(a)) + len(generations(c)) == 8
    assert abs(len(generations(a)) - len(generations(c))) <= 1
    order = order_of_generations(replicas)
    after_b = order[order.index(1) + 1 :]
    assert all(x != y for x, y in itertools.pairwise(after_b))


def test_replica_is_back_after_its_cooldown(replicas: list[FakeEngine]) -> None:
    b = replicas[1]
    b.script(http_error(503, "Model is loading", None))
    llm = chat(urls(replicas), replica_cooldown=0.5, max_retries=2)
    for _ in range(4):
        llm.invoke("q")
    assert len(generations(b)) == 1
    time.sleep(0.6)
    for _ in range(3):
        llm.invoke("q")
    failed, back = generations(b)
    assert back["received_at"] - failed["received_at"] >= 0.5
    assert back["status"] == 200


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_all_replicas_cooling_is_unavailable(replicas: list[FakeEngine], mode: Mode) -> None:
    for server in replicas:
        server.set_default(http_error(503, "Model is loading", None))
    llm = chat(urls(replicas), replica_cooldown=30, max_retries=2)
    with pytest.raises(K2UnavailableError, match="loading"):
        await call(llm, mode)
    assert [len(generations(s)) for s in replicas] == [1, 1, 1]
    # Now every replica cools down: the next request fails without reaching any of them.
    llm.max_retries = 0
    with pytest.raises(K2UnavailableError, match="All 3 TGI replicas are cooling down") as info:
        await call(llm, mode)
    assert info.value.retry_after is not None
    assert 25 < info.value.retry_after <= 30
    assert [len(generations(s)) for s in replicas] == [1, 1, 1]


async def test_when_all_cool_the_retry_waits_for_the_first_back(replicas: list[FakeEngine]) -> None:
    for server in replicas:
        server.script(http_error(503, "Model is loading", None))
    llm = chat(urls(replicas), replica_cooldown=1.0, max_retries=4)
    start = time.monotonic()
    assert (await llm.ainvoke("q")).content == "Hello world!"
    assert time.monotonic() - start >= 0.95
    records = sorted(
        (
            (r["received_at"], i, r["status"])
            for i, s in enumerate(replicas)
            for r in generations(s)
        ),
    )
    assert [status for _, _, status in records] == [503, 503, 503, 200]
    first_failed_at, first_index, _ = records[0]
    success_at, success_index, _ = records[-1]
    # Attempt 4 found all three cooling (no request sent) and waited for the first to return.
    assert success_index == first_index
    assert success_at - first_failed_at >= 0.99


def test_422_does_not_cool_a_replica(replicas: list[FakeEngine]) -> None:
    for server in replicas:
        server.script(http_error(422, "Input validation error: nope", "validation"))
    llm = chat(urls(replicas), replica_cooldown=30, max_retries=2)
    for _ in range(3):
        with pytest.raises(K2ValidationError):
            llm.invoke("q")
    for _ in range(3):
        assert llm.invoke("q").content == "Hello world!"
    assert [len(generations(s)) for s in replicas] == [2, 2, 2]
