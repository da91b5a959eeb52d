"""A blocking generator run in a worker thread, consumed as an async generator.

In: a function that takes a cancel `threading.Event` and returns a sync generator (an
in-process engine's token loop, which blocks between items). Out: an async generator that
yields the same items, as the worker produces them, and raises what the worker raised.
Closing it early (``break``, ``aclose()``, cancellation) sets the event, which the worker
checks between items, and waits until the worker has closed its generator (so whatever
the generator holds, a lock say, is released when ``aclose()`` returns).

Example:
    >>> import asyncio
    >>> def count(cancel):
    ...     yield from range(3)
    >>> async def main():
    ...     return [n async for n in stream_in_thread(count, name="example")]
    >>> asyncio.run(main())
    [0, 1, 2]
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TypeVar

__all__ = ["stream_in_thread"]

T = TypeVar("T")


async def stream_in_thread(
    start: Callable[[threading.Event], Generator[T, None, None]], *, name: str
) -> AsyncGenerator[T, None]:
    """Run ``start(cancel)`` in a daemon thread named ``name``; yield its items here.

    Raises:
        BaseException: whatever the worker's generator raised, re-raised in the consumer.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[T | BaseException | None] = asyncio.Queue()
    cancel = threading.Event()
    finished: asyncio.Future[None] = loop.create_future()

    def deliver(item: T | BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening
            cancel.set()

    def mark_finished() -> None:
        if not finished.done():
            finished.set_result(None)

    def work() -> None:
        events = start(cancel)
        try:
            for event in events:
                if cancel.is_set():
                    break
                deliver(event)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the consumer
            deliver(exc)
        finally:
            events.close()
            deliver(None)
            with contextlib.suppress(RuntimeError):  # the event loop is closed
                loop.call_soon_threadsafe(mark_finished)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancel.set()
        if not finished.done():
            await asyncio.shield(finished)
