"""One ``<tool_call>`` block of K2-Chat's Hermes format, read into LangChain calls.

In: the text between a block's tags (and whether the close tag came), optionally a
`langchain_k2._tool_schema.ToolIndex` of the bound tools. Out: a `ToolBlock` holding
LangChain ``ToolCall`` and ``InvalidToolCall`` dicts. Finding blocks in a completion, whole
or streamed, is `langchain_k2._tool_calls`' job; this module only reads one.

Accepted inside a block (``shared/spec/k2-format.md`` section 2): one JSON object, a JSON
list of objects (the model card's form), whitespace and markdown fences around it,
``arguments`` as a JSON-encoded string (glaive style, double- or single-quoted, even with raw
newlines or an apostrophe inside), ``parameters`` instead of ``arguments``, no arguments at
all or an empty arguments string (``{}``), Python-literal dicts with single quotes, and a
final block left unclosed whose JSON is complete. What cannot be read becomes an
``InvalidToolCall`` whose ``args`` start with the open tag (spec section 5).

Not accepted: ``NaN``, ``Infinity`` and numbers too large for a float (``1e999``), which
are no JSON (Python's ``json`` reads them, and the next turn's prompt could not write them
back); values nested deeper than `MAX_DEPTH`; more than `MAX_CALLS` calls in one block. Such
a block is one invalid call (repairable) holding the raw text, so nothing is lost, and
reading a block costs work linear in its size: the Python-literal fallback is only tried on
bodies up to `MAX_LITERAL_SIZE` characters.
"""

from __future__ import annotations

import ast
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from langchain_core.messages import InvalidToolCall, ToolCall
from langchain_core.messages.tool import invalid_tool_call as create_invalid_tool_call
from langchain_core.messages.tool import tool_call as create_tool_call

from langchain_k2._block_scan import check_tags
from langchain_k2._tool_schema import ToolIndex as _ToolIndex
from langchain_k2._tool_schema import nesting_depth
from langchain_k2._tool_schema import tool_index as _tool_index
from langchain_k2._unicode import clean_values

__all__ = [
    "CLOSE_TAG",
    "MAX_CALLS",
    "MAX_DEPTH",
    "MAX_LITERAL_SIZE",
    "OPEN_TAG",
    "ParsedToolCalls",
    "ToolBlock",
    "new_call_id",
    "parse_block",
    "strip_fences",
]

OPEN_TAG = "<tool_call>"
"""The tag that opens a tool-call block (a special token in K2-Chat's tokenizer)."""

CLOSE_TAG = "</tool_call>"
"""The tag that closes a tool-call block."""

MAX_CALLS = 64
"""Most calls read from one block; a block listing more is one invalid call."""

MAX_DEPTH = 64
"""Deepest nesting of a block's JSON (lists and objects) that is read."""

MAX_LITERAL_SIZE = 16_384
"""Longest body (in characters) for which the Python-literal fallback is tried."""

