"""Drive a sans-IO `langchain_k2.turn.Turn` against a backend: the only place turns do I/O.

In: a `Backend`, a local tokenizer (optional), retry settings, and a *setup* (a function of the
backend's `BackendInfo` and a counter that builds the turn: ``ChatK2`` supplies it).
Out: ``ChatGenerationChunk`` objects as the turn releases them, or one ``ChatResult``.

Two thin twins share the turn's logic: `Driver.drive` (sync) and `Driver.adrive` (async)
move each of the turn's requests to the backend and its events back into the turn, with
transport retries (`langchain_k2.retries`), the window check of repair prompts, and the
grammar-refusal handshake (the request is sent again without grammar; the backend
records the refusal in its ``info()``). Counting a prompt's tokens may be a request to the
server, so it is done only when the byte bound (`surely_fits`) cannot rule out an
overflow, and never on the event loop (`MustCount`).

This module does not import ``chat_models``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from langchain_k2.backends.base import Backend, BackendInfo, GenerationEvent
from langchain_k2.context import ContextLimits, fit_messages
from langchain_k2.errors import (
    K2BackendError,
    K2ConfigError,
    K2GrammarUnsupportedError,
    K2StreamInterruptedError,
)
from langchain_k2.retries import acall_with_retries, call_with_retries
from langchain_k2.tokenizer import count_prompt_tokens
from langchain_k2.turn import GenerationRequest, Turn

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


def surely_fits(
    prompt: str, max_new_tokens: int, window: int | None, max_input_tokens: int | None
) -> bool:
    """True when no tokenizer can make ``prompt`` overflow the limits.

    A token covers at least one UTF-8 byte, so the byte count (plus two for BOS/EOS)
    bounds the token count without asking the backend.

    Example:
        >>> surely_fits("hello", 10, window=20, max_input_tokens=None)
        True
        >>> surely_fits("hello", 10, window=16, max_input_tokens=None)
        False
    """
    bound = len(prompt.encode("utf-8")) + 2
    if window is not None and bound + max_new_tokens > window:
        return False
    return max_input_tokens is None or bound <= max_input_tokens


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


def must_count(request: GenerationRequest, turn: Turn) -> bool:
    """Whether a repair prompt's tokens must be counted to fit it in the window."""
    params = request.params
    return request.repair and not surely_fits(
        request.prompt, params.max_new_tokens, turn.config.window, turn.config.max_input_tokens
    )


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
    tokenizer: Callable[[], Any] | None = None
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

    def _count_or_zero(self, prompt: str) -> int:
        """`count` for usage: a server that cannot count (no ``/tokenize``) counts nothing."""
        try:
            return self.count(prompt)
        except K2BackendError:
            return 0

    async def _acount_or_zero(self, prompt: str) -> int:
        """Async twin of `_count_or_zero`."""
        try:
            return await self.acount(prompt)
        except K2BackendError:
            return 0

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
            return result_of(turn)

        return self.retry(once, restart=True)

    async def ainvoke(self, setup: Setup) -> ChatResult:
        """Async twin of `invoke`."""
        await self.aretry(self.backend.ainfo)

        async def once() -> ChatResult:
            turn = await self.aprepare(setup, await self.backend.ainfo())
            async for _ in self.adrive(turn):
                pass
            return result_of(turn)

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
    def _refusal(refused: K2GrammarUnsupportedError, info: BackendInfo) -> str | None:
        """What to tell of a refused constraint: the engine's words when about this schema.

        A backend that refuses every grammar (TGI's ``--disable-grammar-support``) records
        it in ``info`` and the fixed note says so; one that refused only this schema (a
        pattern it cannot compile) is quoted.
        """
        return None if info.supports_grammar is False else str(refused)

    # ------------------------------------------------------------------ sync driver

    def _open(
        self, turn: Turn, request: GenerationRequest
    ) -> tuple[Iterator[GenerationEvent], GenerationEvent | None]:
        live = turn.config.emit_chunks
        if request.params.grammar is not None and turn.grammar_fallback:
            request = turn.drop_grammar(request)  # refused on an earlier attempt of this call
        try:
            events = iter(self.backend.stream(request.prompt, request.params, live=live))
            return events, next(events, None)
        except K2GrammarUnsupportedError as refused:
            if request.params.grammar is None:
                raise
            request = turn.drop_grammar(request, self._refusal(refused, self.backend.info()))
            events = iter(self.backend.stream(request.prompt, request.params, live=live))
            return events, next(events, None)

    def drive(self, turn: Turn) -> Iterator[ChatGenerationChunk]:
        """Run ``turn``'s requests; yield the chunks it releases."""
        while (request := turn.next_request()) is not None:
            size = self.count(request.prompt) if must_count(request, turn) else None
            fitted = request if size is None else turn.fit_repair(request, size)
            if fitted is None:
                yield from turn.skip_repair(cast("int", size))
                continue
            try:
                events, event = self.retry(self._open, turn, fitted)
            except K2BackendError as exc:
                if not fitted.repair:
                    raise
                yield from turn.fail_repair(exc)  # the first generation stands
                continue
            try:
                while event is not None:
                    yield from turn.feed(event)
                    if turn.aborted:
                        break
                    event = next(events, None)
            except K2BackendError as exc:
                raise interrupted(turn, exc) from exc
            finally:
                cast("Any", events).close()
            yield from turn.end_request()
            if (prompt := turn.uncounted_prompt()) is not None:
                turn.add_input_tokens(self._count_or_zero(prompt))
        if turn.config.emit_chunks:  # invoke reads turn.message() instead
            yield turn.last_chunk()

    # ------------------------------------------------------------------ async driver

    async def _aopen(
        self, turn: Turn, request: GenerationRequest
    ) -> tuple[AsyncIterator[GenerationEvent], GenerationEvent | None]:
        live = turn.config.emit_chunks
        if request.params.grammar is not None and turn.grammar_fallback:
            request = turn.drop_grammar(request)  # refused on an earlier attempt of this call
        try:
            events = aiter(self.backend.astream(request.prompt, request.params, live=live))
            return events, await anext(events, None)
        except K2GrammarUnsupportedError as refused:
            if request.params.grammar is None:
                raise
            reason = self._refusal(refused, await self.backend.ainfo())
            request = turn.drop_grammar(request, reason)
            events = aiter(self.backend.astream(request.prompt, request.params, live=live))
            return events, await anext(events, None)

    async def adrive(self, turn: Turn) -> AsyncIterator[ChatGenerationChunk]:
        """Async twin of `drive`."""
        while (request := turn.next_request()) is not None:
            size = await self.acount(request.prompt) if must_count(request, turn) else None
            fitted = request if size is None else turn.fit_repair(request, size)
            if fitted is None:
                for chunk in turn.skip_repair(cast("int", size)):
                    yield chunk
                continue
            opened: tuple[AsyncIterator[GenerationEvent], GenerationEvent | None]
            try:
                opened = await self.aretry(self._aopen, turn, fitted)
            except K2BackendError as exc:
                if not fitted.repair:
                    raise
                for chunk in turn.fail_repair(exc):  # the first generation stands
                    yield chunk
                continue
            events: AsyncIterator[GenerationEvent] = opened[0]
            event: GenerationEvent | None = opened[1]
            try:
                while event is not None:
                    for chunk in turn.feed(event):
                        yield chunk
                    if turn.aborted:
                        break
                    event = await anext(events, None)
            except K2BackendError as exc:
                raise interrupted(turn, exc) from exc
            finally:
                await cast("Any", events).aclose()
            for chunk in turn.end_request():
                yield chunk
            if (prompt := turn.uncounted_prompt()) is not None:
                turn.add_input_tokens(await self._acount_or_zero(prompt))
        if turn.config.emit_chunks:  # invoke reads turn.message() instead
            yield turn.last_chunk()


def result_of(turn: Turn) -> ChatResult:
    """The finished turn as LangChain's ``ChatResult``."""
    message = turn.message()
    return ChatResult(
        generations=[
            ChatGeneration(
                message=message,
                generation_info={"finish_reason": message.response_metadata["finish_reason"]},
            )
        ],
        llm_output={"model_name": turn.config.model_name},
    )


def interrupted(turn: Turn, exc: K2BackendError) -> K2StreamInterruptedError:
    """The error for a stream cut after part of it was delivered."""
    partial = turn.completion_text()
    return K2StreamInterruptedError(
        f"The stream broke after {len(partial)} characters had been received ({exc}); it was "
        "not retried because part of it was already delivered. The partial text is on "
        "this exception's partial_text.",
        partial_text=partial,
        cause=exc,
    )


__all__ = ["Driver", "MustCount", "fitted_prompt", "server_stops", "surely_fits"]
