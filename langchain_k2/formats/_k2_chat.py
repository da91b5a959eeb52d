"""K2-Chat's prompt format: markers, the function-calling system prompt, and rendering.

In: LangChain messages, tool definitions (already normalized to OpenAI function dicts),
and a `K2Format`. Out: the exact prompt string K2-Chat was trained on
(``shared/spec/k2-format.md`` sections 1, 2 and 5), as one string (`render_prompt`)
or as the pieces it joins (`K2Format.pieces`, which token counting sums), and K2-Chat's
output parser (`K2Format.parser`).

Pure functions only: no I/O, no LangChain runnables. Text that comes from messages is
passed through `neutralize` so that user, tool and document text cannot open a
turn or forge a tool call; only the renderer writes markers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from langchain_k2._memo import MemoByValue
from langchain_k2._tool_calls import CLOSE_TAG, OPEN_TAG, ToolCallStreamParser
from langchain_k2._tool_schema import function_of
from langchain_k2.errors import K2InputError
from langchain_k2.formats._base import (
    FormatSettings,
    PromptFormat,
    RenderOptions,
    args_json,
    call_ids,
    check_answer,
    content_text,
    neutralize_markers,
    neutralize_markers_json,
    open_conversation,
    restore_markers,
)

FUNCTION_CALLING_PROMPT = (
    "You are a function calling AI model. You are provided with function signatures within "
    "<tools></tools> XML tags. You may call one or more functions to assist with the user "
    "query. Don't make assumptions about what values to plug into functions. Here are the "
    "available tools: <tools>{tools}</tools> Use the following pydantic model json schema for "
    'each tool call you will make: {"properties": {"arguments": {"title": "Arguments", "type": '
    '"object"}, "name": {"title": "Name", "type": "string"}}, "required": ["arguments", '
    '"name"], "title": "FunctionCall", "type": "object"} For each function call return a json '
    "object with function name and arguments within <tool_call></tool_call> XML tags as "
    'follows: <tool_call>{"arguments": <args-dict>, "name": <function-name>}</tool_call> '
    "Please also summarize texts wrapped between <tool_response> and </tool_response> in "
    'bullet points. For example: {"fruits": [{"name": "Apple"}, {"name": "Pear"}]} is '
    "summarized as: Fruits: - Apple - Pear "
)
"""K2-Chat's function-calling instructions; ``{tools}`` is replaced by the tools JSON."""


