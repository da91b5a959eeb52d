"""The exceptions langchain-k2 raises, in one tree.

In: nothing (this module imports no other part of the package).
Out: exception classes. Every message says what happened and what to change.

```
K2Error
├── K2ConfigError (ValueError)            a field or option is wrong; raised before any request
├── K2InputError (ValueError)             the messages cannot be rendered (type, content, order)
│   └── ContextWindowExceededError        prompt + max_new_tokens do not fit the window
├── ToolDefinitionError (ValueError)      a bound tool has no name, a duplicate name, a bad schema
├── K2BackendError                        the backend refused or failed a request
│   ├── K2ValidationError                 422: the server rejected the parameters (never retried)
│   │   └── K2GrammarUnsupportedError     422: the server runs without grammar support
│   ├── K2OverloadedError                 429: the server is overloaded (retried)
│   ├── K2UnavailableError                503 / connection refused / loading (retried)
│   ├── K2TimeoutError                    the request timed out (retried)
│   ├── K2AuthenticationError             401 / 403: the server refused the credentials
│   ├── K2NotFoundError                   404: no such route (endpoint_url is not the base URL)
│   ├── K2GenerationError                 424: generation failed on the server
│   └── K2IncompleteGenerationError       500: TGI's incomplete_generation (retried)
└── K2StreamInterruptedError              a stream broke after text was yielded; holds it
```
"""

from __future__ import annotations


class K2Error(Exception):
    """Base class of every error langchain-k2 raises on purpose."""


class K2ConfigError(K2Error, ValueError):
    """A field or option of ``ChatK2`` is missing or contradictory."""


class K2InputError(K2Error, ValueError):
    """The messages cannot be rendered into K2's prompt format."""


class ContextWindowExceededError(K2InputError):
    """The rendered prompt plus ``max_new_tokens`` does not fit the model's context window."""

    def __init__(
        self, message: str, *, prompt_tokens: int, max_new_tokens: int, window: int
    ) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.window = window


class ToolDefinitionError(K2Error, ValueError):
    """A tool passed to ``bind_tools`` cannot be offered to the model."""


class K2BackendError(K2Error):
    """The backend (TGI server or llama.cpp) refused or failed a request.

    Attributes:
        status: HTTP status code when the backend is a server, else ``None``.
        error_type: TGI's ``error_type`` (``validation``, ``overloaded``...), if any.
        retry_after: seconds the server asked the client to wait (429), if any.
    """

    retryable: bool = False

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


class K2ValidationError(K2BackendError):
    """The server rejected the request's parameters (HTTP 422). Never retried."""


class K2GrammarUnsupportedError(K2ValidationError):
    """The server refuses ``grammar`` (TGI started with ``--disable-grammar-support``)."""


class K2OverloadedError(K2BackendError):
    """The server is overloaded (HTTP 429)."""

    retryable = True


class K2UnavailableError(K2BackendError):
    """The server is unreachable, loading or temporarily down (503, refused connection)."""

    retryable = True


class K2TimeoutError(K2BackendError):
    """The request did not complete within ``timeout`` seconds."""

    retryable = True


class K2AuthenticationError(K2BackendError):
    """The server refused the credentials (HTTP 401 or 403). Never retried.

    Set ``hf_token`` (or ``HF_TOKEN``) to a token that may use the endpoint.
    """


class K2NotFoundError(K2BackendError):
    """The server has no such route (HTTP 404): ``endpoint_url`` is not its base URL."""


class K2GenerationError(K2BackendError):
    """Generation failed on the server (HTTP 424)."""


class K2IncompleteGenerationError(K2BackendError):
    """TGI reported ``incomplete_generation`` (HTTP 500)."""

    retryable = True


class K2StreamInterruptedError(K2Error):
    """A stream broke after some of it had been yielded; it is not retried.

    Attributes:
        partial_text: the completion text received before the break (already yielded).
        cause: the underlying backend error.
    """

    def __init__(
        self, message: str, *, partial_text: str, cause: BaseException | None = None
    ) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.cause = cause
