"""Binding tools: what LangChain users pass as tools and tool_choice, checked and normalized.

In: tools in any form LangChain accepts (``@tool`` functions, ``BaseTool``, pydantic
classes, TypedDicts, plain functions, OpenAI dicts) and a ``tool_choice``.
Out: OpenAI-style function dicts with unique names and object schemas, and the
tool-choice mode with the tools a forced call may use. Errors name the tool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.utils.function_calling import convert_to_openai_tool

from langchain_k2.errors import K2ConfigError, ToolDefinitionError

ToolChoice = str | bool | dict[str, Any] | None
"""``"auto"``, ``"none"``, ``"any"``/``"required"``/``True``, a tool name, or an OpenAI dict."""


def function_of(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """The function spec of a tool dict, unwrapping OpenAI's ``{"type": "function", ...}``.

    Example:
        >>> function_of({"type": "function", "function": {"name": "f"}})
        {'name': 'f'}
        >>> function_of({"name": "f", "parameters": {}})
        {'name': 'f', 'parameters': {}}
    """
    function = tool.get("function")
    return function if isinstance(function, Mapping) else tool


def _tool_name(tool: Any) -> str:
    return str(getattr(tool, "name", None) or getattr(tool, "__name__", None) or tool)[:80]


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
        try:
            converted = convert_to_openai_tool(tool)
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
        parameters = function.get("parameters")
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
