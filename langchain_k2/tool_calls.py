"""Tool calls in K2-Chat's Hermes format: whole-text and streaming parsers.

In: completion text from K2-Chat (whole, or as deltas of any size), optionally the bound
tools as OpenAI-style function dicts (``{"name", "description", "parameters"}`` or
``{"type": "function", "function": {...}}``). Out: the text outside ``<tool_call>`` blocks,
exactly as generated, and one `ToolBlock` per block holding LangChain ``ToolCall``
and ``InvalidToolCall`` dicts; while streaming, text pieces and blocks in order, or the same
as ``AIMessageChunk`` objects that merge with ``+`` into the whole-text result.

Accepted inside a block (``shared/spec/k2-format.md`` section 2): one JSON object, a JSON
list of objects (the model card's form), whitespace and markdown fences around it,
``arguments`` as a JSON-encoded string (glaive style), ``parameters`` instead of
``arguments``, no arguments at all (``{}``), Python-literal dicts with single quotes, and a
final block left unclosed whose JSON is complete.

Nothing is dropped and nothing is repaired by guessing: a block or call that cannot be read,
names an unknown tool or fails its tool's JSON schema becomes an ``InvalidToolCall`` with an
``error`` saying why. Its ``args`` always start with the open tag, so no JSON parser (not even
LangChain's lenient ``parse_partial_json``) can turn it into a valid call when stream chunks
are merged (spec section 5). Every call gets a fresh id from `new_call_id`.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import math
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessageChunk, InvalidToolCall, ToolCall, ToolCallChunk
from langchain_core.messages.tool import invalid_tool_call as create_invalid_tool_call
from langchain_core.messages.tool import tool_call as create_tool_call
from langchain_core.messages.tool import tool_call_chunk as create_tool_call_chunk

from langchain_k2._memo import MemoByValue
from langchain_k2.errors import ToolDefinitionError
from langchain_k2.tool_binding import function_of

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
_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


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
            account for every character of the input.
    """

    content: str
    tool_calls: list[ToolCall]
    invalid_tool_calls: list[InvalidToolCall]
    blocks: list[ToolBlock]


# --------------------------------------------------------------------------------------
# Tools and argument validation
# --------------------------------------------------------------------------------------


class _ToolIndex:
    """The bound tools by name, each with its argument validator (built here, once)."""

    def __init__(self, tools: Sequence[Mapping[str, Any]]) -> None:
        self._schemas: dict[str, Mapping[str, Any] | None] = {}
        self._validators: dict[str, Callable[[dict[str, Any]], str | None]] = {}
        for position, tool in enumerate(tools):
            spec = function_of(tool)
            name = spec.get("name")
            if not isinstance(name, str) or not name:
                msg = (
                    f"tool #{position} has no name; pass OpenAI-style function dicts "
                    '({"name", "description", "parameters"} or {"type": "function", '
                    '"function": {...}})'
                )
                raise ToolDefinitionError(msg)
            if name in self._schemas:
                msg = f"two bound tools are named {name!r}; tool names must be unique"
                raise ToolDefinitionError(msg)
            parameters = spec.get("parameters")
            if parameters is not None and not isinstance(parameters, Mapping):
                msg = f"the 'parameters' of tool {name!r} must be a JSON schema object"
                raise ToolDefinitionError(msg)
            self._schemas[name] = parameters
            self._validators[name] = _make_validator(name, parameters)

    def check(self, name: str, args: dict[str, Any]) -> str | None:
        """Return why ``args`` cannot go to tool ``name``, or ``None`` if they can."""
        if name not in self._schemas:
            bound = ", ".join(self._schemas) or "(none)"
            return f"unknown tool {name!r}; bound tools: {bound}"
        problem = self._validators[name](args)
        if problem is None:
            return None
        return f"arguments for {name!r} fail its schema: {problem}"


@functools.lru_cache(maxsize=256)
def _compiled_schema(schema_json: str) -> Any:
    """A ``jsonschema`` validator for a schema given as JSON (cached: tools repeat per call).

    Raises:
        jsonschema.exceptions.SchemaError: the schema is not a valid JSON schema.
    """
    jsonschema: Any = importlib.import_module("jsonschema")
    schema = json.loads(schema_json)
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    return validator_cls(schema)


