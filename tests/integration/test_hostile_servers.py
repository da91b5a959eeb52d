"""ChatK2 against servers that break HTTP on purpose: every read bounded in bytes and time.

Each hostile behaviour of `tests.support.hostile_server` (a subprocess on loopback)
meets every engine and every way of calling (invoke, ainvoke, stream, astream: each
behaviour rotates the four over the five engines), and the info and tokenize probes. Each
case measures this process's memory (sampled while the call runs) and the call's wall
time, and asserts generous bounds: under 64 MB more, and under the bound that should
stop it plus 2 s. Legal text with Unicode line breaks streams as it is invoked.
"""

from __future__ import annotations

import asyncio
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage

from langchain_k2 import ChatK2, K2BackendError, K2StreamInterruptedError, K2TimeoutError
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply
from tests.support.hostile_server import TEXT, HostileServer

ENGINES = ("tgi", "vllm", "sglang", "llama.cpp", "llama-cpp-python")
MODES = ("invoke", "ainvoke", "stream", "astream")
MB = 1 << 20
SLACK_S = 2.0
TIMEOUT_S = 0.5  # status line and headers within this (and each socket read)
DEADLINE_S = 1.0  # each whole request within this


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


def chat(server: HostileServer, behaviour: str, engine: str, **kwargs: Any) -> ChatK2:
    kwargs.setdefault("max_new_tokens", 16)
    kwargs.setdefault("timeout", TIMEOUT_S)
    kwargs.setdefault("request_deadline", DEADLINE_S)
    return ChatK2(
        endpoint_url=f"{server.url}/{behaviour}",
        engine=engine,
        max_retries=0,
        context_window=4096,
        **kwargs,
    )


def run(llm: ChatK2, mode: str) -> BaseMessage:
    """The message ``mode`` gives (streamed chunks merged)."""
    if mode == "invoke":
        return llm.invoke("hi")
    if mode == "stream":
        return _merged(list(llm.stream("hi")))
    if mode == "ainvoke":
        return asyncio.run(llm.ainvoke("hi"))

    async def collect() -> list[AIMessageChunk]:
        return [chunk async for chunk in llm.astream("hi")]

    return _merged(asyncio.run(collect()))


