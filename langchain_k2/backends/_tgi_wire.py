"""TGI's wire format as pure functions: no sockets here.

In: a prompt and `GenerationParams`; then either a non-streamed JSON answer with its
response headers, or the lines of a server-sent-event (SSE) stream; or an error status and
body. Out: the JSON body to POST to TGI's ``/`` route; `TokenEvent` / `FinalEvent` values;
`langchain_k2.errors` exceptions whose messages say what to change.

Both answers are rebuilt from the token texts in ``details`` (TGI leaves special tokens
out of ``generated_text``, ``k2-format.md`` section 3). A streamed answer's last event
carries ``input_length``; a non-streamed one carries it in the ``x-prompt-tokens``
response header instead. In a non-streamed answer, consecutive ordinary tokens are
joined into one `TokenEvent`: nobody sees them one by one, and the turn then does one
step of work per run of text rather than per token.

SSE framing, the error-body cap and ``Retry-After`` live in the engine-neutral
`langchain_k2.backends._wire`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from langchain_k2.backends._base import FinalEvent, GenerationEvent, GenerationParams, TokenEvent
from langchain_k2.backends._error_table import Failure, Server, classify
from langchain_k2.backends._wire import MAX_ERROR_BODY, SSEDecoder
from langchain_k2.errors import K2BackendError, K2UnavailableError


def request_kwargs(params: GenerationParams) -> dict[str, Any]:
    """Map `GenerationParams` to TGI's ``parameters`` object.

    ``temperature == 0`` is greedy: ``do_sample=False`` and no temperature (TGI answers
    422 to ``temperature=0``); ``top_p == 1.0`` is not sent (TGI requires ``top_p < 1``).

    Example:
        >>> request_kwargs(GenerationParams(max_new_tokens=8, temperature=0, top_p=1.0))
        {'max_new_tokens': 8, 'do_sample': False}
    """
    kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens}
    greedy = params.temperature == 0
    if greedy:
        kwargs["do_sample"] = False
    else:
        if params.temperature is not None:
            kwargs["temperature"] = params.temperature
            kwargs["do_sample"] = True
        if params.top_p is not None and params.top_p < 1.0:
            kwargs["top_p"] = params.top_p
        if params.top_k is not None:
            kwargs["top_k"] = params.top_k
    if params.repetition_penalty is not None:
        kwargs["repetition_penalty"] = params.repetition_penalty
    if params.seed is not None:
        kwargs["seed"] = params.seed
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.grammar is not None:
        kwargs["grammar"] = params.grammar.tgi()
    return kwargs


def request_body(prompt: str, params: GenerationParams, *, stream: bool) -> dict[str, Any]:
    """The JSON body POSTed to TGI's ``/`` route (``stream`` is left out when false).

    Example:
        >>> request_body("<|beginofuser|>Hi", GenerationParams(max_new_tokens=4), stream=True)
        ... # doctest: +NORMALIZE_WHITESPACE
        {'inputs': '<|beginofuser|>Hi',
         'parameters': {'max_new_tokens': 4, 'details': True, 'return_full_text': False},
         'stream': True}
    """
    parameters = request_kwargs(params)
    parameters["details"] = True
    parameters["return_full_text"] = False
    body: dict[str, Any] = {"inputs": prompt, "parameters": parameters}
    if stream:
        body["stream"] = True
    return body


# ------------------------------------------------------------------ answers


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity
        return None


def _token(token: Any, url: str) -> tuple[str, bool]:
    """A token's ``(text, special)``; a mis-typed one is a protocol error naming TGI."""
    if not isinstance(token, dict) or not isinstance(token.get("text"), str):
        raise _not_tgi(url, f"the token {token!r:.200} (its 'text' is no string)")
    return token["text"], bool(token.get("special"))


def _not_tgi(url: str, what: str) -> K2BackendError:
    return K2BackendError(
        f"The server at {url} answered {what}, which is not a TGI answer; endpoint_url must "
        "be a text-generation-inference server (or an endpoint that speaks its API)."
    )


def answer_events(doc: Any, headers: Mapping[str, str], url: str) -> list[GenerationEvent]:
    """The events of a non-streamed answer (``[GenerateResponse]`` or ``GenerateResponse``).

    Runs of ordinary tokens become one `TokenEvent` each; special tokens stay single. The
    `FinalEvent` takes the prompt's token count from ``x-prompt-tokens`` (``None`` when a
    proxy dropped the header).

    Example:
        >>> doc = [{"generated_text": "Hi!", "details": {
        ...     "finish_reason": "eos_token", "generated_tokens": 3, "seed": None,
        ...     "prefill": [], "tokens": [
        ...         {"id": 1, "text": "Hi", "logprob": -0.1, "special": False},
        ...         {"id": 2, "text": "!", "logprob": -0.1, "special": False},
        ...         {"id": 3, "text": "<|endoftext|>", "logprob": -0.1, "special": True}]}}]
        >>> answer_events(doc, {"x-prompt-tokens": "7"}, "http://tgi")
        ... # doctest: +NORMALIZE_WHITESPACE
        [TokenEvent(text='Hi!', special=False), TokenEvent(text='<|endoftext|>', special=True),
         FinalEvent(finish_reason='eos_token', input_tokens=7, output_tokens=3, seed=None)]
    """
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    details = doc.get("details") if isinstance(doc, dict) else None
    if not isinstance(details, dict) or not isinstance(details.get("tokens"), list):
        raise _not_tgi(url, "without token details")
    events: list[GenerationEvent] = []
    run: list[str] = []
    for token in details["tokens"]:
        text, special = _token(token, url)
        if special:
            if run:
                events.append(TokenEvent("".join(run), tokens=len(run)))
                run = []
            events.append(TokenEvent(text, special=True))
        else:
            run.append(text)
    if run:
        events.append(TokenEvent("".join(run), tokens=len(run)))
    events.append(
        FinalEvent(
            finish_reason=details.get("finish_reason"),
            input_tokens=_int_or_none(headers.get("x-prompt-tokens")),
            output_tokens=_int_or_none(details.get("generated_tokens")),
            seed=details.get("seed"),
        )
    )
    return events