_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")

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
        schema_failures: For the invalid calls that were read whole and name a bound
            tool but whose arguments fail its schema: their id and parsed arguments
            (`accept_schema_failures` turns them into calls for the tool executor).
    """

    raw: str
    tool_calls: list[ToolCall]
    invalid_tool_calls: list[InvalidToolCall]
    schema_failures: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    def accept_schema_failures(self) -> tuple[ToolBlock, dict[str, str]]:
        """This block with its schema-failing calls moved to ``tool_calls``, and their errors.

        Once repairs have run out, a call that parsed and names a bound tool goes to the
        tool executor (LangGraph's ``ToolNode`` answers the model with the validation error,
        so it can correct itself); only unreadable blocks and unknown tools stay invalid.
        The errors are keyed by call id.

        Example:
            >>> from langchain_k2 import parse_tool_calls
            >>> tools = [{"name": "add", "parameters": {"type": "object",
            ...     "properties": {"a": {"type": "integer"}}}}]
            >>> raw = '<tool_call>{"name": "add", "arguments": {"a": "x"}}</tool_call>'
            >>> block = parse_tool_calls(raw, tools).blocks[0]
            >>> accepted, errors = block.accept_schema_failures()
            >>> [(c["name"], c["args"]) for c in accepted.tool_calls], accepted.invalid_tool_calls
            ([('add', {'a': 'x'})], [])
            >>> list(errors.values())
            ["arguments for 'add' fail its schema: 'x' is not of type 'integer' (at a)"]
        """
        if not self.schema_failures:
            return self, {}
        calls = list(self.tool_calls)
        invalid: list[InvalidToolCall] = []
        errors: dict[str, str] = {}
        for bad in self.invalid_tool_calls:
            call_id = bad["id"]
            args = self.schema_failures.get(call_id or "")
            if call_id is None or args is None or bad["name"] is None:
                invalid.append(bad)
                continue
            calls.append(create_tool_call(name=bad["name"], args=args, id=call_id))
            errors[call_id] = bad["error"] or ""
        return ToolBlock(raw=self.raw, tool_calls=calls, invalid_tool_calls=invalid), errors


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


def _no_constant(name: str) -> Any:
    msg = f"{name} is not a JSON value (JSON numbers are finite)"
    raise ValueError(msg)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        msg = f"the number {text[:40]} is too large for a float"
        raise ValueError(msg)
    return value


_DECODERS = {
    strict: json.JSONDecoder(strict=strict, parse_constant=_no_constant, parse_float=_finite)
    for strict in (True, False)
}
"""One decoder each way (``json.loads`` with hooks would build a new one per call)."""

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _bracket_depth(text: str) -> int:
    """How deeply the brackets of JSON ``text`` nest, its strings skipped (C-level scans).

    Example:
        >>> _bracket_depth('{"a": [1, {"b": "[[[["}]}')
        3
    """
    brackets = _BRACKET.findall(_JSON_STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _decode(text: str, *, strict: bool = True) -> Any:
    """Decode JSON, falling back to a Python literal (single quotes, True/False/None).

    ``strict=False`` lets JSON strings hold raw control characters (newlines, tabs).
    ``NaN``, ``Infinity`` and non-finite numbers are refused; so is nesting deeper than
    `MAX_DEPTH`. The fallback is only tried up to `MAX_LITERAL_SIZE` characters.

    Raises:
        ValueError: neither form decodes; the message is the JSON error.
    """
    value: Any = None
    error: str | None = None
    try:
        value = _DECODERS[strict].decode(text)
    except RecursionError:
        value, error = None, f"JSON nested deeper than {MAX_DEPTH} levels"
    except ValueError as json_error:  # JSONDecodeError, or an integer with too many digits
        value, error = None, str(json_error)
    if error is not None and len(text) <= MAX_LITERAL_SIZE:
        try:
            value = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(error) from None
        if not _is_json_value(value):
            msg = f"{error} (as a Python literal it holds values JSON cannot carry)"
            raise ValueError(msg) from None
    elif error is not None:
        raise ValueError(error)
    if text.count("{") + text.count("[") <= MAX_DEPTH:  # cannot nest deeper
        deep = False
    elif error is None:  # JSON: its brackets outside strings are its nesting
        deep = _bracket_depth(text) > MAX_DEPTH
    else:  # a Python literal (at most MAX_LITERAL_SIZE characters): walk the value
        deep = nesting_depth(value, MAX_DEPTH) > MAX_DEPTH
    if deep:
        msg = f"JSON nested deeper than {MAX_DEPTH} levels"
        raise ValueError(msg)
    return clean_values(value) if _ESCAPED_SURROGATE.search(text) else value


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


def partial_suffix(text: str, tag: str, start: int = 0) -> int:
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
        if len(value) > MAX_CALLS:
            msg = f"tool call block lists {len(value)} calls; at most {MAX_CALLS} are read"
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


def read_block(
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
        body = body[: len(body) - partial_suffix(body, close_tag)]
    try:
        elements = _read_elements(strip_fences(body), closed)
    except _BlockError as exc:
        bad = create_invalid_tool_call(name=None, args=raw, id=new_call_id(), error=str(exc))
        return ToolBlock(raw=raw, tool_calls=[], invalid_tool_calls=[bad])
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    failures: dict[str, dict[str, Any]] = {}
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
        call_id = new_call_id()
        invalid.append(create_invalid_tool_call(name=name, args=text, id=call_id, error=error))
        if index is not None and name in index and isinstance(args, dict):
            failures[call_id] = args
    return ToolBlock(
        raw=raw, tool_calls=calls, invalid_tool_calls=invalid, schema_failures=failures
    )


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
    return read_block(raw, closed, index, open_tag, close_tag, cut_off=cut_off)
