"""langchain-k2: LLM360's K2-Chat in LangChain, with prompt-exact tool calling.

Public names:

- `ChatK2`: the chat model (TGI server or in-process llama.cpp).
- `K2Format`, `render_prompt`: K2's prompt format.
- `parse_tool_calls`, `ToolCallStreamParser`, `ParsedToolCalls`:
  the ``<tool_call>`` parser, whole text and streaming.
- the exceptions of `langchain_k2.errors`.
"""

from langchain_k2._prompt import K2Format, neutralize, render_prompt, restore
from langchain_k2._schema_support import K2SchemaWarning
from langchain_k2._tool_calls import (
    ParsedToolCalls,
    ToolBlock,
    ToolCallStreamParser,
    parse_tool_calls,
)
from langchain_k2._version import __version__
from langchain_k2.chat_models import ChatK2
from langchain_k2.errors import (
    ContextWindowExceededError,
    K2AuthenticationError,
    K2BackendError,
    K2ConfigError,
    K2ConnectionError,
    K2ContextOverflowError,
    K2Error,
    K2GenerationError,
    K2GrammarUnsupportedError,
    K2IncompleteGenerationError,
    K2InputError,
    K2NotFoundError,
    K2OverloadedError,
    K2ServerError,
    K2StreamInterruptedError,
    K2TimeoutError,
    K2UnavailableError,
    K2ValidationError,
    ToolDefinitionError,
)

__all__ = [
    "ChatK2",
    "ContextWindowExceededError",
    "K2AuthenticationError",
    "K2BackendError",
    "K2ConfigError",
    "K2ConnectionError",
    "K2ContextOverflowError",
    "K2Error",
    "K2Format",
    "K2GenerationError",
    "K2GrammarUnsupportedError",
    "K2IncompleteGenerationError",
    "K2InputError",
    "K2NotFoundError",
    "K2OverloadedError",
    "K2SchemaWarning",
    "K2ServerError",
    "K2StreamInterruptedError",
    "K2TimeoutError",
    "K2UnavailableError",
    "K2ValidationError",
    "ParsedToolCalls",
    "ToolBlock",
    "ToolCallStreamParser",
    "ToolDefinitionError",
    "__version__",
    "neutralize",
    "parse_tool_calls",
    "render_prompt",
    "restore",
]
