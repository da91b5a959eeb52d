"""A loopback HTTP server that speaks text-generation-inference 3.3.6's protocol, for tests.

Run: `python -m tests.support.fake_engine.server --port 0 [--host 127.0.0.1]`; it prints one
line `LISTENING <port>` on stdout when ready and binds loopback addresses only.

Flows in: TGI requests (POST `/`, `/generate`, `/generate_stream`, `/tokenize`,
`/v1/chat/completions`; GET `/info`, `/health`, `/metrics`) and control calls under
`/_control/` (script replies, set the default reply, configure, read the request log, reset).
Flows out: TGI's JSON documents and SSE streams, byte for byte as TGI frames them (compact JSON,
`data:` without a space, a blank line between events, no `[DONE]` on the generate routes), TGI's
error bodies and statuses, and the scripted faults (HTTP errors, in-stream error events, TCP
resets, cut streams, hangs). The TGI logic lives in `protocol.py`, the state in `state.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from . import bench, echo, responder
from .protocol import (
    STATUS_BY_ERROR_TYPE,
    DeserializeError,
    GenerateRequest,
    Generation,
    Params,
    ReplySpec,
    SpecError,
    TGIError,
    Valid,
    dumps,
    generate,
    generate_response,
    parse_params,
    parse_request,
    precheck,
    sse,
    stream_events,
    validate,
)
from .state import ConfigError, State

STATE_KEY: web.AppKey[State] = web.AppKey("state", State)
CLOSING_KEY: web.AppKey[asyncio.Event] = web.AppKey("closing", asyncio.Event)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Respond = Callable[[ReplySpec, Valid, Generation, dict[str, str]], Awaitable[web.StreamResponse]]

_DEFAULT_MESSAGES = {
    "generation": "Request failed during generation: fake TGI scripted error",
    "overloaded": "Model is overloaded",
    "validation": "Input validation error: fake TGI scripted error",
    "incomplete_generation": "Incomplete generation",
}
#: The `error_type` a scripted HTTP error carries by default: TGI's for TGI's statuses, none
#: (a bare `{"error"}` body, as from a proxy) for the others.
_ERROR_TYPE_BY_STATUS = {status: kind for kind, status in STATUS_BY_ERROR_TYPE.items()}
_ERROR_TYPE_BY_STATUS[422] = "validation"  # not template_error / tool_error


class _AbortedError(Exception):
    """The connection was aborted on purpose; nothing more is to be written."""


# --------------------------------------------------------------------------- small helpers


def _state(request: web.Request) -> State:
    return request.app[STATE_KEY]


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=dumps(doc).encode(), status=status, headers=headers, content_type="application/json"
    )


def _error(err: TGIError, headers: dict[str, str] | None = None) -> web.Response:
    return _json(err.body(), status=err.status, headers=headers)


def _abort(request: web.Request, mode: str) -> None:
    """Abort the TCP connection: `reset` sends a RST (SO_LINGER 0), `close` a plain FIN."""
    transport = request.transport
    if transport is None:
        return
    if mode == "reset":
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


def _spec_error(spec: ReplySpec) -> TGIError:
    kind = spec.error_type or "generation"
    message = spec.error or _DEFAULT_MESSAGES.get(kind, f"fake TGI scripted {kind} error")
    return TGIError(STATUS_BY_ERROR_TYPE.get(kind, 500), message, kind)


async def _sleep(request: web.Request, seconds: float) -> None:
    """Sleep, but wake early when the server shuts down."""
    if seconds > 0:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(request.app[CLOSING_KEY].wait(), timeout=seconds)


async def _read_body(request: web.Request, entry: dict[str, Any]) -> Any:
    """Read a JSON body like axum's `Json` extractor (415 / 400 / parsed value)."""
    raw = await request.read()
    text = raw.decode("utf-8", errors="replace")
    entry["body_text"] = text
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = ctype == "application/json" or (
        ctype.startswith("application/") and ctype.endswith("+json")
    )
    if not is_json:
        raise web.HTTPUnsupportedMediaType(
            text="Expected request with `Content-Type: application/json`"
        )
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"Failed to parse the request body as JSON: {exc}") from exc
    entry["body"] = body
    return body


def _deserialize_failure(exc: DeserializeError) -> web.Response:
    return web.Response(
        status=422,
        text=f"Failed to deserialize the JSON body into the target type: {exc}",
        content_type="text/plain",
    )


