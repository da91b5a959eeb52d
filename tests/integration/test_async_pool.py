"""Async requests beyond the HTTP pool's size wait in ChatK2's TGI backend, not in httpcore.

httpcore keeps the requests a full pool cannot take in a queue that it rescans whenever a
connection frees up (quadratic in a burst's size); the backend holds them back itself, so
that queue stays empty. These tests run real bursts against the loopback server with a
small pool set through huggingface_hub's own client factory, and read the pool while they
run.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from huggingface_hub import set_async_client_factory
from huggingface_hub.utils._http import default_async_client_factory

from langchain_k2 import ChatK2, K2TimeoutError
from langchain_k2.backends._http import _ASYNC_SESSIONS, _async_session, _LoopSession
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply

POOL = 3


@pytest.fixture
def small_pool() -> Iterator[None]:
    """huggingface_hub's async clients get a pool of `POOL` connections for this test."""
    set_async_client_factory(lambda: httpx.AsyncClient(limits=httpx.Limits(max_connections=POOL)))
    try:
        yield
    finally:
        set_async_client_factory(default_async_client_factory)


def _pool_size(session: _LoopSession) -> int:
    """Requests inside httpcore's pool: those on a connection plus those queued for one."""
    pool: Any = session.client._transport._pool  # type: ignore[attr-defined]
    return len(pool._requests)


async def _burst(llm: ChatK2, n: int) -> tuple[list[str], int]:
    """`n` concurrent calls (every third one streamed); their texts, and the pool's peak."""

    async def one(i: int) -> str:
        if i % 3 == 0:
            return "".join([str(c.content) async for c in llm.astream(f"call {i}")])
        return str((await llm.ainvoke(f"call {i}")).content)

    await llm.ainvoke("warm up")  # reads /info, builds this loop's session
    session = _async_session()
    peak = 0
    calls = asyncio.gather(*(one(i) for i in range(n)))
    while not calls.done():
        peak = max(peak, _pool_size(session))
        await asyncio.sleep(0.002)
    return await calls, peak


@pytest.mark.usefixtures("small_pool")
def test_a_burst_waits_for_slots_and_never_overloads_the_server(tgi: FakeEngine) -> None:
    tgi.configure(latency_s=0.05, max_concurrent_requests=POOL)
    tgi.set_default(reply("pong"))
    llm = ChatK2(endpoint_url=tgi.url, max_retries=0)
    texts, peak = asyncio.run(_burst(llm, 4 * POOL))
    assert texts == ["pong"] * (4 * POOL)
    assert peak <= POOL, f"{peak} requests sat in httpcore's pool of {POOL}"
    generations = [r for r in tgi.requests() if r["path"] == "/"]
    assert len(generations) == 4 * POOL + 1
    assert [r["fault"] for r in generations if r["fault"]] == []  # none refused as overloaded


@pytest.mark.usefixtures("small_pool")
def test_waiting_for_a_slot_longer_than_timeout_is_a_timeout(tgi: FakeEngine) -> None:
    tgi.set_default(reply("pong"))
    tgi.script(*[reply("a b c d", token_delay_s=0.3) for _ in range(POOL)])
    llm = ChatK2(endpoint_url=tgi.url, max_retries=0, timeout=0.2)

    async def run() -> str:
        streams = [llm.astream("slow") for _ in range(POOL)]
        firsts = [await anext(s) for s in streams]  # every connection now holds a stream
        assert [c.content for c in firsts] == ["a"] * POOL
        with pytest.raises(K2TimeoutError) as info:
            await llm.ainvoke("one more")
        assert str(info.value) == (
            f"No connection to TGI at {tgi.url} came free in time (all {POOL} connections of "
            "this event loop's pool stayed busy for 0.2 s): this process already had as many "
            "requests in flight as its HTTP pool allows. Send fewer at once (abatch's "
            "max_concurrency), raise `timeout`, or give huggingface_hub a client with a "
            "larger pool (set_async_client_factory)."
        )
        assert llm._get_backend().replicas.cooling() == []  # type: ignore[attr-defined]
        for s in streams:
            await s.aclose()
        return str((await llm.ainvoke("after")).content)  # the slots were given back

    assert asyncio.run(run()) == "pong"


def test_a_client_without_a_readable_pool_is_not_gated() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    custom = _LoopSession(httpx.AsyncClient(transport=httpx.MockTransport(answer)))
    assert custom.limit is None
    default = _LoopSession(httpx.AsyncClient())
    assert default.limit == 100  # httpx's default max_connections

    async def gated() -> int:
        async with custom.slot(0.01), custom.slot(0.01):  # no slots to run out of
            response = await custom.client.get("http://127.0.0.1:9/")
        return response.status_code

    assert asyncio.run(gated()) == 200


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def plain_clients() -> Iterator[None]:
    """Async clients without a CA bundle to load (loopback, plain http): ~4x cheaper each."""
    set_async_client_factory(lambda: httpx.AsyncClient(verify=False))  # noqa: S501 -- plain http
    try:
        yield
    finally:
        set_async_client_factory(default_async_client_factory)


@pytest.mark.usefixtures("plain_clients")
def test_asyncio_run_per_call_leaks_neither_sockets_nor_loops(tgi: FakeEngine) -> None:
    """Each ``asyncio.run`` gets its own client; it is closed when that loop ends."""
    tgi.set_default(reply(text="ok"))
    llm = ChatK2(endpoint_url=tgi.url, max_retries=0, max_new_tokens=4)
    assert asyncio.run(llm.ainvoke("warm up")).content == "ok"
    gc.collect()
    before = _open_fds()
    for _ in range(300):
        assert asyncio.run(llm.ainvoke("hi")).content == "ok"
    gc.collect()
    assert _open_fds() - before < 10
    assert len(_ASYNC_SESSIONS) <= 1  # no client of a finished loop is kept


@pytest.mark.usefixtures("plain_clients")
def test_a_loop_closed_without_cancelling_its_tasks_drops_its_client(tgi: FakeEngine) -> None:
    tgi.set_default(reply(text="ok"))
    llm = ChatK2(endpoint_url=tgi.url, max_retries=0, max_new_tokens=4)
    before = _open_fds()
    for _ in range(50):
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(llm.ainvoke("hi")).content == "ok"
        loop.close()
    assert asyncio.run(llm.ainvoke("hi")).content == "ok"  # sweeps the closed loops' clients
    gc.collect()
    assert _open_fds() - before < 10
