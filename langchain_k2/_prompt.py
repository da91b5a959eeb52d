"""K2-Chat's prompt format, where it has always been imported from.

In: LangChain messages, tools and a `K2Format`. Out: K2-Chat's prompt. The code lives in
`langchain_k2.formats._k2_chat` (one module per family behind `langchain_k2.formats`);
this module keeps the names importable from ``langchain_k2._prompt``.

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> render_prompt([HumanMessage("Hi")])
    '<|beginofuser|>Hi<|beginofsystem|>'
"""

from __future__ import annotations

from langchain_k2.formats._base import content_text
from langchain_k2.formats._k2_chat import (
    DEFAULT_FORMAT,
    FUNCTION_CALLING_PROMPT,
    K2Format,
    invalid_call_block,
    neutralize,
    neutralize_json,
    render_prompt,
    restore,
    tool_calls_json,
    tools_json,
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