# --------------------------------------------------------------------------- faults


ErrorBody = Callable[[int, str, "str | None"], Any]
"""An engine's error document for (status, message, error type); TGI's by default."""


def _tgi_error_body(status: int, message: str, kind: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if kind is not None:
        body["error_type"] = kind
    return body


async def _serve_fault(
    request: web.Request,
    spec: ReplySpec,
    entry: dict[str, Any],
    body_of: ErrorBody = _tgi_error_body,
) -> web.StreamResponse:
    """Answer with a network/proxy fault: HTTP error, reset before headers, or a hang."""
    state = _state(request)
    await _sleep(request, state.config["latency_s"] + spec.delay_s)
    if spec.reset_before_headers:
        entry["fault"] = "reset_before_headers"
        _abort(request, spec.abort)
        raise _AbortedError
    if spec.hang:
        entry["fault"] = "hang"
        deadline = time.monotonic() + state.config["hang_cap_s"]
        closing = request.app[CLOSING_KEY]
        while time.monotonic() < deadline and not closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                raise _AbortedError
            await asyncio.sleep(0.02)
        _abort(request, "close")
        raise _AbortedError
    status = spec.status or 500
    kind = spec.raw.get("error_type", _ERROR_TYPE_BY_STATUS.get(status))
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = f"HTTP {status}"
    message = spec.error or _DEFAULT_MESSAGES.get(kind or "", phrase)
    body = body_of(status, message, kind)
    headers = {"Retry-After": spec.retry_after} if spec.retry_after is not None else None
    entry["status"] = status
    return _json(body, status=status, headers=headers)


# --------------------------------------------------------------------------- generation


def _compute_headers(state: State, req_inputs: str) -> dict[str, str]:
    return {
        "x-compute-type": state.config["compute_type"],
        "x-compute-characters": str(len(req_inputs)),
    }


async def _answer_json(
    request: web.Request,
    *,
    spec: ReplySpec,
    gen: Generation,
    doc: Any,
    headers: dict[str, str],
    entry: dict[str, Any],
) -> web.StreamResponse:
    """Non-stream answer: waits for the "generation", then sends the JSON (or the fault)."""
    n_tokens = len(gen.tokens)
    if spec.error_event_after is not None:
        await _sleep(request, spec.token_delay_s * min(spec.error_event_after, n_tokens))
        err = _spec_error(spec)
        entry["status"] = err.status
        entry["fault"] = "error"
        return _error(err)
    await _sleep(request, spec.token_delay_s * n_tokens)
    body = dumps(doc).encode()
    if spec.cut_after is not None:
        entry["status"] = 200
        entry["fault"] = "cut"
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_type = "application/json"
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        await asyncio.sleep(0.05)
        _abort(request, spec.abort)
        raise _AbortedError
    entry["status"] = 200
    return web.Response(body=body, status=200, headers=headers, content_type="application/json")


async def _open_sse(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    sse_headers = {**headers, "cache-control": "no-cache", "x-accel-buffering": "no"}
    resp = web.StreamResponse(status=200, headers=sse_headers)
    resp.content_type = "text/event-stream"
    await resp.prepare(request)
    return resp


async def _stream_error(
    request: web.Request, err: TGIError, headers: dict[str, str]
) -> web.StreamResponse:
    """TGI's answer to a stream that fails before generating: HTTP 200, one error event."""
    resp = await _open_sse(request, headers)
    await resp.write(sse(err.body()))
    await resp.write_eof()
    return resp


async def _answer_stream(
    request: web.Request,
    *,
    spec: ReplySpec,
    docs: list[Any],
    headers: dict[str, str],
    entry: dict[str, Any],
    done_marker: bool = False,
    frame: Callable[[Any], bytes] = sse,
    error_doc: Callable[[TGIError], Any] = TGIError.body,
    done_after_error: bool = False,
) -> web.StreamResponse:
    """Stream answer: one SSE event per document, with the scripted in-stream faults.

    ``frame`` writes one event (TGI's `sse` by default) and ``error_doc`` is the document
    of a scripted in-stream error (TGI's `{"error", "error_type"}` by default): the other
    engines' fakes (`engines.py`) pass their own.
    """
    entry["status"] = 200
    resp = await _open_sse(request, headers)
    error_at = None
    if spec.error_event_after is not None:
        error_at = min(spec.error_event_after, max(len(docs) - 1, 0))
    try:
        for i, doc in enumerate(docs):
            if error_at == i:
                entry["fault"] = "error_event"
                await resp.write(frame(error_doc(_spec_error(spec))))
                if done_after_error:  # vLLM and SGLang end even a failed stream so
                    await resp.write(frame("[DONE]"))
                await resp.write_eof()
                return resp
            if spec.cut_after == i:
                break
            if spec.end_after == i:
                entry["fault"] = "ended_early"
                await resp.write_eof()
                return resp
            if i and spec.token_delay_s:
                await _sleep(request, spec.token_delay_s)
            if not i:  # bench: first-token delay and the first event's time, see bench.py
                await _sleep(request, bench.first_token_delay(spec))
                entry["first_event_mono"] = time.monotonic()
            await resp.write(frame(doc))
        if spec.cut_after is not None:
            entry["fault"] = "cut"
            await asyncio.sleep(0.05)
            _abort(request, spec.abort)
            raise _AbortedError
        if done_marker:
            await resp.write(frame("[DONE]") if frame is not sse else b"data: [DONE]\n\n")
        await resp.write_eof()
    except ConnectionError as exc:
        entry["fault"] = entry["fault"] or "client_gone"
        raise _AbortedError from exc
    return resp


async def _run_generation(
    request: web.Request,
    entry: dict[str, Any],
    req: GenerateRequest,
    stream: bool,
    respond: Respond,
    *,
    chat_tools: bool = False,
) -> web.StreamResponse:
    """Validation, concurrency limit, reply selection, then `respond` (shared by all routes)."""
    state = _state(request)
    headers = _compute_headers(state, req.inputs)
    try:
        precheck(req, state.config, stream)
        _check_permit(state)
        valid = validate(req, state.config, state.tokenizer)
    except TGIError as err:
        entry["status"] = 200 if stream else err.status
        entry["fault"] = err.error_type
        return await _stream_error(request, err, headers) if stream else _error(err)
    chosen = state.take()
    if chosen is None:
        entry["status"] = 500
        return _error(TGIError(500, "fake TGI: no scripted reply left", "incomplete_generation"))
    spec, source = chosen
    entry["reply"], entry["reply_source"] = spec.raw, source
    # bench: a `tool_call` spec becomes this request's reply (maybe corrupted), see bench.py
    constrained = chat_tools or req.params.grammar is not None
    spec, decided = bench.materialize(spec, req.inputs, constrained)
    if decided is not None:
        entry["bench"] = decided
    spec = echo.materialize(spec, req.inputs)  # echo: a reply from the prompt, see echo.py
    spec = responder.materialize(spec, req.inputs, entry["body"])  # responder: see responder.py
    state.in_flight += 1
    try:
        await _sleep(request, state.config["latency_s"] + spec.delay_s)
        gen = generate(spec, valid, state.tokenizer, state.config["eos_token"])
        return await respond(spec, valid, gen, headers)
    finally:
        state.in_flight -= 1


def _check_permit(state: State) -> None:
    """TGI's concurrency semaphore: past `max_concurrent_requests`, "Model is overloaded"."""
    if state.in_flight >= state.config["max_concurrent_requests"]:
        raise TGIError(429, "Model is overloaded", "overloaded")


async def _generate_route(request: web.Request, route: str) -> web.StreamResponse:
    entry = _record(request)
    return await _guard(request, entry, lambda: _generate_inner(request, entry, route))


async def _generate_inner(
    request: web.Request, entry: dict[str, Any], route: str
) -> web.StreamResponse:
    state = _state(request)
    body = await _read_body(request, entry)
    fault = state.next_fault()
    if fault is not None:
        entry["reply"], entry["reply_source"] = fault[0].raw, fault[1]
        return await _serve_fault(request, fault[0], entry)
    compat = route == "compat"
    try:
        req = parse_request(body, compat=compat)
    except DeserializeError as exc:
        entry["status"] = 422
        return _deserialize_failure(exc)
    stream = req.stream if compat else route == "generate_stream"
    if compat and req.params.return_full_text is None:
        req.params.return_full_text = state.config["compat_return_full_text"]

    async def respond(
        spec: ReplySpec, valid: Valid, gen: Generation, headers: dict[str, str]
    ) -> web.StreamResponse:
        if stream:
            docs = stream_events(gen, valid)
            return await _answer_stream(request, spec=spec, docs=docs, headers=headers, entry=entry)
        doc = generate_response(gen, valid)
        if spec.end_after is not None:
            entry["fault"] = "no_details"
            doc = {**doc, "details": None}
        if state.config["timing_headers"]:  # a proxy may strip them: configure false
            headers = {**headers, **_timing_headers(gen)}
        return await _answer_json(
            request, spec=spec, gen=gen, doc=[doc] if compat else doc, headers=headers, entry=entry
        )

    return await _run_generation(request, entry, req, stream, respond)


def _timing_headers(gen: Generation) -> dict[str, str]:
    return {
        "x-compute-time": "0.001",
        "x-total-time": "1",
        "x-validation-time": "0",
        "x-queue-time": "0",
        "x-inference-time": "1",
        "x-time-per-token": "0",
        "x-prompt-tokens": str(gen.input_length),
        "x-generated-tokens": str(len(gen.tokens)),
    }


def _record(request: web.Request) -> dict[str, Any]:
    """Log the request in the state (headers lower-cased); returns the log entry."""
    return _state(request).record(
        method=request.method,
        path=request.path,
        query=request.query_string,
        headers={k.lower(): v for k, v in request.headers.items()},
    )


async def _guard(
    request: web.Request, entry: dict[str, Any], inner: Callable[[], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn deliberate aborts into a response aiohttp will not try to send."""
    try:
        return await inner()
    except _AbortedError:
        entry["fault"] = entry["fault"] or "aborted"
        transport = request.transport
        if transport is not None and not transport.is_closing():
            _abort(request, "reset")
        return web.Response(status=204)
    except web.HTTPException as exc:
        entry["status"] = exc.status
        raise


# --------------------------------------------------------------------------- chat completions


def _render_chat(messages: Any) -> str:
    """Render OpenAI messages naively: `role: content` lines, then `assistant:`."""
    if not isinstance(messages, list) or not messages:
        raise DeserializeError("messages: invalid type, expected a non-empty sequence")
    lines = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise DeserializeError(f"messages[{i}]: missing field `role`")
        content = message.get("content") or ""
        if isinstance(content, list):
            content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
        lines.append(f"{message['role']}: {content}\n")
    return "".join(lines) + "assistant:"


def _chat_params(body: dict[str, Any]) -> Params:
    raw: dict[str, Any] = {}
    for src, dst in (("max_tokens", "max_new_tokens"), ("top_p", "top_p"), ("seed", "seed")):
        if body.get(src) is not None:
            raw[dst] = body[src]
    if body.get("frequency_penalty") is not None:
        raw["frequency_penalty"] = body["frequency_penalty"]
    temperature = body.get("temperature")
    raw["do_sample"] = not (temperature is not None and temperature == 0)
    if temperature is not None and temperature != 0:
        raw["temperature"] = temperature
    stop = body.get("stop")
    if stop is not None:
        raw["stop"] = [stop] if isinstance(stop, str) else stop
    raw["details"] = True
    return parse_params(raw)


def _chat_docs(
    state: State, gen: Generation, stream: bool, include_usage: bool
) -> list[dict[str, Any]]:
    cfg = state.config
    base = {
        "id": "",
        "created": int(time.time()),
        "model": cfg["model_id"],
        "system_fingerprint": f"{cfg['version']}-{cfg['docker_label'] or 'native'}",
    }
    finish = "stop" if gen.finish_reason == "eos_token" else gen.finish_reason
    usage = {
        "prompt_tokens": gen.input_length,
        "completion_tokens": len(gen.tokens),
        "total_tokens": gen.input_length + len(gen.tokens),
    }
    if not stream:
        message = {"role": "assistant", "content": gen.generated_text}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return [{"object": "chat.completion", **base, "choices": [choice], "usage": usage}]
    docs = []
    for i, token in enumerate(gen.tokens):
        delta = {"role": "assistant", "content": "" if token["special"] else token["text"]}
        last = i == len(gen.tokens) - 1
        reason = finish if last else None
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        docs.append({"object": "chat.completion.chunk", **base, "choices": [choice], "usage": None})
    if include_usage:
        docs.append({"object": "chat.completion.chunk", **base, "choices": [], "usage": usage})
    return docs


async def _chat_route(request: web.Request) -> web.StreamResponse:
    entry = _record(request)
    return await _guard(request, entry, lambda: _chat_inner(request, entry))


async def _chat_inner(request: web.Request, entry: dict[str, Any]) -> web.StreamResponse:
    state = _state(request)
    body = await _read_body(request, entry)
    fault = state.next_fault()
    if fault is not None:
        entry["reply"], entry["reply_source"] = fault[0].raw, fault[1]
        return await _serve_fault(request, fault[0], entry)
    if not isinstance(body, dict):
        entry["status"] = 422
        return _deserialize_failure(DeserializeError("invalid type, expected struct ChatRequest"))
    try:
        prompt = bench.chat_prompt(_render_chat(body.get("messages")), body)  # bench: tools
        params = _chat_params(body)
    except DeserializeError as exc:
        entry["status"] = 422
        return _deserialize_failure(exc)
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    req = GenerateRequest(inputs=prompt, params=params)

    async def respond(
        spec: ReplySpec, valid: Valid, gen: Generation, headers: dict[str, str]
    ) -> web.StreamResponse:
        docs = _chat_docs(state, gen, stream, include_usage)
        if stream:
            return await _answer_stream(
                request, spec=spec, docs=docs, headers=headers, entry=entry, done_marker=True
            )
        headers = {**headers, **_timing_headers(gen)}
        bench.chat_tool_calls(docs[0], body)  # bench: OpenAI tool_calls, see bench.py
        return await _answer_json(
            request, spec=spec, gen=gen, doc=docs[0], headers=headers, entry=entry
        )

    chat_tools = bench.chat_has_tools(body)
    return await _run_generation(request, entry, req, stream, respond, chat_tools=chat_tools)


# --------------------------------------------------------------------------- simple routes


async def _info(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    _record(request)["status"] = 200
    return _json(state.info())


async def _health(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    entry = _record(request)
    if state.config["healthy"]:
        entry["status"] = 200
        return web.Response(status=200)
    entry["status"] = 503
    return _error(TGIError(503, "unhealthy", "healthcheck"))


async def _tokenize(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    entry = _record(request)

    async def inner() -> web.StreamResponse:
        body = await _read_body(request, entry)
        try:
            req = parse_request(body, compat=False)
        except DeserializeError as exc:
            entry["status"] = 422
            return _deserialize_failure(exc)
        tokens = state.tokenizer.encode(req.inputs)
        entry["status"] = 200
        docs = [{"id": t.id, "text": t.text, "start": t.start, "stop": t.stop} for t in tokens]
        return _json(docs)

    return await _guard(request, entry, inner)


async def _metrics(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    generation_paths = {"/", "/generate", "/generate_stream", "/v1/chat/completions"}
    generations = [r for r in state.records if r["path"] in generation_paths]
    ok = sum(1 for r in generations if r["status"] == 200 and not r["fault"])
    lines = [
        "# HELP tgi_request_count Total number of requests",
        "# TYPE tgi_request_count counter",
        f"tgi_request_count {len(generations)}",
        "# HELP tgi_request_success Number of successful requests",
        "# TYPE tgi_request_success counter",
        f"tgi_request_success {ok}",
        "# TYPE tgi_queue_size gauge",
        f"tgi_queue_size {state.in_flight}",
        "",
    ]
    _record(request)["status"] = 200
    return web.Response(text="\n".join(lines), content_type="text/plain")


async def _unrouted(request: web.Request) -> web.StreamResponse:
    """Paths TGI does not serve: recorded, then axum's empty 404 (405 for a wrong method)."""
    entry = _record(request)
    known = {"/", "/generate", "/generate_stream", "/v1/chat/completions", "/tokenize"}
    known |= {"/info", "/health", "/metrics"}
    entry["status"] = 405 if request.path in known else 404
    return web.Response(status=entry["status"])


# --------------------------------------------------------------------------- control API


async def _control_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"control: bad JSON: {exc}") from exc


def _control_call(fn: Callable[[State, Any], Any]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        payload = await _control_json(request)
        try:
            result = fn(_state(request), payload)
        except (SpecError, ConfigError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(result)

    return handler


def _script(state: State, payload: Any) -> dict[str, Any]:
    replies = payload.get("replies") if isinstance(payload, dict) else payload
    if not isinstance(replies, list):
        raise TypeError("POST a JSON list of reply specs (or {'replies': [...]})")
    return {"pending": state.script(replies)}


def _default(state: State, payload: Any) -> dict[str, Any]:
    state.set_default(payload)
    return {"default": None if state.default is None else state.default.raw}


def _configure(state: State, payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise TypeError("POST a JSON object of config keys")
    return state.configure(payload)


def _reset(state: State, payload: Any) -> dict[str, Any]:
    state.reset()
    return {"ok": True}


async def _requests(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    path = request.query.get("path")
    records = [r for r in state.records if path is None or r["path"] == path]
    return web.json_response(records)


async def _control_state(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    return web.json_response(
        {
            "pending": len(state.queue),
            "default": None if state.default is None else state.default.raw,
            "config": state.config,
            "in_flight": state.in_flight,
        }
    )


# --------------------------------------------------------------------------- app and CLI


def build_app(state: State, engine: str = "tgi") -> web.Application:
    """The aiohttp application: the engine's routes plus `/_control/...`.

    ``engine`` is `tgi` (TGI's routes, below), one of `engines.ENGINES` (vLLM's or
    SGLang's routes, from `engines.py`) or of `llama.LLAMA_ENGINES` (llama-server's or
    llama-cpp-python's, from `llama.py`), over the same state and fault machinery.
    """
    app = web.Application(client_max_size=64 * 1024**2)
    app[STATE_KEY] = state
    app[CLOSING_KEY] = asyncio.Event()
    if engine != "tgi":
        from . import engines
        from . import server as imported  # noqa: PLW0406 -- itself again, as __main__

        app[imported.STATE_KEY] = state  # the keys the imported helpers look up
        app[imported.CLOSING_KEY] = app[CLOSING_KEY]

        from . import llama

        if engine in llama.LLAMA_ENGINES:
            llama.add_routes(app, engine)
        else:
            engines.add_routes(app, engine)
        _add_control_routes(app)
        unrouted = llama.unrouted if engine in llama.LLAMA_ENGINES else engines.unrouted
        app.router.add_route("*", r"/{tail:(?!_control/).*}", unrouted)
        return app
    app.router.add_post("/", lambda r: _generate_route(r, "compat"))
    app.router.add_post("/generate", lambda r: _generate_route(r, "generate"))
    app.router.add_post("/generate_stream", lambda r: _generate_route(r, "generate_stream"))
    app.router.add_post("/v1/chat/completions", _chat_route)
    app.router.add_post("/tokenize", _tokenize)
    app.router.add_get("/info", _info)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    _add_control_routes(app)
    app.router.add_route("*", r"/{tail:(?!_control/).*}", _unrouted)
    return app


def _add_control_routes(app: web.Application) -> None:
    app.router.add_post("/_control/script", _control_call(_script))
    app.router.add_post("/_control/default", _control_call(_default))
    app.router.add_post("/_control/config", _control_call(_configure))
    app.router.add_post("/_control/reset", _control_call(_reset))
    app.router.add_get("/_control/requests", _requests)
    app.router.add_get("/_control/state", _control_state)


def _loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tokenizer", default=None, help="a `tokenizers` JSON file")
    parser.add_argument("--config", default="{}", help="initial config, a JSON object")
    parser.add_argument("--disable-grammar-support", action="store_true")
    parser.add_argument(
        "--engine",
        default="tgi",
        help="tgi; vllm, sglang (engines.py); llama.cpp, llama-cpp-python (llama.py)",
    )
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace, state: State) -> None:
    app = build_app(state, args.engine)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    site = web.SockSite(runner, sock)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in ("SIGTERM", "SIGINT"):
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(getattr(__import__("signal"), sig), stop.set)
    if args.exit_on_stdin_eof:

        def watch_stdin() -> None:
            with contextlib.suppress(OSError, ValueError):
                while sys.stdin.buffer.read(4096):
                    pass
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, daemon=True).start()
    sys.stdout.write(f"LISTENING {sock.getsockname()[1]}\n")
    sys.stdout.flush()
    await stop.wait()
    app[CLOSING_KEY].set()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if not _loopback(args.host):
        sys.stderr.write(f"fake TGI binds loopback addresses only, not {args.host!r}\n")
        return 2
    try:
        config = json.loads(args.config)
        if args.disable_grammar_support:
            config["grammar_enabled"] = False
        state = State(config, args.tokenizer)
    except (ValueError, TypeError) as exc:
        sys.stderr.write(f"fake TGI: bad configuration: {exc}\n")
        return 2
    asyncio.run(_serve(args, state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
