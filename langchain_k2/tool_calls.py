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

import ast
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessageChunk, InvalidToolCall, ToolCall, ToolCallChunk
from langchain_core.messages.tool import invalid_tool_call as create_invalid_tool_call
from langchain_core.messages.tool import tool_call as create_tool_call
from langchain_core.messages.tool import tool_call_chunk as create_tool_call_chunk

from langchain_k2._block_scan import StringState, TagFinder, check_tags
from langchain_k2.tool_schema import ToolIndex as _ToolIndex
from langchain_k2.tool_schema import tool_index as _tool_index

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

OPEN_TAG = "<tool_call>"
"""The tag that opens a tool-call block (a special token in K2-Chat's tokenizer)."""

CLOSE_TAG = "</tool_call>"
"""The tag that closes a tool-call block."""

_FENCE_OPEN = re.compile(r"```[\w+.-]*[ \t]*(?:\r?\n)?")


def new_call_id() -> str:
    """Return a fresh tool-call id: ``"call_"`` and 24 random hex characters."""
    return "call_" + secrets.token_hex(12)


@dataclass(frozen=True)
class ToolBlock:
    """One ``<tool_call>`` block and the calls read from it.

    Attributes:
        raw: The block exactly as it appeared, tags included (``"<tool_call>...</tool_call>"``),
            or ``"<tool_call>..."`` for a block left unclosed at the end of generation.
        tool_calls: The valid calls in the block, in order.
        invalid_tool_calls: The calls (or the whole block) that could not be accepted.
            A block always yields at least one call, valid or invalid.
    """

    raw: str
    tool_calls: list[ToolCall]
    invalid_tool_calls: list[InvalidToolCall]


@dataclass(frozen=True)
class ParsedToolCalls:
    """A whole completion split into text and tool-call blocks.

    Attributes:
        content: All text outside blocks, concatenated exactly (nothing stripped).
        tool_calls: The valid calls of all blocks, in order.
        invalid_tool_calls: The invalid calls of all blocks, in order.
        blocks: The blocks, in order. ``content`` and the blocks' ``raw`` texts together
            account for every character of the input but the stray close tags (outside
            any block), which are dropped.
    """

    content: str
    tool_calls: list[ToolCall]
    invalid_tool_calls: list[InvalidToolCall]
    blocks: list[ToolBlock]


# --------------------------------------------------------------------------------------
# One block
# --------------------------------------------------------------------------------------


class _BlockError(Exception):
    """The block as a whole cannot be read as a JSON object or list of objects."""


