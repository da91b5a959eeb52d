"""The raw-completion wire of vLLM, SGLang and the llama.cpp servers, as pure functions.

In: an engine name (`ENGINES`), a prompt and `GenerationParams`; then a non-streamed JSON
answer, the lines of a server-sent-event stream, or an error status and body.
Out: the route and JSON body to POST; `TokenEvent` / `FinalEvent` values; and
`langchain_k2.errors` exceptions whose messages name the engine and the fix. No sockets.

The rules each engine needs (``engines.md``), all applied here:

- the token limit is always sent (vLLM, SGLang and llama-cpp-python default to 16);
- every sampling field that is set is sent; ``temperature == 0`` is sent as ``0`` (greedy
  on every one of these engines);
- special tokens are kept in the text (``skip_special_tokens: false``, and on vLLM and
  SGLang's native route ``spaces_between_special_tokens: false``);
- vLLM streams ask for usage (``stream_options.include_usage``);
- a constraint goes under the one field the engine honours (vLLM ``structured_outputs``,
  SGLang ``json_schema`` as a JSON *string*, llama-server ``json_schema``,
  llama-cpp-python ``grammar`` as GBNF); a constraint an engine cannot take raises
  `K2ConfigError` rather than being sent under a name the server would ignore;
- SGLang's native ``/generate`` streams cumulative text: `StreamDecoder` turns it into
  deltas; ``data: [DONE]`` ends a stream; an error event inside a 200 stream raises.

The text arrives without per-token ``special`` flags, so every `TokenEvent` is ordinary
text: the turn finds K2's markers and ``<tool_call>`` tags in the text itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from langchain_k2.backends.base import FinalEvent, GenerationEvent, GenerationParams, TokenEvent
from langchain_k2.backends.wire import MAX_ERROR_BODY, SSEDecoder
from langchain_k2.errors import (
    K2AuthenticationError,
    K2BackendError,
    K2ConfigError,
    K2GenerationError,
    K2GrammarUnsupportedError,
    K2NotFoundError,
    K2OverloadedError,
    K2UnavailableError,
    K2ValidationError,
)

ENGINES = ("vllm", "sglang", "llama.cpp", "llama-cpp-python")
"""The engines served through their raw-completion routes."""

LABELS = {
    "vllm": "vLLM",
    "sglang": "SGLang",
    "llama.cpp": "llama-server",
    "llama-cpp-python": "llama-cpp-python's server",
}
"""Each engine's name in messages."""

ROUTES = {
    "vllm": "/v1/completions",
    "sglang": "/generate",
    "llama.cpp": "/completion",
    "llama-cpp-python": "/v1/completions",
}
"""The route each engine generates on (SGLang's native one: its Model Gateway forwards it
as is, while the gateway refuses ``/v1/completions`` without a ``model``)."""

GBNF = Callable[[str], str]
"""A JSON-schema-text to GBNF converter (llama-cpp-python's ``json_schema_to_gbnf``)."""


def gbnf_converter() -> GBNF:
    """llama-cpp-python's JSON-schema-to-GBNF converter, imported on first use.

    Raises:
        K2ConfigError: llama-cpp-python is not installed.
    """
    try:
        from llama_cpp.llama_grammar import json_schema_to_gbnf
    except ImportError as exc:
        raise K2ConfigError(
            "engine='llama-cpp-python' takes constraints only as a GBNF grammar, which "
            "ChatK2 converts from the JSON schema on the client with llama-cpp-python's "
            "json_schema_to_gbnf: pip install 'langchain-k2[local]' (or llama-cpp-python) "
            "in this process."
        ) from exc
    convert: GBNF = json_schema_to_gbnf
    return convert


def _engine(engine: str) -> str:
    if engine not in ENGINES:
        raise K2ConfigError(f"engine={engine!r} is not one of {ENGINES}.")
    return engine


def _constraint(engine: str, grammar: Mapping[str, Any], gbnf: GBNF | None) -> dict[str, Any]:
    """The request fields carrying ``grammar`` (TGI's shape) for ``engine``."""
    kind, value = grammar.get("type"), grammar.get("value")
    label = LABELS[engine]
    if kind == "json":
        if engine == "vllm":
            return {"structured_outputs": {"json": value}}
        if engine == "sglang":
            return {"json_schema": json.dumps(value)}
        if engine == "llama.cpp":
            return {"json_schema": value}
        convert = gbnf or gbnf_converter()
        return {"grammar": convert(json.dumps(value))}
    if kind == "regex":
        if engine == "vllm":
            return {"structured_outputs": {"regex": value}}
        if engine == "sglang":
            return {"regex": value}
    raise K2ConfigError(
        f"{label} cannot take a {kind!r} grammar (ChatK2 sends JSON-schema constraints to "
        f"every engine, regex ones to vLLM and SGLang only): pass a JSON schema, "
        "or no grammar."
    )


