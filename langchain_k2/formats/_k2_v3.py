r"""K2-V3 (K2 Horizon): ``<|ifm|…|>`` turns, ``<ifm|think…>`` reasoning, call groups.

In: LangChain messages, bound tools (OpenAI function dicts) and `FormatSettings` (effort,
``tool_call_format``: ``xml``, ``xml_typed`` or ``json``). Out: the prompt, byte for byte
as the official template renders it (``shared/spec/k2-family.md`` section 2.2, the
golden renderings), in pieces (BOS and system turn, one piece per message, the
generation prompt), and the family's output parser.

Rules (each has a unit golden in ``tests/unit/test_formats_k2_v3.py``):

- ``<|ifm|begin_of_text|>`` first; turns ``<|ifm|im_start|>ROLE\n…<|ifm|im_end|>`` with
  nothing between them; a later ``SystemMessage`` is a system turn in place;
- tools: the ``# Tools`` system turn listing each tool as one ``tojson`` line (the
  template's ``tool_presentation_format="json"``: its default, ``markdown``, is ~30
  macros this client does not reproduce), then the call instructions of the
  ``tool_call_format``, then the user's system text;
- every assistant turn replays its reasoning: ``<TAG>\n{reasoning}</TAG>{content}``
  (an ``AIMessage`` without reasoning gets an empty one: the template would refuse it);
- earlier calls: one ``<ifm|tool_calls>`` group right after the content, each call in
  the form taught (typed XML writes the schema's compact type, ``any`` when undeclared);
- one ``tool`` turn per result, never merged; list content joined by ``\n``;
- the generation prompt opens the effort's tag (``<ifm|think>`` at high, the default).

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> K2V3Format().render_prompt([HumanMessage("Hi")])
    '<|ifm|begin_of_text|><|ifm|im_start|>user\nHi<|ifm|im_end|><|ifm|im_start|>assistant\n<ifm|think>\n'
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, cast

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from langchain_k2._tool_schema import function_of
from langchain_k2.formats._base import (
    EFFORTS,
    FormatSettings,
    PromptFormat,
    RenderOptions,
    args_json,
    call_ids,
    check_answer,
    content_text,
    open_conversation,
    reasoning_text,
)

TAGS = {"high": "ifm|think", "medium": "ifm|think_fast", "low": "ifm|think_faster"}
"""The reasoning tag of each effort."""

BOS = "<|ifm|begin_of_text|>"
_START, _END = "<|ifm|im_start|>", "<|ifm|im_end|>"

TOOLS_HEADER = (
    "# Tools\nYou may call one or more tools to assist with the user query.\n\n"
    "Available tools are:\n\n<ifm|tools>\n{tools}\n</ifm|tools>\n\n"
    "When calling tools, you MUST follow the tool-call format below:\n\n"
)
"""The tools section up to the call instructions."""

_SCALARS = (
    "String and scalar parameters should be written as plain text. Array and object "
    "parameters should be written as JSON literals."
)
CALL_INSTRUCTIONS = {
    "xml": (
        "Wrap all tool calls in a single <ifm|tool_calls></ifm|tool_calls> block. For each "
        "call, write the function name at the start of <ifm|tool_call>, followed by paired "
        "<ifm|arg_key> and <ifm|arg_value> tags for each argument:\n\n<ifm|tool_calls>\n"
        "<ifm|tool_call>$FUNCTION_NAME\n<ifm|arg_key>$PARAMETER_NAME</ifm|arg_key>\n"
        "<ifm|arg_value>$PARAMETER_VALUE</ifm|arg_value>\n...\n</ifm|tool_call>\n"
        "</ifm|tool_calls>\n\n" + _SCALARS
    ),
    "xml_typed": (
        "Wrap all tool calls in a single <ifm|tool_calls></ifm|tool_calls> block. For each "
        "call, write the function name at the start of <ifm|tool_call>, followed by "
        "<ifm|arg_key>, <ifm|arg_type>, and <ifm|arg_value> tags for each argument:\n\n"
        "<ifm|tool_calls>\n<ifm|tool_call>$FUNCTION_NAME\n"
        "<ifm|arg_key>$PARAMETER_NAME</ifm|arg_key>\n<ifm|arg_type>$ARGUMENT_TYPE</ifm|arg_type>\n"
        "<ifm|arg_value>$PARAMETER_VALUE</ifm|arg_value>\n...\n</ifm|tool_call>\n"
        "</ifm|tool_calls>\n\nUse the parameter type shown in the tool definition. If that "
        "type contains anyOf or oneOf, use the actual argument value type instead. " + _SCALARS
    ),
    "json": (
        "Wrap all tool calls in a single <ifm|tool_calls></ifm|tool_calls> block. For each "
        "call, emit one JSON object with the function name and arguments on the same line "
        "inside <ifm|tool_call></ifm|tool_call> tags:\n\n<ifm|tool_calls>\n"
        '<ifm|tool_call>{"name": <function-name>, "arguments": <args-json-object>}'
        "</ifm|tool_call>\n</ifm|tool_calls>"
    ),
}
"""The template's call instructions per ``tool_call_format`` (golden, byte for byte)."""