def _make_validator(
    name: str, schema: Mapping[str, Any] | None
) -> Callable[[dict[str, Any]], str | None]:
    """Build a function returning the first schema violation of some arguments, or None.

    Uses ``jsonschema`` when it is installed (imported here, lazily), else a small check of
    ``required`` and the top-level property ``type``s.

    Raises:
        ToolDefinitionError: the schema is not a valid JSON schema.
    """
    if not schema:
        return lambda _args: None
    try:
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError:
        return lambda args: _basic_schema_problem(schema, args)
    try:
        validator = _compiled_schema(json.dumps(schema, sort_keys=True))
    except (TypeError, ValueError) as exc:  # not JSON-serializable: cannot be sent either
        msg = f"the 'parameters' of tool {name!r} are not JSON-serializable: {exc}"
        raise ToolDefinitionError(msg) from exc
    except jsonschema.exceptions.SchemaError as exc:
        msg = f"the 'parameters' of tool {name!r} are not a valid JSON schema: {exc.message}"
        raise ToolDefinitionError(msg) from exc
    best_match = jsonschema.exceptions.best_match

    def validate(args: dict[str, Any]) -> str | None:
        error = best_match(validator.iter_errors(args))
        if error is None:
            return None
        message = str(error.message)
        path = list(error.absolute_path)
        if path:
            message += " (at " + "/".join(str(p) for p in path) + ")"
        return message

    return validate


def _basic_schema_problem(schema: Mapping[str, Any], args: dict[str, Any]) -> str | None:
    """Check ``required`` and top-level property ``type``s (used without ``jsonschema``)."""
    required = schema.get("required")
    if isinstance(required, list):
        for key in required:
            if isinstance(key, str) and key not in args:
                return f"{key!r} is a required property"
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return None
    for key, value in args.items():
        prop = properties.get(key)
        if not isinstance(prop, Mapping):
            continue
        expected = prop.get("type")
        names = [expected] if isinstance(expected, str) else expected
        if not isinstance(names, list):
            continue
        checks = [_JSON_TYPES[n] for n in names if isinstance(n, str) and n in _JSON_TYPES]
        if checks and not any(check(value) for check in checks):
            wanted = names[0] if len(names) == 1 else names
            return f"{value!r} is not of type {wanted!r} (at {key})"
    return None


_indexes: MemoByValue[Sequence[Mapping[str, Any]], _ToolIndex] = MemoByValue(_ToolIndex)
"""One index per bound-tools list (a bound model passes the same list on every call)."""


def _tool_index(tools: Sequence[Mapping[str, Any]] | None) -> _ToolIndex | None:
    return None if tools is None else _indexes(tools)


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


def _decode(text: str) -> Any:
    """Decode JSON, falling back to a Python literal (single quotes, True/False/None).

    Raises:
        ValueError: neither form decodes; the message is the JSON error.
    """
    try:
        return json.loads(text)
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


def _read_elements(body: str, closed: bool) -> list[Any]:
    """Decode a block's body into its list of elements (each still to be checked)."""
    if not body:
        what = "empty tool call block" if closed else "unclosed tool call block is empty"
        raise _BlockError(what)
    try:
        value = _decode(body)
    except ValueError as exc:
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
    if isinstance(args, str):
        try:
            args = _decode(args)
        except ValueError as exc:
            return name, f"'{key}' of {name!r} is a string but not a JSON-encoded object: {exc}"
        if not isinstance(args, dict):
            got = type(args).__name__
            return name, f"'{key}' of {name!r} is a string but not a JSON-encoded object: {got}"
    if not isinstance(args, dict):
        return name, f"'{key}' of {name!r} must be an object, got {type(args).__name__}"
    return name, args


def _parse_block(
    raw: str, closed: bool, index: _ToolIndex | None, open_tag: str, close_tag: str
) -> ToolBlock:
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


def _check_tags(open_tag: str, close_tag: str) -> None:
    if not open_tag.startswith("<") or not close_tag:
        msg = (
            f"tool-call tags must be non-empty and the open tag must start with '<' "
            f"(got {open_tag!r}, {close_tag!r}); invalid calls carry it so that they stay "
            "invalid when LangChain merges stream chunks"
        )
        raise ValueError(msg)


def parse_block(
    raw: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    open_tag: str = OPEN_TAG,
    close_tag: str = CLOSE_TAG,
) -> ToolBlock:
    """Parse one block, given with its tags (the close tag may be missing at the end).

    Args:
        raw: ``"<tool_call>...</tool_call>"``, or ``"<tool_call>..."`` if left unclosed.
        tools: The bound tools; when given, unknown names and arguments failing a tool's
            schema make the call invalid.
        open_tag: The tag that opens a block.
        close_tag: The tag that closes a block.

    Returns:
        The block with its valid and invalid calls (at least one of either).

    Raises:
        ValueError: ``raw`` does not start with ``open_tag``, or the tags are unusable.
        ToolDefinitionError: a tool has no name, a duplicate name or an invalid schema.
    """
    _check_tags(open_tag, close_tag)
    if not raw.startswith(open_tag):
        msg = f"a tool-call block must start with {open_tag!r}: {raw[:40]!r}"
        raise ValueError(msg)
    closed = len(raw) >= len(open_tag) + len(close_tag) and raw.endswith(close_tag)
    return _parse_block(raw, closed, _tool_index(tools), open_tag, close_tag)


