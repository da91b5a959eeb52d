"""langchain-k2: LLM360's K2 models in LangChain, with prompt-exact tool calling.

Public names (everything a user imports; every other module whose name starts with ``_``
is private and may change without notice):

- `ChatK2`: the chat model (a serving engine at ``endpoint_url``, or llama.cpp in process).
- `K2Format`, `render_prompt`, `neutralize`, `restore`: K2-Chat's prompt format.
- `parse_tool_calls`, `ToolCallStreamParser`, `ParsedToolCalls`, `ToolBlock`:
  K2-Chat's ``<tool_call>`` parser, whole text and streaming.
- the exceptions of `langchain_k2.errors`, and `K2SchemaWarning` (a schema keyword the
  engine's grammar cannot carry is checked on the client).
- `__version__`.

Public modules and packages: `langchain_k2.chat_models` (``ChatK2``, the module LangChain's
serialization names), `langchain_k2.errors`, `langchain_k2.backends` (the backend protocol
and the backends you build yourself), `langchain_k2.formats` (every K2 family's prompt
format and the registry) and `langchain_k2.demo` (``python -m langchain_k2.demo``).

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> render_prompt([HumanMessage("Hi")])
    '<|beginofuser|>Hi<|beginofsystem|>'
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