_CALL_TAGS = ("tool_calls", "tool_call", "arg_key", "arg_type", "arg_value")
_MARKERS = (
    _START,
    _END,
    BOS,
    *(f"<{t}>" for t in TAGS.values()),
    *(f"</{t}>" for t in TAGS.values()),
    "<ifm|tools>",
    "</ifm|tools>",
    *(f"<ifm|{t}>" for t in _CALL_TAGS),
    *(f"</ifm|{t}>" for t in _CALL_TAGS),
)


def tojson(value: Any) -> str:
    """Jinja's ``tojson`` as ``transformers`` defines it: non-ASCII kept, ``", "`` ``": "``."""
    return json.dumps(value, ensure_ascii=False)


class K2V3Format(PromptFormat):
    """K2-V3 / K2 Horizon's prompt format (``IFM/K2-Horizon-*``); effort default high."""

    name: ClassVar[str] = "k2-v3"
    model_id: ClassVar[str] = "IFM/K2-Horizon"
    reasoning_efforts: ClassVar[tuple[str, ...]] = EFFORTS
    default_effort: ClassVar[str | None] = "high"
    tool_call_formats: ClassVar[tuple[str, ...]] = ("xml", "xml_typed", "json")
    bos_in_prompt: ClassVar[bool] = True

    tool_call_open: str = "<ifm|tool_calls>"
    tool_call_close: str = "</ifm|tool_calls>"
    stop_markers: tuple[str, ...] = (_END, _START, "<|ifm|end_of_text|>")
    """Turn markers, and EOS (id 1) as text: its string is UNVERIFIED (spec section 5),
    ``<|ifm|end_of_text|>`` by analogy with the BOS; a stop string that never matches is
    harmless, and engines that report special tokens end the turn on EOS anyway."""
    special_markers: tuple[str, ...] = _MARKERS
    output_markers: tuple[str, ...] = _MARKERS[3:]
    stop_token_ids: tuple[int, ...] = (250019, 1)
    unclosed: Literal["content", "live", "boundary", "reasoning"] = "content"
    """What the output is when the effort's close tag never comes (docs/k2-v3.md).
    ``"content"`` (default, the spec's rule: upstream vLLM's whole-output rule): a
    ``<ifm|tool_calls>`` group ends the reasoning where it starts; with neither close tag
    nor group everything is the answer, so a stream holds the reasoning back until the
    close tag (or the end) decides. ``"live"``: the reasoning streams as it arrives; a
    group inside it is held until the close tag (then it was reasoning, never run) or the
    end (then it is the call, as above); a text with neither is all reasoning (upstream
    vLLM's streaming rule). ``"boundary"``: upstream vLLM's streaming rule as is (a group
    ends the reasoning even if a close tag follows). ``"reasoning"`` (sglang): everything
    unclosed is reasoning. Streamed and whole results are equal under each. Choose with
    ``ChatK2(prompt_format=K2V3Format(unclosed="live"))``."""

    def parser(self, tools: Sequence[Mapping[str, Any]] | None, settings: FormatSettings) -> Any:
        """`K2V3OutputParser` (reasoning, call groups); K2-Chat's until it is installed."""
        try:
            module = importlib.import_module("langchain_k2.formats._k2_v3_output")
        except ImportError:
            return self.call_parser(tools)
        from langchain_k2._tool_schema import tool_index

        return module.K2V3OutputParser(
            tool_index(tools),
            effort=settings.effort,
            tool_call_format=settings.tool_call_format or "xml",
            opened=settings.opened,
            unclosed=self.unclosed,
        )

    def walk(self, messages: Sequence[BaseMessage], options: RenderOptions) -> list[str]:
        """The prompt in pieces (see the module docstring for the rules).

        ``force_tool_call`` renders nothing: the effort's tag opens the turn, the model
        thinks first.
        """
        chosen = options.settings or FormatSettings()
        return _Walker(self, options.tools, options.safe, chosen).walk(
            messages, options.default_system, lenient=options.lenient
        )


