"""One table from a failed request to the K2 error raised for it, for every engine.

In: a `Failure` (HTTP status or an error event in a stream, the engine's message and
error type, the URL, ``Retry-After``) and the `Server` that answered (engine, label, its
own context-window setting). Out: the `langchain_k2.errors` exception, whose class is
also langchain-core's matching ``ModelError`` (``docs/limits.md``, "Error table").

The rows are read in order; the first that matches decides. TGI's ``error_type`` words
stand for their statuses when an error event in a stream carries no status.

Example:
    >>> server = Server("vllm", "vLLM", "vLLM --max-model-len")
    >>> err = classify(Failure(400, "This model's maximum context length is 4096 tokens",
    ...                        "BadRequestError", "http://vllm"), server)
    >>> type(err).__name__, err.status, "--max-model-len" in str(err)
    ('K2ContextOverflowError', 400, True)
    >>> [row.cause for row in TABLE][:3]
    ['400/422 naming the constraint', '400/422 naming the context window', 'other 400/422']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langchain_k2.errors import (
    K2AuthenticationError,
    K2BackendError,
    K2ContextOverflowError,
    K2GenerationError,
    K2GrammarUnsupportedError,
    K2IncompleteGenerationError,
    K2NotFoundError,
    K2OverloadedError,
    K2ServerError,
    K2UnavailableError,
    K2ValidationError,
)

__all__ = ["TABLE", "Failure", "Row", "Server", "classify"]


@dataclass(frozen=True)
class Failure:
    """A failed request as the engine answered it (``status`` ``None``: a stream event)."""

    status: int | None
    message: str
    error_type: str | None
    url: str
    retry_after: float | None = None
    in_stream: bool = False

    @property
    def code(self) -> int | None:
        """The status, or the one TGI's ``error_type`` stands for."""
        return self.status if self.status is not None else TYPE_STATUS.get(self.error_type or "")

    @property
    def detail(self) -> str:
        """The message's first line (or the status when there is none)."""
        text = self.message.strip()
        first = text.splitlines()[0].strip().rstrip(".") if text else ""
        return first or (f"HTTP {self.status}" if self.status is not None else "no message")


GRAMMAR_WORDS = (
    "xgrammar",
    "grammar",
    "json_schema",
    "json schema into",
    "structural tag",
    "structural_tag",
)
"""Words of an engine refusing or failing to compile a constraint."""


@dataclass(frozen=True)
class Server:
    """Who answered: the ``engine=`` value, its name in messages, its context setting.

    ``grammar_words``: the engine hint saying a 400/422 is about the constraint (TGI says
    "grammar is not supported" when started without grammars; the others name their
    grammar compiler when a schema fails to compile).
    """

    engine: str
    label: str
    context_setting: str
    grammar_words: tuple[str, ...] = GRAMMAR_WORDS


TYPE_STATUS = {
    "validation": 422,
    "tool_error": 422,
    "generation": 424,
    "overloaded": 429,
    "incomplete_generation": 500,
}
"""The status each of TGI's ``error_type`` words stands for."""

GATEWAY_UPSTREAM_CODES = frozenset({"call_upstream_request_error"})
"""Error codes of the SGLang Model Gateway's 500 when it could not reach a worker (measured
with sglang-router 0.3.2: a stopped worker, after the gateway's own retries): nothing was
generated, so the request is retried like a 503."""


CONTEXT_WORDS = (
    "context length",
    "context window",
    "context size",
    "too long",
    "must have less than",
    "tokens + `max_new_tokens`",
    "max_total_tokens",
)
"""Words of an engine refusing a prompt that does not fit its context window."""

_HINTS = (
    ("temperature", "use temperature=0 for greedy decoding"),
    ("top_p", "top_p must be in (0, 1]; leave it unset or 1.0 to disable nucleus sampling"),
    ("stop", "pass fewer stop strings; the server's limit is its --max-stop-sequences"),
    ("model", "the server serves another model name: set model_name= to the one it serves"),
)


def _where(f: Failure, s: Server) -> str:
    return f"{s.label} at {f.url}"


def _said(f: Failure) -> str:
    return " in the stream" if f.in_stream else ""


def _status(f: Failure) -> str:
    return f"{f.code}: {f.detail}" if f.message.strip() else str(f.code)


def _invalid(f: Failure) -> bool:
    return f.code in {400, 422}


def _constraint(f: Failure, s: Server) -> bool:
    return _invalid(f) and any(w in f.message.lower() for w in s.grammar_words)


def _window(f: Failure, _: Server) -> bool:
    return _invalid(f) and any(w in f.message.lower() for w in CONTEXT_WORDS)