class K2Format(PromptFormat):
    """K2-Chat's markers and function-calling prompt, in one small frozen object.

    The defaults are K2-Chat's own (model card, ``k2-format.md``). A deployment whose
    template differs, or a stand-in model with its own markers (see `chatml`),
    overrides fields; every string the renderer writes comes from here.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> K2Format().render_prompt([HumanMessage("Hi")])
        '<|beginofuser|>Hi<|beginofsystem|>'
    """

    name: ClassVar[str] = "k2-chat"
    forces_calls: ClassVar[bool] = True

    system_prefix: str = ""
    """Written before the system prompt (K2 has no opening marker)."""
    system_suffix: str = "<|endofsystemprompt|>"
    """Closes the system prompt."""
    user_prefix: str = "<|beginofuser|>"
    """Opens a user turn."""
    user_suffix: str = ""
    """Closes a user turn (nothing in K2's format)."""
    assistant_prefix: str = "<|beginofsystem|>"
    """Opens the model's turn. K2 calls its own turn "system"; this is NOT a system prompt."""
    assistant_suffix: str = ""
    """Closes a plain model turn in history (the card shows nothing between turns)."""
    tool_call_turn_suffix: str = "<|endoftext|>"
    """Closes a model turn that made tool calls (the card shows ``<|endoftext|>``)."""
    tool_responses_prefix: str = ""
    """Written once before a run of tool responses."""
    after_tool_responses: str = ""
    """Written once after a run of tool responses; the model's reply follows it."""
    tool_call_open: str = OPEN_TAG
    """Opens a tool-call block."""
    tool_call_close: str = CLOSE_TAG
    """Closes a tool-call block."""
    tool_response_open: str = "<tool_response>"
    """Opens one tool result."""
    tool_response_close: str = "</tool_response>"
    """Closes one tool result."""
    function_calling_prompt: str = FUNCTION_CALLING_PROMPT
    """System prompt used when tools are bound; ``{tools}`` marks where the tools JSON goes."""
    system_separator: str = "\n\n"
    """Between the function-calling instructions and a user's own system text."""
    stop_markers: tuple[str, ...] = ("<|endoftext|>", "<|beginofuser|>", "<|endofchat|>")
    """Markers that end the model's turn: generation is cut there, they never reach content."""
    special_markers: tuple[str, ...] = (
        "<|endofsystemprompt|>",
        "<|beginofuser|>",
        "<|beginofsystem|>",
        "<|endoftext|>",
        "<|endofchat|>",
        OPEN_TAG,
        CLOSE_TAG,
        "<tool_response>",
        "</tool_response>",
        "<tools>",
        "</tools>",
    )
    """Strings that message text may not contain verbatim (see `neutralize`)."""
    output_markers: tuple[str, ...] = (OPEN_TAG, CLOSE_TAG)
    """Special tokens K2 writes inside its turn: the tool-call tags."""

    @classmethod
    def chatml(cls) -> K2Format:
        """ChatML markers (SmolLM2, Qwen, Hermes) with K2's tool-call tags.

        Used for the small stand-in model of the local demo, which answers best in the
        markers it was trained on (``k2-format.md`` section 6).
        """
        return cls(
            system_prefix="<|im_start|>system\n",
            system_suffix="<|im_end|>\n",
            user_prefix="<|im_start|>user\n",
            user_suffix="<|im_end|>\n",
            assistant_prefix="<|im_start|>assistant\n",
            assistant_suffix="<|im_end|>\n",
            tool_call_turn_suffix="<|im_end|>\n",
            tool_responses_prefix="<|im_start|>tool\n",
            after_tool_responses="<|im_end|>\n<|im_start|>assistant\n",
            stop_markers=("<|im_end|>", "<|im_start|>", "<|endoftext|>"),
            special_markers=(
                "<|im_start|>",
                "<|im_end|>",
                "<|endoftext|>",
                OPEN_TAG,
                CLOSE_TAG,
                "<tool_response>",
                "</tool_response>",
                "<tools>",
                "</tools>",
            ),
        )

    def parser(
        self, tools: Sequence[Mapping[str, Any]] | None, settings: FormatSettings
    ) -> ToolCallStreamParser:
        """K2-Chat's ``<tool_call>`` parser (`langchain_k2.ToolCallStreamParser`)."""
        del settings  # K2-Chat has no reasoning and one call form
        return self.call_parser(tools)

    def walk(self, messages: Sequence[BaseMessage], options: RenderOptions) -> list[str]:
        """K2-Chat's prompt in pieces; see `render_prompt` (and `PromptFormat.pieces`)."""
        return _walk(self, messages, options)


DEFAULT_FORMAT = K2Format()


# --------------------------------------------------------------------------- markers


def neutralize(text: str, fmt: PromptFormat = DEFAULT_FORMAT) -> str:
    """Make every marker and tag in ``text`` inert, visibly and reversibly.

    The ``<`` of a marker becomes ``&lt;`` (``<|beginofuser|>`` renders as
    ``&lt;|beginofuser|>``), so it is no longer the special token; text that already
    reads ``&lt;|beginofuser|>`` gains one ``amp;`` so `restore` can undo exactly.

    Example:
        >>> neutralize("hi <tool_call>{}</tool_call>")
        'hi &lt;tool_call>{}&lt;/tool_call>'
        >>> restore(neutralize("a &lt;tool_call> b <tool_call>"))
        'a &lt;tool_call> b <tool_call>'
    """
    return neutralize_markers(text, fmt.special_markers)


def neutralize_json(text: str, fmt: PromptFormat = DEFAULT_FORMAT) -> str:
    r"""Make markers inside JSON text inert without changing what the JSON decodes to.

    Markers can only sit inside JSON strings, where ``<`` may be written ``\u003c``.

    Example:
        >>> neutralize_json('{"q": "</tool_call><|beginofuser|>"}')
        '{"q": "\\u003c/tool_call>\\u003c|beginofuser|>"}'
    """
    return neutralize_markers_json(text, fmt.special_markers)


def restore(text: str, fmt: PromptFormat = DEFAULT_FORMAT) -> str:
    """Undo `neutralize`: ``restore(neutralize(t)) == t`` for every string ``t``."""
    return restore_markers(text, fmt.special_markers)


