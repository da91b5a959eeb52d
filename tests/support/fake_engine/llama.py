"""Fake llama.cpp servers: llama-server's and llama-cpp-python's routes over the fake TGI's state.

Run: `python -m tests.support.fake_engine.server --engine llama.cpp|llama-cpp-python --port 0`.
The reply queue, the default reply, the request log, the control API and the scripted faults
are the fake TGI's own (`state.py`, `server.py`), as for vLLM and SGLang (`engines.py`). What
differs is the wire, as read from llama.cpp's ``tools/server`` (``server-task.cpp``,
``server-context.cpp``, ``server-common.cpp``) and llama-cpp-python 0.3's ``llama_cpp/server``:

llama-server (`POST /completion`, `POST /v1/completions`, `POST /tokenize`, `GET /props`,
`GET /v1/models`, `GET /health`), as started with ``--special``:
  - the prompt is tokenized with the GGUF's BOS (config `bos_token`, none by default) and
    special tokens parsed; `/tokenize` adds the BOS only with ``add_special: true`` (its
    default is false), and ``with_pieces`` gives ``{"id", "piece"}`` per token;
  - `n_predict` (default -1: up to the context; a float is truncated) limits the output;
    special-token text is kept (``--special``), the EOS's text included, unless a stop
    string is that text (then ``stop_type: "eos"``, ``stopping_word`` the EOS's text); a
    stop word is cut (`stop_type` ``eos``/``word``/``limit``, `stopping_word`);
  - `/completion` answers `content`, the `prompt` echoed, `generation_settings` (a subset of
    the real keys: seed, temperature, stop, n_predict, stream and the grammar fields, as the
    real server echoes them), `tokens_evaluated` (the prompt's tokens, all of them),
    `tokens_predicted`, `tokens_cached` and `timings` (`cache_n`: the prompt's tokens reused
    from the slot's previous prompt, `prompt_n`: those evaluated now, `predicted_n`); a
    stream is `data: {...}` events (each ``"tokens": [id]``, ``"id_slot": -1``), the last
    with ``"stop": true`` and the counts, and no `[DONE]`; the OpenAI route answers
    `choices`, `system_fingerprint`, `timings` and `usage` (`prompt_tokens`: the whole prompt,
    `prompt_tokens_details.cached_tokens`) and ends its stream with `data: [DONE]`;
  - a `grammar` that does not parse is a 400 "Failed to initialize samplers: failed to
    parse grammar" (`gbnf.py`'s check, a simplification: unterminated literals, unbalanced
    parentheses, undefined rules, no ``root``); a ``grammar_triggers`` word that is one token
    must be in ``preserved_tokens`` (400 "Grammar trigger word should be marked as preserved
    token: ..."); the JSON errors are nlohmann's words (``[json.exception.out_of_range.403]
    key 'prompt' not found``, ``Field 'n_predict': [json.exception.type_error.302] ...``);
  - a prompt that fills the context (`max_total_tokens`, its `n_ctx`) is a 400
    `exceed_context_size_error` with `n_prompt_tokens` and `n_ctx`; errors are
    `{"error": {"code", "message", "type"}}`; an unknown path 404 `not_found_error`;
  - every answer has ``Server: llama.cpp``, a stream ``X-Accel-Buffering: no``; `/props`'s
    `model_alias` is the model id (as if started with ``--alias``), its `model_path` a fake
    ``/models/<id>.gguf``; `/v1/models` has the Ollama-style `models` list and each entry
    `aliases` and `meta` (SmolLM2-135M's figures but `n_ctx`, fixed: no GGUF is read).
  Fake-only simplifications: the fake still wants ``Content-Type: application/json`` (415
  otherwise; the real server parses any body), `/props` has a subset of the real keys, and
  the ids and texts are the fake tokenizer's.
llama-cpp-python's server (`POST /v1/completions`, `POST /extras/tokenize`, `GET /v1/models`,
`GET /openapi.json`):
  - the prompt and `/extras/tokenize` both get the BOS (``add_bos`` true) and parse specials;
  - `max_tokens` defaults to 16 (null or <= 0: up to the context); special-token text is
    dropped from `text`, the EOS and a matched stop string too; `finish_reason` `stop` or
    `length`; `usage.prompt_tokens` is the prompt's tokens, `completion_tokens` leaves out
    the EOS (llama-server's `tokens_predicted` counts it); a stream sends no usage and
    ends with `data: [DONE]`;
  - a prompt of `n_ctx` tokens or more is a 400 ``context_length_exceeded`` (its
    ``RouteErrorHandler``); errors are OpenAI's `{"error": {"message", "type", "param",
    "code"}}`; an unknown path is FastAPI's 404 `{"detail": "Not Found"}`.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from . import gbnf
from .engines import (
    EngineError,
    _number,
    _stops,
    completion_valid,
    frame,
    pieces,
    scripted_reply,
    sglang_error,
)
from .protocol import Generation, ReplySpec, TGIError, Valid, generate
from .server import (
    _answer_json,
    _answer_stream,
    _guard,
    _json,
    _read_body,
    _record,
    _serve_fault,
    _sleep,
    _state,
)
from .tokenizer import Tok

LLAMA_ENGINES = ("llama.cpp", "llama-cpp-python")
SLOT_KEY: web.AppKey[list[int]] = web.AppKey("llama_slot", list)
"""The token ids of llama-server's one slot's last prompt (its prompt cache)."""
ENGINE_KEY: web.AppKey[str] = web.AppKey("llama_engine", str)
"""Which of the two servers the app is."""

_LLAMA_TYPES = {400: "invalid_request_error", 404: "not_found_error", 503: "unavailable_error"}


def llama_error(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    """llama-server's error body (``format_error_response``)."""
    kind = kind or _LLAMA_TYPES.get(status, "server_error")
    return {"error": {"code": status, "message": message, "type": kind}}


