"""The one status -> error table, pinned: K2 class, langchain-core class, retry decision.

Every row of `langchain_k2.backends._error_table.TABLE` is exercised with what an engine
really sends; the K2 error is also the matching ``langchain_core.exceptions`` class, and
``is_retryable`` (what LangChain's middleware reads) equals ``retryable`` (what ChatK2's
own retries read) for every K2 error class.
"""

from __future__ import annotations

import inspect

import pytest
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

from langchain_k2 import errors
from langchain_k2._driver import retryable
from langchain_k2.backends._completions_wire import error_from
from langchain_k2.backends._error_table import TABLE, Failure, Server, classify
from langchain_k2.backends._http import map_error

VLLM = Server("vllm", "vLLM", "vLLM --max-model-len")
URL = "http://engine.test"

# (status, message, error_type) -> (K2 class, langchain-core class, retried)
MAPPING = [
    (
        400,
        "The provided JSON schema contains features not supported by xgrammar",
        None,
        "K2GrammarUnsupportedError",
        ModelInvalidRequestError,
        False,
    ),
    (
        422,
        "Input validation error: grammar is not supported",
        "validation",
        "K2GrammarUnsupportedError",
        ModelInvalidRequestError,
        False,
    ),
    (
        400,
        "This model's maximum context length is 4096 tokens. However, you requested 5000",
        "BadRequestError",
        "K2ContextOverflowError",
        ContextOverflowError,
        False,
    ),
    (
        422,
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048",
        "validation",
        "K2ContextOverflowError",
        ContextOverflowError,
        False,
    ),
    (
        400,
        "the request exceeds the available context size, try increasing it",
        "exceed_context_size_error",
        "K2ContextOverflowError",
        ContextOverflowError,
        False,
    ),
    (
        400,
        "top_p must be in (0, 1], got 2.0",
        "BadRequestError",
        "K2ValidationError",
        ModelInvalidRequestError,
        False,
    ),
    (429, "Model is overloaded", "overloaded", "K2OverloadedError", ModelRateLimitError, True),
    (None, "Model is overloaded", "overloaded", "K2OverloadedError", ModelRateLimitError, True),
    (500, "x", "incomplete_generation", "K2IncompleteGenerationError", ModelAPIError, True),
    (424, "CUDA OOM", "generation", "K2GenerationError", ModelAPIError, False),
    (
        500,
        "error sending request",
        "call_upstream_request_error",
        "K2UnavailableError",
        ModelAPIError,
        True,
    ),
    (503, "loading", None, "K2UnavailableError", ModelAPIError, True),
    (502, "<html>Bad Gateway</html>", None, "K2UnavailableError", ModelAPIError, True),
    (504, "timeout", None, "K2UnavailableError", ModelAPIError, True),
    (401, "Unauthorized", None, "K2AuthenticationError", ModelAuthenticationError, False),
    (403, "Forbidden", None, "K2AuthenticationError", ModelAuthenticationError, False),
    (404, "Not Found", None, "K2NotFoundError", ModelNotFoundError, False),
    (None, "it broke", None, "K2GenerationError", ModelAPIError, False),
    (500, "EngineCore died", None, "K2ServerError", ModelAPIError, False),
    (418, "I'm a teapot", None, "K2BackendError", ModelError, False),
]


@pytest.mark.parametrize("case", MAPPING)
def test_the_table_maps_each_failure(case: tuple[object, ...]) -> None:
    status, message, error_type, k2, core, retried = case
    assert isinstance(core, type)
    err = classify(Failure(status, message, error_type, URL, retry_after=3.0), VLLM)  # type: ignore[arg-type]
    assert type(err).__name__ == k2
    assert isinstance(err, core)
    assert isinstance(err, ModelError)
    assert err.is_retryable is retried
    assert retryable(err) is retried  # ChatK2's own decision agrees
    assert URL in str(err)


def test_every_row_is_reached() -> None:
    reached = {
        next(row.cause for row in TABLE if row.matches(Failure(s, m, t, URL), VLLM))
        for s, m, t, *_ in MAPPING
    }
    assert reached == {row.cause for row in TABLE}


def test_every_k2_error_agrees_with_langchain_core_on_retrying() -> None:
    for name, cls in vars(errors).items():
        if inspect.isclass(cls) and issubclass(cls, errors.K2Error) and issubclass(cls, ModelError):
            told = getattr(cls, "retryable", False)
            assert cls.is_retryable is told, name
    assert issubclass(errors.ContextWindowExceededError, ContextOverflowError)
    assert not errors.ContextWindowExceededError.is_retryable


def test_transport_failures_are_langchain_connection_and_timeout_errors() -> None:
    import httpx

    refused = map_error(httpx.ConnectError("refused"), URL, "vLLM")
    slow = map_error(httpx.ReadTimeout("slow"), URL, "vLLM")
    assert isinstance(refused, ModelConnectionError)
    assert isinstance(refused, errors.K2UnavailableError)  # K2's name, more specific
    assert isinstance(slow, ModelTimeoutError)
    assert refused.is_retryable
    assert slow.is_retryable


def test_a_request_past_its_deadline_is_a_timeout_nobody_retries() -> None:
    from langchain_k2.backends._wire import DeadlineExceededError

    headers = map_error(DeadlineExceededError("headers", 2.0), URL, "vLLM")
    late = map_error(DeadlineExceededError("deadline", 30.0), URL, "vLLM")
    assert isinstance(headers, errors.K2TimeoutError)
    assert isinstance(late, errors.K2TimeoutError)
    assert isinstance(late, ModelTimeoutError)
    assert "`timeout`" in str(headers)
    assert headers.is_retryable
    assert "request_deadline" in str(late)
    # another try would take as long: neither ChatK2 nor ModelRetryMiddleware retries it
    assert not retryable(late)
    assert not late.is_retryable


def test_a_404_names_engine_for_every_engine() -> None:
    for engine in ("tgi", "vllm", "sglang", "llama.cpp", "llama-cpp-python"):
        err = error_from(engine, 404, "Not Found", None, URL)
        assert f"engine= must name the engine it runs (now {engine!r})" in str(err)


def test_the_engine_hint_decides_what_a_grammar_complaint_means() -> None:
    from langchain_k2.backends import _tgi_wire as tgi_wire

    too_complex = Failure(422, "Grammar is too complex", "validation", URL)
    refused = Failure(422, "Input validation error: grammar is not supported", "validation", URL)
    # TGI: only "not supported" means grammars are off (the request is sent again without);
    # a grammar it cannot handle is a plain validation error (the repair is skipped).
    assert type(classify(too_complex, tgi_wire.SERVER)) is errors.K2ValidationError
    assert type(classify(refused, tgi_wire.SERVER)) is errors.K2GrammarUnsupportedError
    # vLLM/SGLang/llama.cpp name their grammar compiler: the schema did not compile.
    assert type(classify(too_complex, VLLM)) is errors.K2GrammarUnsupportedError