# --------------------------------------------------------------------------- tools


def tools_json(tools: Sequence[Mapping[str, Any]]) -> str:
    """The JSON list of bare function objects that goes inside ``<tools>...</tools>``.

    ``tools`` are OpenAI-style function dicts (``{"name", "description", "parameters"}``)
    or their ``{"type": "function", "function": ...}`` wrappers. Keys are written in the
    order ``name``, ``description``, ``parameters`` with Python's default separators
    (``k2-format.md`` section 5).

    Example:
        >>> tools_json([{"name": "f", "parameters": {"type": "object", "properties": {}}}])
        '[{"name": "f", "description": "", "parameters": {"type": "object", "properties": {}}}]'
    """
    functions = []
    for tool in tools:
        fn = function_of(tool)
        functions.append(
            {
                "name": fn["name"],
                "description": fn.get("description") or "",
                "parameters": fn.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return json.dumps(functions)


_tools_json: MemoByValue[Sequence[Mapping[str, Any]], str] = MemoByValue(tools_json)
"""`tools_json`, cached per bound-tools list (the same list comes with every call)."""


def tool_calls_json(tool_calls: Sequence[Mapping[str, Any]]) -> str:
    """The JSON list written inside ``<tool_call>...</tool_call>`` for a turn in history."""
    return args_json([{"name": tc["name"], "arguments": tc.get("args", {})} for tc in tool_calls])


def invalid_call_block(call: Mapping[str, Any], fmt: K2Format, *, safe: bool) -> str:
    r"""The block written in history for an invalid tool call: what the model wrote.

    ChatK2's invalid calls carry their raw block (``args`` starting with the open tag):
    it is written back with its tags, the close tag added if generation stopped before
    it. An invalid call from elsewhere becomes ``{"name", "arguments"}`` with the
    unparsed arguments as a JSON string. With ``safe``, markers inside are escaped the
    JSON way (see `neutralize_json`).

    Example:
        >>> invalid_call_block({"name": "f", "args": '<tool_call>{"name": "f", "arg'},
        ...                    DEFAULT_FORMAT, safe=True)
        '<tool_call>{"name": "f", "arg</tool_call>'
        >>> invalid_call_block({"name": "f", "args": '{"a": 1'}, DEFAULT_FORMAT, safe=True)
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1"}</tool_call>'
    """
    args = call.get("args")
    if isinstance(args, str) and args.startswith(fmt.tool_call_open):
        body = args[len(fmt.tool_call_open) :].removesuffix(fmt.tool_call_close)
    else:
        element: dict[str, Any] = {"name": call.get("name") or ""}
        if args is not None:
            element["arguments"] = args
        body = json.dumps(element)
    return fmt.tool_call_open + fmt.inert_json(body, safe) + fmt.tool_call_close


# --------------------------------------------------------------------------- rendering


def _system_section(
    fmt: K2Format, system: str | None, tools: Sequence[Mapping[str, Any]] | None, *, safe: bool
) -> str:
    if tools:
        listing = fmt.inert_json(_tools_json(tools), safe)
        body = fmt.function_calling_prompt.replace("{tools}", listing, 1)
        if system:
            body += fmt.system_separator + system
    elif system:
        body = system
    else:
        return ""
    return fmt.system_prefix + body + fmt.system_suffix


def _assistant_body(fmt: K2Format, message: BaseMessage, text: str, *, safe: bool) -> list[str]:
    """The text, then the calls of an assistant turn; ``[]`` after the text when none."""
    parts = [text]
    calls = message.tool_calls if isinstance(message, AIMessage) else []
    invalid = message.invalid_tool_calls if isinstance(message, AIMessage) else []
    if calls:
        listing = tool_calls_json(calls)
        parts += [
            fmt.tool_call_open,
            fmt.inert_json(listing, safe),
            fmt.tool_call_close,
        ]
    # Invalid calls as the model wrote them, so a ToolMessage answering one
    # follows a call, as with valid calls.
    parts += [invalid_call_block(c, fmt, safe=safe) for c in invalid]
    if calls or invalid:
        parts.append(fmt.tool_call_turn_suffix)
    return parts


def _walk(fmt: K2Format, messages: Sequence[BaseMessage], options: RenderOptions) -> list[str]:
    """The one walker: the system section, one piece per later message, the ending."""
    safe, lenient = options.safe, options.lenient
    if not messages and not lenient:
        raise K2InputError("messages is empty: pass at least one HumanMessage.")

    def text(message: BaseMessage) -> str:
        return fmt.inert(content_text(message), safe)

    roles, leading, system = open_conversation(
        messages, text, options.default_system, lenient=lenient
    )
    parts = [_system_section(fmt, system, options.tools, safe=safe)]
    open_calls: set[str] = set()
    previous = "system"
    for index in range(leading, len(messages)):
        message, role = messages[index], roles[index]
        piece: list[str] = []
        if role != "tool" and previous == "tool":
            piece.append(fmt.after_tool_responses)
        if role == "system":
            if not lenient:
                raise K2InputError(
                    f"messages[{index}] is a SystemMessage; K2-Chat has one system prompt, "
                    "so a SystemMessage may only come first. Merge it into the first one "
                    "or send it as a HumanMessage."
                )
            piece += [fmt.system_prefix, text(message), fmt.system_suffix]
        elif role == "user":
            piece += [fmt.user_prefix, text(message), fmt.user_suffix]
            open_calls = set()
        elif role == "assistant":
            if previous != "tool":
                piece.append(fmt.assistant_prefix)
            body = _assistant_body(fmt, message, text(message), safe=safe)
            piece += body
            if len(body) == 1 and index < len(messages) - 1:
                piece.append(fmt.assistant_suffix)
            open_calls = call_ids(message)
        else:
            if not lenient:  # role_of: "tool" is a ToolMessage
                check_answer(cast("ToolMessage", message), previous, open_calls)
            if previous != "tool":
                piece.append(fmt.tool_responses_prefix)
            piece += [fmt.tool_response_open, text(message), fmt.tool_response_close]
        parts.append("".join(piece))
        previous = role
    ending = ""
    if previous == "tool":
        ending = fmt.after_tool_responses
    elif previous in {"user", "system"}:
        ending = fmt.assistant_prefix
    if options.force_tool_call:
        ending += fmt.tool_call_open
    if ending:
        parts.append(ending)
    return parts


def render_prompt(
    messages: Sequence[BaseMessage],
    *,
    fmt: K2Format = DEFAULT_FORMAT,
    tools: Sequence[Mapping[str, Any]] | None = None,
    default_system: str | None = None,
    force_tool_call: bool = False,
    neutralize_markers: bool = True,
) -> str:
    """Render a conversation into the exact prompt string K2-Chat continues.

    Args:
        messages: the conversation. Leading ``SystemMessage``s are the system prompt
            (several are joined by a blank line).
        fmt: markers and function-calling text.
        tools: bound tools (OpenAI function dicts); they select the function-calling
            system prompt, and a user system text follows its instructions.
        default_system: system text used when ``messages`` carry no ``SystemMessage``.
        force_tool_call: end the prompt with ``<tool_call>`` so the model must call a tool.
        neutralize_markers: escape markers found in message text (see `neutralize`).

    Returns:
        The prompt. After a user turn it ends with the assistant marker; after tool
        responses it ends with the last ``</tool_response>`` (K2 continues from there);
        after a trailing ``AIMessage`` it ends with that message's text (a prefill).

    Raises:
        K2InputError: empty conversation, a misplaced ``SystemMessage``, an unknown
            message type, non-text content, or a ``ToolMessage`` that answers no call.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
        >>> prompt = render_prompt([SystemMessage("Be brief."), HumanMessage("Hi"),
        ...                         AIMessage("Hello!"), HumanMessage("Bye")])
        >>> prompt.split("|>")  # doctest: +NORMALIZE_WHITESPACE
        ['Be brief.<|endofsystemprompt', '<|beginofuser', 'Hi<|beginofsystem',
         'Hello!<|beginofuser', 'Bye<|beginofsystem', '']
    """
    return fmt.render_prompt(
        messages,
        tools=tools,
        default_system=default_system,
        force_tool_call=force_tool_call,
        neutralize_markers=neutralize_markers,
    )


__all__ = [
    "DEFAULT_FORMAT",
    "FUNCTION_CALLING_PROMPT",
    "K2Format",
    "content_text",
    "invalid_call_block",
    "neutralize",
    "neutralize_json",
    "render_prompt",
    "restore",
    "tool_calls_json",
    "tools_json",
]