def _is_json_value(value: Any) -> bool:
    """Whether ``value`` (from ``ast.literal_eval``) is something JSON can carry."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_value(v) for k, v in value.items())
    return False


def _decode(text: str, *, strict: bool = True) -> Any:
    """Decode JSON, falling back to a Python literal (single quotes, True/False/None).

    ``strict=False`` lets JSON strings hold raw control characters (newlines, tabs).

    Raises:
        ValueError: neither form decodes; the message is the JSON error.
    """
    try:
        return json.loads(text, strict=strict)
    except RecursionError:
        msg = "JSON nested too deeply"
        raise ValueError(msg) from None
    except ValueError as json_error:  # JSONDecodeError, or an integer with too many digits
        try:
            value = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(str(json_error)) from None
        if not _is_json_value(value):
            msg = f"{json_error} (as a Python literal it holds values JSON cannot carry)"
            raise ValueError(msg) from None
        return value


def strip_fences(text: str) -> str:
    r"""Strip whitespace and a markdown code fence (```json ... ```) around ``text``.

    The opening fence may name any language, in any case; a missing closing fence is
    tolerated (the model stopped early).

    Example:
        >>> strip_fences('```JSON\n{"a": 1}\n```')
        '{"a": 1}'
        >>> strip_fences('  {"a": "`x`"}  ')
        '{"a": "`x`"}'
    """
    text = text.strip()
    if text.startswith("```"):
        match = _FENCE_OPEN.match(text)
        text = text[match.end() if match else 3 :].rstrip()
        if text.endswith("```"):
            text = text[:-3]
        text = text.strip()
    return text


def _partial_suffix(text: str, tag: str, start: int = 0) -> int:
    """Length of the longest suffix of ``text[start:]`` that is a proper prefix of ``tag``.

    Only the last ``len(tag) - 1`` characters are looked at, so this costs O(len(tag)).
    """
    if len(tag) < 2:
        return 0
    first = tag[0]
    position = text.find(first, max(start, len(text) - len(tag) + 1))
    while position != -1:
        if tag.startswith(text[position:]):
            return len(text) - position
        position = text.find(first, position + 1)
    return 0


_NAME = r'"name"\s*:\s*"(?P<name>(?:[^"\\\n]|\\.)*)"'
_QUOTED_ARGS = r'"(?P<key>arguments|parameters)"\s*:\s*\'(?P<args>.*)\''
_GLAIVE_FORMS = [
    re.compile(rf"\A(?:\[\s*)?\{{\s*{first}\s*,\s*{second}\s*\}}(?:\s*\])?\Z", re.DOTALL)
    for first, second in ((_NAME, _QUOTED_ARGS), (_QUOTED_ARGS, _NAME))
]


def _glaive_call(body: str) -> dict[str, Any] | None:
    r"""Read glaive's ``{"name": "f", "arguments": '<JSON>'}`` (arguments quoted).

    For when the quoted JSON holds what a Python string cannot: raw newlines, or an
    unescaped apostrophe.

    The arguments run from the quote after the key to the last quote before the closing
    brace (either key order, optionally as a one-element list); ``None`` if the body has
    another shape.

    Example:
        >>> _glaive_call('{"name": "note", "arguments": \'{"text": "it\'s"}\'}')
        {'name': 'note', 'arguments': '{"text": "it\'s"}'}
    """
    for form in _GLAIVE_FORMS:
        match = form.match(body)
        if match is not None:
            try:
                name = json.loads('"' + match["name"] + '"')
            except ValueError:
                return None
            return {"name": name, match["key"]: match["args"]}
    return None


def _read_elements(body: str, closed: bool) -> list[Any]:
    """Decode a block's body into its list of elements (each still to be checked)."""
    if not body:
        what = "empty tool call block" if closed else "unclosed tool call block is empty"
        raise _BlockError(what)
    try:
        value = _decode(body)
    except ValueError as exc:
        glaive = _glaive_call(body)
        if glaive is not None:
            return [glaive]
        if closed:
            msg = f"tool call block is not valid JSON: {exc}"
        else:
            msg = f"tool call block was not closed and its JSON is incomplete or invalid: {exc}"
        raise _BlockError(msg) from None
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        if not value:
            msg = "tool call block holds an empty list (no calls)"
            raise _BlockError(msg)
        return value
    msg = f"tool call JSON must be an object or a list of objects, got {type(value).__name__}"
    raise _BlockError(msg)


def _read_call(element: Any, position: str) -> tuple[str | None, dict[str, Any] | str]:
    """Read ``(name, args)`` from one element, or ``(name or None, error)``."""
    if not isinstance(element, dict):
        return None, f"tool call{position} is not an object (got {type(element).__name__})"
    name = element.get("name")
    if not isinstance(name, str) or not name:
        return None, f"tool call{position} has no string 'name'"
    key = "arguments" if "arguments" in element else "parameters"
    args = element.get(key, {})
    if isinstance(args, str) and not args.strip():
        args = {}  # "arguments": "" is how some models say "no arguments"
    if isinstance(args, str):
        try:
            args = _decode(args, strict=False)
        except ValueError as exc:
            return name, f"'{key}' of {name!r} is a string but not a JSON-encoded object: {exc}"
        if not isinstance(args, dict):
            got = type(args).__name__
            return name, f"'{key}' of {name!r} is a string but not a JSON-encoded object: {got}"
    if not isinstance(args, dict):
        return name, f"'{key}' of {name!r} must be an object, got {type(args).__name__}"
    return name, args


