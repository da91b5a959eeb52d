"""Fake vLLM and SGLang servers: their raw-completion and info routes over the fake TGI's state.

Run: `python -m tests.support.fake_engine.server --engine vllm|sglang --port 0`. The reply
queue, the default reply, the request log, the control API and every scripted fault
(`status`, `hang`, `reset_before_headers`, `error_event_after`, `cut_after`, `end_after`,
delays) are the fake TGI's own (`state.py`, `server.py`): one mechanism for all fakes.
What differs is only what the engines put on the wire (``shared/spec/engines.md``):

vLLM (`POST /v1/completions`, `GET /version`, `GET /v1/models`, `POST /tokenize`, `GET /health`,
plus TGI's OpenAI-style `POST /v1/chat/completions` for the benchmark's ChatOpenAI side):
  - `add_special_tokens` (default true) puts the tokenizer's BOS (config `bos_token`, none
    by default) before the prompt, on `/v1/completions` and `/tokenize` alike;
  - `max_tokens` missing or null means 16; `skip_special_tokens` and
    `spaces_between_special_tokens` default to true: special tokens are dropped from the text,
    and when kept, spaces are put around every added token (` <tool_call> {...}`);
  - a stop string or the EOS token that ends the text is not part of it
    (`include_stop_str_in_output` false); `finish_reason` `stop`/`length`, `stop_reason` the
    matched string;
  - `model`, when sent, must be the served model's id (404 "The model `x` does not exist."
    otherwise, as vLLM and routers in front of it answer);
  - unknown fields are ignored with 200 (e.g. the removed `guided_json`); validation errors
    are 400 with `{"error": {"message", "type", "param", "code"}}`; a prompt that alone
    fills `max_total_tokens` (its `max_model_len`) is 400 "...maximum context length...",
    while a prompt that fits with `max_tokens` over the window is answered 200, the
    completion cut to the room left (as vLLM 0.32 does); `stream_options` without `stream`
    is 400;
  - `structured_outputs` is honoured (the reply is taken as constrained); with the default
    backend vLLM falls back to another one for a schema xgrammar cannot compile, so no
    schema is refused here (the real server's 400s are tested in test_real_vllm.py);
  - streams: `data: {json}` per token, the finish reason on the last text chunk, a usage
    chunk with `"choices": []` when `stream_options.include_usage`, then `data: [DONE]`;
    a scripted in-stream error is `data: {"error": {...}}` followed by `[DONE]`.
SGLang (`POST /generate`, `GET /server_info`, `/get_server_info`, `/model_info`, `/v1/models`,
`/health`):
  - `sampling_params.max_new_tokens` defaults to 128; `skip_special_tokens` and
    `spaces_between_special_tokens` default to true as on vLLM; an unknown sampling
    parameter is a 400 (its `SamplingParams(**...)` refuses it);
  - errors are flat: `{"object": "error", "message", "type", "param", "code"}`;
  - streams are cumulative: each `data:` event repeats all text so far with `meta_info`
    (`finish_reason` `{"type": "stop"|"length", "matched"}`, `prompt_tokens`,
    `completion_tokens`), then `data: [DONE]`; an in-stream error is
    `data: {"error": {"message"}}`.
  - config `gateway: true` answers like the SGLang Model Gateway in front of it:
    `/server_info` and `/model_info` 404, `/get_server_info` gives the router's fields.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from . import bench, echo, responder
from .protocol import DeserializeError, Generation, ReplySpec, TGIError, Valid, dumps, generate
from .server import (
    _answer_json,
    _answer_stream,
    _chat_route,
    _guard,
    _json,
    _read_body,
    _record,
    _serve_fault,
    _sleep,
    _state,
)
from .tokenizer import Tok

ENGINES = ("vllm", "sglang")
VLLM_VERSION = "0.11.2"


class EngineError(Exception):
    """A request the engine refuses before generating (status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_TYPES = {400: "BadRequestError", 404: "NotFoundError", 429: "TooManyRequests"}


def _error_type(status: int) -> str:
    return _TYPES.get(status, "InternalServerError" if status >= 500 else "BadRequestError")


def vllm_error(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    """vLLM's `ErrorResponse`: nested under `error`."""
    fields = {"message": message, "type": kind or _error_type(status), "param": None}
    return {"error": {**fields, "code": status}}


def sglang_error(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    """SGLang's error body: flat."""
    kind = kind or _error_type(status)
    return {"object": "error", "message": message, "type": kind, "param": None, "code": status}


_ERROR_BODY = {"vllm": vllm_error, "sglang": sglang_error}


def frame(doc: Any) -> bytes:
    """One SSE event as vLLM and SGLang (FastAPI) write it: `data: ` with a space."""
    data = doc if isinstance(doc, str) else dumps(doc)
    return f"data: {data}\n\n".encode()


# --------------------------------------------------------------------------- requests


def _number(body: dict[str, Any], name: str, low: float | None = None) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EngineError(400, f"{name}: Input should be a valid number")
    if low is not None and value < low:
        raise EngineError(400, f"{name} must be at least {low}, got {value}.")
    return float(value)


def _stops(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise EngineError(400, "stop: Input should be a valid list of strings")


class Request:
    """What the engine understood of one completion request."""

    def __init__(self, engine: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise EngineError(400, "The request body must be a JSON object.")
        self.stream = bool(body.get("stream", False))
        self.engine = engine
        if engine == "vllm":
            prompt, fields, default_max = body.get("prompt"), body, 16
            if body.get("stream_options") is not None and not self.stream:
                raise EngineError(400, "Stream options can only be defined when `stream=True`.")
            options = body.get("stream_options") or {}
            self.include_usage = bool(options.get("include_usage", False))
            limit = body.get("max_tokens")
        else:
            prompt, default_max = body.get("text"), 128
            fields = body.get("sampling_params") or {}
            if not isinstance(fields, dict):
                raise EngineError(400, "sampling_params must be an object")
            unknown = set(fields) - _SGLANG_SAMPLING
            if unknown:
                name = sorted(unknown)[0]
                raise EngineError(
                    400, f"SamplingParams.__init__() got an unexpected keyword argument '{name}'"
                )
            self.include_usage = False
            limit = fields.get("max_new_tokens")
        if not isinstance(prompt, str):
            raise EngineError(400, "Either prompt or prompt_embeds must be provided.")
        self.prompt = prompt
        self.add_bos = engine == "vllm" and body.get("add_special_tokens", True) is not False
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise EngineError(400, "max_tokens: Input should be a valid integer")
        if limit is not None and limit < (0 if engine == "sglang" else 1):
            raise EngineError(400, f"max_tokens must be at least 1, got {limit}.")
        self.max_tokens = default_max if limit is None else limit
        self.temperature = _number(fields, "temperature", 0.0)
        top_p = _number(fields, "top_p")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise EngineError(400, f"top_p must be in (0, 1], got {top_p}.")
        self.stop = _stops(fields.get("stop"))
        self.skip_special = fields.get("skip_special_tokens", True) is not False
        self.spaces = fields.get("spaces_between_special_tokens", True) is not False
        seed = fields.get("seed")
        self.seed = seed if isinstance(seed, int) else 0
        constraint = fields.get("structured_outputs") if engine == "vllm" else None
        if engine == "sglang":
            constraint = _sglang_constraint(fields)
        self.constrained = constraint is not None


def _sglang_constraint(fields: dict[str, Any]) -> Any:
    """SGLang's ``json_schema`` or ``structural_tag`` (JSON strings), checked; else None."""
    for name in ("json_schema", "structural_tag"):
        constraint = fields.get(name)
        if constraint is None:
            continue
        if not isinstance(constraint, str):
            raise EngineError(400, f"{name} must be a string")
        try:
            json.loads(constraint)
        except ValueError as exc:
            raise EngineError(400, f"Failed to parse {name}: {exc}") from exc
        return constraint
    return None


_SGLANG_SAMPLING = {
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "stop",
    "stop_token_ids",
    "ignore_eos",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "no_stop_trim",
    "json_schema",
    "regex",
    "ebnf",
    "structural_tag",
    "n",
}


# --------------------------------------------------------------------------- output text


def pieces(gen: Generation, req: Request, eos: str) -> tuple[list[str], str, Any]:
    """Per-token texts as the engine decodes them, its finish reason and what matched.

    Special tokens are dropped unless `skip_special_tokens` is false; kept ones get spaces
    around them unless `spaces_between_special_tokens` is false; the EOS or stop string that
    ended the output is cut (vLLM's `include_stop_str_in_output` false, SGLang's stop trim).
    """
    tokens = list(gen.tokens)
    matched: Any = None
    reason = "length" if gen.finish_reason == "length" else "stop"
    if gen.finish_reason == "eos_token" and tokens and tokens[-1]["text"] == eos:
        matched = tokens.pop()["id"]
    texts: list[str] = []
    previous_special: bool | None = None
    for token in tokens:
        special = bool(token["special"])
        if special and req.skip_special:
            continue
        text = token["text"]
        if req.spaces and previous_special is not None and (special or previous_special):
            text = " " + text.lstrip(" ")
        texts.append(text)
        previous_special = special
    if gen.finish_reason == "stop_sequence":
        whole = "".join(texts)
        stop = next((s for s in req.stop if whole.endswith(s)), None)
        if stop is not None:
            matched = stop
            cut = len(stop)
            while cut and texts:  # drop the stop string's characters from the end
                last = texts.pop()
                if len(last) > cut:
                    texts.append(last[: len(last) - cut])
                    cut = 0
                else:
                    cut -= len(last)
    return texts, reason, matched


# --------------------------------------------------------------------------- documents


def _vllm_choice(text: str, finish: str | None, matched: Any) -> dict[str, Any]:
    return {
        "index": 0,
        "text": text,
        "logprobs": None,
        "finish_reason": finish,
        "stop_reason": matched if finish else None,
    }


def vllm_documents(
    texts: list[str], reason: str, matched: Any, gen: Generation, req: Request, *, model: str
) -> tuple[dict[str, Any], list[Any]]:
    """vLLM's whole answer and its stream's documents for one generation."""
    head = {"id": f"cmpl-{abs(hash(req.prompt)) % 10**8}", "object": "text_completion"}
    head |= {"created": int(time.time()), "model": model}
    usage = {
        "prompt_tokens": gen.input_length,
        "total_tokens": gen.input_length + len(gen.tokens),
        "completion_tokens": len(gen.tokens),
    }
    matched = matched if isinstance(matched, str) else None  # vLLM: null for EOS
    whole = {**head, "choices": [_vllm_choice("".join(texts), reason, matched)], "usage": usage}
    chunks: list[Any] = []
    for i, text in enumerate(texts or [""]):
        last = i == max(len(texts), 1) - 1
        choice = _vllm_choice(text, reason if last else None, matched)
        chunks.append({**head, "choices": [choice]})
    if req.include_usage:
        chunks.append({**head, "choices": [], "usage": usage})
    return whole, chunks


def _meta(gen: Generation, done: int, finish: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": "fake",
        "finish_reason": finish,
        "prompt_tokens": gen.input_length,
        "completion_tokens": done,
        "cached_tokens": 0,
    }


def sglang_documents(
    texts: list[str], reason: str, matched: Any, gen: Generation
) -> tuple[dict[str, Any], list[Any]]:
    """SGLang's native whole answer and its cumulative stream for one generation."""
    finish: dict[str, Any] = {"type": reason}
    if reason == "length":
        finish["length"] = len(gen.tokens)
    else:
        finish["matched"] = matched
    whole = {"text": "".join(texts), "meta_info": _meta(gen, len(gen.tokens), finish)}
    events: list[Any] = []
    so_far = ""
    for i, text in enumerate(texts or [""]):
        so_far += text
        last = i == max(len(texts), 1) - 1
        count = len(gen.tokens) if last else i + 1
        events.append({"text": so_far, "meta_info": _meta(gen, count, finish if last else None)})
    return whole, events


# --------------------------------------------------------------------------- routes


async def _completion(request: web.Request, engine: str) -> web.StreamResponse:
    entry = _record(request)
    return await _guard(request, entry, lambda: _completion_inner(request, entry, engine))


async def _completion_inner(
    request: web.Request, entry: dict[str, Any], engine: str
) -> web.StreamResponse:
    state = _state(request)
    body = await _read_body(request, entry)
    error_body = _ERROR_BODY[engine]
    fault = state.next_fault()
    if fault is not None:
        entry["reply"], entry["reply_source"] = fault[0].raw, fault[1]
        return await _serve_fault(request, fault[0], entry, body_of=error_body)
    try:
        req = Request(engine, body)
        _served_model(state, engine, body)
        valid = _valid(state, req)
    except EngineError as err:
        entry["status"] = err.status
        return _json(error_body(err.status, err.message), status=err.status)
    if req.max_tokens == 0:  # SGLang: prefill only (how a client counts a prompt's tokens)
        gen = Generation([], "length", "", None, valid.input_length, [])
        return await _respond(request, entry, engine, ReplySpec(), req, gen)
    spec = scripted_reply(state, entry, req, body)
    if spec is None:
        entry["status"] = 500
        return _json(error_body(500, "fake engine: no scripted reply left"), status=500)
    state.in_flight += 1
    try:
        await _sleep(request, state.config["latency_s"] + spec.delay_s)
        gen = generate(spec, valid, state.tokenizer, state.config["eos_token"])
        return await _respond(request, entry, engine, spec, req, gen)
    finally:
        state.in_flight -= 1


def _served_model(state: Any, engine: str, body: dict[str, Any]) -> None:
    """vLLM answers 404 to a ``model`` it does not serve (a router, to one no worker has)."""
    model = body.get("model")
    if engine == "vllm" and model is not None and model != state.config["model_id"]:
        raise EngineError(404, f"The model `{model}` does not exist.")


def with_bos(state: Any, text: str, *, add: bool) -> list[Any]:
    """``text``'s tokens, after the tokenizer's BOS (config `bos_token`) when one is added."""
    tokens = list(state.tokenizer.encode(text))
    bos = state.config["bos_token"]
    return [state.tokenizer.token(bos, True), *tokens] if add and bos is not None else tokens


def _valid(state: Any, req: Request) -> Valid:
    tokens = with_bos(state, req.prompt, add=req.add_bos)
    window = state.config["max_total_tokens"]
    max_tokens = req.max_tokens
    if req.engine == "vllm":  # vLLM 0.32: only the prompt must fit; max_tokens is cut
        if len(tokens) > window:  # vLLM stops counting at window + 1
            raise EngineError(
                400,
                f"This model's maximum context length is {window} tokens. However, your "
                f"prompt contains at least {window + 1} input tokens, which exceeds this "
                "limit even without any output tokens. Please reduce the length of the input "
                f"prompt. (parameter=input_tokens, value={window + 1})",
            )
        if len(tokens) == window:
            raise EngineError(
                400, "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"
            )
        max_tokens = min(max_tokens, window - len(tokens))
    elif len(tokens) + req.max_tokens > window:
        raise EngineError(
            400,
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{len(tokens) + req.max_tokens} tokens ({len(tokens)} in the messages, "
            f"{req.max_tokens} in the completion). Please reduce the length of the messages "
            "or completion.",
        )
    return completion_valid(req, tokens, max_tokens)


def scripted_reply(state: Any, entry: dict[str, Any], req: Request, body: Any) -> ReplySpec | None:
    """The next scripted reply, made for this request (bench, echo, responder); None: none left.

    ``entry`` (the request's log entry) records the reply as scripted and its source.
    """
    chosen = state.take()
    if chosen is None:
        return None
    spec, source = chosen
    entry["reply"], entry["reply_source"] = spec.raw, source
    spec, decided = bench.materialize(spec, req.prompt, req.constrained)
    if decided is not None:
        entry["bench"] = decided
    spec = echo.materialize(spec, req.prompt)
    return responder.materialize(spec, req.prompt, body)  # responder: see responder.py


def completion_valid(req: Request, tokens: list[Tok], max_tokens: int) -> Valid:
    """What a completions request hands to "the model": ``max_tokens`` (at least one) of it."""
    return Valid(
        inputs=req.prompt,
        input_tokens=tokens,
        input_length=len(tokens),
        max_new_tokens=max(max_tokens, 1),
        stop=req.stop,
        sampling=req.temperature != 0.0,
        seed=req.seed,
        details=True,
        decoder_input_details=False,
        top_n_tokens=0,
        return_full_text=False,
        best_of=1,
    )


async def _respond(  # noqa: PLR0917 -- one private call site
    request: web.Request,
    entry: dict[str, Any],
    engine: str,
    spec: ReplySpec,
    req: Request,
    gen: Generation,
) -> web.StreamResponse:
    state = _state(request)
    texts, reason, matched = pieces(gen, req, state.config["eos_token"])
    if engine == "vllm":
        model = state.config["model_id"]
        whole, docs = vllm_documents(texts, reason, matched, gen, req, model=model)
    else:
        whole, docs = sglang_documents(texts, reason, matched, gen)
    error_body = _ERROR_BODY[engine]
    if req.stream:

        def error_doc(err: TGIError) -> Any:
            if engine == "sglang":
                return {"error": {"message": err.message}}
            return vllm_error(err.status, err.message)

        return await _answer_stream(
            request,
            spec=spec,
            docs=docs,
            headers={},
            entry=entry,
            done_marker=True,
            frame=frame,
            error_doc=error_doc,
            done_after_error=True,
        )
    if spec.error_event_after is not None:
        await _sleep(request, spec.token_delay_s * len(gen.tokens))
        status = {"overloaded": 429, "validation": 400}.get(spec.error_type or "", 500)
        entry["status"], entry["fault"] = status, "error"
        message = spec.error or "fake engine: scripted error"
        return _json(error_body(status, message), status=status)
    return await _answer_json(request, spec=spec, gen=gen, doc=whole, headers={}, entry=entry)


async def _version(request: web.Request) -> web.StreamResponse:
    _record(request)["status"] = 200
    return _json({"version": VLLM_VERSION})


async def _models(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    _record(request)["status"] = 200
    model: dict[str, Any] = {"id": state.config["model_id"], "object": "model"}
    model |= {"created": 0, "owned_by": "vllm", "root": state.config["model_id"]}
    if not state.config.get("gateway"):
        model["max_model_len"] = state.config["max_total_tokens"]
    return _json({"object": "list", "data": [model]})


async def _vllm_tokenize(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    entry = _record(request)

    async def inner() -> web.StreamResponse:
        body = await _read_body(request, entry)
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, str):
            entry["status"] = 400
            return _json(vllm_error(400, "prompt: Field required"), status=400)
        add = body.get("add_special_tokens", True) is not False
        ids = [t.id for t in with_bos(state, prompt, add=add)]
        entry["status"] = 200
        window = state.config["max_total_tokens"]
        return _json({"count": len(ids), "max_model_len": window, "tokens": ids})

    return await _guard(request, entry, inner)


def _server_args(state: Any) -> dict[str, Any]:
    return {
        "model_path": state.config["model_id"],
        "tokenizer_path": state.config["model_id"],
        "context_length": state.config["max_total_tokens"],
        "tp_size": 1,
        "version": "0.5.4",
    }


async def _server_info(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    entry = _record(request)
    if state.config.get("gateway"):
        entry["status"] = 404
        return web.Response(status=404)
    entry["status"] = 200
    return _json(_server_args(state))


async def _get_server_info(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    _record(request)["status"] = 200
    if state.config.get("gateway"):
        return _json({"router_manager": None, "routers_count": 1, "workers_count": 2})
    return _json(_server_args(state))


async def _model_info(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    entry = _record(request)
    if state.config.get("gateway"):
        entry["status"] = 404
        return web.Response(status=404)
    entry["status"] = 200
    path = state.config["model_id"]
    return _json({"model_path": path, "tokenizer_path": path, "is_generation": True})


async def _health(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    entry = _record(request)
    entry["status"] = 200 if state.config["healthy"] else 503
    return web.Response(status=entry["status"])


async def unrouted(request: web.Request) -> web.StreamResponse:
    """FastAPI's 404 for a path the engine does not serve."""
    entry = _record(request)
    entry["status"] = 404
    return _json({"detail": "Not Found"}, status=404)


def add_routes(app: web.Application, engine: str) -> None:
    """The routes of ``engine`` (`vllm` or `sglang`)."""
    if engine not in ENGINES:
        raise DeserializeError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    app.router.add_get("/health", _health)
    app.router.add_get("/v1/models", _models)
    if engine == "vllm":
        app.router.add_post("/v1/completions", lambda r: _completion(r, "vllm"))
        app.router.add_post("/v1/chat/completions", _chat_route)
        app.router.add_get("/version", _version)
        app.router.add_post("/tokenize", _vllm_tokenize)
    else:
        app.router.add_post("/generate", lambda r: _completion(r, "sglang"))
        app.router.add_get("/server_info", _server_info)
        app.router.add_get("/get_server_info", _get_server_info)
        app.router.add_get("/model_info", _model_info)