# --------------------------------------------------------------------------- values


def value_type(value: Any) -> str:
    """A value's own JSON type name.

    Example:
        >>> [value_type(v) for v in (True, 2, 2.5, "s", None, [], {})]
        ['boolean', 'integer', 'number', 'string', 'null', 'array', 'object']
    """
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "array" if isinstance(value, list | tuple) else "object"


def compact_type(schema: Any, value: Any, defs: Mapping[str, Any] | None = None) -> str:
    """The type ``xml_typed`` writes: the schema's compact type, the value's for a union.

    A local ``$ref`` names its definition (``Person``), unless that is a plain scalar
    type (an enum of strings is ``string``).

    Example:
        >>> defs = {"Person": {"type": "object"}, "Color": {"type": "string"}}
        >>> compact_type({"type": "array", "items": {"$ref": "#/$defs/Person"}}, [], defs)
        'array[Person]'
        >>> compact_type({"$ref": "#/$defs/Color"}, "red", defs)
        'string'
        >>> compact_type({"anyOf": [{"type": "integer"}, {"type": "string"}]}, 30)
        'integer'
        >>> compact_type(None, True)
        'any'
    """
    if not isinstance(schema, Mapping):
        return "any"
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        target = (defs or {}).get(name)
        if isinstance(target, Mapping) and target.get("type") not in {None, "object"}:
            return compact_type(target, value, defs)
        return name
    kind = schema.get("type")
    if "anyOf" in schema or "oneOf" in schema or not isinstance(kind, str):
        return value_type(value)
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        item = value[0] if isinstance(value, list) and value else None
        return f"array[{compact_type(schema['items'], item, defs)}]"
    return kind


