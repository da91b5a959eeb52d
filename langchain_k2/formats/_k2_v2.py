r"""K2-V2-Instruct and K2-Think-V2: ChatML turns, effort-tagged reasoning, Hermes calls.

In: LangChain messages, bound tools (OpenAI function dicts) and `FormatSettings` (the
effort). Out: the prompt, byte for byte as LLM360's reference renderer writes it
(``shared/spec/k2-family.md`` section 2.1, BFCL's ``k2.py``), in pieces (system turn,
one piece per turn or per run of tool results, the generation prompt), and the family's
output parser.

Rules (each has a unit golden in ``tests/unit/test_formats_k2_v2.py``):

- no BOS text, no default system text; ``<|im_start|>ROLE\n…<|im_end|>\n`` turns;
- tools: the Hermes block in the system turn, ``json.dumps`` of each bare function;
- earlier calls: ``<tool_call>\n{"name": …, "arguments": …}\n</tool_call>`` per call,
  ``\n`` between them (and after non-empty content);
- tool results: consecutive results are one ``tool`` turn, joined by
  ``tool_result_separator`` (``"\n"``; the reference concatenates them with nothing
  between, which the spec marks UNVERIFIED for the served template: pass ``""`` for it);
- reasoning is replayed only for a trailing ``AIMessage`` (a prefill), every earlier
  assistant turn drops it;
- the generation prompt opens the effort's tag: ``<think>`` (high), ``<think_fast>``
  (medium), ``<think_faster>`` (low).

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> K2V2Format().render_prompt([HumanMessage("What is 2+2?")])
    '<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think_fast>\n'
    >>> K2ThinkV2Format().render_prompt([HumanMessage("Hi")])
    '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n'
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

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

TAGS = {"high": "think", "medium": "think_fast", "low": "think_faster"}
"""The reasoning tag of each effort (``<think>`` … ``</think>`` at high)."""

TOOLS_PROMPT = (
    "\n# Tools\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    "{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>\n'
    "You may use multiple <tool_call> blocks if multiple function calls are needed to fully "
    "address the request."
)
"""BFCL's tools section (``{tools}``: one ``json.dumps`` per function, one per line)."""

_MARKERS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|end_of_text|>",
    *(f"<{t}>" for t in TAGS.values()),
    *(f"</{t}>" for t in TAGS.values()),
    "<tool_call>",
    "</tool_call>",
    "<tools>",
    "</tools>",
)


class K2V2Format(PromptFormat):
    """K2-V2-Instruct's prompt format (``LLM360/K2-V2-Instruct``); effort default medium."""

    name: ClassVar[str] = "k2-v2"
    model_id: ClassVar[str] = "LLM360/K2-V2-Instruct"
    reasoning_efforts: ClassVar[tuple[str, ...]] = EFFORTS
    default_effort: ClassVar[str | None] = "medium"
    think: ClassVar[bool] = False
    """Passed to the output parser (K2-Think-V2 always thinks)."""

    tool_call_open: str = "<tool_call>"
    tool_call_close: str = "</tool_call>"
    stop_markers: tuple[str, ...] = ("<|im_end|>", "<|im_start|>", "<|end_of_text|>")
    special_markers: tuple[str, ...] = _MARKERS
    output_markers: tuple[str, ...] = (
        *(f"<{t}>" for t in TAGS.values()),
        *(f"</{t}>" for t in TAGS.values()),
        "<tool_call>",
        "</tool_call>",
    )
    stop_token_ids: tuple[int, ...] = (250019, 1)
    tools_prompt: str = TOOLS_PROMPT
    """The tools section; ``{tools}`` is where the function JSON lines go."""
    tool_result_separator: str = "\n"
    """Between consecutive tool results in their one ``tool`` turn."""

    def parser(self, tools: Sequence[Mapping[str, Any]] | None, settings: FormatSettings) -> Any:
        """`K2V2OutputParser` (reasoning, Hermes calls); K2-Chat's until it is installed."""
        try:
            module = importlib.import_module("langchain_k2.formats._k2_v2_output")
        except ImportError:
            return self.call_parser(tools)
        return module.K2V2OutputParser(
            _index(tools), effort=settings.effort, think=self.think, opened=settings.opened
        )

    def walk(self, messages: Sequence[BaseMessage], options: RenderOptions) -> list[str]:
        """The prompt in pieces (see the module docstring for the rules).

        ``force_tool_call`` renders nothing: the effort's tag opens the turn, the model
        thinks first.
        """
        return _walk(self, messages, options)


class K2ThinkV2Format(K2V2Format):
    """K2-Think-V2's prompt format (``LLM360/K2-Think-V2``); effort default high."""

    name: ClassVar[str] = "k2-think-v2"
    model_id: ClassVar[str] = "LLM360/K2-Think-V2"
    default_effort: ClassVar[str | None] = "high"
    think: ClassVar[bool] = True
    stop_token_ids: tuple[int, ...] = (250019, 1, 250003)