def _merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    return merged


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Cost:
    """Wall time and the most memory this process grew by while ``fn`` ran."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        base, peak_before = _rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        top = [base]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.005):
                top[0] = max(top[0], _rss())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        self.error: BaseException | None = None
        self.result: Any = None
        try:
            self.result = fn()
        except Exception as exc:  # asserted by the caller
            self.error = exc
        self.seconds = time.monotonic() - started
        done.set()
        sampler.join()
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.grew = max(top[0], _rss()) - base
        self.grew = max(self.grew, peak_after - max(peak_before, base))

    def bounded(self, seconds: float) -> None:
        assert self.grew < 64 * MB, f"memory grew by {self.grew / MB:.1f} MB"
        assert self.seconds < seconds + SLACK_S, f"took {self.seconds:.2f} s"

    def failed_with(self, kind: type[BaseException], *words: str) -> BaseException:
        """The error raised (or the cause of a stream cut midway), which must be ``kind``."""
        error = self.error
        if isinstance(error, K2StreamInterruptedError):
            error = error.cause
        assert isinstance(error, kind), f"{type(self.error).__name__}: {self.error}"
        for word in words:
            assert word in str(error), str(error)
        return error


def rotation(modes: tuple[str, ...] = MODES) -> list[tuple[str, str]]:
    """Every engine, and every mode, at least once: ``(engine, mode)`` pairs."""
    return [(engine, modes[i % len(modes)]) for i, engine in enumerate(ENGINES)]


# ------------------------------------------------------------------ legal text


@pytest.mark.parametrize("engine", ENGINES)
def test_unicode_line_breaks_stream_as_they_are_invoked(
    hostile: HostileServer, engine: str
) -> None:
    llm = chat(hostile, "text", engine)
    whole = run(llm, "invoke")
    assert whole.content == TEXT
    for mode in ("stream", "astream"):
        assert run(llm, mode).content == TEXT


def test_unicode_line_breaks_through_the_fakes(served: FakeEngine) -> None:
    served.script(reply(text=TEXT), reply(text=TEXT), reply(text=TEXT))
    llm = ChatK2(endpoint_url=served.url, engine=served.engine, max_retries=0)
    whole = llm.invoke("hi")
    assert whole.content == TEXT
    assert _merged(list(llm.stream("hi"))).content == TEXT

    async def collect() -> list[AIMessageChunk]:
        return [chunk async for chunk in llm.astream("hi")]

    assert _merged(asyncio.run(collect())).content == TEXT


# ------------------------------------------------------------------ no end


@pytest.mark.parametrize(("engine", "mode"), rotation(("stream", "astream")))
def test_a_stream_that_never_ends_is_cut_at_length(
    hostile: HostileServer, engine: str, mode: str
) -> None:
    llm = chat(hostile, "endless", engine, request_deadline=30.0)
    cost = Cost(lambda: run(llm, mode))
    cost.bounded(5.0)
    assert cost.error is None, cost.error
    message = cost.result
    assert message.response_metadata["finish_reason"] == "length"
    # Clearly more than max_new_tokens (16), and clearly bounded: 2 * 16 + 256 events.
    assert 16 < len(message.content) <= 2 * 16 + 256 + 1


@pytest.mark.parametrize(("engine", "mode"), rotation(("stream", "astream")))
def test_endless_keep_alive_comments_are_refused(
    hostile: HostileServer, engine: str, mode: str
) -> None:
    cost = Cost(lambda: run(chat(hostile, "keepalive", engine, request_deadline=30.0), mode))
    cost.bounded(5.0)
    cost.failed_with(K2BackendError, "lines of event stream")


@pytest.mark.parametrize(("engine", "mode"), rotation(("invoke", "ainvoke")))
def test_a_body_that_never_ends_is_refused_at_its_cap(
    hostile: HostileServer, engine: str, mode: str
) -> None:
    cost = Cost(lambda: run(chat(hostile, "huge", engine, request_deadline=30.0), mode))
    cost.bounded(5.0)
    cost.failed_with(K2BackendError, "exceeded", "docs/limits.md")


@pytest.mark.parametrize(("engine", "mode"), rotation(("stream", "astream")))
def test_one_endless_sse_line_is_refused_at_its_cap(
    hostile: HostileServer, engine: str, mode: str
) -> None:
    cost = Cost(lambda: run(chat(hostile, "huge", engine, request_deadline=30.0), mode))
    cost.bounded(5.0)
    cost.failed_with(K2BackendError, "a line of the event stream exceeded")


@pytest.mark.parametrize(("engine", "mode"), rotation())
def test_a_gzip_bomb_costs_no_more_than_the_cap(
    hostile: HostileServer, engine: str, mode: str
) -> None:
    cost = Cost(lambda: run(chat(hostile, "gzip", engine, request_deadline=30.0), mode))
    cost.bounded(5.0)
    cost.failed_with(K2BackendError, "exceeded")


@pytest.mark.parametrize(("engine", "mode"), rotation())
def test_an_endless_error_body_is_cut(hostile: HostileServer, engine: str, mode: str) -> None:
    cost = Cost(lambda: run(chat(hostile, "huge-error", engine, request_deadline=30.0), mode))
    cost.bounded(5.0)
    error = cost.failed_with(K2BackendError, "overloaded")
    assert len(str(error)) < 70_000  # the page, cut at 64 KiB at most


# ------------------------------------------------------------------ drips


@pytest.mark.parametrize(("engine", "mode"), rotation())
def test_dripped_headers_end_at_timeout(hostile: HostileServer, engine: str, mode: str) -> None:
    cost = Cost(lambda: run(chat(hostile, "drip-headers", engine), mode))
    cost.bounded(TIMEOUT_S)
    error = cost.failed_with(K2TimeoutError, "status line and headers")
    assert error.retryable


@pytest.mark.parametrize(("engine", "mode"), rotation(("invoke", "ainvoke")))
def test_a_dripped_body_ends_at_the_deadline(
    hostile: HostileServer, engine: str, mode: str
) -> None:
    cost = Cost(lambda: run(chat(hostile, "drip-body", engine), mode))
    cost.bounded(DEADLINE_S)
    error = cost.failed_with(K2TimeoutError, "request_deadline")
    assert not error.retryable
    assert not error.is_retryable  # langchain-core's ModelRetryMiddleware agrees


@pytest.mark.parametrize(("engine", "mode"), rotation(("stream", "astream")))
def test_dripped_events_end_at_the_deadline(hostile: HostileServer, engine: str, mode: str) -> None:
    cost = Cost(lambda: run(chat(hostile, "drip-events", engine), mode))
    cost.bounded(DEADLINE_S)
    cost.failed_with(K2TimeoutError, "request_deadline")


# ------------------------------------------------------------------ probes


def _probe(llm: ChatK2, kind: str, asynchronous: bool) -> Any:
    backend = llm._get_backend()
    if kind == "info":
        return asyncio.run(backend.ainfo()) if asynchronous else backend.info()
    if asynchronous:
        return asyncio.run(backend.acount_tokens("hi"))  # type: ignore[attr-defined]
    return backend.count_tokens("hi")


PROBES = [
    (engine, kind, asynchronous)
    for engine in ENGINES
    for kind, asynchronous in (("info", False), ("tokens", True))
    if not (engine == "llama-cpp-python" and kind == "info")  # it has no info route
]


@pytest.mark.parametrize(("engine", "kind", "asynchronous"), PROBES)
def test_probes_are_bounded(
    hostile: HostileServer, engine: str, kind: str, asynchronous: bool
) -> None:
    dripped = Cost(lambda: _probe(chat(hostile, "probe-drip-headers", engine), kind, asynchronous))
    dripped.bounded(TIMEOUT_S)
    dripped.failed_with(K2TimeoutError, "status line and headers")
    huge_llm = chat(hostile, "probe-huge", engine, request_deadline=30.0)
    huge = Cost(lambda: _probe(huge_llm, kind, asynchronous))
    huge.bounded(5.0)
    huge.failed_with(K2BackendError, "exceeded")


def test_a_plain_answer_still_works_after_every_hostile_case(hostile: HostileServer) -> None:
    message = run(chat(hostile, "text", "tgi"), "invoke")
    assert isinstance(message, AIMessage)
    assert message.content == TEXT
