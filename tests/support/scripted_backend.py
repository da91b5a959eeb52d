"""An in-memory backend for unit tests: scripted completions, recorded requests.

In: a list of scripted replies (token texts, or an exception to raise). Out: the
events the real backends produce. It stands in for our own ``Backend`` protocol only;
the integration suite drives the real TGI client and llama.cpp.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace

from langchain_k2.backends._base import (
    BackendInfo,
    FinalEvent,
    GenerationEvent,
    GenerationParams,
    TokenEvent,
)
from langchain_k2.errors import K2GrammarUnsupportedError


@dataclass
class Reply:
    tokens: Sequence[str | TokenEvent] = ()
    finish_reason: str = "eos_token"
    error: BaseException | None = None
    error_after: int | None = None


@dataclass
class ScriptedBackend:
    name: str = "scripted"
    replies: list[Reply] = field(default_factory=list)
    info_value: BackendInfo = field(default_factory=lambda: BackendInfo(max_stop_sequences=4))
    requests: list[tuple[str, GenerationParams]] = field(default_factory=list)
    live: list[bool] = field(default_factory=list)
    """The ``live`` flag of each request: False when the caller wanted the whole answer."""

    def script(self, *replies: Reply | str | Sequence[str]) -> None:
        for spec in replies:
            if isinstance(spec, Reply):
                self.replies.append(spec)
            elif isinstance(spec, str):
                self.replies.append(Reply(tokens=[spec]))
            else:
                self.replies.append(Reply(tokens=list(spec)))

    def info(self) -> BackendInfo:
        return self.info_value

    async def ainfo(self) -> BackendInfo:
        return self.info_value

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def acount_tokens(self, text: str) -> int:
        return self.count_tokens(text)

    def stream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> Iterator[GenerationEvent]:
        self.requests.append((prompt, params))
        self.live.append(live)
        reply = self.replies.pop(0)
        if reply.error is not None and reply.error_after is None:
            if isinstance(reply.error, K2GrammarUnsupportedError):  # recorded, as TGI does
                self.info_value = replace(self.info_value, supports_grammar=False)
            raise reply.error
        count = 0
        for token in reply.tokens:
            if reply.error is not None and count == reply.error_after:
                raise reply.error
            yield token if isinstance(token, TokenEvent) else TokenEvent(text=token)
            count += 1
        if reply.error is not None and count == reply.error_after:
            raise reply.error
        yield FinalEvent(
            finish_reason=reply.finish_reason,
            input_tokens=len(prompt.split()),
            output_tokens=count,
            seed=params.seed,
        )

    async def astream(
        self, prompt: str, params: GenerationParams, *, live: bool = True
    ) -> AsyncIterator[GenerationEvent]:
        for event in self.stream(prompt, params, live=live):
            yield event