def openai_error(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    """llama-cpp-python's ``ErrorResponse``, under ``error``."""
    body = sglang_error(status, message, kind)
    return {"error": {k: body[k] for k in ("message", "type", "param", "code")}}


def _error_body(engine: str) -> Any:
    return llama_error if engine == "llama.cpp" else openai_error


def json_type(value: Any) -> str:
    """nlohmann::json's name for ``value``'s type (in llama-server's type errors)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
    return names.get(type(value), "discarded")


def _limit(engine: str, body: dict[str, Any], name: str) -> Any:
    limit = body.get(name, body.get("n_predict"))
    if limit is None:
        return None
    if engine == "llama.cpp":  # nlohmann's get<int>: any number, truncated
        if isinstance(limit, bool) or not isinstance(limit, (int, float)):
            raise EngineError(
                400,
                f"Field '{name}': [json.exception.type_error.302] type must be number, "
                f"but is {json_type(limit)}",
            )
        return int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise EngineError(400, f"{name}: Input should be a valid integer")
    return limit


def check_grammar(state: Any, req: Request) -> None:
    """llama-server's refusals of a grammar it cannot parse and of an unpreserved trigger.

    A trigger word that is one token must be in ``preserved_tokens`` (``server-task.cpp``);
    the GBNF check is `gbnf.parse_error`'s (a simplification of llama.cpp's parser). Sets
    ``req.triggers`` and ``req.preserved`` as the real server echoes them (one-token words
    become ``{"type": 0, "value", "token"}``; preserved tokens their ids).
    """
    body = req.body
    preserved = body.get("preserved_tokens") or []
    for text in preserved:
        tokens = state.tokenizer.encode(text) if isinstance(text, str) else []
        req.preserved += [tokens[0].id] if len(tokens) == 1 else []
    for trigger in body.get("grammar_triggers") or []:
        if not isinstance(trigger, dict):
            continue
        req.triggers.append(trigger)
        if trigger.get("type") == 0 and "token" not in trigger:  # TOKEN
            msg = "[json.exception.out_of_range.403] key 'token' not found"
            raise EngineError(400, f"Field 'grammar_triggers': {msg}")
        word = trigger.get("value")
        one_token = isinstance(word, str) and len(state.tokenizer.encode(word)) == 1
        if trigger.get("type") == 1 and one_token and word not in preserved:  # WORD
            raise EngineError(
                400,
                "Field 'grammar_triggers': Grammar trigger word should be marked as "
                f"preserved token: {word}",
            )
        if trigger.get("type") == 1 and one_token:
            req.triggers[-1] = {
                "type": 0,
                "value": word,
                "token": state.tokenizer.encode(word)[0].id,
            }
    grammar = body.get("grammar")
    if isinstance(grammar, str) and grammar and gbnf.parse_error(grammar) is not None:
        raise EngineError(400, "Failed to initialize samplers: failed to parse grammar")


class Request:
    """What the server understood of one completion request.

    ``route`` is ``native`` (llama-server's `/completion`) or ``openai`` (`/v1/completions`).
    """

    def __init__(self, engine: str, route: str, body: Any) -> None:
        if not isinstance(body, dict):
            if engine == "llama.cpp":
                kind = json_type(body)
                raise EngineError(
                    400, f"[json.exception.type_error.304] cannot use at() with {kind}"
                )
            raise EngineError(400, "The request body must be a JSON object.")
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            if engine == "llama.cpp" and prompt is None:
                raise EngineError(400, "[json.exception.out_of_range.403] key 'prompt' not found")
            raise EngineError(400, '"prompt" must be provided')
        self.engine, self.route, self.prompt = engine, route, prompt
        self.body = body
        self.eos = ""  # the EOS's text (set by the route)
        self.triggers: list[Any] = []  # set by check_grammar
        self.preserved: list[int] = []
        self.stream = bool(body.get("stream", False))
        name = "n_predict" if route == "native" else "max_tokens"
        limit = _limit(engine, body, name)
        default = 16 if engine == "llama-cpp-python" else -1
        self.max_tokens: int = default if limit is None else limit
        self.temperature = _number(body, "temperature", 0.0)
        self.stop = _stops(body.get("stop"))
        self.seed = body.get("seed") if isinstance(body.get("seed"), int) else 0
        self.skip_special = engine == "llama-cpp-python"  # llama-server runs with --special
        self.spaces = False
        self.constrained = any(body.get(k) is not None for k in ("grammar", "json_schema"))


def prompt_tokens(state: Any, text: str, *, add_bos: bool) -> list[Tok]:
    """The tokens of ``text``, specials parsed, after the GGUF's BOS when one is added."""
    tokens = state.tokenizer.encode(text)
    bos = state.config["bos_token"]
    if add_bos and bos is not None:
        tokens = [state.tokenizer.token(bos, True), *tokens]
    return list(tokens)


def _valid(state: Any, req: Request) -> Valid:
    tokens = prompt_tokens(state, req.prompt, add_bos=True)
    window = state.config["max_total_tokens"]
    if req.engine == "llama.cpp" and len(tokens) >= window:
        raise EngineError(
            400,
            f"request ({len(tokens)} tokens) exceeds the available context size "
            f"({window} tokens), try increasing it",
        )
    if req.engine == "llama-cpp-python" and len(tokens) >= window:
        limit = req.max_tokens
        raise EngineError(
            400,
            f"This model's maximum context length is {window} tokens, however you requested "
            f"{limit + len(tokens)} tokens ({len(tokens)} in your prompt; {limit} for the "
            "completion). Please reduce your prompt; or completion length.",
        )
    room = window - len(tokens)
    limit = room if req.max_tokens <= 0 else min(req.max_tokens, room)
    return completion_valid(req, tokens, limit)


def _cached(request: web.Request, tokens: list[Tok]) -> int:
    """How many of the prompt's tokens llama-server's slot reuses (at least one is evaluated)."""
    ids = [t.id for t in tokens]
    previous = request.app[SLOT_KEY]
    common = 0
    while common < min(len(ids), len(previous)) and ids[common] == previous[common]:
        common += 1
    request.app[SLOT_KEY] = ids
    return min(common, len(ids) - 1)


# --------------------------------------------------------------------------- documents

_STOP_TYPES = {"eos_token": "eos", "stop_sequence": "word", "length": "limit"}


def _timings(cached: int, gen: Generation) -> dict[str, Any]:
    prompt_n, predicted_n = gen.input_length - cached, len(gen.tokens)
    timings: dict[str, Any] = {"cache_n": cached, "prompt_n": prompt_n, "prompt_ms": 1.0}
    timings |= {"prompt_per_token_ms": 1.0 / max(prompt_n, 1), "prompt_per_second": 1000.0}
    timings |= {"predicted_n": predicted_n, "predicted_ms": 1.0}
    timings |= {"predicted_per_token_ms": 1.0 / max(predicted_n, 1), "predicted_per_second": 1000.0}
    return timings


def keep_eos(texts: list[str], matched: Any, req: Request, eos: str) -> Any:
    """llama-server (``--special``) keeps the EOS's text unless a stop string is that text.

    Returns the stopping word: ``eos`` when a stop string matched the EOS's text, else the
    match (`pieces` cut the EOS off, and gave its id as ``matched``).
    """
    if req.engine != "llama.cpp" or isinstance(matched, str) or matched is None:
        return matched
    if eos in req.stop:
        return eos
    texts.append(eos)
    return None


def generation_settings(req: Request, n_predict: int) -> dict[str, Any]:
    """A subset of the real answer's ``generation_settings`` (the request's own fields)."""
    body = req.body
    return {
        "seed": req.seed if isinstance(body.get("seed"), int) else 4294967295,
        "temperature": req.temperature,
        "stop": list(req.stop),
        "max_tokens": n_predict,
        "n_predict": n_predict,
        "stream": req.stream,
        "grammar": body.get("grammar") or "",
        "grammar_lazy": bool(body.get("grammar_lazy", False)),
        "grammar_triggers": req.triggers,
        "preserved_tokens": req.preserved,
    }


def native_documents(  # noqa: PLR0917 -- one private call site
    texts: list[str],
    matched: Any,
    gen: Generation,
    cached: int,
    req: Request,
    model: str,
) -> tuple[dict[str, Any], list[Any]]:
    """llama-server's `/completion` answer and its stream's events."""
    stop_type = _STOP_TYPES.get(gen.finish_reason, "eos")
    if stop_type == "word" and (not isinstance(matched, str) or matched == req.eos):
        stop_type = "eos"  # a stop string that is the EOS's text is an "eos" stop
    ids = [token["id"] for token in gen.tokens]
    timings = _timings(cached, gen)
    counts = {"tokens_predicted": len(gen.tokens), "tokens_evaluated": gen.input_length}
    final = {
        "index": 0,
        "content": "".join(texts),
        "tokens": [],
        "id_slot": 0,
        "stop": True,
        "model": model,
        **counts,
        "generation_settings": generation_settings(req, req.max_tokens),
        "prompt": req.prompt,
        "has_new_line": "\n" in "".join(texts),
        "truncated": False,
        "stop_type": stop_type,
        "stopping_word": matched if isinstance(matched, str) else "",
        "tokens_cached": gen.input_length + len(gen.tokens),
        "timings": timings,
    }
    events: list[Any] = []
    for i, text in enumerate(texts):
        token = ids[i : i + 1]
        part = {"index": 0, "content": text, "tokens": token, "stop": False, "id_slot": -1}
        events.append(part | {"tokens_predicted": i + 1, "tokens_evaluated": gen.input_length})
    events.append({**final, "content": ""})
    return final, events


def openai_documents(
    texts: list[str], reason: str, gen: Generation, req: Request, *, model: str, cached: int = 0
) -> tuple[dict[str, Any], list[Any]]:
    """The OpenAI-style `/v1/completions` answer and stream (either server's)."""
    head: dict[str, Any] = {"id": "cmpl-fake", "object": "text_completion"}
    head |= {"created": int(time.time()), "model": model}
    if req.engine == "llama.cpp":
        head["system_fingerprint"] = "b7000-fake"
    generated = len(gen.tokens)
    if req.engine == "llama-cpp-python" and gen.finish_reason == "eos_token":
        generated -= 1  # it stops on the EOG token before counting it; llama-server counts it
    usage = {
        "prompt_tokens": gen.input_length,
        "completion_tokens": generated,
        "total_tokens": gen.input_length + generated,
    }
    extra: dict[str, Any] = {}
    if req.engine == "llama.cpp":
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
        extra["timings"] = _timings(cached, gen)

    def choice(text: str, finish: str | None) -> dict[str, Any]:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

    whole = {**head, "choices": [choice("".join(texts), reason)], "usage": usage, **extra}
    chunks: list[Any] = [{**head, "choices": [choice(text, None)]} for text in texts]
    last: dict[str, Any] = {**head, "choices": [choice("", reason)]}
    if req.engine == "llama.cpp":  # its final chunk is the whole answer's, usage included
        last |= {"usage": usage, **extra}
    chunks.append(last)
    return whole, chunks


# --------------------------------------------------------------------------- routes


async def _completion(request: web.Request, engine: str, route: str) -> web.StreamResponse:
    entry = _record(request)
    return await _guard(request, entry, lambda: _completion_inner(request, entry, engine, route))


async def _completion_inner(
    request: web.Request, entry: dict[str, Any], engine: str, route: str
) -> web.StreamResponse:
    state = _state(request)
    body = await _read_body(request, entry)
    error_body = _error_body(engine)
    fault = state.next_fault()
    if fault is not None:
        entry["reply"], entry["reply_source"] = fault[0].raw, fault[1]
        return await _serve_fault(request, fault[0], entry, body_of=error_body)
    try:
        req = Request(engine, route, body)
        if engine == "llama.cpp":
            check_grammar(state, req)
        valid = _valid(state, req)
    except EngineError as err:
        entry["status"] = err.status
        doc = error_body(err.status, err.message)
        if engine == "llama.cpp" and "context size" in err.message:
            doc["error"]["type"] = "exceed_context_size_error"
            doc["error"] |= {"n_prompt_tokens": len(prompt_tokens(state, req.prompt, add_bos=True))}
            doc["error"] |= {"n_ctx": state.config["max_total_tokens"]}
        return _json(doc, status=err.status)
    spec = scripted_reply(state, entry, req, body)
    if spec is None:
        entry["status"] = 500
        return _json(error_body(500, "fake engine: no scripted reply left"), status=500)
    cached = _cached(request, valid.input_tokens) if engine == "llama.cpp" else 0
    state.in_flight += 1
    try:
        await _sleep(request, state.config["latency_s"] + spec.delay_s)
        gen = generate(spec, valid, state.tokenizer, state.config["eos_token"])
        return await _respond(request, entry, req, spec, gen, cached)
    finally:
        state.in_flight -= 1


async def _respond(  # noqa: PLR0917 -- one private call site
    request: web.Request,
    entry: dict[str, Any],
    req: Request,
    spec: ReplySpec,
    gen: Generation,
    cached: int,
) -> web.StreamResponse:
    state = _state(request)
    eos = state.config["eos_token"]
    texts, reason, matched = pieces(gen, req, eos)  # type: ignore[arg-type] # same fields
    req.eos, matched = eos, keep_eos(texts, matched, req, eos)
    if req.route == "native":
        model = state.config["model_id"]
        whole, docs = native_documents(texts, matched, gen, cached, req, model)
    else:
        model = state.config["model_id"]
        whole, docs = openai_documents(texts, reason, gen, req, model=model, cached=cached)
    error_body = _error_body(req.engine)
    if req.stream:

        def error_doc(err: TGIError) -> Any:
            return error_body(err.status, err.message)

        return await _answer_stream(
            request,
            spec=spec,
            docs=docs,
            headers={},
            entry=entry,
            done_marker=req.route == "openai",
            frame=frame,
            error_doc=error_doc,
            done_after_error=req.route == "openai",
        )
    if spec.error_event_after is not None:
        status = {"overloaded": 503, "validation": 400}.get(spec.error_type or "", 500)
        entry["status"], entry["fault"] = status, "error"
        return _json(error_body(status, spec.error or "fake engine: scripted error"), status=status)
    return await _answer_json(request, spec=spec, gen=gen, doc=whole, headers={}, entry=entry)


def _tokenize_route(engine: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        state = _state(request)
        entry = _record(request)

        async def inner() -> web.StreamResponse:
            body = await _read_body(request, entry)
            body = body if isinstance(body, dict) else {}
            field = "content" if engine == "llama.cpp" else "input"
            text = body.get(field)
            if not isinstance(text, str):
                if engine == "llama.cpp":  # no "content": no tokens
                    entry["status"] = 200
                    return _json({"tokens": []})
                entry["status"] = 422
                detail = [{"type": "missing", "loc": ["body", field], "msg": "Field required"}]
                return _json({"detail": detail}, status=422)
            add_bos = engine != "llama.cpp" or body.get("add_special") is True
            tokens = prompt_tokens(state, text, add_bos=add_bos)
            entry["status"] = 200
            if engine == "llama.cpp" and body.get("with_pieces") is True:
                return _json({"tokens": [{"id": t.id, "piece": t.text} for t in tokens]})
            return _json({"tokens": [t.id for t in tokens]})

        return await _guard(request, entry, inner)

    return handler


async def _props(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    _record(request)["status"] = 200
    settings = {"params": {"n_predict": -1, "temperature": 0.8}}
    settings["n_ctx"] = state.config["max_total_tokens"]
    alias = state.config["model_id"]  # as if started with --alias <model_id>
    return _json(
        {
            "default_generation_settings": settings,
            "total_slots": 1,
            "model_alias": alias,
            "model_path": f"/models/{alias}.gguf",
            "bos_token": state.config["bos_token"] or "",
            "eos_token": state.config["eos_token"],
            "build_info": "b7000-fake",
        }
    )


async def _models(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    engine = request.app[ENGINE_KEY]
    _record(request)["status"] = 200
    model: dict[str, Any] = {"id": state.config["model_id"], "object": "model"}
    if engine == "llama.cpp":
        name = state.config["model_id"]
        meta = {"vocab_type": 2, "n_vocab": 49152, "n_ctx": state.config["max_total_tokens"]}
        meta |= {"n_ctx_train": 4096, "n_embd": 576, "n_params": 134515008, "size": 96576768}
        meta["ftype"] = "Q4_1"
        model |= {"aliases": [name], "tags": [], "created": 0, "owned_by": "llamacpp"}
        model["architecture"] = {"input_modalities": ["text"], "output_modalities": ["text"]}
        model["meta"] = meta
        ollama = {"name": name, "model": name, "modified_at": "", "size": "", "digest": ""}
        ollama |= {"type": "model", "description": "", "tags": [""]}
        details = {"parent_model": "", "format": "gguf", "family": "", "families": [""]}
        details |= {"parameter_size": "", "quantization_level": ""}
        ollama |= {"capabilities": ["completion"], "parameters": "", "details": details}
        return _json({"models": [ollama], "object": "list", "data": [model]})
    model |= {"owned_by": "me", "permissions": []}
    return _json({"object": "list", "data": [model]})


async def _health(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    entry = _record(request)
    if state.config["healthy"]:
        entry["status"] = 200
        return _json({"status": "ok"})
    entry["status"] = 503
    return _json(llama_error(503, "Loading model"), status=503)


_PYTHON_PATHS = ("/v1/completions", "/v1/models", "/extras/tokenize", "/extras/tokenize/count")


async def _openapi(request: web.Request) -> web.StreamResponse:
    _record(request)["status"] = 200
    paths = {path: {"post" if "models" not in path else "get": {}} for path in _PYTHON_PATHS}
    return _json({"openapi": "3.1.0", "info": {"title": "🦙 llama.cpp Python API"}, "paths": paths})


async def unrouted(request: web.Request) -> web.StreamResponse:
    """The 404 of a path the server does not serve (llama-server's, or FastAPI's)."""
    entry = _record(request)
    entry["status"] = 404
    if request.app[ENGINE_KEY] == "llama.cpp":
        return _json(llama_error(404, "File Not Found"), status=404)
    return _json({"detail": "Not Found"}, status=404)


async def _llama_headers(request: web.Request, response: web.StreamResponse) -> None:
    """llama-server's headers: ``Server: llama.cpp``; a stream's ``X-Accel-Buffering: no``."""
    if request.path.startswith("/_control"):
        return
    response.headers["Server"] = "llama.cpp"
    if response.content_type == "text/event-stream":
        response.headers["X-Accel-Buffering"] = "no"


def add_routes(app: web.Application, engine: str) -> None:
    """The routes of ``engine`` (`llama.cpp` or `llama-cpp-python`)."""
    app[ENGINE_KEY] = engine
    if engine == "llama.cpp":
        app.on_response_prepare.append(_llama_headers)
    app[SLOT_KEY] = []
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/completions", lambda r: _completion(r, engine, "openai"))
    if engine == "llama.cpp":
        app.router.add_post("/completion", lambda r: _completion(r, engine, "native"))
        app.router.add_post("/tokenize", _tokenize_route(engine))
        app.router.add_get("/props", _props)
        app.router.add_get("/health", _health)
    else:
        app.router.add_post("/extras/tokenize", _tokenize_route(engine))
        app.router.add_get("/openapi.json", _openapi)