def _index(tools: Sequence[Mapping[str, Any]] | None) -> Any:
    from langchain_k2._tool_schema import tool_index

    return tool_index(tools)


def function_line(tool: Mapping[str, Any]) -> str:
    r"""One tool as BFCL lists it: ``json.dumps`` of the bare function, ASCII-escaped.

    Example:
        >>> function_line({"name": "f", "description": "é", "parameters": {"type": "object"}})
        '{"name": "f", "description": "\\u00e9", "parameters": {"type": "object"}}'
    """
    fn = function_of(tool)
    bare: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        bare["description"] = fn["description"]
    bare["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return json.dumps(bare)


def _call_json(name: Any, arguments: str) -> str:
    """``{"name": NAME, "arguments": ARGS}`` with ``ARGS`` written as given (BFCL)."""
    return '{"name": ' + json.dumps(name or "") + ', "arguments": ' + arguments + "}"


def _calls(fmt: K2V2Format, message: BaseMessage, content: str, safe: bool) -> str:
    """An assistant turn's calls, each in its ``<tool_call>`` block."""
    if not isinstance(message, AIMessage):
        return ""
    blocks: list[str] = []
    for call in message.tool_calls:
        body = _call_json(call["name"], args_json(call.get("args", {})))
        blocks.append(f"<tool_call>\n{fmt.inert_json(body, safe)}\n</tool_call>")
    for invalid in message.invalid_tool_calls:
        args = invalid.get("args")
        if isinstance(args, str) and args.startswith(fmt.tool_call_open):
            body = args[len(fmt.tool_call_open) :].removesuffix(fmt.tool_call_close).strip("\n")
        else:  # "the string as given" (BFCL), or the JSON of what there is
            raw = args if isinstance(args, str) else json.dumps(args)
            body = _call_json(invalid.get("name"), raw)
        blocks.append(f"<tool_call>\n{fmt.inert_json(body, safe)}\n</tool_call>")
    out = ""
    for index, block in enumerate(blocks):
        out += ("\n" if content or index else "") + block
    return out


def _reasoning_tag(message: BaseMessage) -> tuple[str, str] | None:
    """The replayed reasoning of a trailing ``AIMessage`` and its tag, if it has any."""
    for tag in TAGS.values():
        value = message.additional_kwargs.get(tag)
        if isinstance(value, str):
            return tag, value
    reasoning = reasoning_text(message)
    if reasoning is None:
        return None
    effort = message.response_metadata.get("reasoning_effort")
    return TAGS.get(effort, "think_faster") if isinstance(
        effort, str
    ) else "think_faster", reasoning


def _walk(fmt: K2V2Format, messages: Sequence[BaseMessage], options: RenderOptions) -> list[str]:
    safe, lenient, tools = options.safe, options.lenient, options.tools
    settings_effort = options.settings.effort if options.settings else None
    effort = settings_effort or fmt.default_effort or "high"

    def text(message: BaseMessage) -> str:
        return fmt.inert(content_text(message), safe)

    roles, leading, system = open_conversation(
        messages, text, options.default_system, lenient=lenient, family="K2-V2"
    )
    if tools:
        listing = fmt.inert_json("\n".join(function_line(tool) for tool in tools), safe)
        section = (system + "\n\n" if system else "") + fmt.tools_prompt.format(tools=listing)
        parts = [f"<|im_start|>system\n{section}<|im_end|>\n"]
    else:
        parts = [f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""]
    previous, open_calls, index = "system", set[str](), leading
    while index < len(messages):
        message, role = messages[index], roles[index]
        if role == "tool":
            run = [message]
            while index + len(run) < len(messages) and roles[index + len(run)] == "tool":
                run.append(messages[index + len(run)])
            if not lenient:
                for answer in run:  # role_of: "tool" is a ToolMessage
                    check_answer(cast("ToolMessage", answer), previous, open_calls)
                    previous = "tool"
            results = fmt.tool_result_separator.join(text(m) for m in run)
            parts.append(f"<|im_start|>tool\n{results}<|im_end|>\n")
            index, previous = index + len(run), "tool"
            continue
        if role in {"user", "system"}:
            parts.append(f"<|im_start|>{role}\n{text(message)}<|im_end|>\n")
            open_calls = set()
        else:
            last = index == len(messages) - 1
            head = "<|im_start|>assistant\n"
            replay = _reasoning_tag(message) if last else None
            if replay is not None:
                tag, reasoning = replay
                head += f"<{tag}>\n{fmt.inert(reasoning, safe)}\n</{tag}>\n"
            content = text(message)
            calls = _calls(fmt, message, content, safe)
            parts.append(head + content + calls + ("" if last and not calls else "<|im_end|>\n"))
            open_calls = call_ids(message)
        previous = role
        index += 1
    if previous != "assistant" or parts[-1].endswith("<|im_end|>\n"):
        parts.append(f"<|im_start|>assistant\n<{TAGS[effort]}>\n")
    return parts


__all__ = ["TAGS", "TOOLS_PROMPT", "K2ThinkV2Format", "K2V2Format", "function_line"]