def _grammar(f: Failure, s: Server) -> str:
    if "not supported" in f.message.lower():  # TGI's --disable-grammar-support
        return (
            f"{_where(f, s)} refuses grammars ({f.detail}); it was started with "
            "--disable-grammar-support. ChatK2 falls back to prompting."
        )
    return (
        f"{_where(f, s)} could not compile the constraint ({f.detail}); ChatK2 falls back "
        "to instructions and validates the output on the client."
    )


def _context(f: Failure, s: Server) -> str:
    return (
        f"{_where(f, s)} rejected the request{_said(f)}: {f.message.strip()} -- shorten the "
        "conversation, lower max_new_tokens, or serve a longer context "
        f"({s.context_setting}). SummarizationMiddleware recovers from this error."
    )


def _validation(f: Failure, s: Server) -> str:
    hint = next((h for key, h in _HINTS if key in f.message), "check the request parameters")
    return f"{_where(f, s)} rejected the request{_said(f)}: {f.message.strip()} -- {hint}."


@dataclass(frozen=True)
class Row:
    """One row of the table: when it matches, and the error and message it makes."""

    cause: str
    error: type[K2BackendError]
    matches: Callable[[Failure, Server], bool]
    says: Callable[[Failure, Server], str]


TABLE: tuple[Row, ...] = (
    Row("400/422 naming the constraint", K2GrammarUnsupportedError, _constraint, _grammar),
    Row("400/422 naming the context window", K2ContextOverflowError, _window, _context),
    Row("other 400/422", K2ValidationError, lambda f, _: _invalid(f), _validation),
    Row(
        "429 (TGI: overloaded)",
        K2OverloadedError,
        lambda f, _: f.code == 429,
        lambda f, s: (
            f"{_where(f, s)} is overloaded (429){_said(f)}: {f.detail}. Retried with "
            "backoff up to max_retries; raise max_retries or add replicas."
        ),
    ),
    Row(
        "TGI's incomplete_generation",
        K2IncompleteGenerationError,
        lambda f, _: f.error_type == "incomplete_generation",
        lambda f, s: f"{_where(f, s)} reported an incomplete generation{_said(f)}: {f.detail}.",
    ),
    Row(
        "424 (TGI: generation)",
        K2GenerationError,
        lambda f, _: f.code == 424,
        lambda f, s: f"Generation failed on {_where(f, s)}{_said(f)}: {f.detail}.",
    ),
    Row(
        "5xx from a gateway that could not reach a worker",
        K2UnavailableError,
        lambda f, _: (f.code or 0) >= 500 and f.error_type in GATEWAY_UPSTREAM_CODES,
        lambda f, s: (
            f"{_where(f, s)} could not reach a worker ({f.code} {f.error_type}): "
            f"{f.detail}. The gateway retried it; retried with backoff (its health checks take "
            "a stopped worker out of rotation)."
        ),
    ),
    Row(
        "502, 503, 504",
        K2UnavailableError,
        lambda f, _: f.code in {502, 503, 504},
        lambda f, s: (
            f"{_where(f, s)} is unavailable ({f.code}): {f.detail}. It may still be "
            "loading the model; retried with backoff."
        ),
    ),
    Row(
        "401, 403",
        K2AuthenticationError,
        lambda f, _: f.code in {401, 403},
        lambda f, s: (
            f"{_where(f, s)} refused the credentials ({f.code}): set hf_token (or "
            "HF_TOKEN) to a token that may use this endpoint (the server's bearer token, "
            "e.g. vLLM's --api-key)."
        ),
    ),
    Row(
        "404",
        K2NotFoundError,
        lambda f, _: f.code == 404,
        lambda f, s: (
            f"No {s.label} route at {f.url} ({_status(f)}): endpoint_url must be the "
            "server's base URL, e.g. http://host:8080, and engine= must name the engine it "
            f"runs (now {s.engine!r})."
        ),
    ),
    Row(
        "an error event in a stream",
        K2GenerationError,
        lambda f, _: f.code is None,
        lambda f, s: f"Generation failed on {_where(f, s)}{_said(f)}: {f.detail}.",
    ),
    Row(
        "any other 5xx",
        K2ServerError,
        lambda f, _: (f.code or 0) >= 500,
        lambda f, s: f"{_where(f, s)} failed ({f.code}){_said(f)}: {f.detail}.",
    ),
    Row(
        "any other status",
        K2BackendError,
        lambda _f, _s: True,
        lambda f, s: f"{_where(f, s)} failed ({f.code}): {f.detail}.",
    ),
)
"""Status (and cause) -> error class, first match wins."""


def classify(failure: Failure, server: Server) -> K2BackendError:
    """The K2 error for ``failure``, per the first `TABLE` row that matches."""
    row = next(row for row in TABLE if row.matches(failure, server))
    return row.error(
        row.says(failure, server),
        status=failure.code,
        error_type=failure.error_type,
        retry_after=failure.retry_after,
    )
