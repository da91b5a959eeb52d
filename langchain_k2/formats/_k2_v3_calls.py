r"""K2-V3's ``<ifm|tool_calls>`` group, read into LangChain calls, with values typed as vLLM does.

In: one group's text (``<ifm|tool_calls>...</ifm|tool_calls>``), the ``tool_call_format``
the prompt asked for (``"xml"``, ``"xml_typed"`` or ``"json"``) and the bound tools'
`ToolIndex`. Out: a `langchain_k2._tool_block.ToolBlock` holding the group's calls
(``shared/spec/k2-family.md`` section 4.2, upstream vLLM's ``k2_horizon`` tool parser):

* The body is ``<ifm|tool_call>...</ifm|tool_call>`` blocks with only whitespace between.
* XML block: the tool name, then ``<ifm|arg_key>K</ifm|arg_key>`` [``<ifm|arg_type>T``
  ``</ifm|arg_type>``] ``<ifm|arg_value>V</ifm|arg_value>`` pairs; a value ends at the
  first ``</ifm|arg_value>``, so other tags and ``<`` inside it are kept. A type tag is an
  error under ``xml`` and required under ``xml_typed``. JSON block: ``{"name": ...,
  "arguments": {...}}``.
* Values are typed from the tool's schema exactly as vLLM's ``coerce_to_schema_type``
  does (`coerce_value`): a ``"123"`` for a string argument stays ``"123"``.
* Fail closed: when any call of the group is wrong (unreadable, unknown tool, arguments
  failing the schema), no call of the group is valid. Each call becomes an invalid call
  with its raw block text and the error (the calls that were fine say which call failed);
  a body that is not a sequence of blocks is one invalid call holding the whole group.
  When the only faults are schema failures, they are recorded as such, so once repairs run
  out the whole group goes to the tool executor, like K2-Chat's calls.

Example:
    >>> from langchain_k2._tool_schema import tool_index
    >>> tools = tool_index([{"name": "weather", "parameters": {"type": "object",
    ...     "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}])
    >>> group = ("<ifm|tool_calls>\n<ifm|tool_call>weather\n<ifm|arg_key>city</ifm|arg_key>\n"
    ...     "<ifm|arg_value>123</ifm|arg_value>\n<ifm|arg_key>days</ifm|arg_key>\n"
    ...     "<ifm|arg_value>2</ifm|arg_value>\n</ifm|tool_call>\n</ifm|tool_calls>")
    >>> call = read_group(group, "xml", tools).tool_calls[0]
    >>> call["name"], call["args"]
    ('weather', {'city': '123', 'days': 2})
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.messages import InvalidToolCall, ToolCall
from langchain_core.messages.tool import invalid_tool_call as create_invalid_tool_call
from langchain_core.messages.tool import tool_call as create_tool_call

from langchain_k2._tool_block import ToolBlock, new_call_id
from langchain_k2._tool_schema import ToolIndex
from langchain_k2.formats._k2_v3 import value_type

__all__ = [
    "CALL_FORMATS",
    "GROUP_CLOSE",
    "GROUP_OPEN",
    "MARKERS",
    "CallFormat",
    "coerce_value",
    "read_group",
    "schema_types",
    "unclosed_group",
]

CallFormat = Literal["xml", "xml_typed", "json"]
CALL_FORMATS: tuple[CallFormat, ...] = ("xml", "xml_typed", "json")

GROUP_OPEN = "<ifm|tool_calls>"
GROUP_CLOSE = "</ifm|tool_calls>"
CALL_OPEN = "<ifm|tool_call>"
CALL_CLOSE = "</ifm|tool_call>"
_KEY, _TYPE, _VALUE = "<ifm|arg_key>", "<ifm|arg_type>", "<ifm|arg_value>"
_ARG_MARKERS = (_KEY, "</ifm|arg_key>", _TYPE, "</ifm|arg_type>", _VALUE, "</ifm|arg_value>")
MARKERS = (GROUP_OPEN, GROUP_CLOSE, CALL_OPEN, CALL_CLOSE, *_ARG_MARKERS)
"""Every tag of the call grammar (the engines may report them as special tokens)."""

_CALL = re.compile(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), re.DOTALL)
_ARG = re.compile(
    r"<ifm\|arg_key>(.*?)</ifm\|arg_key>\s*"
    r"(?:<ifm\|arg_type>(.*?)</ifm\|arg_type>\s*)?"
    r"<ifm\|arg_value>(.*?)</ifm\|arg_value>",
    re.DOTALL,
)

# ------------------------------------------------------------------ typing (vLLM's rules)

_ALIASES = {
    **dict.fromkeys(("str", "text", "varchar", "char", "enum"), "string"),
    **dict.fromkeys(
        ("int", "int32", "int64", "uint", "uint32", "uint64", "long", "short", "unsigned"),
        "integer",
    ),
    **dict.fromkeys(("float", "float32", "float64", "double"), "number"),
    "bool": "boolean",
    "dict": "object",
    **dict.fromkeys(("arr", "list", "sequence"), "array"),
}
_ORDER = ("null", "integer", "number", "boolean", "object", "array", "string")


def _type_of(value: Any) -> str:
    """`value_type` of a JSON value; ``""`` for anything else (a tuple, a set...)."""
    json_value = value is None or isinstance(value, bool | int | float | str | list | dict)
    return value_type(value) if json_value else ""


def schema_types(schema: Any) -> list[str]:
    """The JSON types an argument's schema allows, as vLLM's ``extract_types_from_schema``.

    ``type`` (a string or a list), the types of ``enum`` values, and the union over
    ``anyOf`` / ``oneOf`` / ``allOf`` branches; ``["string"]`` when nothing says.

    Example:
        >>> sorted(schema_types({"anyOf": [{"type": "integer"}, {"enum": [None]}]}))
        ['integer', 'null']
        >>> schema_types({"$ref": "#/$defs/Unit"})
        ['string']
    """
    if not isinstance(schema, Mapping):
        return ["string"]
    found: set[str] = set()
    kind = schema.get("type")
    if isinstance(kind, str):
        found.add(kind)
    elif isinstance(kind, list):
        found.update(k for k in kind if isinstance(k, str))
    enum = schema.get("enum")
    if isinstance(enum, list):
        found.update(t for t in map(_type_of, enum) if t)
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list):
            for branch in branches:
                found.update(schema_types(branch))
    return list(found) if found else ["string"]


def _finite(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError):
        return False
    return True


def _as(kind: str, value: str) -> tuple[bool, Any]:
    """Try reading ``value`` as ``kind``: ``(True, result)`` or ``(False, None)``."""
    if kind == "null":
        return value.lower() == "null", None
    if kind == "string":
        return True, value
    if kind == "integer":
        try:
            return True, int(value)
        except ValueError:
            return False, None
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            return False, None
        if not math.isfinite(number):
            return False, None
        return True, (int(number) if number == int(number) else number)
    if kind == "boolean":
        word = value.lower().strip()
        if word in {"true", "1", "false", "0"}:
            return True, word in {"true", "1"}
        return False, None
    try:  # object, array: any JSON value, as vLLM does
        parsed = json.loads(value)
    except ValueError:
        return False, None
    return (True, parsed) if _finite(parsed) else (False, None)


def coerce_value(value: str, types: list[str]) -> Any:
    """Type a raw argument text as vLLM's ``coerce_to_schema_type``.

    The first success in the order null, integer, number (integral values become
    ``int``), boolean, object/array (JSON), string, among ``types`` (aliases such as
    ``int`` or ``list`` allowed); if none fits, the text as JSON, else the text itself.

    Example:
        >>> coerce_value("123", ["string"]), coerce_value("2.0", ["number"])
        ('123', 2)
        >>> coerce_value("TRUE", ["boolean"]), coerce_value("[1, 2]", ["array"])
        (True, [1, 2])
        >>> coerce_value("abc", ["integer"]), coerce_value("5", ["integer", "string"])
        ('abc', 5)
    """
    wanted = {_ALIASES.get(t.strip().lower(), t.strip().lower()) for t in types}
    for kind in _ORDER:
        if kind in wanted:
            ok, result = _as(kind, value)
            if ok:
                return result
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if _finite(parsed) else value


def _xml_value(value: str, schema: Any, tagged: str | None) -> Any:
    """Type one XML value (vLLM's ``_coerce_xml_value``): schema types, or the type tag."""
    base = tagged.split("[", 1)[0].strip().lower() if tagged else None
    types = schema_types(schema)
    if isinstance(schema, Mapping):
        if base in types and len(set(types)) > 1:
            types = [base]
    elif base == "any":
        return value
    elif base:
        types = [base]
    return coerce_value(value if "string" in types else value.strip(), types)


def _json_value(value: Any, schema: Any) -> Any:
    """Type one JSON-form value (vLLM's ``_coerce_json_value``): re-read by its schema."""
    if not isinstance(schema, Mapping):
        return value
    raw = (
        value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, allow_nan=False)
    )
    return coerce_value(raw, schema_types(schema))


