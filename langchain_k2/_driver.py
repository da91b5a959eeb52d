"""Drive a sans-IO `langchain_k2._turn.Turn` against a backend: the only place turns do I/O.

In: a `Backend`, a local tokenizer (optional), retry settings, and a *setup* (a function of the
backend's `BackendInfo` and a counter that builds the turn: ``ChatK2`` supplies it).
Out: ``ChatGenerationChunk`` objects as the turn releases them, or one ``ChatResult``.

Two thin twins share the turn's logic: `Driver.drive` (sync) and `Driver.adrive` (async)
answer each step the turn asks for (`langchain_k2._steps`: generate, count, finished) with
transport retries (`langchain_k2._retries`) and hand every fault to the turn, which decides
(a repair that failed, a grammar the server refused, a stream cut midway). They touch five
members of `Turn`: ``step``, ``feed``, ``reading``, ``counted``, ``failed``. Counting a
prompt's tokens may be a request to the server, so setup does it only when the byte bound
(`surely_fits`) cannot rule out an overflow, and never on the event loop (`MustCount`).

This module does not import ``chat_models``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from langchain_k2._context import ContextLimits, fit_messages
from langchain_k2._retries import acall_with_retries, call_with_retries
from langchain_k2._steps import CountTokens, Finished, GenerationRequest, surely_fits
from langchain_k2._tokenizer import Tokenizer, count_prompt_tokens
from langchain_k2._turn import Turn
from langchain_k2.backends._base import Backend, BackendInfo, GenerationEvent
from langchain_k2.errors import (
    K2BackendError,
    K2ConfigError,
    K2GrammarUnsupportedError,
    K2StreamInterruptedError,
)

_T = TypeVar("_T")

Count = Callable[[str], int]
"""Tokens of a rendered prompt, as the server counts them (may be a request)."""

Setup = Callable[[BackendInfo, "Count | None"], Turn]
"""Builds a turn from the backend's info; with no counter it may raise `MustCount`."""


class MustCount(Exception):  # noqa: N818 -- a signal, not an error
    """Raised by a setup given no counter when the prompt's tokens must be counted."""


def retryable(exc: BaseException) -> bool:
    """A transport fault worth another attempt (429, 503, timeouts, refused connections)."""
    return isinstance(exc, K2BackendError) and exc.retryable


def restartable(exc: BaseException) -> bool:
    """A stream cut by a retryable fault, when nothing of it reached the caller."""
    return isinstance(exc, K2StreamInterruptedError) and retryable(exc.cause or exc)


def fitted_prompt(
    messages: list[BaseMessage],
    render: Callable[[Sequence[BaseMessage]], str],
    limits: ContextLimits,
    max_new_tokens: int,
    *,
    trim: bool,
    count: Count | None,
    engine: str = "tgi",
) -> str:
    """The rendered prompt, checked (and with ``trim``, trimmed) against the window.

    Tokens are counted only when the byte bound cannot rule out an overflow; then, with
    ``count=None`` (on an event loop), `MustCount` is raised instead.
    """
    prompt = render(messages)
    if surely_fits(prompt, max_new_tokens, limits.window, limits.max_input_tokens):
        return prompt
    if count is None:
        raise MustCount
    fitted = fit_messages(
        messages,
        count=lambda conversation: count(render(conversation)),
        window=limits.window,
        max_input_tokens=limits.max_input_tokens,
        max_new_tokens=max_new_tokens,
        trim=trim,
        engine=engine,
    )
    return prompt if fitted is messages else render(fitted)


