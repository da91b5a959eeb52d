"""One model turn as a sans-IO state machine: backend events in, message chunks out.

In: the rendered prompt, `langchain_k2.backends.base.GenerationParams`, the
tools to validate calls against, and backend events fed one at a time.
Out: ``ChatGenerationChunk`` objects (text deltas, validated tool-call blocks, a last
chunk with usage and metadata), the next `GenerationRequest` when a malformed
call must be repaired, and the final ``AIMessage``.

No I/O happens here: ``ChatK2`` owns two ten-line drivers (sync and async) that pass
requests to a backend and events back in, so the logic exists once.

Repair (``k2-format.md`` section 5): when a block fails to parse or validate and
retries remain, generation is abandoned at that block; the next request's prompt is
the original prompt, the text before the broken block and ``<tool_call>``, with a
grammar for the call when the backend supports one. The broken block and whatever
followed it are replaced by the repaired continuation. Blocks are emitted only after
validation, so nothing wrong is ever streamed before a repair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk, InvalidToolCall, ToolCall
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk

from langchain_k2.backends.base import FinalEvent, GenerationEvent, GenerationParams
from langchain_k2.prompt import K2Format
from langchain_k2.tool_binding import refuse_calls
from langchain_k2.tool_calls import ToolBlock, ToolCallStreamParser, block_chunk, parse_block


@dataclass(frozen=True)
class GenerationRequest:
    """A prompt and the parameters to generate from it."""

    prompt: str
    params: GenerationParams
    repair: bool = False


class StopFilter:
    """Cuts text at the first stop string, holding back only a possible stop prefix.

    Example:
        >>> f = StopFilter(["<|endoftext|>"])
        >>> f.feed("Hello<|end"), f.feed("oftext|> ignored"), f.stopped
        ('Hello', '', True)
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._pending = ""
        self.stopped = False
        self.stop_found: str | None = None

    def feed(self, delta: str) -> str:
        """Return the text of ``delta`` that can be released now."""
        if self.stopped or not delta:
            return ""
        if not self._stops:
            return delta
        start = max(0, len(self._pending) - self._longest + 1)
        text = self._pending + delta
        cut = -1
        for stop in self._stops:
            index = text.find(stop, start)
            if index != -1 and (cut == -1 or index < cut):
                cut, self.stop_found = index, stop
        if cut != -1:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        hold = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:size]):
                    hold = size
                    break
        self._pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def end(self) -> str:
        """Stop here (the turn ended otherwise); release held text, which was no stop."""
        held = self.flush()
        self.stopped = True
        return held

    def flush(self) -> str:
        """Release held text at the end of generation (it did not become a stop)."""
        held, self._pending = self._pending, ""
        return "" if self.stopped else held


