"""``stream_in_thread``: a blocking generator in a worker thread, consumed asynchronously."""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest

from langchain_k2.backends._thread_stream import stream_in_thread


async def test_closing_early_stops_the_worker_and_releases_what_it_holds() -> None:
    lock = threading.Lock()
    produced: list[int] = []

    def numbers(cancel: threading.Event) -> Generator[int, None, None]:
        with lock:
            n = 0
            while not cancel.is_set():
                produced.append(n)
                yield n
                n += 1

    stream = stream_in_thread(numbers, name="test-worker")
    assert [await anext(stream), await anext(stream)] == [0, 1]
    await stream.aclose()
    assert not lock.locked()
    count = len(produced)
    for thread in threading.enumerate():
        if thread.name == "test-worker":
            thread.join(timeout=5)
    assert len(produced) == count  # nothing more was produced after aclose() returned


async def test_the_workers_exception_is_raised_in_the_consumer() -> None:
    def failing(cancel: threading.Event) -> Generator[str, None, None]:
        yield "first"
        raise ValueError("engine broke")

    stream = stream_in_thread(failing, name="test-failing")
    assert await anext(stream) == "first"
    with pytest.raises(ValueError, match="engine broke"):
        await anext(stream)