def _parse_block(
    raw: str,
    closed: bool,
    index: _ToolIndex | None,
    open_tag: str,
    close_tag: str,
    *,
    cut_off: bool = False,
) -> ToolBlock:
    if cut_off:  # a new open tag came before this block's close tag
        error = f"tool call block was not closed: a new {open_tag} began before its {close_tag}"
        bad = create_invalid_tool_call(name=None, args=raw, id=new_call_id(), error=error)
        return ToolBlock(raw=raw, tool_calls=[], invalid_tool_calls=[bad])
    end = len(raw) - len(close_tag) if closed else len(raw)
    body = raw[len(open_tag) : end]
    if not closed:
        # Generation stopped inside the close tag ("...}</tool_"): that fragment is not JSON.
        body = body[: len(body) - _partial_suffix(body, close_tag)]
    try:
        elements = _read_elements(strip_fences(body), closed)
    except _BlockError as exc:
        bad = create_invalid_tool_call(name=None, args=raw, id=new_call_id(), error=str(exc))
        return ToolBlock(raw=raw, tool_calls=[], invalid_tool_calls=[bad])
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    many = len(elements) > 1
    for number, element in enumerate(elements, start=1):
        name, args = _read_call(element, f" #{number} in the list" if many else "")
        if isinstance(args, str):
            error = args
        elif name is None or index is None or (problem := index.check(name, args)) is None:
            calls.append(create_tool_call(name=name or "", args=args, id=new_call_id()))
            continue
        else:
            error = problem
        text = open_tag + json.dumps(element) + close_tag
        invalid.append(
            create_invalid_tool_call(name=name, args=text, id=new_call_id(), error=error)
        )
    return ToolBlock(raw=raw, tool_calls=calls, invalid_tool_calls=invalid)


def parse_block(
    raw: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    open_tag: str = OPEN_TAG,
    close_tag: str = CLOSE_TAG,
    cut_off: bool = False,
) -> ToolBlock:
    """Parse one block, given with its tags (the close tag may be missing at the end).

    Args:
        raw: ``"<tool_call>...</tool_call>"``, or ``"<tool_call>..."`` if left unclosed.
        tools: The bound tools; when given, unknown names and arguments failing a tool's
            schema make the call invalid.
        open_tag: The tag that opens a block.
        close_tag: The tag that closes a block.
        cut_off: The block was ended by a new ``open_tag`` before its close tag; it is
            then one invalid call saying so, whatever it holds.

    Returns:
        The block with its valid and invalid calls (at least one of either).

    Raises:
        ValueError: ``raw`` does not start with ``open_tag``, or the tags are unusable.
        ToolDefinitionError: a tool has no name, a duplicate name or an invalid schema.
    """
    check_tags(open_tag, close_tag)
    if not raw.startswith(open_tag):
        msg = f"a tool-call block must start with {open_tag!r}: {raw[:40]!r}"
        raise ValueError(msg)
    closed = len(raw) >= len(open_tag) + len(close_tag) and raw.endswith(close_tag)
    index = _tool_index(tools)
    return _parse_block(raw, closed, index, open_tag, close_tag, cut_off=cut_off)


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
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        open_tag: str = OPEN_TAG,
        close_tag: str = CLOSE_TAG,
    ) -> None:
        """Create a parser for one stream.

        Args:
            tools: The bound tools (see `parse_block`).
            open_tag: The tag that opens a block.
            close_tag: The tag that closes a block.

        Raises:
            ValueError: the tags are unusable.
            ToolDefinitionError: a tool has no name, a duplicate name or an invalid schema.
        """
        check_tags(open_tag, close_tag)
        self._index = _tool_index(tools)
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
            _partial_suffix(text, self._open, start), _partial_suffix(text, self._close, start)
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
            _parse_block(raw, not is_open, self._index, self._open, self._close, cut_off=is_open)
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
                out.append(_parse_block(raw, False, self._index, self._open, self._close))
                break
            # The body ends inside a string that never terminated: the tags in it were
            # real. End the block at the first one and read the rest again.
            offset, is_open = found
            end = offset if is_open else offset + len(self._close)
            out.append(
                _parse_block(
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