def server_stops(
    user_stops: Sequence[str], markers: Sequence[str], limit: int | None
) -> tuple[str, ...]:
    """The stop strings to send: the caller's, then turn-ending markers while ``limit`` allows.

    Markers are cut client-side anyway; sending them lets the server stop generating where
    it does not know them as end-of-sequence tokens (a marker that opens the next turn). With
    no limit known (vLLM, SGLang, llama.cpp take any number) every marker is sent.

    Example:
        >>> server_stops(["END"], ["<|endoftext|>", "<|beginofuser|>"], limit=2)
        ('END', '<|endoftext|>')
        >>> server_stops([], ["<|endoftext|>", "<|beginofuser|>"], limit=None)
        ('<|endoftext|>', '<|beginofuser|>')
        >>> server_stops(["a", "b", "c"], [], limit=2)
        Traceback (most recent call last):
        ...
        langchain_k2.errors.K2ConfigError: 3 stop strings were given but the server accepts \
at most 2 (TGI's --max-stop-sequences): pass at most 2.
    """
    if limit is not None and len(user_stops) > limit:
        raise K2ConfigError(
            f"{len(user_stops)} stop strings were given but the server accepts at most "
            f"{limit} (TGI's --max-stop-sequences): pass at most {limit}."
        )
    room = len(markers) if limit is None else max(0, limit - len(user_stops))
    extra = tuple(m for m in markers if m not in user_stops)[:room]
    return (*user_stops, *extra)