def stream_event(doc: Any, url: str) -> Iterator[GenerationEvent]:
    """The events of one SSE document: a token, maybe the end; an error event raises.

    Example:
        >>> doc = {"index": 1, "token": {"id": 5, "text": "Hi", "logprob": 0.0,
        ...        "special": False}, "generated_text": None, "details": None}
        >>> list(stream_event(doc, "http://tgi"))
        [TokenEvent(text='Hi', special=False)]
    """
    if not isinstance(doc, dict):
        raise _not_tgi(url, f"the stream event {doc!r}")
    if doc.get("error") is not None:
        raise error_from(None, str(doc["error"]), doc.get("error_type"), url, in_stream=True)
    token = doc.get("token")
    if token is not None:
        text, special = _token(token, url)
        yield TokenEvent(text, special=special)
    details = doc.get("details")
    if details is not None and not isinstance(details, dict):
        raise _not_tgi(url, f"the stream event's details {details!r:.200}")
    if details is not None:
        yield FinalEvent(
            finish_reason=details.get("finish_reason"),
            input_tokens=_int_or_none(details.get("input_length")),
            output_tokens=_int_or_none(details.get("generated_tokens")),
            seed=details.get("seed"),
        )


class StreamDecoder:
    """A streamed answer's lines in, its events out (sans I/O).

    An error event raises its K2 error; a stream that ends before TGI's last event (the
    one with ``details``) raises a retryable `K2UnavailableError`, so a cut stream is
    never taken for a complete answer.

    Example:
        >>> decoder = StreamDecoder("http://tgi")
        >>> decoder.line('data: {"token": {"id": 1, "text": "Hi", "special": false}, '
        ...              '"details": {"finish_reason": "length", "generated_tokens": 1, '
        ...              '"seed": null, "input_length": 4}}')
        []
        >>> decoder.line("")  # doctest: +NORMALIZE_WHITESPACE
        [TokenEvent(text='Hi', special=False),
         FinalEvent(finish_reason='length', input_tokens=4, output_tokens=1, seed=None)]
        >>> decoder.end()
        []
    """

    def __init__(self, url: str) -> None:
        self._sse = SSEDecoder()
        self._url = url
        self.finished = False
        """Whether the last event (``details``) has arrived."""

    def line(self, line: str) -> list[GenerationEvent]:
        """One line of the body (without its line break); the events it completes."""
        data = self._sse.feed(line)
        return [] if data is None else self._events(data)

    def end(self) -> list[GenerationEvent]:
        """The body ended: the events of an unterminated last event, or a raise."""
        data = self._sse.flush()
        events = [] if data is None else self._events(data)
        if not self.finished:
            raise K2UnavailableError(
                f"The stream from TGI at {self._url} ended before its last event (the "
                "server or a proxy closed it); retried when none of it had reached the caller."
            )
        return events

    def _events(self, data: str) -> list[GenerationEvent]:
        if data == "[DONE]":  # not TGI's, but some proxies add it
            return []
        try:
            doc = json.loads(data)
        except json.JSONDecodeError as exc:
            raise _not_tgi(self._url, f"the stream event {data[:200]!r}") from exc
        events = list(stream_event(doc, self._url))
        if events and isinstance(events[-1], FinalEvent):
            self.finished = True
        return events


# ------------------------------------------------------------------ errors

SERVER = Server(
    "tgi",
    "TGI",
    "TGI --max-total-tokens / --max-input-tokens",
    grammar_words=(
        "grammar is not supported",
        "grammars are not supported",
        "grammar and tools are not supported",
    ),
)
"""TGI as the error table names it."""


def error_body(body: bytes) -> tuple[str, str | None]:
    """``(message, error_type)`` of an error answer: TGI's JSON, or the text as it came.

    Example:
        >>> error_body(b'{"error": "Model is overloaded", "error_type": "overloaded"}')
        ('Model is overloaded', 'overloaded')
        >>> error_body(b"<html>Bad Gateway</html>")
        ('<html>Bad Gateway</html>', None)
    """
    text = body[:MAX_ERROR_BODY].decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text, None
    if isinstance(doc, dict) and doc.get("error") is not None:
        error_type = doc.get("error_type")
        return str(doc["error"]), str(error_type) if error_type is not None else None
    if isinstance(doc, dict) and doc.get("message") is not None:  # some gateways
        return str(doc["message"]), None
    return text, None


def error_from(
    status: int | None,
    message: str,
    error_type: str | None,
    url: str,
    *,
    retry_after_s: float | None = None,
    in_stream: bool = False,
) -> K2BackendError:
    """The K2 error for a failed request, per `langchain_k2.backends._error_table`.

    Example:
        >>> err = error_from(422, "`temperature` must be strictly positive", "validation",
        ...                  "http://tgi")
        >>> type(err).__name__, err.status
        ('K2ValidationError', 422)
        >>> "use temperature=0" in str(err)
        True
    """
    return classify(Failure(status, message, error_type, url, retry_after_s, in_stream), SERVER)
