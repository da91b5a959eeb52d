"""Tool calls in K2-Chat's Hermes format: whole-text and streaming parsers.

In: completion text from K2-Chat (whole, or as deltas of any size), optionally the bound
tools as OpenAI-style function dicts (``{"name", "description", "parameters"}`` or
``{"type": "function", "function": {...}}``). Out: the text outside ``<tool_call>`` blocks,
exactly as generated (bar stray ``</tool_call>`` tags, which are dropped), and one
`ToolBlock` per block holding LangChain ``ToolCall``
and ``InvalidToolCall`` dicts; while streaming, text pieces and blocks in order, or the same
as ``AIMessageChunk`` objects that merge with ``+`` into the whole-text result.

Accepted inside a block (``shared/spec/k2-format.md`` section 2): one JSON object, a JSON
list of objects (the model card's form), whitespace and markdown fences around it,
``arguments`` as a JSON-encoded string (glaive style, double- or single-quoted, even with raw
newlines or an apostrophe inside), ``parameters`` instead of ``arguments``, no arguments at
all or an empty arguments string (``{}``), Python-literal dicts with single quotes, and a
final block left unclosed whose JSON is complete. Tags inside JSON strings are text; an open
tag outside them cuts an unclosed block off (see `parse_tool_calls`).

Nothing is dropped and nothing is repaired by guessing: a block or call that cannot be read,
names an unknown tool or fails its tool's JSON schema becomes an ``InvalidToolCall`` with an
``error`` saying why. Its ``args`` always start with the open tag, so no JSON parser (not even
LangChain's lenient ``parse_partial_json``) can turn it into a valid call when stream chunks
are merged (spec section 5). Every call gets a fresh id from `new_call_id`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessageChunk, ToolCallChunk
from langchain_core.messages.tool import tool_call_chunk as create_tool_call_chunk

from langchain_k2._block_scan import StringState, TagFinder, check_tags
from langchain_k2._tool_block import (
    CLOSE_TAG,
    OPEN_TAG,
    ParsedToolCalls,
    ToolBlock,
    new_call_id,
    parse_block,
    partial_suffix,
    read_block,
    strip_fences,
)
from langchain_k2._tool_schema import ToolIndex
from langchain_k2._tool_schema import tool_index as _tool_index

__all__ = [
    "CLOSE_TAG",
    "OPEN_TAG",
    "ParsedToolCalls",
    "ToolBlock",
    "ToolCallStreamParser",
    "block_chunk",
    "new_call_id",
    "parse_block",
    "parse_tool_calls",
    "strip_fences",
]
"""Block-level names are re-exported from `langchain_k2._tool_block`, where they live."""


def parse_tool_calls(
    text: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    open_tag: str = OPEN_TAG,
    close_tag: str = CLOSE_TAG,
) -> ParsedToolCalls:
    """Split a whole completion into content and tool-call blocks.

    A block runs from ``open_tag`` to the first ``close_tag`` after it that is not inside
    a JSON string; an ``open_tag`` outside a string before that cuts the block off (it is
    invalid) and starts a new one; a block still open at the end runs to the end of the
    text. If the text ends inside a string of a block (the string never terminated), the
    block ends at the first tag inside that string instead. A close tag outside any block
    is dropped; an incomplete open tag at the very end is content.

    Args:
        text: The completion, exactly as generated (tags included).
        tools: The bound tools (see `parse_block`); ``None`` skips name and schema
            checks, an empty list makes every call unknown.
        open_tag: The tag that opens a block.
        close_tag: The tag that closes a block.

    Returns:
        The content, the calls and the blocks.

    Raises:
        ValueError: the tags are unusable.
        ToolDefinitionError: a tool has no name, a duplicate name or an invalid schema.

    Example:
        >>> parsed = parse_tool_calls(
        ...     'Saving. <tool_call>{"name": "save", "arguments": {"text": "a </tool_call> b"}}'
        ...     "</tool_call></tool_call>"
        ... )
        >>> parsed.content, [(c["name"], c["args"]) for c in parsed.tool_calls]
        ('Saving. ', [('save', {'text': 'a </tool_call> b'})])
    """
    # One delta holding everything: the stream parser is the one definition of where
    # blocks are, so a stream and the whole text always agree.
    parser = ToolCallStreamParser(tools, open_tag=open_tag, close_tag=close_tag)
    items = parser.feed(text) + parser.close()
    blocks = [item for item in items if isinstance(item, ToolBlock)]
    return ParsedToolCalls(
        content="".join(item for item in items if isinstance(item, str)),
        tool_calls=[call for block in blocks for call in block.tool_calls],
        invalid_tool_calls=[call for block in blocks for call in block.invalid_tool_calls],
        blocks=blocks,
    )


# --------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------


def block_chunk(block: ToolBlock, first_index: int) -> AIMessageChunk:
    """The message chunk for one block: one ``tool_call_chunk`` per call.

    Valid calls come first (``args`` is their JSON), then invalid ones (``args`` is their
    invalid-args string, which starts with the open tag and so stays invalid after LangChain
    merges chunks). Indexes count up from ``first_index``.

    Args:
        block: A block from `parse_tool_calls` or `ToolCallStreamParser`.
        first_index: The index of the block's first call in the whole stream.

    Returns:
        An ``AIMessageChunk`` with empty content and the block's tool-call chunks.
    """
    chunks: list[ToolCallChunk] = [
        create_tool_call_chunk(
            name=call["name"],
            args=json.dumps(call["args"]),
            id=call["id"],
            index=first_index + offset,
        )
        for offset, call in enumerate(block.tool_calls)
    ]
    first_invalid = first_index + len(chunks)
    chunks.extend(
        create_tool_call_chunk(
            name=bad["name"], args=bad["args"], id=bad["id"], index=first_invalid + offset
        )
        for offset, bad in enumerate(block.invalid_tool_calls)
    )
    return AIMessageChunk(content="", tool_call_chunks=chunks)


class ToolCallStreamParser:
    """Incremental parser: feed text deltas, get text pieces and completed blocks.

    Text outside blocks is passed on as soon as it arrives, except a suffix that could still
    become a tag (a trailing ``"<tool"`` is held, ``"<tox"`` is not). Inside a block the
    text is buffered until its close tag, then the block is parsed and validated. Tags
    inside a block's JSON strings do not count (see `parse_tool_calls` for all the rules).
    Each delta is searched once, with the few held characters before it, and the string
    state is carried over, so the total work is linear in the length of the output.

    For any split of a text into deltas, the text pieces concatenate to
    ``parse_tool_calls(text).content`` and the blocks equal its ``blocks`` (ids aside).
    After `close` the parser is reset and can take a new stream.
    """

    def __init__(
        self,
        tools: Sequence[Mapping[str, Any]] | ToolIndex | None = None,
        *,
        open_tag: str = OPEN_TAG,
        close_tag: str = CLOSE_TAG,
    ) -> None:
        """Create a parser for one stream.

        Args:
            tools: The bound tools (see `parse_block`), or their `ToolIndex`.
            open_tag: The tag that opens a block.
            close_tag: The tag that closes a block.

        Raises:
            ValueError: the tags are unusable.
            ToolDefinitionError: a tool has no name, a duplicate name or an invalid schema.
        """
        check_tags(open_tag, close_tag)
        self._index = tools if isinstance(tools, ToolIndex) else _tool_index(tools)
        self._open = open_tag
        self._close = close_tag
        # A held suffix starts with a tag's first character within the last `_reach` ones.
        self._first = open_tag[0] if open_tag[0] == close_tag[0] else ""
        self._reach = max(len(open_tag), len(close_tag)) - 1
        self._reset()
        self._next_index = 0

    def _reset(self) -> None:
        self._held = ""  # a suffix that may still become a tag (inside a block: unread)
        self._begin_block(in_block=False)

    def _begin_block(self, *, in_block: bool = True) -> None:
        self._in_block = in_block
        self._parts: list[str] = [self._open] if in_block else []  # the block so far
        self._length = len(self._open) if in_block else 0  # len("".join(self._parts))
        # The string state of the body, read lazily (only when a tag turns up) up to the
        # end of self._parts[: self._parts_read].
        self._string = StringState()
        self._parts_read = len(self._parts)
        # The first tag met inside a string of the body: (offset in the block, is_open).
        self._tag_in_string: tuple[int, bool] | None = None

    @property
    def in_block(self) -> bool:
        """Whether the parser is inside an open block."""
        return self._in_block

    def feed(self, delta: str) -> list[str | ToolBlock]:
        """Take the next piece of generated text.

        Args:
            delta: Any amount of text, from one character to the whole completion.

        Returns:
            Text pieces and completed blocks, in the order they occur.
        """
        text = self._held + delta if self._held else delta
        self._held = ""
        if self._open not in text and self._close not in text:  # the common case: no tag
            end = self._hold(text, 0)
            if self._in_block:
                if end:
                    self._parts.append(text[:end])
                    self._length += end
                return []
            return [text[:end]] if end else []
        out: list[str | ToolBlock] = []
        # Positions, not slices: a large delta holding many blocks is still scanned once.
        tags = TagFinder(text, self._open, self._close)
        position = 0
        while position < len(text):
            if self._in_block:
                position = self._scan_inside(text, position, tags, out)
            else:
                position = self._scan_outside(text, position, tags, out)
        return out

    def _hold(self, text: str, start: int) -> int:
        """Hold the suffix of ``text[start:]`` that may still become a tag; return its start."""
        if self._first and text.find(self._first, max(start, len(text) - self._reach)) == -1:
            return len(text)
        keep = max(
            partial_suffix(text, self._open, start), partial_suffix(text, self._close, start)
        )
        self._held = text[len(text) - keep :]
        return len(text) - keep

    def _scan_outside(
        self, text: str, position: int, tags: TagFinder, out: list[str | ToolBlock]
    ) -> int:
        start, is_open = tags.next(position)
        if start == -1:
            end = self._hold(text, position)
            if end > position:
                out.append(text[position:end])
            return len(text)
        if start > position:
            out.append(text[position:start])
        if not is_open:  # a close tag with no block open: dropped
            return start + len(self._close)
        self._begin_block()
        return start + len(self._open)

    def _read_parts(self) -> None:
        """Bring the string state up to the end of ``self._parts``."""
        for part in self._parts[self._parts_read :]:
            self._string.advance(part, 0, len(part))
        self._parts_read = len(self._parts)

    def _scan_inside(
        self, text: str, position: int, tags: TagFinder, out: list[str | ToolBlock]
    ) -> int:
        string = self._string
        read = -1  # once a tag turns up: the string state is that of text[:read]
        search = position
        while True:
            start, is_open = tags.next(search)
            if start == -1:
                break
            if read == -1:
                self._read_parts()
                read = position
            string.advance(text, read, start)
            read = start
            if not string.in_string:
                return self._end_block(text, position, start, is_open, out)
            if self._tag_in_string is None:
                self._tag_in_string = (self._length + start - position, is_open)
            search = start + 1
        end = self._hold(text, position)
        if end > position:
            self._parts.append(text[position:end])
            self._length += end - position
            if read != -1:
                string.advance(text, read, end)
                self._parts_read = len(self._parts)
        return len(text)

    def _end_block(
        self, text: str, position: int, start: int, is_open: bool, out: list[str | ToolBlock]
    ) -> int:
        """The tag at ``start`` (outside strings) ends the block: close it or cut it off."""
        end = start if is_open else start + len(self._close)
        self._parts.append(text[position:end])
        raw = "".join(self._parts)
        out.append(
            read_block(raw, not is_open, self._index, self._open, self._close, cut_off=is_open)
        )
        self._begin_block(in_block=is_open)
        return start + len(self._open) if is_open else end

    def _finish(self) -> list[str | ToolBlock]:
        out: list[str | ToolBlock] = []
        while self._in_block:
            self._read_parts()
            raw = "".join(self._parts) + self._held
            self._held = ""
            found = self._tag_in_string if self._string.in_string else None
            if found is None:
                out.append(read_block(raw, False, self._index, self._open, self._close))
                break
            # The body ends inside a string that never terminated: the tags in it were
            # real. End the block at the first one and read the rest again.
            offset, is_open = found
            end = offset if is_open else offset + len(self._close)
            out.append(
                read_block(
                    raw[:end], not is_open, self._index, self._open, self._close, cut_off=is_open
                )
            )
            self._begin_block(in_block=False)
            out += self.feed(raw[end:])
        if self._held:
            out.append(self._held)
        self._reset()
        return out

    def close(self) -> list[str | ToolBlock]:
        """End the stream: flush held text, and turn an unclosed block into a block.

        An unclosed final block is valid when its JSON is complete, invalid otherwise;
        if its body ends inside a string, it ends at the first tag in that string and the
        text after it is read again (see `parse_tool_calls`). The parser is then reset for
        a new stream.

        Returns:
            The remaining text pieces and blocks.
        """
        out = self._finish()
        self._next_index = 0
        return out

    def _to_chunks(self, items: list[str | ToolBlock]) -> list[AIMessageChunk]:
        chunks: list[AIMessageChunk] = []
        for item in items:
            if isinstance(item, str):
                chunks.append(AIMessageChunk(content=item))
            else:
                chunks.append(block_chunk(item, self._next_index))
                self._next_index += len(item.tool_calls) + len(item.invalid_tool_calls)
        return chunks

    def feed_chunks(self, delta: str) -> list[AIMessageChunk]:
        """Like `feed`, as LangChain message chunks (see `block_chunk`).

        Args:
            delta: Any amount of text.

        Returns:
            One chunk per text piece or block; tool-call indexes run across the stream.
        """
        return self._to_chunks(self.feed(delta))

    def close_chunks(self) -> list[AIMessageChunk]:
        """Like `close`, as LangChain message chunks.

        Returns:
            The chunk for the remaining text or block, if any.
        """
        chunks = self._to_chunks(self._finish())
        self._next_index = 0
        return chunks
