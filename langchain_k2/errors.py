"""The exceptions langchain-k2 raises, in one tree inside langchain-core's ``ModelError`` family.

In: langchain-core's exception classes (nothing of this package). Out: exception
classes. Every message says what happened and what to change.

Each error a request can end in is also the matching ``langchain_core.exceptions`` class
(in parentheses), so LangChain's middleware decides on it: ``ModelRetryMiddleware`` retries
what ``is_retryable`` says (the same as ChatK2's own ``retryable``), and
``SummarizationMiddleware`` recovers from a ``ContextOverflowError``. Which status maps to
which class is one table (``langchain_k2/backends/_error_table.py``, ``docs/limits.md``).

```
K2Error
├── K2ConfigError (ValueError)                  a field or option is wrong; before any request
├── K2InputError (ValueError)                   the messages cannot be rendered
│   └── ContextWindowExceededError (ContextOverflowError)  prompt + max_new_tokens do not fit
├── ToolDefinitionError (ValueError)            a bound tool cannot be offered
├── K2BackendError (ModelError)                 the backend refused or failed a request
│   ├── K2ValidationError (ModelInvalidRequestError)  400/422: rejected, never retried
│   │   ├── K2GrammarUnsupportedError           the grammar is refused: prompting instead
│   │   └── K2ContextOverflowError (ContextOverflowError)  the server's window is too small
│   ├── K2OverloadedError (ModelRateLimitError)  429: overloaded (retried)
│   ├── K2UnavailableError (ModelAPIError)      502/503/504, loading (retried)
│   │   └── K2ConnectionError (ModelConnectionError)  the server was not reached (retried)
│   ├── K2TimeoutError (ModelTimeoutError)      the request timed out (retried)
│   ├── K2AuthenticationError (ModelAuthenticationError)  401 / 403: credentials refused
│   ├── K2NotFoundError (ModelNotFoundError)    404: endpoint_url or engine= is wrong
│   ├── K2GenerationError (ModelAPIError)       424, or an error event in a stream
│   ├── K2IncompleteGenerationError (ModelAPIError)  TGI's incomplete_generation (retried)
│   └── K2ServerError (ModelAPIError)           any other 5xx
└── K2StreamInterruptedError (ModelAPIError)    a stream broke after text was yielded; holds it
```
"""

from __future__ import annotations

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelTimeoutError,
)


class K2Error(Exception):
    """Base class of every error langchain-k2 raises on purpose."""


class K2ConfigError(K2Error, ValueError):
    """A field or option of ``ChatK2`` is missing or contradictory."""


class K2InputError(K2Error, ValueError):
    """The messages cannot be rendered into K2's prompt format."""


class ContextWindowExceededError(K2InputError, ContextOverflowError):
    """The rendered prompt plus ``max_new_tokens`` does not fit the model's context window.

    Raised before any request, when the window is known; also langchain-core's
    ``ContextOverflowError``.
    """

    is_retryable = False

    def __init__(
        self, message: str, *, prompt_tokens: int, max_new_tokens: int, window: int
    ) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.window = window


class ToolDefinitionError(K2Error, ValueError):
    """A tool passed to ``bind_tools`` cannot be offered to the model."""


class K2BackendError(K2Error, ModelError):
    """The backend (a server, or llama.cpp) refused or failed a request.

    ``retryable`` is whether ChatK2 retries it (with ``max_retries``); langchain-core's
    ``is_retryable`` says the same for LangChain's middleware.

    Attributes:
        status: HTTP status code when the backend is a server, else ``None``.
        error_type: TGI's ``error_type`` (``validation``, ``overloaded``...), if any.
        retry_after: seconds the server asked the client to wait (429), if any.
    """

    retryable: bool = False
    is_retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.retry_after = retry_after


class K2ValidationError(K2BackendError, ModelInvalidRequestError):
    """The server rejected the request's parameters (HTTP 400/422). Never retried."""

    is_retryable = False


class K2GrammarUnsupportedError(K2ValidationError):
    """The server refuses grammars, or cannot compile this one (falls back to instructions).

    TGI started with ``--disable-grammar-support`` refuses every grammar.
    """


class K2ContextOverflowError(K2ValidationError, ContextOverflowError):
    """The server refused a prompt that does not fit its context window (HTTP 400/422).

    Also langchain-core's ``ContextOverflowError``: ``SummarizationMiddleware`` recovers.
    """

    is_retryable = False


class K2OverloadedError(K2BackendError, ModelRateLimitError):
    """The server is overloaded (HTTP 429)."""

    retryable = True
    is_retryable = True


class K2UnavailableError(K2BackendError, ModelAPIError):
    """The server is loading or temporarily down (502, 503, 504), or unreachable."""

    retryable = True
    is_retryable = True


class K2ConnectionError(K2UnavailableError, ModelConnectionError):
    """The server could not be reached (refused connection, reset, DNS)."""

    retryable = True
    is_retryable = True


class K2TimeoutError(K2BackendError, ModelTimeoutError):
    """The request did not complete within ``timeout`` seconds."""

    retryable = True
    is_retryable = True


class K2AuthenticationError(K2BackendError, ModelAuthenticationError):
    """The server refused the credentials (HTTP 401 or 403). Never retried.

    Set ``hf_token`` (or ``HF_TOKEN``) to a token that may use the endpoint.
    """

    is_retryable = False


class K2NotFoundError(K2BackendError, ModelNotFoundError):
    """The server has no such route (HTTP 404).

    ``endpoint_url`` is not its base URL, or ``engine=`` names another engine.
    """

    is_retryable = False


class K2GenerationError(K2BackendError, ModelAPIError):
    """Generation failed on the server (HTTP 424, or an error event in a stream)."""

    is_retryable = False


class K2IncompleteGenerationError(K2BackendError, ModelAPIError):
    """TGI reported ``incomplete_generation`` (HTTP 500)."""

    retryable = True
    is_retryable = True


class K2ServerError(K2BackendError, ModelAPIError):
    """Any other server failure (a 5xx no other class covers). Not retried."""

    is_retryable = False


class K2StreamInterruptedError(K2Error, ModelAPIError):
    """A stream broke after some of it had been yielded; it is not retried.

    Attributes:
        partial_text: the completion text received before the break (already yielded).
        cause: the underlying backend error.
    """

    is_retryable = False

    def __init__(
        self, message: str, *, partial_text: str, cause: BaseException | None = None
    ) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.cause = cause


__all__ = [
    "ContextWindowExceededError",
    "K2AuthenticationError",
    "K2BackendError",
    "K2ConfigError",
    "K2ConnectionError",
    "K2ContextOverflowError",
    "K2Error",
    "K2GenerationError",
    "K2GrammarUnsupportedError",
    "K2IncompleteGenerationError",
    "K2InputError",
    "K2NotFoundError",
    "K2OverloadedError",
    "K2ServerError",
    "K2StreamInterruptedError",
    "K2TimeoutError",
    "K2UnavailableError",
    "K2ValidationError",
    "ToolDefinitionError",
]
