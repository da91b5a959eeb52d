"""Binding tools: what LangChain users pass as tools and tool_choice, checked and normalized.

In: tools in any form LangChain accepts (``@tool`` functions, ``BaseTool``, pydantic
classes, TypedDicts, plain functions, OpenAI dicts) and a ``tool_choice``.
Out: OpenAI-style function dicts with unique names and object schemas (what ``bind_tools``
binds: `tools_bound`), and the tool-choice mode with the tools a forced call may use.
Errors name the tool. When no tool is offered (none bound, or ``tool_choice="none"``),
`refuse_calls` turns the calls of a parsed block into invalid ones naming that reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages.tool import invalid_tool_call as create_invalid_tool_call
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from langchain_k2._schema_forms import function_from_dict, is_handled
from langchain_k2._schema_refs import refs_in
from langchain_k2._tool_block import ToolBlock
from langchain_k2._tool_schema import check_depth, function_of
from langchain_k2.errors import K2ConfigError, ToolDefinitionError

ToolChoice = str | bool | dict[str, Any] | None
"""``"auto"``, ``"none"``, ``"any"``/``"required"``/``True``, a tool name, or an OpenAI dict."""


def _tool_name(tool: Any) -> str:
    return str(getattr(tool, "name", None) or getattr(tool, "__name__", None) or tool)[:80]


def _recursive_defs(definitions: Mapping[str, Any]) -> bool:
    """Whether some definition refers back to itself (directly or through others)."""
    edges = {
        name: {
            ref.rsplit("/", 1)[-1]
            for ref in refs_in(body)
            if ref.startswith(("#/$defs/", "#/definitions/"))
        }
        for name, body in definitions.items()
    }
    for start, targets in edges.items():
        stack, seen = list(targets), set()
        while stack:
            name = stack.pop()
            if name == start:
                return True
            if name not in seen:
                seen.add(name)
                stack.extend(edges.get(name, ()))
    return False


def recursive_schema(tool: Any) -> dict[str, Any] | None:
    """The pydantic schema of ``tool``'s arguments when it is recursive, else ``None``.

    langchain-core inlines ``$ref`` pointers, and one that refers back to its own model
    becomes ``{}`` (anything): a ``Literal`` or enum below it would go unchecked. For such
    a model the schema is kept as pydantic writes it, ``$defs`` and ``$ref`` included, so
    the prompt, the grammar (`langchain_k2._schema_refs`) and the validator see it whole.

    Example:
        >>> from typing import Literal
        >>> from pydantic import BaseModel
        >>> class Node(BaseModel):
        ...     kind: Literal["leaf", "branch"]
        ...     children: list["Node"] = []
        >>> sorted(recursive_schema(Node))
        ['$defs', '$ref']
        >>> recursive_schema(BaseModel) is None
        True
    """
    model = tool.tool_call_schema if isinstance(tool, BaseTool) else tool
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    try:
        schema = model.model_json_schema()
    except Exception:  # noqa: BLE001  (langchain-core's own conversion reports it)
        return None
    definitions = schema.get("$defs")
    if not isinstance(definitions, Mapping) or not _recursive_defs(definitions):
        return None
    schema.pop("title", None)
    schema.pop("description", None)
    return schema


def normalize_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """Convert what LangChain users pass as tools into OpenAI function dicts, checked.

    Accepts ``@tool`` functions, ``BaseTool``, pydantic classes, TypedDicts, plain
    functions and OpenAI-format dicts.

    Raises:
        ToolDefinitionError: no name, a duplicate name, or parameters that are not an
            object schema; the message names the tool.
    """
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for position, tool in enumerate(tools):
        if isinstance(tool, Mapping):  # a dict too deep would overflow the converter
            check_depth(str(function_of(tool).get("name") or f"#{position}")[:80], tool)
        try:
            converted = (  # dicts keep their whole schema (langchain-core drops a root anyOf)
                {"type": "function", "function": function_from_dict(tool)}
                if isinstance(tool, Mapping) and is_handled(tool)
                else convert_to_openai_tool(tool)
            )
        except ToolDefinitionError as exc:
            raise ToolDefinitionError(f"tools[{position}]: {exc}") from exc
        except Exception as exc:
            raise ToolDefinitionError(
                f"tools[{position}] ({_tool_name(tool)}) cannot be used as a tool: {exc}"
            ) from exc
        function = converted.get("function")
        if converted.get("type") != "function" or not isinstance(function, dict):
            raise ToolDefinitionError(
                f"tools[{position}] ({_tool_name(tool)}) is not a function tool; K2-Chat calls "
                "functions only."
            )
        name = function.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ToolDefinitionError(f"tools[{position}] has no name; give every tool a name.")
        if name in seen:
            raise ToolDefinitionError(
                f"tools[{position}] repeats the name {name!r}; tool names must be unique."
            )
        seen.add(name)
        parameters = recursive_schema(tool) or function.get("parameters")
        check_depth(name, parameters)
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise ToolDefinitionError(
                f"Tool {name!r}: parameters must be a JSON schema of type 'object', got "
                f"{parameters!r:.80}."
            )
        result.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": function.get("description") or "",
                    "parameters": parameters,
                },
            }
        )
    return result


def _is_normalized(tool: Any) -> bool:
    function = tool.get("function") if isinstance(tool, dict) else None
    return (
        isinstance(function, dict)
        and tool.get("type") == "function"
        and isinstance(function.get("name"), str)
        and isinstance(function.get("parameters"), dict)
    )


def bound_tools(tools: Any) -> list[dict[str, Any]]:
    """The ``tools`` call option as `normalize_tools` gives it, whatever form it was bound in.

    ``bind_tools`` binds normalized dicts (returned as the same list, so what is derived
    from them stays cached); ``bind(tools=[...])`` may bind ``@tool`` functions, pydantic
    classes... which are converted here, as ``bind_tools`` would.

    Example:
        >>> def add(a: int, b: int) -> int:
        ...     "Add."
        ...     return a + b
        >>> [tool["function"]["name"] for tool in bound_tools([add])]
        ['add']
        >>> bound_tools("add")
        Traceback (most recent call last):
        ...
        langchain_k2.errors.K2ConfigError: tools='add' is not a list of tools: pass a list \