def call_grammar(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """TGI-shaped grammar constraining output to one call of one of ``tools``.

    One tool: ``{"name": <const>, "arguments": <the tool's schema>}``. Several: TGI
    refuses a grammar without top-level ``properties``, so the schema carries both
    ``properties`` (``name`` an ``enum``, ``arguments`` an ``anyOf`` of the schemas: what
    TGI's outlines compiles) and a top-level ``anyOf`` of the exact per-tool calls (what
    llama.cpp compiles; nested ``anyOf`` of objects derails its grammar). Either way a
    name paired with another tool's arguments fails validation and is repaired.

    Example:
        >>> call_grammar([{"name": "f", "parameters": {"type": "object", "properties": {}}}])
        {'type': 'json', 'value': {'type': 'object', 'properties': {'name': {'const': 'f'}, \
'arguments': {'type': 'object', 'properties': {}}}, 'required': ['name', 'arguments']}}
    """
    calls: list[dict[str, Any]] = []
    for tool in tools:
        fn = tool.get("function", tool)
        params = dict(fn.get("parameters") or {"type": "object", "properties": {}})
        params.setdefault("type", "object")
        calls.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    if len(calls) == 1:
        return {"type": "json", "value": calls[0]}
    names = [c["properties"]["name"]["const"] for c in calls]
    arguments = [c["properties"]["arguments"] for c in calls]
    schema = {
        "type": "object",
        "properties": {"name": {"enum": names}, "arguments": {"anyOf": arguments}},
        "required": ["name", "arguments"],
        "anyOf": calls,
    }
    return {"type": "json", "value": schema}


@dataclass
class Turn:
    """The state of one model turn across its generation requests.

    Args:
        prompt: the rendered prompt (ending in ``<tool_call>`` when a call is forced).
        params: generation parameters of the first request.
        fmt: markers (tool-call tags, turn-ending markers).
        tools: tools calls are validated against, and a forced or repair grammar
            chooses from (empty: no tool calling).
        forced: the prompt ends with the open tag (``tool_choice`` forces a call).
        use_grammar: whether requests may carry a grammar.
        max_repairs: how many malformed calls may be repaired.
        user_stops: the caller's stop strings (cut out of the text).
        model_name: reported in ``response_metadata``.
        emit_chunks: build message chunks (streaming); ``invoke`` needs only
            :meth:`message`, so it skips them.
        window: prompt plus new tokens, at most (``None``: unknown); a repair request's
            ``max_new_tokens`` is cut to what its longer prompt leaves (`fit_repair`).
        max_input_tokens: the longest prompt the backend takes (``None``: unknown).
        refusal: why no tool was offered (no tools bound, ``tool_choice="none"``), or
            ``None``; with it every call becomes an invalid call naming this reason.
    """

    prompt: str
    params: GenerationParams
    fmt: K2Format
    tools: Sequence[Mapping[str, Any]] = ()
    forced: bool = False
    use_grammar: bool = False
    max_repairs: int = 2
    user_stops: Sequence[str] = ()
    model_name: str | None = None
    emit_chunks: bool = True
    window: int | None = None
    max_input_tokens: int | None = None
    refusal: str | None = None

    repairs: int = 0
    aborted: bool = False
    grammar_fallback: bool = False
    repair_skipped: str | None = None
    emitted: list[str | ToolBlock] = field(default_factory=list)
    _broken: ToolBlock | None = None
    _pending: GenerationRequest | None = None
    _parser: ToolCallStreamParser | _ConstrainedCall = field(init=False)
    _stop: StopFilter = field(init=False)
    _call_index: int = 0
    _tokens: int = 0
    _usage_in: int = 0
    _usage_out: int = 0
    _final: FinalEvent | None = None
    _tag_tokens: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._tag_tokens = frozenset({self.fmt.tool_call_open, self.fmt.tool_call_close})
        params = self.params
        constrained = self.forced and self.use_grammar and bool(self.tools)
        if constrained:
            params = _with_grammar(params, call_grammar(self.tools))
        self._pending = GenerationRequest(self.prompt, params)
        self._start(primed=self.forced, constrained=constrained)

    # ------------------------------------------------------------------ requests

    def next_request(self) -> GenerationRequest | None:
        """The request to run next, or ``None`` when the turn is complete."""
        request, self._pending = self._pending, None
        if request is not None:
            self.aborted = False
        return request

    def drop_grammar(self, request: GenerationRequest) -> GenerationRequest:
        """The same request without grammar (the server refused it before any output)."""
        self.use_grammar = False
        self.grammar_fallback = True
        if isinstance(self._parser, _ConstrainedCall):
            self._start(primed=True, constrained=False)
        return GenerationRequest(request.prompt, request.params.without_grammar(), request.repair)

    def _start(self, *, primed: bool, constrained: bool = False) -> None:
        tools = self.tools or None
        tags = {"open_tag": self.fmt.tool_call_open, "close_tag": self.fmt.tool_call_close}
        self._parser = (
            _ConstrainedCall(tools, **tags) if constrained else ToolCallStreamParser(tools, **tags)
        )
        if primed:
            self._parser.feed(self.fmt.tool_call_open)
        self._stop = StopFilter([*self.user_stops, *self.fmt.stop_markers])

    # ------------------------------------------------------------------ events

    def feed(self, event: GenerationEvent) -> list[ChatGenerationChunk]:
        """Consume one backend event; return the chunks it releases."""
        if isinstance(event, FinalEvent):
            self._final = event
            self._add_usage(event)
            return []
        if self.aborted:
            return []
        self._tokens += 1
        if event.special and event.text and event.text not in self._tag_tokens:
            # A special token that is not a tool-call tag (EOS, a turn marker) ends the turn.
            held = self._stop.end()
            return self._release(self._parser.feed(held)) if held else []
        text = self._stop.feed(event.text)
        return self._release(self._parser.feed(text)) if text else []

    def end_request(self) -> list[ChatGenerationChunk]:
        """The current request's events are exhausted; flush what it held back."""
        if self._final is None:
            self._usage_out += self._tokens
        self._tokens = 0
        if self.aborted:
            self._final = None
            return []
        chunks = self._release(self._parser.feed(self._stop.flush()))
        chunks += self._release(self._parser.close())
        return chunks

    def _release(self, items: list[str | ToolBlock]) -> list[ChatGenerationChunk]:
        chunks: list[ChatGenerationChunk] = []
        for item in items:
            if isinstance(item, str):
                if item:
                    self.emitted.append(item)
                    if self.emit_chunks:
                        chunks.append(ChatGenerationChunk(message=AIMessageChunk(content=item)))
                continue
            block = item if self.refusal is None else self._refused(item)
            if block.invalid_tool_calls and self.repairs < self.max_repairs:
                self._schedule_repair(block)
                break
            chunks += self._keep(block)
        return chunks

    def _refused(self, block: ToolBlock) -> ToolBlock:
        """No tool was offered, so no call can be valid: ``block`` with invalid calls only."""
        tags = {"open_tag": self.fmt.tool_call_open, "close_tag": self.fmt.tool_call_close}
        return refuse_calls(block, cast("str", self.refusal), **tags)

    def _keep(self, block: ToolBlock) -> list[ChatGenerationChunk]:
        """Add a block to the message as it is; its chunk when streaming."""
        self.emitted.append(block)
        chunk = block_chunk(block, self._call_index) if self.emit_chunks else None
        self._call_index += len(block.tool_calls) + len(block.invalid_tool_calls)
        return [] if chunk is None else [ChatGenerationChunk(message=chunk)]

    def fit_repair(
        self, request: GenerationRequest, prompt_tokens: int
    ) -> GenerationRequest | None:
        """``request`` (a repair) with ``max_new_tokens`` cut to what the window leaves.

        ``prompt_tokens`` is the repair prompt's size. ``None`` when the prompt leaves no room
        (or is longer than the backend takes): the broken block must then stay as it is
        (`skip_repair`), since the server would refuse the request.
        """
        room = None if self.window is None else self.window - prompt_tokens
        too_long = self.max_input_tokens is not None and prompt_tokens > self.max_input_tokens
        if too_long or (room is not None and room < 1):
            return None
        if room is None or room >= request.params.max_new_tokens:
            return request
        return replace(request, params=replace(request.params, max_new_tokens=room))

    def skip_repair(self, prompt_tokens: int) -> list[ChatGenerationChunk]:
        """Keep the broken block (invalid, with its raw text) instead of repairing it.

        For a repair whose ``prompt_tokens``-token prompt `fit_repair` found no room for;
        the turn ends with the block as its last item.
        """
        broken, self._broken, self._pending = self._broken, None, None
        if broken is None:
            raise RuntimeError("skip_repair() without a scheduled repair")
        self.repairs -= 1
        limits = [f"{self.window} tokens"] if self.window is not None else []
        if self.max_input_tokens is not None:
            limits.append(f"at most {self.max_input_tokens} of prompt")
        self.repair_skipped = (
            f"the repair prompt takes {prompt_tokens} tokens, which leaves no room in the "
            f"context window ({', '.join(limits)}): the malformed call is kept as an invalid "
            "tool call"
        )
        return self._keep(broken)

    def _schedule_repair(self, broken: ToolBlock) -> None:
        self.repairs += 1
        self._broken = broken
        self.aborted = True
        params = self.params
        constrained = self.use_grammar and bool(self.tools)
        if constrained:
            params = _with_grammar(params, call_grammar(self.tools))
        # A forced prompt already ends with the open tag, which starts the first block's raw.
        open_tag = self.fmt.tool_call_open
        base = self.prompt[: len(self.prompt) - len(open_tag)] if self.forced else self.prompt
        self._pending = GenerationRequest(
            base + self.completion_text() + open_tag, params, repair=True
        )
        self._start(primed=True, constrained=constrained)

    def _add_usage(self, event: FinalEvent) -> None:
        self._usage_in += event.input_tokens or 0
        self._usage_out += event.output_tokens if event.output_tokens is not None else self._tokens

    # ------------------------------------------------------------------ results

    def usage(self) -> UsageMetadata:
        """Tokens read and written over all requests of the turn (repairs included)."""
        return cast(
            "UsageMetadata",
            {
                "input_tokens": self._usage_in,
                "output_tokens": self._usage_out,
                "total_tokens": self._usage_in + self._usage_out,
            },
        )

    def response_metadata(self) -> dict[str, Any]:
        """``finish_reason``, ``model_name``, ``seed`` and ``tool_call_retries``."""
        final = self._final or FinalEvent()
        finish = final.finish_reason
        if self._stop.stopped and self._stop.stop_found in self.user_stops:
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
            "model_name": self.model_name,
            "seed": final.seed,
            "tool_call_retries": self.repairs,
        }
        if errors:
            metadata["invalid_tool_call_errors"] = errors
        if self.repair_skipped:
            metadata["tool_call_repair_skipped"] = self.repair_skipped
        if self.grammar_fallback:
            metadata["grammar_fallback"] = (
                "the backend refuses grammars; output was steered by instructions only"
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
        tool_calls: list[ToolCall] = []
        invalid: list[InvalidToolCall] = []
        for item in self.emitted:
            if isinstance(item, ToolBlock):
                tool_calls += item.tool_calls
                invalid += item.invalid_tool_calls
        return AIMessage(
            content=content,
            tool_calls=tool_calls,
            invalid_tool_calls=invalid,
            usage_metadata=self.usage(),
            response_metadata=self.response_metadata(),
        )

    def completion_text(self) -> str:
        """The kept completion: content and raw blocks, in order (what K2 wrote)."""
        return "".join(item if isinstance(item, str) else item.raw for item in self.emitted)


class _ConstrainedCall:
    """The sink for a grammar-constrained call: the whole completion is one JSON call.

    A grammar makes the output exactly the call's JSON, so the close tag is not looked
    for (a string value may legitimately contain ``</tool_call>``); the block is read
    once, when generation ends.
    """

    def __init__(
        self, tools: Sequence[Mapping[str, Any]] | None, *, open_tag: str, close_tag: str
    ) -> None:
        self._tools = tools
        self._open, self._close = open_tag, close_tag
        self._parts: list[str] = []

    def feed(self, delta: str) -> list[str | ToolBlock]:
        self._parts.append(delta)
        return []

    def close(self) -> list[str | ToolBlock]:
        raw = "".join(self._parts)
        self._parts = []
        if not raw.startswith(self._open):
            raw = self._open + raw
        return [parse_block(raw, self._tools, open_tag=self._open, close_tag=self._close)]


def _with_grammar(params: GenerationParams, grammar: Mapping[str, Any]) -> GenerationParams:
    return replace(params, grammar=grammar)