def request_body(
    engine: str,
    prompt: str,
    params: GenerationParams,
    *,
    stream: bool,
    gbnf: GBNF | None = None,
) -> dict[str, Any]:
    """The JSON body POSTed to ``ROUTES[engine]``.

    ``gbnf`` converts a JSON schema to GBNF for llama-cpp-python (default: its own
    converter, imported when first needed).

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
    """
    _engine(engine)
    constraint = {} if params.grammar is None else _constraint(engine, params.grammar, gbnf)
    if engine == "sglang":
        if params.seed is not None:
            raise K2ConfigError(
                "seed= cannot be sent to SGLang: its /generate sampling parameters have no "
                "per-request seed. Unset seed (or start SGLang with --random-seed)."
            )
        sampling: dict[str, Any] = {"max_new_tokens": params.max_new_tokens}
        sampling.update(_sampling(params, repetition="repetition_penalty"))
        sampling["skip_special_tokens"] = False
        sampling["spaces_between_special_tokens"] = False
        sampling.update(constraint)
        return {"text": prompt, "sampling_params": sampling, "stream": stream}
    limit = "n_predict" if engine == "llama.cpp" else "max_tokens"
    repetition = "repetition_penalty" if engine == "vllm" else "repeat_penalty"
    body: dict[str, Any] = {"prompt": prompt, limit: params.max_new_tokens}
    body.update(_sampling(params, repetition=repetition))
    if params.seed is not None:
        body["seed"] = params.seed
    if engine == "vllm":
        body["skip_special_tokens"] = False
        body["spaces_between_special_tokens"] = False
        body["include_stop_str_in_output"] = False
    body.update(constraint)
    body["stream"] = stream
    if stream and engine == "vllm":
        body["stream_options"] = {"include_usage": True}
    return body