# ------------------------------------------------------------------ one call


class _CallError(ValueError):
    """One ``<ifm|tool_call>`` block cannot be read."""


def _properties(tools: ToolIndex | None, name: str) -> Mapping[str, Any]:
    schema = tools.parameters(name) if tools is not None else None
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    return properties if isinstance(properties, Mapping) else {}


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        msg = f"the tool name must be one word with no spaces, got {name!r}"
        raise _CallError(msg)
    return name


def _read_xml(body: str, fmt: CallFormat, tools: ToolIndex | None) -> tuple[str, dict[str, Any]]:
    first = body.find(_KEY)
    if first == -1:
        if any(marker in body for marker in _ARG_MARKERS):
            msg = "argument tags without an <ifm|arg_key>"
            raise _CallError(msg)
        return _check_name(body.strip()), {}
    name = _check_name(body[:first].strip())
    properties = _properties(tools, name)
    args: dict[str, Any] = {}
    position = first
    for match in _ARG.finditer(body, first):
        if body[position : match.start()].strip():
            msg = f"stray text between arguments: {body[position : match.start()][:40]!r}"
            raise _CallError(msg)
        key = match[1].strip()
        if not key:
            msg = "an <ifm|arg_key> is empty"
            raise _CallError(msg)
        if key in args:
            msg = f"argument {key!r} is given twice"
            raise _CallError(msg)
        tagged = match[2].strip() if match[2] is not None else None
        if fmt == "xml" and tagged is not None:
            msg = "an <ifm|arg_type> tag under tool_call_format='xml' (it is 'xml_typed's form)"
            raise _CallError(msg)
        if fmt == "xml_typed" and not tagged:
            msg = f"argument {key!r} has no <ifm|arg_type> (tool_call_format='xml_typed')"
            raise _CallError(msg)
        args[key] = _xml_value(match[3], properties.get(key), tagged)
        position = match.end()
    if position == first or body[position:].strip():
        msg = "malformed argument tags (each needs <ifm|arg_key> then <ifm|arg_value>)"
        raise _CallError(msg)
    return name, args