of @tool functions, BaseTool, pydantic classes, TypedDicts, functions or OpenAI tool dicts.
    """
    if tools is None:
        return []
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise K2ConfigError(
            f"tools={tools!r:.80} is not a list of tools: pass a list of @tool functions, "
            "BaseTool, pydantic classes, TypedDicts, functions or OpenAI tool dicts."
        )
    if all(_is_normalized(tool) for tool in tools):
        for tool in tools:
            check_depth(tool["function"]["name"], tool["function"]["parameters"])
        return tools if isinstance(tools, list) else list(tools)
    return normalize_tools(tools)


def resolve_tool_choice(
    tool_choice: ToolChoice, tools: Sequence[Mapping[str, Any]]
) -> tuple[Literal["auto", "none", "any", "tool"], Sequence[Mapping[str, Any]]]:
    """Normalize ``tool_choice`` into a mode and the tools a forced call may use.

    The tools come back as the very object passed in when all of them may be used, so
    what is derived from them (their JSON, their validators) is cached across calls.

    ``"auto"``/``None``: the model decides. ``"none"``/``False``: no tools offered.
    ``"any"``/``"required"``/``True``: a call is forced (any tool). A tool name or
    ``{"type": "function", "function": {"name": ...}}``: that tool is forced.
    """
    names = [function_of(t)["name"] for t in tools]
    if tool_choice is None or tool_choice == "auto":
        return "auto", tools
    if tool_choice is False or tool_choice == "none":
        return "none", []
    if tool_choice is True or (isinstance(tool_choice, str) and tool_choice in {"any", "required"}):
        if not tools:
            raise K2ConfigError(
                f"tool_choice={tool_choice!r} forces a call, but no tools are bound."
            )
        return "any", tools
    name: Any = tool_choice
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    if isinstance(name, str) and name in names:
        return "tool", [tools[names.index(name)]]
    raise K2ConfigError(
        f"tool_choice={tool_choice!r} is not understood: use 'auto', 'none', 'any' "
        f"('required', True), or one of the bound tool names {names}."
    )


def tools_bound(tools: Sequence[Any], tool_choice: ToolChoice) -> dict[str, Any]:
    """What ``bind_tools`` binds of its tools: normalized, with ``tool_choice`` checked.

    Example:
        >>> bound = tools_bound([{"name": "now", "parameters": {}}], "now")
        >>> bound["tools"][0]["function"]["name"], bound["tool_choice"]
        ('now', 'now')

    Raises:
        ToolDefinitionError: a tool has no name, a duplicate name or a bad schema.
        K2ConfigError: ``tool_choice`` names no bound tool (or is of the wrong kind).
    """
    formatted = normalize_tools(tools)
    resolve_tool_choice(tool_choice, formatted)
    return {"tools": formatted, "tool_choice": tool_choice}


def unoffered_reason(tool_choice: ToolChoice, tools: Sequence[Mapping[str, Any]]) -> str | None:
    """Why no call can be valid in a turn (no tools are offered), or ``None`` if one can.

    Example:
        >>> unoffered_reason(None, [])
        'no tools were offered to the model (none are bound)'
        >>> unoffered_reason("none", [{"type": "function", "function": {"name": "f"}}])
        "tool_choice='none' offers no tools to the model"
    """
    if not tools:
        return "no tools were offered to the model (none are bound)"
    if tool_choice is False or tool_choice == "none":
        return f"tool_choice={tool_choice!r} offers no tools to the model"
    return None


def refuse_calls(block: ToolBlock, reason: str, *, open_tag: str, close_tag: str) -> ToolBlock:
    """``block`` with its valid calls made invalid: no tool was offered (``reason``).

    A tool call the prompt never offered is a hallucination or was steered by text the
    model read; it must not reach a tool executor, and it stays visible as an
    ``InvalidToolCall`` whose ``args`` is its raw block (the whole block when it holds one
    call, as the parser does) and whose ``error`` says why.
    """
    if not block.tool_calls:
        return block
    alone = len(block.tool_calls) == 1 and not block.invalid_tool_calls
    refused = [
        create_invalid_tool_call(
            name=call["name"],
            args=block.raw
            if alone
            else open_tag
            + json.dumps({"name": call["name"], "arguments": call["args"]})
            + close_tag,
            id=call.get("id"),
            error=f"{reason}, so the call of {call['name']!r} is not valid",
        )
        for call in block.tool_calls
    ]
    return ToolBlock(
        raw=block.raw, tool_calls=[], invalid_tool_calls=[*refused, *block.invalid_tool_calls]
    )
