"""One model turn as a sans-IO state machine: backend events in, message chunks out.

In: a `TurnConfig` (the rendered prompt, `langchain_k2.backends._base.GenerationParams`,
the tools to validate calls against, the repair strategy...), then the driver's answers:
backend events, token counts, faults. Out: the steps it needs next (`langchain_k2._steps`:
a `GenerationRequest`, a `CountTokens`, `Finished` with the result), and
``ChatGenerationChunk`` objects (text deltas, validated tool-call blocks, a last chunk
with usage and metadata).

No I/O happens here: `langchain_k2._driver` holds two thin drivers (sync and async)
that answer the steps, so the logic exists once. A turn is built from a frozen
`TurnConfig` (what it was asked to do); `Turn` holds only what changes as it runs.

Repair (``k2-format.md`` section 5): when a block fails to parse or validate and
retries remain, generation is abandoned at that block and the strategy
(`langchain_k2._repair`; by default `Continuation`: the prompt, the raw text before the
broken block and the call's open tag, with a grammar for K2-Chat's call when the backend
takes one) gives the next request. The broken block and whatever followed it are replaced
by the repaired continuation. Blocks are emitted only after validation, so nothing wrong
is ever streamed before a repair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk, InvalidToolCall, ToolCall
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from langchain_k2._call_grammar import ConstrainedCall, call_grammar
from langchain_k2._repair import Broken, Continuation, Repair
from langchain_k2._steps import (
    CountTokens,
    Finished,
    GenerationRequest,
    Step,
    fit_request,
    interrupted,
    surely_fits,
)
from langchain_k2._stops import StopFilter
from langchain_k2._tool_binding import refuse_calls
from langchain_k2._tool_calls import ToolBlock, ToolCallStreamParser
from langchain_k2._turn_chunks import StreamChunks
from langchain_k2._unicode import clean_surrogates
from langchain_k2.backends._base import FinalEvent, GenerationEvent, GenerationParams
from langchain_k2.errors import K2GrammarUnsupportedError
from langchain_k2.formats._base import FormatSettings, PromptFormat
from langchain_k2.formats._pieces import Piece, Reasoning
from langchain_k2.formats._selection import describe


@dataclass(frozen=True)
class TurnConfig:
    """What a turn is asked to do; fixed for its whole life.

    Args:
        prompt: the rendered prompt (ending in ``<tool_call>`` when a call is forced).
        params: generation parameters of the first request.
        fmt: markers (tool-call tags, turn-ending markers).
        tools: tools calls are validated against, and a forced or repair grammar
            chooses from (empty: no tool calling).
        forced: the prompt ends with the open tag (``tool_choice`` forces a call).
        use_grammar: whether requests may carry a grammar.
        grammar_fallback: the caller already dropped a grammar the backend refuses
            (``response_metadata`` says so).
        max_repairs: how many malformed calls may be repaired.
        user_stops: the caller's stop strings (cut out of the text).
        model_name: reported in ``response_metadata``.
        engine: the engine serving the model (``vllm``...), reported in ``response_metadata``.
        emit_chunks: build message chunks (streaming); ``invoke`` needs only
            `Turn.message`, so it skips them.
        window: prompt plus new tokens, at most (``None``: unknown); a repair request's
            ``max_new_tokens`` is cut to what its longer prompt leaves (`Turn.fit_repair`).
        max_input_tokens: the longest prompt the backend takes (``None``: unknown).
        refusal: why no tool was offered (no tools bound, ``tool_choice="none"``), or
            ``None``; with it every call becomes an invalid call naming this reason.
        indexed_text: stream text as content blocks carrying their index
            (``output_version="v1"``), so no text block shares an index with a tool call.
        one_call: keep at most one valid call (``parallel_tool_calls=False``); the others
            are reported in ``response_metadata["dropped_tool_calls"]``.
        settings: the format's settings of this call (effort, call form); the output
            parser is built from them, ``response_metadata`` reports them.
        repair: the strategy asked what to do with a broken call while ``max_repairs``
            allows (`langchain_k2._repair.Continuation`: write the call again).
    """

    prompt: str
    params: GenerationParams
    fmt: PromptFormat
    tools: Sequence[Mapping[str, Any]] = ()
    forced: bool = False
    use_grammar: bool = False
    grammar_fallback: bool = False
    max_repairs: int = 2
    user_stops: Sequence[str] = ()
    model_name: str | None = None
    engine: str | None = None
    emit_chunks: bool = True
    window: int | None = None
    max_input_tokens: int | None = None
    refusal: str | None = None
    indexed_text: bool = False
    one_call: bool = False
    settings: FormatSettings = field(default_factory=FormatSettings)
    repair: Repair = field(default_factory=Continuation)


class Turn:
    """The state of one model turn across its generation requests.

    A driver asks `step` what the turn needs next (a `GenerationRequest`, a `CountTokens`
    or `Finished`), feeds a request's events to `feed` while `reading` (then ``None``),
    answers a count with `counted`, and reports a fault with `failed`: those five members are
    the whole seam (`langchain_k2._steps`). Repairs, their window fit and their failures are
    the turn's own business.

    Attributes:
        config: what the turn was asked to do (`TurnConfig`).
        use_grammar: whether requests may still carry a grammar (a refusal clears it).
        grammar_fallback: a grammar was dropped because the backend refuses them.
        grammar_refusal: the server's refusal of this turn's constraint, if it gave one.
        repairs: malformed calls sent for repair so far.
        aborted: the current request was abandoned at a broken block.
        repair_skipped: why a broken call was kept unrepaired (no room in the window, or
            the repair request failed), if so.
        emitted: the kept completion: text, reasoning and validated blocks, in order.
        schema_errors: the calls kept in ``tool_calls`` although their arguments fail
            their tool's schema (repairs ran out): call id to error.
        dropped_calls: valid calls beyond the first under ``one_call``.
    """

    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self.use_grammar = config.use_grammar
        self.grammar_fallback = config.grammar_fallback
        self.grammar_refusal: str | None = None
        self.repairs = 0
        self.aborted = False
        self.repair_skipped: str | None = None
        self.emitted: list[Piece] = []
        self.schema_errors: dict[str, str] = {}
        self.dropped_calls: list[ToolCall] = []
        self._calls_kept = 0
        self._broken: ToolBlock | None = None
        self._chunks = StreamChunks(indexed_text=config.indexed_text)
        self._reasoning_tokens = 0  # tokens generated while the output was in reasoning
        self._chars, self._joined = 0, False  # characters generated; an answer came whole
        self._tokens = 0
        self._usage_in = 0
        self._usage_out = 0
        self._final: FinalEvent | None = None
        self._prompt = config.prompt
        self._uncounted: str | None = None
        self._asked: CountTokens | None = None  # a count the driver has not answered yet
        self._fitting: GenerationRequest | None = None  # a repair waiting for its size
        self._sized: GenerationRequest | None = None  # a repair fitted to the window
        self._current: GenerationRequest | None = None  # the request being read
        self._fed = False  # an event of the current request was fed
        self._finished: Finished | None = None
        self._settings = config.settings  # the parser's (a repair starts after the reasoning)
        open_tag = config.fmt.tool_call_open
        self._context = config.prompt[: -len(open_tag)] if config.forced else config.prompt
        self._written: list[str] = []  # what the current request wrote (primer included)
        self._primer = open_tag  # what a primed request's prompt ends with, of the output
        self._parser: ToolCallStreamParser | ConstrainedCall
        self._stop: StopFilter
        fmt = config.fmt
        self._tag_tokens = frozenset({fmt.tool_call_open, fmt.tool_call_close, *fmt.output_markers})
        params = config.params
        constrained = config.forced and self.use_grammar and bool(config.tools)
        if constrained:
            params = replace(params, grammar=call_grammar(config.tools, config.engine))
        self._pending: GenerationRequest | None = GenerationRequest(config.prompt, params)
        self._start(primed=config.forced, constrained=constrained)

    # ------------------------------------------------------------------ the seam

    def step(self) -> Step:
        """What the turn needs next: a generation, a token count, or nothing (`Finished`)."""
        if self._asked is not None:
            return self._asked
        if self._uncounted is not None:  # usage of an abandoned or uncounted request
            self._asked = CountTokens(self._uncounted, usage=True)
            self._uncounted = None
            return self._asked
        request, self._pending = self._pending, None
        if request is None:
            return self._finish()
        if request.params.grammar is not None and self.grammar_fallback:
            request = self.drop_grammar(request)  # refused on an earlier request of this call
        config = self.config
        params = request.params
        if (
            request.repair
            and request is not self._sized
            and not surely_fits(
                request.prompt, params.max_new_tokens, config.window, config.max_input_tokens
            )
        ):
            self._fitting = request
            self._asked = CountTokens(request.prompt)
            return self._asked
        self.aborted, self._fed = False, False
        self._prompt = request.prompt
        self._current = replace(request, live=config.emit_chunks)
        return self._current

    @property
    def reading(self) -> bool:
        """Whether the current request's events are still wanted (not abandoned at a break)."""
        return not self.aborted

    def counted(self, tokens: int) -> list[ChatGenerationChunk]:
        """The answer to the `CountTokens` step; the chunks it releases."""
        asked, self._asked = self._asked, None
        if asked is None:
            raise RuntimeError("no count was asked")
        if asked.usage:
            self._usage_in += tokens
            return []
        request, self._fitting = self._fitting, None
        fitted = None if request is None else self.fit_repair(request, tokens)
        if fitted is None:
            return self._skip_repair(tokens)
        self._pending = self._sized = fitted
        return []

    def failed(self, error: BaseException, refusal: str | None = None) -> list[ChatGenerationChunk]:
        """The last step failed with ``error`` (after the driver's transport retries).

        A usage count counts nothing; a failed repair keeps the broken call; a grammar the
        server refuses is dropped and the request sent again; a stream cut after part of it
        was read raises `K2StreamInterruptedError`; anything else is raised as it is.
        """
        asked, self._asked = self._asked, None
        if asked is not None:
            if asked.usage:
                return []
            raise error
        request, self._current = self._current, None
        if request is None:
            raise error
        if self._fed:
            raise interrupted(self.completion_text(), error) from error
        if isinstance(error, K2GrammarUnsupportedError) and request.params.grammar is not None:
            self._pending = self.drop_grammar(request, refusal)
            return []
        if request.repair:
            return self._keep_broken(f"the repair request failed ({type(error).__name__}: {error})")
        raise error

    def _finish(self) -> Finished:
        if self._finished is None:
            message = self.message()
            info = {"finish_reason": message.response_metadata["finish_reason"]}
            generation = ChatGeneration(message=message, generation_info=info)
            result = ChatResult(
                generations=[generation], llm_output={"model_name": self.config.model_name}
            )
            last = self.last_chunk() if self.config.emit_chunks else None
            self._finished = Finished(last=last, result=result)
        return self._finished

    def drop_grammar(
        self, request: GenerationRequest, reason: str | None = None
    ) -> GenerationRequest:
        """The same request without grammar (the server refused it, ``reason``, before output)."""
        self.use_grammar = False
        self.grammar_fallback = True
        self.grammar_refusal = reason or self.grammar_refusal
        if isinstance(self._parser, ConstrainedCall):
            self._start(primed=True, constrained=False)
        return GenerationRequest(request.prompt, request.params.without_grammar(), request.repair)

    def _start(self, *, primed: bool, constrained: bool = False) -> None:
        tools, fmt = self.config.tools or None, self.config.fmt
        tags = {"open_tag": fmt.tool_call_open, "close_tag": fmt.tool_call_close}
        self._parser = (
            ConstrainedCall(tools, **tags)
            if constrained
            else fmt.parser(tools, self._settings)  # the family's output parser
        )
        self._written = [self._primer] if primed else []
        if primed:
            self._parser.feed(self._primer)
        self._stop = StopFilter([*self.config.user_stops, *fmt.stop_markers])

    # ------------------------------------------------------------------ events

    def feed(self, event: GenerationEvent | None) -> list[ChatGenerationChunk]:
        """Consume one event of the current request (``None``: they ended); the chunks released."""
        if event is None:
            self._current = None
            return self._end_request()
        self._fed = True
        if isinstance(event, FinalEvent):
            self._final = event
            self._add_usage(event)
            return []
        if self.aborted:
            return []
        self._tokens += event.tokens
        self._chars += len(event.text)
        self._joined = self._joined or event.tokens > 1  # many tokens, one event: prorate
        if getattr(self._parser, "in_reasoning", False):
            self._reasoning_tokens += event.tokens
        if event.special and event.text and event.text not in self._tag_tokens:
            # A special token that is not a tool-call tag (EOS, a turn marker) ends the turn.
            held = self._stop.end()
            return self._release(self._read(held)) if held else []
        text = self._stop.feed(clean_surrogates(event.text))  # "\ud800" is legal JSON
        return self._release(self._read(text)) if text else []

    def _read(self, text: str) -> Sequence[Piece]:
        """``text`` the model wrote, through the output parser."""
        self._written.append(text)
        return cast("Sequence[Piece]", self._parser.feed(text))

    def _end_request(self) -> list[ChatGenerationChunk]:
        """The current request's events are exhausted; flush what it held back."""
        if self._final is None:  # abandoned: what was read was generated; the prompt is counted
            self._usage_out += self._tokens
            self._uncounted = self._prompt
        self._tokens = 0
        if self.aborted:
            self._final = None
            return []
        chunks = self._release(self._read(self._stop.flush()))
        chunks += self._release(self._parser.close())
        return chunks

    def _release(self, items: Sequence[Piece]) -> list[ChatGenerationChunk]:
        chunks: list[ChatGenerationChunk] = []
        for item in items:
            if isinstance(item, Reasoning):
                if item.text:
                    self.emitted.append(item)
                    if self.config.emit_chunks:
                        chunks.append(
                            ChatGenerationChunk(message=self._chunks.reasoning(item.text))
                        )
                continue
            if isinstance(item, str):
                if item:
                    self.emitted.append(item)
                    if self.config.emit_chunks:
                        chunks.append(ChatGenerationChunk(message=self._chunks.text(item)))
                continue
            block = item if self.config.refusal is None else self._refused(item)
            room = self.repairs < self.config.max_repairs
            if block.invalid_tool_calls and room and self._schedule_repair(block):
                break
            chunks += self._keep(block)
        return chunks

    def _refused(self, block: ToolBlock) -> ToolBlock:
        """No tool was offered, so no call can be valid: ``block`` with invalid calls only."""
        fmt = self.config.fmt
        tags = {"open_tag": fmt.tool_call_open, "close_tag": fmt.tool_call_close}
        return refuse_calls(block, cast("str", self.config.refusal), **tags)

    def _keep(self, block: ToolBlock) -> list[ChatGenerationChunk]:
        """Add a block to the message; its chunk when streaming.

        A block is kept when no repair is left for it: calls of bound tools whose
        arguments fail the schema then go to ``tool_calls`` (the tool executor answers
        the model with the error), with the error in ``schema_errors``.
        """
        block, errors = block.accept_schema_failures()
        self.schema_errors.update(errors)
        if self.config.one_call:
            block = self._first_call_only(block)
        self.emitted.append(block)
        chunk = self._chunks.block(block, emit=self.config.emit_chunks)
        return [] if chunk is None else [ChatGenerationChunk(message=chunk)]

    def _first_call_only(self, block: ToolBlock) -> ToolBlock:
        """``block`` with the valid calls past the turn's first moved to `dropped_calls`."""
        room = max(0, 1 - self._calls_kept)
        kept, dropped = block.tool_calls[:room], block.tool_calls[room:]
        self._calls_kept += len(kept)
        if not dropped:
            return block
        self.dropped_calls += dropped
        for call in dropped:
            self.schema_errors.pop(call["id"] or "", None)
        return ToolBlock(
            raw=block.raw, tool_calls=kept, invalid_tool_calls=block.invalid_tool_calls
        )

    def fit_repair(
        self, request: GenerationRequest, prompt_tokens: int
    ) -> GenerationRequest | None:
        """``request`` (a repair) with ``max_new_tokens`` cut to what the window leaves.

        ``prompt_tokens`` is the repair prompt's size. ``None`` when the prompt leaves no room
        (or is longer than the backend takes): the broken block then stays as it is.
        """
        return fit_request(request, prompt_tokens, self.config.window, self.config.max_input_tokens)

    def _skip_repair(self, prompt_tokens: int) -> list[ChatGenerationChunk]:
        """Keep the broken block (invalid, with its raw text): no room for its repair."""
        self.repairs -= 1
        window, max_input = self.config.window, self.config.max_input_tokens
        limits = [f"{window} tokens"] if window is not None else []
        if max_input is not None:
            limits.append(f"at most {max_input} of prompt")
        return self._keep_broken(
            f"the repair prompt takes {prompt_tokens} tokens, which leaves no room in the "
            f"context window ({', '.join(limits)})"
        )

    def _keep_broken(self, why: str) -> list[ChatGenerationChunk]:
        broken, self._broken, self._pending = self._broken, None, None
        if broken is None:
            raise RuntimeError("no repair is scheduled")
        self.repair_skipped = f"{why}: the malformed call is kept as an invalid tool call"
        return self._keep(broken)

    def _schedule_repair(self, block: ToolBlock) -> bool:
        """Ask the repair strategy for the next request; ``False``: it keeps the block."""
        config = self.config
        written = "".join(self._written)
        at = written.find(block.raw)
        at = at if at >= 0 else written.rfind(config.fmt.tool_call_open)
        broken = Broken(
            block,
            context=self._context,
            written=written[:at] if at >= 0 else written,
            fmt=config.fmt,
            repairs=self.repairs,
            settings=config.settings,
        )
        retry = config.repair(broken)
        if retry is None:
            return False
        self.repairs += 1
        self._broken = block
        self.aborted = True
        params = config.params.without_grammar()  # the first's (a thought's) does not apply
        constrained = retry.grammar and self.use_grammar and bool(config.tools)
        if constrained:
            params = replace(params, grammar=call_grammar(config.tools, config.engine))
        self._context = retry.context
        self._pending = GenerationRequest(retry.context + retry.primer, params, repair=True)
        self._settings = replace(config.settings, opened=False)  # the thought is in the prompt
        self._primer = retry.primer
        self._start(primed=True, constrained=constrained)
        return True

    def _add_usage(self, event: FinalEvent) -> None:
        if event.input_tokens is None:  # e.g. llama-cpp-python's streams: the driver counts
            self._uncounted = self._prompt
        self._usage_in += event.input_tokens or 0
        self._usage_out += event.output_tokens if event.output_tokens is not None else self._tokens

    # ------------------------------------------------------------------ results

    def usage(self) -> UsageMetadata:
        """Tokens read and written over all requests of the turn (repairs included).

        For a family that reasons, ``output_token_details["reasoning"]`` counts the tokens
        generated while the output was still inside the reasoning (close tag included), from
        the events' own token counts (an answer fetched whole, in events of many tokens: the
        reasoning's share of its characters). 0 when the parse found no reasoning (K2-V3
        output with no close tag is all answer), and at most ``output_tokens``.
        """
        usage: dict[str, Any] = {
            "input_tokens": self._usage_in,
            "output_tokens": self._usage_out,
            "total_tokens": self._usage_in + self._usage_out,
        }
        if hasattr(self._parser, "in_reasoning"):
            thought = sum(len(item.text) for item in self.emitted if isinstance(item, Reasoning))
            reasoning = min(self._reasoning_tokens, self._usage_out) if thought else 0
            if thought and self._joined and self._chars:  # one event held many tokens
                reasoning = min(round(self._usage_out * thought / self._chars), self._usage_out)
            usage["output_token_details"] = {"reasoning": reasoning}
        return cast("UsageMetadata", usage)

    def response_metadata(self) -> dict[str, Any]:
        """``finish_reason``, ``model_name``, ``seed``, ``tool_call_retries``, ``engine``...

        ``invalid_tool_call_errors`` maps each invalid call's id to its error;
        ``tool_call_schema_errors`` each kept call whose arguments fail its tool's schema.
        """
        final = self._final or FinalEvent()
        finish = final.finish_reason
        if self._stop.stopped and self._stop.stop_found in self.config.user_stops:
            finish = "stop_sequence"
        errors = {
            call["id"]: call["error"]
            for block in self.emitted
            if isinstance(block, ToolBlock)
            for call in block.invalid_tool_calls
            if call.get("id") and call.get("error")
        }
        metadata: dict[str, Any] = {
            "finish_reason": finish,
            "model_name": self.config.model_name,
            "seed": final.seed,
            "tool_call_retries": self.repairs,
            **describe(self.config.fmt, self.config.settings),
        }
        if self.config.engine is not None:
            metadata["engine"] = self.config.engine
        if errors:
            metadata["invalid_tool_call_errors"] = errors
        if self.schema_errors:
            metadata["tool_call_schema_errors"] = dict(self.schema_errors)
        if self.dropped_calls:
            metadata["dropped_tool_calls"] = [
                {"name": c["name"], "args": c["args"], "id": c["id"]} for c in self.dropped_calls
            ]
        if self.repair_skipped:
            metadata["tool_call_repair_skipped"] = self.repair_skipped
        if self.grammar_fallback:
            metadata["grammar_fallback"] = (
                f"the server refused the constraint: {self.grammar_refusal}"
                if self.grammar_refusal
                else "the backend refuses grammars; output was steered by instructions only"
            )
        return metadata

    def last_chunk(self) -> ChatGenerationChunk:
        """The chunk that closes a stream: usage and response metadata, no text."""
        message = AIMessageChunk(
            content="",
            usage_metadata=self.usage(),
            response_metadata=self.response_metadata(),
            chunk_position="last",
        )
        return ChatGenerationChunk(
            message=message,
            generation_info={"finish_reason": message.response_metadata["finish_reason"]},
        )

    def message(self) -> AIMessage:
        """The whole turn as one message (invalid calls keep their error text)."""
        content = "".join(item for item in self.emitted if isinstance(item, str))
        reasoning = "".join(item.text for item in self.emitted if isinstance(item, Reasoning))
        tool_calls: list[ToolCall] = []
        invalid: list[InvalidToolCall] = []
        for item in self.emitted:
            if isinstance(item, ToolBlock):
                tool_calls += item.tool_calls
                invalid += item.invalid_tool_calls
        return AIMessage(
            content=content,
            additional_kwargs={"reasoning_content": reasoning} if reasoning else {},
            tool_calls=tool_calls,
            invalid_tool_calls=invalid,
            usage_metadata=self.usage(),
            response_metadata=self.response_metadata(),
        )

    def completion_text(self) -> str:
        """The kept completion: content and raw blocks, in order (what K2 wrote)."""
        return "".join(
            item if isinstance(item, str) else item.raw
            for item in self.emitted
            if not isinstance(item, Reasoning)
        )