def _read_json(body: str, tools: ToolIndex | None) -> tuple[str, dict[str, Any]]:
    try:
        call = json.loads(body.strip())
    except (ValueError, RecursionError) as exc:
        msg = f"the call is not valid JSON: {exc} (tool_call_format='json')"
        raise _CallError(msg) from None
    if not isinstance(call, dict):
        msg = f"the JSON call must be an object, got {type(call).__name__}"
        raise _CallError(msg)
    name = _check_name(call.get("name"))
    args = call.get("arguments", {})
    if not isinstance(args, dict):
        msg = f"the 'arguments' of {name!r} must be an object, got {type(args).__name__}"
        raise _CallError(msg)
    properties = _properties(tools, name)
    try:
        return name, {key: _json_value(value, properties.get(key)) for key, value in args.items()}
    except ValueError as exc:  # a non-finite number cannot be re-encoded
        raise _CallError(str(exc)) from None


# ------------------------------------------------------------------ the group


def _whole_group_invalid(raw: str, error: str) -> ToolBlock:
    bad = create_invalid_tool_call(name=None, args=raw, id=new_call_id(), error=error)
    return ToolBlock(raw=raw, tool_calls=[], invalid_tool_calls=[bad])


def unclosed_group(raw: str) -> ToolBlock:
    """The block for a group still open when generation ended: one invalid call, its text."""
    return _whole_group_invalid(raw, f"the {GROUP_OPEN} group was not closed ({GROUP_CLOSE})")


def read_group(raw: str, fmt: CallFormat, tools: ToolIndex | None) -> ToolBlock:
    """Read one whole group (tags included) into a `ToolBlock` (see the module docstring)."""
    body = raw[len(GROUP_OPEN) : len(raw) - len(GROUP_CLOSE)]
    matches = list(_CALL.finditer(body))
    if not matches or _CALL.sub("", body).strip():
        return _whole_group_invalid(
            raw,
            f"the {GROUP_OPEN} group must hold only {CALL_OPEN}...{CALL_CLOSE} blocks "
            "separated by whitespace",
        )
    read: list[tuple[str, str | None, dict[str, Any] | None, str | None]] = []
    for match in matches:
        try:
            if fmt == "json":
                name, args = _read_json(match[1], tools)
            else:
                name, args = _read_xml(match[1], fmt, tools)
        except _CallError as exc:
            read.append((match[0], None, None, str(exc)))
            continue
        problem = tools.check(name, args) if tools is not None else None
        read.append((match[0], name, args, problem))
    faults = [(n, e) for n, (_, _, _, e) in enumerate(read, start=1) if e is not None]
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    failures: dict[str, dict[str, Any]] = {}
    only_schema = all(
        tools is not None and entry[1] in tools and entry[2] is not None
        for entry in read
        if entry[3] is not None
    )
    for text, call_name, call_args, error in read:
        call_id = new_call_id()
        if not faults:
            calls.append(create_tool_call(name=call_name or "", args=call_args or {}, id=call_id))
            continue
        first, why = faults[0]
        reason = (
            error or f"not run: call #{first} of the same {GROUP_OPEN} group is invalid ({why})"
        )
        invalid.append(
            create_invalid_tool_call(name=call_name, args=text, id=call_id, error=reason)
        )
        if only_schema and call_args is not None:
            failures[call_id] = call_args
    return ToolBlock(
        raw=raw, tool_calls=calls, invalid_tool_calls=invalid, schema_failures=failures
    )