def _sampling(params: GenerationParams, *, repetition: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if params.temperature is not None:
        fields["temperature"] = params.temperature
    if params.top_p is not None:
        fields["top_p"] = params.top_p
    if params.top_k is not None:
        fields["top_k"] = params.top_k
    if params.repetition_penalty is not None:
        fields[repetition] = params.repetition_penalty
    if params.stop:
        fields["stop"] = list(params.stop)
    return fields


# ------------------------------------------------------------------ answers


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _not_engine(engine: str, url: str, what: str) -> K2BackendError:
    label = LABELS[engine]
    return K2BackendError(
        f"The server at {url} answered {what}, which is not a {label} answer; check "
        f"endpoint_url and engine= (engine={engine!r} was used)."
    )


def _finish(engine: str, doc: Mapping[str, Any]) -> str | None:
    """TGI's word for why a choice (or SGLang meta_info, llama-server answer) stopped."""
    if engine == "sglang":
        reason = doc.get("finish_reason")
        if not isinstance(reason, Mapping):
            return None
        kind, matched = reason.get("type"), reason.get("matched")
        if kind == "length":
            return "length"
        if kind == "stop":
            return "stop_sequence" if isinstance(matched, str) else "eos_token"
        return str(kind) if kind is not None else None
    if engine == "llama.cpp":
        if not doc.get("stop"):
            return None
        stop_type = doc.get("stop_type")
        return {"eos": "eos_token", "word": "stop_sequence", "limit": "length"}.get(
            str(stop_type), "eos_token"
        )
    reason = doc.get("finish_reason")
    if reason is None:
        return None
    if reason == "stop":
        return "stop_sequence" if isinstance(doc.get("stop_reason"), str) else "eos_token"
    return str(reason)


def _aborted(engine: str, url: str, reason: str, in_stream: bool) -> K2BackendError:
    said = " in the stream" if in_stream else ""
    return K2GenerationError(
        f"{LABELS[engine]} at {url} aborted the generation{said} (finish reason {reason!r}).",
        error_type=reason,
    )


def answer_events(engine: str, doc: Any, url: str) -> list[GenerationEvent]:
    """The events of a non-streamed answer: the whole text, then the `FinalEvent`.

    Example:
        >>> doc = {"choices": [{"index": 0, "text": "Hi!", "finish_reason": "stop",
        ...        "stop_reason": None}], "usage": {"prompt_tokens": 7,
        ...        "completion_tokens": 3, "total_tokens": 10}}
        >>> answer_events("vllm", doc, "http://vllm")  # doctest: +NORMALIZE_WHITESPACE
        [TokenEvent(text='Hi!', special=False),
         FinalEvent(finish_reason='eos_token', input_tokens=7, output_tokens=3, seed=None)]
    """
    if not isinstance(doc, dict):
        raise _not_engine(engine, url, repr(doc)[:200])
    if "error" in doc or doc.get("object") == "error":
        message, kind = _error_fields(doc)
        raise error_from(engine, _error_code(doc), message, kind, url)
    if engine == "sglang":
        text, meta = doc.get("text"), doc.get("meta_info")
        if not isinstance(text, str) or not isinstance(meta, dict):
            raise _not_engine(engine, url, "without text and meta_info")
        counts = meta.get("prompt_tokens"), meta.get("completion_tokens")
        finish = _finish(engine, meta)
    elif engine == "llama.cpp":
        text = doc.get("content")
        if not isinstance(text, str):
            raise _not_engine(engine, url, "without content")
        counts = doc.get("tokens_evaluated"), doc.get("tokens_predicted")
        finish = _finish(engine, doc)
    else:
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _not_engine(engine, url, "without choices")
        text = choices[0].get("text")
        if not isinstance(text, str):
            raise _not_engine(engine, url, "a choice without text")
        usage: dict[str, Any] = doc["usage"] if isinstance(doc.get("usage"), dict) else {}
        counts = usage.get("prompt_tokens"), usage.get("completion_tokens")
        finish = _finish(engine, choices[0])
    if finish == "abort":
        raise _aborted(engine, url, finish, in_stream=False)
    events: list[GenerationEvent] = [TokenEvent(text)] if text else []
    events.append(FinalEvent(finish, _int_or_none(counts[0]), _int_or_none(counts[1])))
    return events


class StreamDecoder:
    """A streamed answer's lines in, its events out (sans I/O), for one engine.

    Text deltas become `TokenEvent` values (SGLang's cumulative text is cut to what is
    new); the finish reason and usage become one `FinalEvent`, sent when the stream
    ends (``[DONE]``, or the body's end). An error event raises its K2 error; a stream
    that ends before its finish reason raises a retryable `K2UnavailableError`.

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

    def __init__(self, engine: str, url: str) -> None:
        self.engine = _engine(engine)
        self._url = url
        self._sse = SSEDecoder()
        self._seen = ""  # SGLang: the cumulative text so far
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
                    f"The stream from {LABELS[self.engine]} at {self._url} ended before its "
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
            raise _not_engine(self.engine, self._url, f"the stream event {data[:200]!r}") from exc
        if not isinstance(doc, dict):
            raise _not_engine(self.engine, self._url, f"the stream event {data[:200]!r}")
        if "error" in doc or doc.get("object") == "error":
            message, kind = _error_fields(doc)
            code = _error_code(doc)
            raise error_from(self.engine, code, message, kind, self._url, in_stream=True)
        text, done = self._read(doc)
        if self._finish == "abort":
            raise _aborted(self.engine, self._url, self._finish, in_stream=True)
        events: list[GenerationEvent] = [TokenEvent(text)] if text else []
        if done:
            events.append(self._final())
        return events

    def _read(self, doc: dict[str, Any]) -> tuple[str, bool]:
        """The new text of one event, and whether the stream's final event is due now."""
        engine = self.engine
        if engine == "sglang":
            text, meta = doc.get("text"), doc.get("meta_info")
            if not isinstance(text, str) or not isinstance(meta, dict):
                raise _not_engine(engine, self._url, "a stream event without text")
            if not text.startswith(self._seen):
                raise _not_engine(engine, self._url, "cumulative text that went back")
            delta, self._seen = text[len(self._seen) :], text
            self._counts = (
                _int_or_none(meta.get("prompt_tokens")),
                _int_or_none(meta.get("completion_tokens")),
            )
            self._finish = _finish(engine, meta) or self._finish
            return delta, False  # the counts may still grow: final at [DONE] or the end
        if engine == "llama.cpp":
            text = doc.get("content")
            if not isinstance(text, str):
                raise _not_engine(engine, self._url, "a stream event without content")
            finish = _finish(engine, doc)
            if finish is None:
                return text, False
            self._finish = finish
            self._counts = (
                _int_or_none(doc.get("tokens_evaluated")),
                _int_or_none(doc.get("tokens_predicted")),
            )
            return text, True  # llama-server sends no [DONE] on /completion
        usage = doc.get("usage")
        if isinstance(usage, dict):
            self._counts = (
                _int_or_none(usage.get("prompt_tokens")),
                _int_or_none(usage.get("completion_tokens")),
            )
        choices = doc.get("choices")
        if not isinstance(choices, list):
            raise _not_engine(engine, self._url, "a stream event without choices")
        if not choices:  # vLLM's usage chunk
            return "", False
        choice = choices[0]
        text = choice.get("text") if isinstance(choice, dict) else None
        if not isinstance(text, str):
            raise _not_engine(engine, self._url, "a choice without text")
        self._finish = _finish(engine, choice) or self._finish
        return text, False


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


GATEWAY_UPSTREAM_CODES = frozenset({"call_upstream_request_error"})
"""Error codes of the SGLang Model Gateway's 500 when it could not reach a worker (measured
with sglang-router 0.3.2: a stopped worker, after the gateway's own retries): nothing was
generated, so the request is retried like a 503."""


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


def _hint(message: str) -> str:
    lowered = message.lower()
    if "context length" in lowered or "context window" in lowered or "too long" in lowered:
        return (
            "shorten the conversation, lower max_new_tokens, or serve a longer context "
            "(vLLM --max-model-len, SGLang --context-length, llama.cpp --ctx-size)"
        )
    if "temperature" in lowered:
        return "use temperature=0 for greedy decoding"
    if "top_p" in lowered:
        return "top_p must be in (0, 1]"
    if "model" in lowered:
        return "the server serves another model name; ChatK2 sends none to vLLM"
    return "check the request parameters"


def error_from(
    engine: str,
    status: int | None,
    message: str,
    error_type: str | None,
    url: str,
    *,
    retry_after_s: float | None = None,
    in_stream: bool = False,
) -> K2BackendError:
    """The K2 error for a failed request: an HTTP status, or an error event in a stream.

    Example:
        >>> err = error_from("vllm", 400, "This model's maximum context length is 4096 "
        ...                  "tokens", "BadRequestError", "http://vllm")
        >>> type(err).__name__, err.status, "--max-model-len" in str(err)
        ('K2ValidationError', 400, True)
        >>> type(error_from("sglang", 503, "loading", None, "http://s")).__name__
        'K2UnavailableError'
        >>> type(error_from("sglang", 500, "error sending request for url (http://w/generate)",
        ...                 "call_upstream_request_error", "http://gateway")).__name__
        'K2UnavailableError'
    """
    label = LABELS[engine]
    first = message.splitlines()[0].strip().rstrip(".") if message.strip() else ""
    detail = first or (f"HTTP {status}" if status is not None else "no message")
    where = f"{label} at {url}"
    said = " in the stream" if in_stream else ""
    lowered = message.lower()
    grammar_words = ("xgrammar", "json schema into a grammar", "grammar", "json_schema")
    if status in {400, 422} and any(word in lowered for word in grammar_words):
        return K2GrammarUnsupportedError(
            f"{where} could not compile the constraint ({detail}); ChatK2 falls back to "
            "instructions and validates the output on the client.",
            status=status,
            error_type=error_type,
        )
    if status in {400, 422}:
        return K2ValidationError(
            f"{where} rejected the request{said}: {message.strip()} -- {_hint(message)}.",
            status=status,
            error_type=error_type,
        )
    if status == 429:
        return K2OverloadedError(
            f"{where} is overloaded (429){said}: {detail}. Retried with backoff up to "
            "max_retries; raise max_retries or add replicas.",
            status=429,
            error_type=error_type,
            retry_after=retry_after_s,
        )
    if status is not None and status >= 500 and error_type in GATEWAY_UPSTREAM_CODES:
        return K2UnavailableError(
            f"{where} could not reach a worker ({status} {error_type}): {detail}. The "
            "gateway retried it; retried with backoff (its health checks take a stopped "
            "worker out of rotation).",
            status=status,
            error_type=error_type,
            retry_after=retry_after_s,
        )
    if status in {502, 503, 504}:
        return K2UnavailableError(
            f"{where} is unavailable ({status}): {detail}. It may still be loading "
            "the model; retried with backoff.",
            status=status,
            error_type=error_type,
            retry_after=retry_after_s,
        )
    if status in {401, 403}:
        return K2AuthenticationError(
            f"{where} refused the credentials ({status}): set hf_token (the bearer token, "
            "e.g. vLLM's --api-key) to a token that may use this endpoint.",
            status=status,
        )
    if status == 404:
        return K2NotFoundError(
            f"No {label} route at {url} (404: {detail}): endpoint_url must be the "
            f"server's base URL and engine= must name the engine it runs (now {engine!r}).",
            status=404,
        )
    if status is None:
        return K2GenerationError(
            f"Generation failed on {where}{said}: {detail}.", error_type=error_type
        )
    return K2BackendError(
        f"{where} failed ({status}): {detail}.", status=status, error_type=error_type
    )