@dataclass(frozen=True)
class Driver:
    """Runs turns against ``backend``.

    Args:
        backend: the engine.
        tokenizer: loads the local tokenizer that counts prompts' tokens (``None``: the
            backend counts).
        attempts: tries of each request (``max_retries + 1``).
        backoff: first retry delay in seconds.
    """

    backend: Backend
    tokenizer: Callable[[], Tokenizer] | None = None
    attempts: int = 1
    backoff: float = 0.0

    def count(self, prompt: str) -> int:
        """Tokens of a rendered prompt, as the server will count them."""
        if self.tokenizer is None:
            return self.backend.count_tokens(prompt)
        return count_prompt_tokens(self.tokenizer(), prompt, add_special_tokens=True)

    async def acount(self, prompt: str) -> int:
        """Async twin of `count` (a local tokenizer counts in a thread)."""
        if self.tokenizer is None:
            return await self.backend.acount_tokens(prompt)
        return await asyncio.to_thread(self.count, prompt)

    # ------------------------------------------------------------------ retries

    def retry(self, fn: Callable[..., _T], *args: Any, restart: bool = False) -> _T:
        """``fn(*args)`` with transport retries (``restart``: whole turns cut midway)."""
        return call_with_retries(
            fn,
            *args,
            attempts=self.attempts,
            initial=self.backoff,
            retryable=restartable if restart else retryable,
        )

    async def aretry(
        self, fn: Callable[..., Awaitable[_T]], *args: Any, restart: bool = False
    ) -> _T:
        """Async twin of `retry`."""
        return await acall_with_retries(
            fn,
            *args,
            attempts=self.attempts,
            initial=self.backoff,
            retryable=restartable if restart else retryable,
        )

    # ------------------------------------------------------------------ LangChain calls

    def invoke(self, setup: Setup) -> ChatResult:
        """The whole turn, as one result.

        Nothing of it reaches the caller before it ends, so a stream cut by a transport
        fault is run again from the start.
        """
        self.retry(self.backend.info)  # later reads come from the backend's cache

        def once() -> ChatResult:
            turn = setup(self.backend.info(), self.count)
            for _ in self.drive(turn):
                pass
            return outcome(turn)

        return self.retry(once, restart=True)

    async def ainvoke(self, setup: Setup) -> ChatResult:
        """Async twin of `invoke`."""
        await self.aretry(self.backend.ainfo)

        async def once() -> ChatResult:
            turn = await self.aprepare(setup, await self.backend.ainfo())
            async for _ in self.adrive(turn):
                pass
            return outcome(turn)

        return await self.aretry(once, restart=True)

    def stream(self, setup: Setup) -> Iterator[ChatGenerationChunk]:
        """The turn's chunks as they are released, then a last one with usage."""
        info = self.retry(self.backend.info)
        yield from self.drive(setup(info, self.count))

    async def astream(self, setup: Setup) -> AsyncIterator[ChatGenerationChunk]:
        """Async twin of `stream`."""
        info = await self.aretry(self.backend.ainfo)
        async for chunk in self.adrive(await self.aprepare(setup, info)):
            yield chunk

    async def aprepare(self, setup: Setup, info: BackendInfo) -> Turn:
        """``setup`` on the event loop, or in a thread when it must count tokens."""
        try:
            return setup(info, None)
        except MustCount:
            return await asyncio.to_thread(setup, info, self.count)

    @staticmethod
    def _refusal(exc: K2BackendError, info: BackendInfo | None) -> str | None:
        """What to tell of a refused constraint: the engine's words when about this schema.

        A backend that refuses every grammar (TGI's ``--disable-grammar-support``) records
        it in ``info`` and the fixed note says so; one that refused only this schema (a
        pattern it cannot compile) is quoted. ``None`` for any other failure.
        """
        if info is None or info.supports_grammar is False:
            return None
        return str(exc)

    # ------------------------------------------------------------------ sync driver

    def _open(
        self, request: GenerationRequest
    ) -> tuple[Iterator[GenerationEvent], GenerationEvent | None]:
        events = iter(self.backend.stream(request.prompt, request.params, live=request.live))
        return events, next(events, None)

    def drive(self, turn: Turn) -> Iterator[ChatGenerationChunk]:
        """Answer ``turn``'s steps; yield the chunks it releases."""
        while not isinstance(step := turn.step(), Finished):
            try:
                if isinstance(step, CountTokens):
                    yield from turn.counted(self.count(step.prompt))
                    continue
                events, event = self.retry(self._open, step)
                try:
                    while event is not None and turn.reading:
                        yield from turn.feed(event)
                        event = next(events, None) if turn.reading else None
                finally:
                    cast("Any", events).close()
                yield from turn.feed(None)
            except K2BackendError as exc:
                refused = isinstance(exc, K2GrammarUnsupportedError)
                info = self.backend.info() if refused else None
                yield from turn.failed(exc, self._refusal(exc, info))
        if step.last is not None:  # invoke reads step.result instead
            yield step.last

    # ------------------------------------------------------------------ async driver

    async def _aopen(
        self, request: GenerationRequest
    ) -> tuple[AsyncIterator[GenerationEvent], GenerationEvent | None]:
        events = aiter(self.backend.astream(request.prompt, request.params, live=request.live))
        return events, await anext(events, None)

    async def adrive(self, turn: Turn) -> AsyncIterator[ChatGenerationChunk]:
        """Async twin of `drive`."""
        while not isinstance(step := turn.step(), Finished):
            chunks: list[ChatGenerationChunk] = []
            try:
                if isinstance(step, CountTokens):
                    chunks = turn.counted(await self.acount(step.prompt))
                else:
                    events, event = await self.aretry(self._aopen, step)
                    try:
                        while event is not None and turn.reading:
                            for chunk in turn.feed(event):
                                yield chunk
                            event = await anext(events, None) if turn.reading else None
                    finally:
                        await cast("Any", events).aclose()
                    chunks = turn.feed(None)
            except K2BackendError as exc:
                refused = isinstance(exc, K2GrammarUnsupportedError)
                info = await self.backend.ainfo() if refused else None
                chunks = turn.failed(exc, self._refusal(exc, info))
            for chunk in chunks:
                yield chunk
        if step.last is not None:  # ainvoke reads step.result instead
            yield step.last


def outcome(turn: Turn) -> ChatResult:
    """The finished turn as LangChain's ``ChatResult`` (after `Driver.drive` ran it)."""
    step = turn.step()
    if not isinstance(step, Finished):
        raise TypeError(f"the turn has not finished: it asks for {type(step).__name__}")
    return step.result


__all__ = ["Driver", "MustCount", "fitted_prompt", "server_stops", "surely_fits"]