def parse_tool_calls(
    text: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    open_tag: str = OPEN_TAG,
    close_tag: str = CLOSE_TAG,
) -> ParsedToolCalls:
    """Split a whole completion into content and tool-call blocks.

    A block runs from ``open_tag`` to the first ``close_tag`` after it, or to the end of the
    text. A close tag with no open tag, or an incomplete open tag at the very end, is
    content.

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
    """
    _check_tags(open_tag, close_tag)
    index = _tool_index(tools)
    content: list[str] = []
    blocks: list[ToolBlock] = []
    position = 0
    while True:
        start = text.find(open_tag, position)
        if start == -1:
            content.append(text[position:])
            break
        content.append(text[position:start])
        stop = text.find(close_tag, start + len(open_tag))
        if stop == -1:
            blocks.append(_parse_block(text[start:], False, index, open_tag, close_tag))
            break
        position = stop + len(close_tag)
        blocks.append(_parse_block(text[start:position], True, index, open_tag, close_tag))
    return ParsedToolCalls(
        content="".join(content),
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
    become the open tag (a trailing ``"<tool"`` is held, ``"<tox"`` is not). Inside a block
    the text is buffered until the close tag, then the block is parsed and validated. Each
    delta is searched only together with the few characters before it that could start a
    tag, so the total work is linear in the length of the output.

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
        _check_tags(open_tag, close_tag)
        self._index = _tool_index(tools)
        self._open = open_tag
        self._close = close_tag
        self._overlap = len(close_tag) - 1
        self._reset()

    def _reset(self) -> None:
        self._in_block = False
        self._held = ""  # outside a block: a suffix that may still become the open tag
        self._parts: list[str] = []  # inside a block: the block so far, open tag first
        self._tail = ""  # inside a block: its last len(close_tag) - 1 body characters
        self._next_index = 0

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
        out: list[str | ToolBlock] = []
        # Positions, not slices: a large delta holding many blocks is still scanned once.
        text = delta if self._in_block else self._held + delta
        self._held = ""
        position = 0
        while position < len(text):
            if self._in_block:
                position = self._scan_inside(text, position, out)
            else:
                position = self._scan_outside(text, position, out)
        return out

    def _scan_outside(self, text: str, position: int, out: list[str | ToolBlock]) -> int:
        start = text.find(self._open, position)
        if start == -1:
            keep = _partial_suffix(text, self._open, position)
            if len(text) - keep > position:
                out.append(text[position : len(text) - keep])
            self._held = text[len(text) - keep :]
            return len(text)
        if start > position:
            out.append(text[position:start])
        self._in_block = True
        self._parts = [self._open]
        self._tail = ""
        return start + len(self._open)

    def _scan_inside(self, text: str, position: int, out: list[str | ToolBlock]) -> int:
        # A close tag that starts in the body seen so far lies within this window...
        window = self._tail + text[position : position + self._overlap]
        found = window.find(self._close)
        if found != -1:
            end = position + found + len(self._close) - len(self._tail)
        else:  # ...any other starts in the new text.
            found = text.find(self._close, position)
            end = found + len(self._close) if found != -1 else -1
        if end == -1:
            self._parts.append(text[position:])
            if len(text) - position >= self._overlap:
                self._tail = text[len(text) - self._overlap :] if self._overlap else ""
            else:
                window = self._tail + text[position:]
                self._tail = window[max(0, len(window) - self._overlap) :]
            return len(text)
        self._parts.append(text[position:end])
        raw = "".join(self._parts)
        self._in_block = False
        self._parts = []
        self._tail = ""
        out.append(_parse_block(raw, True, self._index, self._open, self._close))
        return end

    def _finish(self) -> list[str | ToolBlock]:
        out: list[str | ToolBlock] = []
        if self._in_block:
            raw = "".join(self._parts)
            out.append(_parse_block(raw, False, self._index, self._open, self._close))
        elif self._held:
            out.append(self._held)
        self._in_block = False
        self._held = ""
        self._parts = []
        self._tail = ""
        return out

    def close(self) -> list[str | ToolBlock]:
        """End the stream: flush held text, and turn an unclosed block into a block.

        An unclosed final block is valid when its JSON is complete, invalid otherwise.
        The parser is then reset for a new stream.

        Returns:
            The remaining text piece or block (at most one item).
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