class _Walker:
    """One render of a conversation (the tools' schemas looked up once)."""

    def __init__(
        self,
        fmt: K2V3Format,
        tools: Sequence[Mapping[str, Any]] | None,
        safe: bool,
        settings: FormatSettings,
    ) -> None:
        self.fmt, self.tools, self.safe = fmt, tools, safe
        self.form = settings.tool_call_format or "xml"
        self.effort = settings.effort or fmt.default_effort or "high"
        self.schemas: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
        for tool in tools or ():
            fn = function_of(tool)
            parameters = fn.get("parameters") or {}
            properties = parameters.get("properties")
            defs = parameters.get("$defs") or parameters.get("definitions")
            self.schemas[fn["name"]] = (
                properties if isinstance(properties, Mapping) else {},
                defs if isinstance(defs, Mapping) else {},
            )

    def text(self, raw: str) -> str:
        return self.fmt.inert(raw, self.safe)

    def json_text(self, raw: str) -> str:
        return self.fmt.inert_json(raw, self.safe)

    def system_turn(self, system: str | None) -> str:
        if self.tools:
            listing = "\n".join(tojson(dict(tool)) for tool in self.tools)
            body = TOOLS_HEADER.format(tools=self.json_text(listing))
            body += CALL_INSTRUCTIONS[self.form] + (f"\n\n{system}" if system else "")
        elif system:
            body = system
        else:
            return ""
        return f"{_START}system\n{body}{_END}"

    def block(self, call: Mapping[str, Any]) -> str:
        name, args = call["name"], call.get("args") or {}
        if self.form == "json":
            args_json(args)  # refuse what is not JSON, with the usual error
            body = self.json_text(tojson({"name": name, "arguments": args}))
            return f"<ifm|tool_call>{body}</ifm|tool_call>"
        schema, defs = self.schemas.get(name, ({}, {}))
        lines = [f"<ifm|tool_call>{self.text(name)}"]
        for key, value in args.items():
            lines.append(f"<ifm|arg_key>{self.text(key)}</ifm|arg_key>")
            if self.form == "xml_typed":
                kind = compact_type(schema.get(key), value, defs)
                lines.append(f"<ifm|arg_type>{self.text(kind)}</ifm|arg_type>")
            shown = self.text(value) if isinstance(value, str) else self.json_text(_dumps(value))
            lines.append(f"<ifm|arg_value>{shown}</ifm|arg_value>")
        return "\n".join(lines) + "\n</ifm|tool_call>"

    def invalid_block(self, call: Mapping[str, Any]) -> str:
        """An invalid call as the model wrote it, or ``{"name", "arguments": raw}`` JSON."""
        args = call.get("args")
        if isinstance(args, str) and args.startswith("<ifm|tool_call>"):
            body = args.removeprefix("<ifm|tool_call>").removesuffix("</ifm|tool_call>")
            return f"<ifm|tool_call>{self.json_text(body)}</ifm|tool_call>"
        body = tojson({"name": call.get("name") or "", "arguments": args})
        return f"<ifm|tool_call>{self.json_text(body)}</ifm|tool_call>"

    def group(self, message: BaseMessage) -> str:
        if not isinstance(message, AIMessage):
            return ""
        blocks = [self.block(c) for c in message.tool_calls]
        blocks += [self.invalid_block(c) for c in message.invalid_tool_calls]
        if not blocks:
            return ""
        return "<ifm|tool_calls>\n" + "\n".join(blocks) + "\n</ifm|tool_calls>"

    def assistant(self, message: BaseMessage, *, last: bool) -> str:
        tag, reasoning = _reasoning_of(message)
        content = self.text(content_text(message))
        group = self.group(message)
        turn = f"{_START}assistant\n<{tag}>\n{self.text(reasoning)}</{tag}>{content}{group}"
        return turn if last and not group else turn + _END

    def tool(self, message: BaseMessage) -> str:
        content = message.content
        if isinstance(content, str):
            text = content
        else:
            text = "\n".join(
                part
                if isinstance(part, str)
                else str(part.get("text", ""))
                if part.get("type") == "text"
                else tojson(part)
                for part in content
            )
        return f"{_START}tool\n{self.text(text)}{_END}"

    def walk(
        self, messages: Sequence[BaseMessage], default_system: str | None, *, lenient: bool
    ) -> list[str]:
        roles, leading, system = open_conversation(
            messages,
            lambda m: self.text(content_text(m)),
            default_system,
            lenient=lenient,
            family="K2-V3",
        )
        parts = [BOS + self.system_turn(system)]
        previous, open_calls = "system", set[str]()
        for index in range(leading, len(messages)):
            message, role = messages[index], roles[index]
            if role == "assistant":
                parts.append(self.assistant(message, last=index == len(messages) - 1))
                open_calls = call_ids(message)
            elif role == "tool":
                if not lenient:  # role_of: "tool" is a ToolMessage
                    check_answer(cast("ToolMessage", message), previous, open_calls)
                parts.append(self.tool(message))
            else:
                parts.append(f"{_START}{role}\n{self.text(content_text(message))}{_END}")
                open_calls = set()
            previous = role
        if previous != "assistant" or parts[-1].endswith(_END):
            parts.append(f"{_START}assistant\n<{TAGS[self.effort]}>\n")
        return parts


def _dumps(value: Any) -> str:
    args_json(value)  # refuse NaN and non-JSON values with the usual error
    return tojson(value)


def _reasoning_of(message: BaseMessage) -> tuple[str, str]:
    """The template's reasoning field and its tag.

    ``think``, ``think_fast``, ``think_faster``, then ``reasoning_content`` / ``reasoning``
    (tag ``ifm|think``); none: empty at ``ifm|think``.
    """
    for field, tag in (("think", "ifm|think"), ("think_fast", "ifm|think_fast")):
        value = message.additional_kwargs.get(field)
        if isinstance(value, str):
            return tag, value
    value = message.additional_kwargs.get("think_faster")
    if isinstance(value, str):
        return "ifm|think_faster", value
    found = reasoning_text(message)
    if found is None:
        found = message.additional_kwargs.get("reasoning")
    return "ifm|think", found if isinstance(found, str) else ""


__all__ = [
    "BOS",
    "CALL_INSTRUCTIONS",
    "TAGS",
    "TOOLS_HEADER",
    "K2V3Format",
    "compact_type",
    "tojson",
    "value_type",
]
