"""The raw-completion wire of vLLM, SGLang and the llama.cpp servers, as pure functions.

In: an engine (its name in `langchain_k2.backends._engines.ENGINES`, or its hooks), a
prompt and `GenerationParams`; then a non-streamed JSON answer, the lines of a
server-sent-event stream, or an error status and body.
Out: the route and JSON body to POST; `TokenEvent` / `FinalEvent` values; and
`langchain_k2.errors` exceptions whose messages name the engine and the fix. No sockets.

What differs per engine (routes, body fields, how a constraint is sent, how an answer
reads) is in that engine's module under `langchain_k2.backends._engines`; what is the same
for all of them is here. The rules each engine needs (``engines.md``):

- the token limit is always sent (vLLM, SGLang and llama-cpp-python default to 16);
- every sampling field that is set is sent; ``temperature == 0`` is sent as ``0`` (greedy
  on every one of these engines);
- special tokens are kept in the text (``skip_special_tokens: false``, and on vLLM and
  SGLang's native route ``spaces_between_special_tokens: false``);
- vLLM streams ask for usage (``stream_options.include_usage``);
- a constraint goes under the one field the engine honours (vLLM ``structured_outputs``,
  SGLang ``json_schema`` as a JSON *string*, llama-server ``json_schema`` or GBNF
  ``grammar``, llama-cpp-python ``grammar`` as GBNF built by `langchain_k2.backends._gbnf`);
  a constraint an engine cannot take raises `K2ConfigError` rather than being sent under
  a name the server would ignore;
- the served model's id goes as ``model`` on the OpenAI-style routes (routers route by
  it);
- SGLang's native ``/generate`` streams cumulative text: `StreamDecoder` turns it into
  deltas; ``data: [DONE]`` ends a stream; an error event inside a 200 stream raises.

The text arrives without per-token ``special`` flags, so every `TokenEvent` is ordinary
text: the turn finds K2's markers and ``<tool_call>`` tags in the text itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from langchain_k2.backends._base import FinalEvent, GenerationEvent, GenerationParams, TokenEvent
from langchain_k2.backends._engines import ENGINES, GBNF, EngineHooks, NotThisEngineError, hooks_for
from langchain_k2.backends._error_table import GATEWAY_UPSTREAM_CODES, Failure, Server, classify
from langchain_k2.backends._wire import MAX_ERROR_BODY, SSEDecoder
from langchain_k2.errors import K2BackendError, K2GenerationError, K2UnavailableError

__all__ = [
    "ENGINES",
    "GATEWAY_UPSTREAM_CODES",
    "GBNF",
    "StreamDecoder",
    "answer_events",
    "error_body",
    "error_from",
    "request_body",
    "server_of",
]


def request_body(
    engine: str | EngineHooks,
    prompt: str,
    params: GenerationParams,
    *,
    stream: bool,
    gbnf: GBNF | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """The JSON body POSTed to the engine's generate route.

    ``gbnf`` converts a JSON schema to GBNF for llama-cpp-python (default:
    `langchain_k2.backends._gbnf`'s, imported when first needed); ``model`` is the served
    model's id, sent where the engine takes one.

    Example:
        >>> params = GenerationParams(max_new_tokens=8, temperature=0, stop=("</s>",))
        >>> request_body("vllm", "Hi", params, stream=True)  # doctest: +NORMALIZE_WHITESPACE
        {'prompt': 'Hi', 'max_tokens': 8, 'temperature': 0, 'stop': ['</s>'],
         'skip_special_tokens': False, 'spaces_between_special_tokens': False,
         'include_stop_str_in_output': False, 'stream': True,
         'stream_options': {'include_usage': True}}
        >>> request_body("sglang", "Hi", params, stream=False)  # doctest: +NORMALIZE_WHITESPACE
        {'text': 'Hi', 'sampling_params': {'max_new_tokens': 8, 'temperature': 0,
         'stop': ['</s>'], 'skip_special_tokens': False,
         'spaces_between_special_tokens': False}, 'stream': False}
        >>> request_body("llama-cpp-python", "Hi", params, stream=False, model="k2")["model"]
        'k2'
    """
    hooks = hooks_for(engine)
    grammar = params.grammar
    constraint = {} if grammar is None else hooks.constraint(grammar, gbnf)
    return hooks.request_body(
        prompt,
        params,
        stream=stream,
        model=model if hooks.sends_model else None,
        constraint=constraint,
    )


# ------------------------------------------------------------------ answers


def server_of(hooks: EngineHooks) -> Server:
    """Who answers, as the error table names it."""
    return Server(hooks.name, hooks.label, hooks.context_setting, hooks.grammar_words)


def _not_engine(hooks: EngineHooks, url: str, what: str) -> K2BackendError:
    return K2BackendError(
        f"The server at {url} answered {what}, which is not a {hooks.label} answer; check "
        f"endpoint_url and engine= (engine={hooks.name!r} was used)."
    )


def _aborted(hooks: EngineHooks, url: str, reason: str, in_stream: bool) -> K2BackendError:
    said = " in the stream" if in_stream else ""
    return K2GenerationError(
        f"{hooks.label} at {url} aborted the generation{said} (finish reason {reason!r}).",
        error_type=reason,
    )


def _raise_error_document(
    hooks: EngineHooks, doc: Mapping[str, Any], url: str, *, in_stream: bool
) -> None:
    if "error" in doc or doc.get("object") == "error":
        message, kind = _error_fields(doc)
        failure = Failure(_error_code(doc), message, kind, url, in_stream=in_stream)
        raise classify(failure, server_of(hooks))


def answer_events(engine: str | EngineHooks, doc: Any, url: str) -> list[GenerationEvent]:
    """The events of a non-streamed answer: the whole text, then the `FinalEvent`.

    Example:
        >>> doc = {"choices": [{"index": 0, "text": "Hi!", "finish_reason": "stop",
        ...        "stop_reason": None}], "usage": {"prompt_tokens": 7,
        ...        "completion_tokens": 3, "total_tokens": 10}}
        >>> answer_events("vllm", doc, "http://vllm")  # doctest: +NORMALIZE_WHITESPACE
        [TokenEvent(text='Hi!', special=False),
         FinalEvent(finish_reason='eos_token', input_tokens=7, output_tokens=3, seed=None)]
    """
    hooks = hooks_for(engine)
    if not isinstance(doc, dict):
        raise _not_engine(hooks, url, repr(doc)[:200])
    _raise_error_document(hooks, doc, url, in_stream=False)
    try:
        piece = hooks.answer(doc)
    except NotThisEngineError as exc:
        raise _not_engine(hooks, url, exc.what) from None
    if piece.finish == "abort":
        raise _aborted(hooks, url, piece.finish, in_stream=False)
    counts = piece.counts or (None, None)
    tokens = counts[1] if isinstance(counts[1], int) and counts[1] > 0 else 1  # one event: all
    events: list[GenerationEvent] = [TokenEvent(piece.text, tokens=tokens)] if piece.text else []
    events.append(FinalEvent(piece.finish, *counts))
    return events


class StreamDecoder:
    """A streamed answer's lines in, its events out (sans I/O), for one engine.

    Text deltas become `TokenEvent` values (SGLang's cumulative text is cut to what is
    new); the finish reason and usage become one `FinalEvent`, sent when the stream
    ends (``[DONE]``, the body's end, or the engine's last event). An error event raises
    its K2 error; a stream that ends before its finish reason raises a retryable
    `K2UnavailableError`.

    Example:
        >>> decoder = StreamDecoder("sglang", "http://sglang")
        >>> [e for line in ['data: {"text": "Hel", "meta_info": {"finish_reason": null}}', '',
        ...  'data: {"text": "Hello", "meta_info": {"finish_reason": {"type": "length"}, '
        ...  '"prompt_tokens": 5, "completion_tokens": 2}}', '', 'data: [DONE]', '']
        ...  for e in decoder.line(line)]  # doctest: +NORMALIZE_WHITESPACE
        [TokenEvent(text='Hel', special=False), TokenEvent(text='lo', special=False),
         FinalEvent(finish_reason='length', input_tokens=5, output_tokens=2, seed=None)]
        >>> decoder.end()
        []
    """

    def __init__(self, engine: str | EngineHooks, url: str) -> None:
        self.hooks = hooks_for(engine)
        self.engine = self.hooks.name
        self._url = url
        self._sse = SSEDecoder()
        self._seen = ""  # a cumulative stream's text so far
        self._finish: str | None = None
        self._counts: tuple[int | None, int | None] = (None, None)
        self.finished = False
        """Whether the final event has been produced."""

    def line(self, line: str) -> list[GenerationEvent]:
        """One line of the body (without its line break); the events it completes."""
        data = self._sse.feed(line)
        return [] if data is None else self._events(data)

    def end(self) -> list[GenerationEvent]:
        """The body ended: the final event if it is still due, or a raise."""
        data = self._sse.flush()
        events = [] if data is None else self._events(data)
        if not self.finished:
            if self._finish is None:
                raise K2UnavailableError(
                    f"The stream from {self.hooks.label} at {self._url} ended before its "
                    "finish reason (the server or a proxy closed it); retried when none of "
                    "it had reached the caller."
                )
            events.append(self._final())
        return events

    def _final(self) -> FinalEvent:
        self.finished = True
        return FinalEvent(self._finish, *self._counts)

    def _events(self, data: str) -> list[GenerationEvent]:
        if self.finished:
            return []
        if data == "[DONE]":
            return self.end()
        try:
            doc = json.loads(data)
        except json.JSONDecodeError as exc:
            raise _not_engine(self.hooks, self._url, f"the stream event {data[:200]!r}") from exc
        if not isinstance(doc, dict):
            raise _not_engine(self.hooks, self._url, f"the stream event {data[:200]!r}")
        _raise_error_document(self.hooks, doc, self._url, in_stream=True)
        try:
            piece = self.hooks.stream_piece(doc)
        except NotThisEngineError as exc:
            raise _not_engine(self.hooks, self._url, exc.what) from None
        text = piece.text
        if self.hooks.cumulative_stream:
            if not text.startswith(self._seen):
                raise _not_engine(self.hooks, self._url, "cumulative text that went back")
            text, self._seen = text[len(self._seen) :], text
        if piece.counts is not None:
            self._counts = piece.counts
        self._finish = piece.finish or self._finish
        if self._finish == "abort":
            raise _aborted(self.hooks, self._url, self._finish, in_stream=True)
        events: list[GenerationEvent] = [TokenEvent(text)] if text else []
        if piece.last:
            events.append(self._final())
        return events


# ------------------------------------------------------------------ errors


def _error_fields(doc: Mapping[str, Any]) -> tuple[str, str | None]:
    """``(message, type)`` of an error document, nested or flat."""
    error = doc.get("error")
    if isinstance(error, Mapping):  # vLLM, llama-server, llama-cpp-python
        kind = error.get("type")
        return str(error.get("message", error)), str(kind) if kind is not None else None
    if error is not None:
        return str(error), None
    if doc.get("message") is not None:  # SGLang (and older vLLM): flat
        kind = doc.get("type")
        return str(doc["message"]), str(kind) if kind is not None else None
    if doc.get("detail") is not None:  # FastAPI's own validation answer
        return json.dumps(doc["detail"]) if not isinstance(doc["detail"], str) else doc[
            "detail"
        ], None
    return json.dumps(doc)[:500], None


def _error_code(doc: Mapping[str, Any]) -> int | None:
    """The HTTP status an error document carries in its ``code``, if it is one."""
    error = doc.get("error")
    code = error.get("code") if isinstance(error, Mapping) else doc.get("code")
    return code if isinstance(code, int) and 400 <= code <= 599 else None


def error_body(body: bytes) -> tuple[str, str | None]:
    """``(message, type)`` of an error answer: the engine's JSON, or the text as it came.

    Example:
        >>> error_body(b'{"error": {"message": "bad top_p", "type": "BadRequestError", '
        ...            b'"param": null, "code": 400}}')
        ('bad top_p', 'BadRequestError')
        >>> error_body(b'{"object": "error", "message": "too long", "type": '
        ...            b'"BadRequestError", "param": null, "code": 400}')
        ('too long', 'BadRequestError')
        >>> error_body(b"<html>Bad Gateway</html>")
        ('<html>Bad Gateway</html>', None)
        >>> error_body(b'{"error": {"type": "Internal Server Error", "code": '
        ...            b'"call_upstream_request_error", "message": "error sending request"}}')
        ('error sending request', 'call_upstream_request_error')
    """
    text = body[:MAX_ERROR_BODY].decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text, None
    if isinstance(doc, dict):
        message, kind = _error_fields(doc)
        error = doc.get("error")
        code = error.get("code") if isinstance(error, Mapping) else None
        return message, code if code in GATEWAY_UPSTREAM_CODES else kind
    return text, None


def error_from(
    engine: str | EngineHooks,
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
        >>> err = error_from("vllm", 400, "This model's maximum context length is 4096 "
        ...                  "tokens", "BadRequestError", "http://vllm")
        >>> type(err).__name__, err.status, "--max-model-len" in str(err)
        ('K2ContextOverflowError', 400, True)
        >>> type(error_from("sglang", 503, "loading", None, "http://s")).__name__
        'K2UnavailableError'
        >>> type(error_from("sglang", 500, "error sending request for url (http://w/generate)",
        ...                 "call_upstream_request_error", "http://gateway")).__name__
        'K2UnavailableError'
    """
    failure = Failure(status, message, error_type, url, retry_after_s, in_stream)
    return classify(failure, server_of(hooks_for(engine)))
