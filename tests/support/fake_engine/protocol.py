"""TGI's request handling without the HTTP: reply specs, parameter parsing, validation, generation.

Flows in: a request body (already JSON-decoded), the server's `Config`, a `Tokenizer` and a
scripted `ReplySpec`. Flows out: a `Generation` (tokens, finish reason, generated text, seed,
input length) and the JSON documents TGI 3.3.6 would send for it (`GenerateResponse`,
`StreamResponse`, `ErrorResponse`), with TGI's key order, defaults and error messages (taken from
`router/src/validation.rs`, `router/src/infer/mod.rs`, `router/src/lib.rs` and
`server/text_generation_server/utils/tokens.py`).

Errors are raised as `TGIError` (status, message, error_type) or `DeserializeError` (what
axum's JSON extractor answers, as text/plain). Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from .bench import BENCH_SPEC_KEYS, parse_bench_fields
from .echo import ECHO_SPEC_KEYS
from .responder import RESPONDER_SPEC_KEYS, check_computed_fields
from .tokenizer import Tok, Tokenizer

FINISH_REASONS = ("eos_token", "length", "stop_sequence")
#: TGI's `InferError` → HTTP status (`impl From<InferError> for (StatusCode, Json<ErrorResponse>)`).
STATUS_BY_ERROR_TYPE = {
    "generation": 424,
    "overloaded": 429,
    "validation": 422,
    "incomplete_generation": 500,
    "template_error": 422,
    "tool_error": 422,
}
DEFAULT_GENERATION_LENGTH = 1024
_U32 = 2**32 - 1
_U64 = 2**64 - 1

_SPEC_KEYS = {
    "tokens",
    "text",
    "finish_reason",
    "seed",
    "append_eos",
    "delay_s",
    "token_delay_s",
    "status",
    "error",
    "error_type",
    "retry_after",
    "error_event_after",
    "cut_after",
    "end_after",
    "abort",
    "reset_before_headers",
    "hang",
    *BENCH_SPEC_KEYS,  # bench: benchmark-only fields, see bench.py
    *ECHO_SPEC_KEYS,  # echo: a reply computed from the prompt, see echo.py
    *RESPONDER_SPEC_KEYS,  # responder: a reply computed by a function, see responder.py
}


class TGIError(Exception):
    """An error TGI reports as `{"error", "error_type"}` (HTTP status, or an SSE error event)."""

    def __init__(self, status: int, message: str, error_type: str) -> None:
        """Keep the HTTP status, TGI's message and its `error_type`."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type

    def body(self) -> dict[str, str]:
        """The `ErrorResponse` document."""
        return {"error": self.message, "error_type": self.error_type}


def validation_error(message: str) -> TGIError:
    """A 422 validation error with TGI's `Input validation error: ` prefix."""
    return TGIError(422, f"Input validation error: {message}", "validation")


class DeserializeError(Exception):
    """The body does not match TGI's request types (axum answers 422, text/plain)."""


class SpecError(ValueError):
    """A reply spec sent to the control API is malformed."""


# --------------------------------------------------------------------------- reply specs


@dataclass
class ReplySpec:
    """One scripted reply: what the "model" generates, and which fault to inject.

    Generation (one of `tokens` / `text` is required unless the spec is a pre-validation fault):
      tokens: `[{"text": str, "special": bool, "id"?: int, "logprob"?: float}]`, sent as given
        (ids default to the tokenizer's). Special tokens stay in each token's `text` and are left
        out of `generated_text`, as TGI decodes it with special tokens skipped.
      text: cut into tokens by the server's tokenizer (K2 markers and tool tags are one token
        each and special by default; see the `special_tokens` config).
      finish_reason: `eos_token` (default), `length` or `stop_sequence`, reported when the
        tokens run out. `max_new_tokens`, an EOS token and `parameters.stop` end it earlier,
        in TGI's order (length, then EOS, then a stop string ending the text so far).
      append_eos: when finishing with `eos_token`, append the special EOS token
        (`<|endoftext|>`) unless the tokens already end with it (default true, like a model).
      seed: the `details.seed` to report (default: the request's seed, or a derived one, when
        sampling; null when greedy, as TGI does).
      delay_s: sleep before the response headers; token_delay_s: sleep between SSE events
        (non-stream: tokens x token_delay_s before answering).
    Faults:
      status (+ error, error_type, retry_after): answer that HTTP status with
        `{"error", "error_type"}` (error_type defaults to TGI's for 422/424/429/500 and is left
        out for other statuses or when given as null); `Retry-After` header when retry_after.
        Taken BEFORE validation, whatever the request (a proxy or an overloaded TGI).
      reset_before_headers: abort the connection before sending anything (before validation).
      hang: never answer until the client disconnects (server cap `hang_cap_s`, default 30 s).
      error_event_after: n: stream: after n token events send `data:{"error","error_type"}` on
        the HTTP 200 and end (n is capped at tokens-1: the final event is never sent);
        non-stream: answer TGI's status for error_type (generation 424, overloaded 429, ...).
      cut_after: n: stream: abort the connection after n events (n >= tokens: after all events,
        before the chunked terminator); non-stream: after half of the body.
      end_after: n: stream: end the response cleanly (chunked terminator) after n events, so
        the last event (with `details`) never comes, as a proxy that closes a stream early;
        non-stream: answer the JSON without its `details`.
      abort: how connections are aborted: `reset` (TCP RST, default) or `close` (FIN).
    """

    tokens: list[dict[str, Any]] | None = None
    text: str | None = None
    finish_reason: str = "eos_token"
    seed: Any = "unset"
    append_eos: bool = True
    delay_s: float = 0.0
    token_delay_s: float = 0.0
    status: int | None = None
    error: str | None = None
    error_type: str | None = None
    retry_after: str | None = None
    error_event_after: int | None = None
    cut_after: int | None = None
    end_after: int | None = None
    abort: str = "reset"
    reset_before_headers: bool = False
    hang: bool = False
    raw: dict[str, Any] = field(default_factory=dict)
    bench: Any = None
    """bench: the benchmark-only fields (`bench.BenchSpec`), or None."""

    @property
    def pre_validation_fault(self) -> bool:
        """Faults that stand for a proxy or the network: they happen before TGI validates."""
        return self.status is not None or self.reset_before_headers or self.hang


def _check_type(name: str, value: Any, kinds: tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in kinds:
        raise SpecError(f"reply field {name!r} must be {kinds}, got {value!r}")
    if not isinstance(value, kinds):
        raise SpecError(f"reply field {name!r} must be {kinds}, got {value!r}")


def _parse_bench(spec: ReplySpec, raw: dict[str, Any]) -> bool:
    """bench: set `spec.bench` (see bench.py); whether the spec generates (text, tokens, call)."""
    try:
        spec.bench = parse_bench_fields(raw)
    except (ValueError, TypeError) as exc:
        raise SpecError(str(exc)) from exc
    tool_call = spec.bench is not None and spec.bench.tool_call is not None
    if tool_call and (spec.tokens is not None or spec.text is not None):
        raise SpecError("give 'tool_call' alone, without 'tokens' or 'text'")
    return tool_call or spec.tokens is not None or spec.text is not None


def parse_spec(raw: Any) -> ReplySpec:
    """Check a reply spec sent to the control API and turn it into a `ReplySpec`."""
    if not isinstance(raw, dict):
        raise SpecError(f"a reply spec must be a JSON object, got {raw!r}")
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise SpecError(f"unknown reply field(s) {sorted(unknown)}; known: {sorted(_SPEC_KEYS)}")
    spec = ReplySpec(raw=dict(raw))
    for name in ("delay_s", "token_delay_s"):
        if name in raw:
            _check_type(name, raw[name], (int, float))
            setattr(spec, name, float(raw[name]))
    for name in ("status", "error_event_after", "cut_after", "end_after"):
        if raw.get(name) is not None:
            _check_type(name, raw[name], (int,))
            if raw[name] < 0:
                raise SpecError(f"reply field {name!r} must not be negative")
            setattr(spec, name, raw[name])
    if spec.status is not None and not 400 <= spec.status <= 599:
        raise SpecError("status must be an HTTP error status (400-599)")
    for name in ("error", "error_type", "retry_after", "text"):
        if raw.get(name) is not None:
            _check_type(name, raw[name], (str,))
            setattr(spec, name, raw[name])
    for name in ("reset_before_headers", "hang", "append_eos"):
        if name in raw:
            _check_type(name, raw[name], (bool,))
            setattr(spec, name, raw[name])
    if "finish_reason" in raw:
        if raw["finish_reason"] not in FINISH_REASONS:
            raise SpecError(f"finish_reason must be one of {FINISH_REASONS}")
        spec.finish_reason = raw["finish_reason"]
    if "seed" in raw:
        if raw["seed"] is not None:
            _check_type("seed", raw["seed"], (int,))
        spec.seed = raw["seed"]
    if "abort" in raw:
        if raw["abort"] not in ("reset", "close"):
            raise SpecError("abort must be 'reset' (TCP RST) or 'close' (FIN)")
        spec.abort = raw["abort"]
    if raw.get("tokens") is not None:
        _check_type("tokens", raw["tokens"], (list,))
        for item in raw["tokens"]:
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise SpecError(f"each token must be {{'text': str, 'special': bool}}: {item!r}")
            if set(item) - {"text", "special", "id", "logprob"}:
                raise SpecError(f"unknown token field(s) in {item!r}")
        spec.tokens = [dict(item) for item in raw["tokens"]]
    if spec.tokens is not None and spec.text is not None:
        raise SpecError("give either 'tokens' or 'text', not both")
    check_computed_fields(raw)  # echo.py and responder.py: replies computed per request
    generates = _parse_bench(spec, raw)  # bench: benchmark-only fields, see bench.py
    if not generates and not spec.pre_validation_fault:
        raise SpecError("a reply needs 'tokens' or 'text' (or a 'status'/'hang'/'reset' fault)")
    if generates and not (spec.tokens or spec.text or getattr(spec.bench, "tool_call", None)):
        raise SpecError("a reply generates at least one token ('tokens'/'text' is empty)")
    return spec


# --------------------------------------------------------------------------- request parsing


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


def _field(path: str, value: Any, kind: str, optional: bool = True) -> Any:
    """Check one field the way serde would; `kind` is a Rust type name."""
    if value is None:
        if optional:
            return None
        expected = {"bool": "a boolean", "Vec<String>": "a sequence", "String": "a string"}[kind]
        raise DeserializeError(f"{path}: invalid type: null, expected {expected}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise DeserializeError(f"{path}: invalid type: {_type_name(value)}, expected a boolean")
        return value
    if kind == "String":
        if not isinstance(value, str):
            raise DeserializeError(f"{path}: invalid type: {_type_name(value)}, expected a string")
        return value
    if kind == "f32":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DeserializeError(f"{path}: invalid type: {_type_name(value)}, expected f32")
        return float(value)
    if kind == "Vec<String>":
        if not isinstance(value, list):
            found = _type_name(value)
            raise DeserializeError(f"{path}: invalid type: {found}, expected a sequence")
        for i, item in enumerate(value):
            _field(f"{path}[{i}]", item, "String", optional=False)
        return list(value)
    limits = {"u32": (0, _U32), "u64": (0, _U64), "usize": (0, _U64), "i32": (-(2**31), 2**31 - 1)}
    low, high = limits[kind]
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeserializeError(f"{path}: invalid type: {_type_name(value)}, expected {kind}")
    if not low <= value <= high:
        raise DeserializeError(f"{path}: invalid value: integer `{value}`, expected {kind}")
    return value


_PARAM_KINDS = {
    "best_of": "usize",
    "temperature": "f32",
    "repetition_penalty": "f32",
    "frequency_penalty": "f32",
    "top_k": "i32",
    "top_p": "f32",
    "typical_p": "f32",
    "max_new_tokens": "u32",
    "return_full_text": "bool",
    "truncate": "usize",
    "seed": "u64",
    "top_n_tokens": "u32",
    "adapter_id": "String",
}
_PARAM_FLAGS = ("do_sample", "watermark", "details", "decoder_input_details")


@dataclass
class Params:
    """`GenerateParameters` after serde: absent keys take TGI's serde defaults."""

    best_of: int | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    do_sample: bool = False
    max_new_tokens: int | None = None
    return_full_text: bool | None = None
    stop: list[str] = field(default_factory=list)
    truncate: int | None = None
    watermark: bool = False
    details: bool = False
    decoder_input_details: bool = False
    seed: int | None = None
    top_n_tokens: int | None = None
    grammar: dict[str, Any] | None = None
    adapter_id: str | None = None


def parse_params(raw: Any) -> Params:
    """Deserialize `parameters` like serde does for TGI's `GenerateParameters`.

    A request without `parameters` gets TGI's `default_parameters()`, where (unlike a present
    but partial object) `do_sample` is true.
    """
    if raw is None:
        return Params(do_sample=True)
    if not isinstance(raw, dict):
        raise DeserializeError(
            f"parameters: invalid type: {_type_name(raw)}, expected struct GenerateParameters"
        )
    params = Params()
    for name, kind in _PARAM_KINDS.items():
        if name in raw:
            setattr(params, name, _field(f"parameters.{name}", raw[name], kind))
    for name in _PARAM_FLAGS:
        if name in raw:
            setattr(params, name, _field(f"parameters.{name}", raw[name], "bool", optional=False))
    if "stop" in raw:
        params.stop = _field("parameters.stop", raw["stop"], "Vec<String>", optional=False)
    if raw.get("grammar") is not None:
        grammar = raw["grammar"]
        kinds = ("json", "json_object", "regex", "json_schema")
        if not isinstance(grammar, dict) or grammar.get("type") not in kinds:
            raise DeserializeError(
                "parameters.grammar: unknown variant, expected one of `json`, `json_object`, "
                "`regex`, `json_schema`"
            )
        if "value" not in grammar:
            raise DeserializeError("parameters.grammar: missing field `value`")
        params.grammar = grammar
    return params


@dataclass
class GenerateRequest:
    """`GenerateRequest` / `CompatGenerateRequest` after serde."""

    inputs: str
    params: Params
    stream: bool = False


def parse_request(body: Any, compat: bool) -> GenerateRequest:
    """Deserialize a `/`, `/generate`, `/generate_stream` or `/tokenize` body."""
    target = "CompatGenerateRequest" if compat else "GenerateRequest"
    if not isinstance(body, dict):
        raise DeserializeError(f"invalid type: {_type_name(body)}, expected struct {target}")
    if "inputs" not in body:
        raise DeserializeError("missing field `inputs`")
    inputs = _field("inputs", body["inputs"], "String", optional=False)
    params = parse_params(body.get("parameters"))
    stream = False
    if compat and "stream" in body:
        stream = _field("stream", body["stream"], "bool", optional=False)
    return GenerateRequest(inputs=inputs, params=params, stream=stream)


# --------------------------------------------------------------------------- validation


@dataclass
class Valid:
    """What validation hands to "the model" (TGI's `ValidGenerateRequest`, trimmed)."""

    inputs: str
    input_tokens: list[Tok]
    input_length: int
    max_new_tokens: int
    stop: list[str]
    sampling: bool
    seed: int
    details: bool
    decoder_input_details: bool
    top_n_tokens: int
    return_full_text: bool
    best_of: int


def sampling_of(p: Params) -> bool:
    """Whether TGI's Python server samples (and so reports a seed) for these parameters."""
    return (
        p.do_sample
        or (p.temperature is not None and p.temperature != 1.0)
        or bool(p.top_k)
        or (p.top_p is not None and p.top_p < 1.0)
        or (p.typical_p is not None and p.typical_p < 1.0)
    )


def _validate_grammar(grammar: dict[str, Any]) -> None:
    kind, value = grammar["type"], grammar["value"]
    if kind == "regex":
        if not isinstance(value, str):
            raise DeserializeError("parameters.grammar.value: invalid type, expected a string")
        return
    if kind == "json_schema":
        value = value.get("schema") if isinstance(value, dict) else None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise validation_error(f"grammar is not valid: {exc}") from exc
    elif not isinstance(value, dict):
        raise validation_error("grammar is not supported")
    try:
        from jsonschema import Draft202012Validator, SchemaError  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - jsonschema is a test dependency
        pass
    else:
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise validation_error(f"grammar is not valid: {exc.message}") from exc
    if "properties" not in value:
        raise validation_error("grammar is not valid: Grammar must have a 'properties' field")


def precheck(req: GenerateRequest, cfg: dict[str, Any], stream: bool) -> None:
    """Checks TGI makes before taking a concurrency permit (`best_of`, prefill on streams)."""
    p = req.params
    best_of = p.best_of if p.best_of is not None else 1
    if stream and best_of != 1:
        raise validation_error("`best_of` != 1 is not supported when streaming tokens")
    if stream and p.decoder_input_details:
        raise validation_error(
            "`decoder_input_details` == true is not supported when streaming tokens"
        )
    if not stream and best_of > 1:
        if cfg["max_best_of"] == 1:
            raise validation_error("`best_of` != 1 is not allowed for this endpoint")
        if best_of > cfg["max_best_of"]:
            raise validation_error(
                f"`best_of` must be > 0 and <= {cfg['max_best_of']}. Given: {best_of}"
            )


def validate(req: GenerateRequest, cfg: dict[str, Any], tokenizer: Tokenizer) -> Valid:
    """Validate like TGI's router (`Validation::validate`), in its order, with its messages."""
    p = req.params
    best_of = p.best_of if p.best_of is not None else 1
    sampling_requested = p.do_sample or any(
        v is not None for v in (p.temperature, p.top_k, p.top_p, p.typical_p)
    )
    if best_of > 1 and not sampling_requested:
        raise validation_error("you must use sampling when `best_of` is > 1")
    if (p.temperature if p.temperature is not None else 1.0) <= 0.0:
        raise validation_error("`temperature` must be strictly positive")
    if (p.repetition_penalty if p.repetition_penalty is not None else 1.0) <= 0.0:
        raise validation_error("`repetition_penalty` must be strictly positive")
    if not -2.0 <= (p.frequency_penalty or 0.0) <= 2.0:
        raise validation_error("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if p.top_p is not None and not 0.0 < p.top_p < 1.0:
        raise validation_error("`top_p` must be > 0.0 and < 1.0")
    if p.typical_p is not None and not 0.0 < p.typical_p < 1.0:
        raise validation_error("`typical_p` must be > 0.0 and < 1.0")
    if p.top_k is not None and p.top_k <= 0:
        raise validation_error("`top_k` must be strictly positive")
    if p.max_new_tokens == 0:
        raise validation_error("`max_new_tokens` must be strictly positive")
    if len(p.stop) > cfg["max_stop_sequences"]:
        raise validation_error(
            f"`stop` supports up to {cfg['max_stop_sequences']} stop sequences. "
            f"Given: {len(p.stop)}"
        )
    if p.seed is not None and best_of > 1:
        raise validation_error("`seed` must not be set when `best_of` > 1")
    if p.top_n_tokens is not None and p.top_n_tokens > cfg["max_top_n_tokens"]:
        raise validation_error(
            f"`top_n_tokens` must be >= 0 and <= {cfg['max_top_n_tokens']}. Given: {p.top_n_tokens}"
        )
    if not req.inputs:
        raise validation_error("`inputs` cannot be empty")
    max_input, max_total = cfg["max_input_tokens"], cfg["max_total_tokens"]
    if p.truncate is not None and (p.truncate == 0 or p.truncate > max_input):
        raise validation_error(
            f"`truncate` must be strictly positive and less than {max_input}. Given: {p.truncate}"
        )
    input_tokens = tokenizer.encode(req.inputs)
    input_length = len(input_tokens)
    if p.truncate is not None:
        input_length = min(input_length, p.truncate)
        input_tokens = input_tokens[len(input_tokens) - input_length :]
    if p.max_new_tokens is not None:
        max_new_tokens = p.max_new_tokens
    else:
        max_new_tokens = min(max(max_total - input_length, 0), DEFAULT_GENERATION_LENGTH)
    if input_length + max_new_tokens > max_total:
        raise validation_error(
            f"`inputs` tokens + `max_new_tokens` must be <= {max_total}. "
            f"Given: {input_length} `inputs` tokens and {max_new_tokens} `max_new_tokens`"
        )
    if input_length > max_input:
        raise validation_error(
            f"`inputs` must have less than {max_input} tokens. Given: {input_length}"
        )
    if p.grammar is not None:
        if not cfg["grammar_enabled"]:
            raise validation_error("grammar is not supported")
        _validate_grammar(p.grammar)
    seed = p.seed if p.seed is not None else zlib.crc32(req.inputs.encode()) * 7919 + 17
    return Valid(
        inputs=req.inputs,
        input_tokens=input_tokens,
        input_length=input_length,
        max_new_tokens=max_new_tokens,
        stop=list(p.stop),
        sampling=sampling_of(p),
        seed=seed,
        details=p.details,
        decoder_input_details=p.decoder_input_details,
        top_n_tokens=p.top_n_tokens or 0,
        return_full_text=bool(p.return_full_text),
        best_of=best_of,
    )


# --------------------------------------------------------------------------- generation


@dataclass
class Generation:
    """The "model's" output for one request."""

    tokens: list[dict[str, Any]]
    finish_reason: str
    generated_text: str
    seed: int | None
    input_length: int
    prefill: list[dict[str, Any]]


def _logprob(token_id: int) -> float:
    return -round((token_id % 997) / 1000 + 0.001, 4)


def _token_doc(token_id: int, text: str, special: bool, logprob: Any = None) -> dict[str, Any]:
    """TGI's `Token`, keys in its order; the logprob defaults to one derived from the id."""
    if logprob is None:
        logprob = _logprob(token_id)
    return {"id": token_id, "text": text, "logprob": logprob, "special": special}


def scripted_tokens(spec: ReplySpec, tokenizer: Tokenizer, eos_token: str) -> list[dict[str, Any]]:
    """The token list a spec generates if nothing stops it early (EOS appended when asked)."""
    out: list[dict[str, Any]] = []
    if spec.tokens is not None:
        for item in spec.tokens:
            special = bool(item.get("special", False))
            tok = tokenizer.token(item["text"], special)
            token_id = int(item.get("id", tok.id))
            logprob = item.get("logprob", _logprob(token_id))
            out.append(_token_doc(token_id, item["text"], special, logprob))
    else:
        out.extend(
            _token_doc(tok.id, tok.text, tok.special) for tok in tokenizer.encode(spec.text or "")
        )
    ends_with_eos = bool(out) and out[-1]["special"] and out[-1]["text"] == eos_token
    if spec.finish_reason == "eos_token" and spec.append_eos and not ends_with_eos:
        eos = tokenizer.token(eos_token, True)
        out.append(_token_doc(eos.id, eos_token, True))
    return out


def generate(spec: ReplySpec, valid: Valid, tokenizer: Tokenizer, eos_token: str) -> Generation:
    """Run the scripted reply through TGI's stopping criteria (length, then EOS, then stop)."""
    candidates = scripted_tokens(spec, tokenizer, eos_token)
    # TGI's StopSequenceCriteria: `{stop}$` on the output so far, which StoppingCriteria keeps
    # short (cut to its last 200 characters once over 300). A `.*` prefix on the whole
    # output (as before) means the same but costs O(n^3) over a stream (bench: 2,000 tokens).
    stop_regexes = [re.compile(f"{re.escape(stop)}$") for stop in valid.stop]
    tokens: list[dict[str, Any]] = []
    output = ""
    finish_reason = spec.finish_reason
    for count, token in enumerate(candidates, start=1):
        tokens.append(token)
        if count >= valid.max_new_tokens:
            finish_reason = "length"
            break
        if token["special"] and token["text"] == eos_token:
            finish_reason = "eos_token"
            break
        output += token["text"]
        if len(output) > 300:
            output = output[-200:]
        if any(regex.findall(output) for regex in stop_regexes):
            finish_reason = "stop_sequence"
            break
    text = "".join(t["text"] for t in tokens if not t["special"])
    seed = valid.seed if valid.sampling else None
    if spec.seed != "unset":
        seed = spec.seed
    prefill: list[dict[str, Any]] = []
    if valid.decoder_input_details:
        prefill = [
            {"id": t.id, "text": t.text, "logprob": None if i == 0 else _logprob(t.id)}
            for i, t in enumerate(valid.input_tokens)
        ]
    return Generation(tokens, finish_reason, text, seed, valid.input_length, prefill)


# --------------------------------------------------------------------------- wire documents


def dumps(doc: Any) -> str:
    """Compact JSON like serde_json (no spaces, UTF-8 kept)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _full_text(gen: Generation, valid: Valid) -> str:
    return valid.inputs + gen.generated_text if valid.return_full_text else gen.generated_text


def generate_response(gen: Generation, valid: Valid) -> dict[str, Any]:
    """TGI's `GenerateResponse`: `details` only when details or decoder_input_details."""
    doc: dict[str, Any] = {"generated_text": _full_text(gen, valid)}
    if valid.details or valid.decoder_input_details:
        details: dict[str, Any] = {
            "finish_reason": gen.finish_reason,
            "generated_tokens": len(gen.tokens),
            "seed": gen.seed,
            "prefill": gen.prefill,
            "tokens": gen.tokens,
        }
        if valid.best_of > 1:
            details["best_of_sequences"] = [
                {
                    "generated_text": _full_text(gen, valid),
                    "finish_reason": gen.finish_reason,
                    "generated_tokens": len(gen.tokens),
                    "seed": gen.seed,
                    "prefill": gen.prefill,
                    "tokens": gen.tokens,
                }
                for _ in range(valid.best_of - 1)
            ]
        if valid.top_n_tokens:
            details["top_tokens"] = [[t] for t in gen.tokens]
        doc["details"] = details
    return doc


def stream_events(gen: Generation, valid: Valid) -> list[dict[str, Any]]:
    """TGI's `StreamResponse` events: `index` from 1, `top_tokens` only when asked for."""
    events: list[dict[str, Any]] = []
    last = len(gen.tokens)
    for index, token in enumerate(gen.tokens, start=1):
        event: dict[str, Any] = {"index": index, "token": token}
        if valid.top_n_tokens:
            event["top_tokens"] = [token]
        event["generated_text"] = _full_text(gen, valid) if index == last else None
        event["details"] = None
        if index == last and valid.details:
            event["details"] = {
                "finish_reason": gen.finish_reason,
                "generated_tokens": len(gen.tokens),
                "seed": gen.seed,
                "input_length": gen.input_length,
            }
        events.append(event)
    return events


def sse(doc: Any) -> bytes:
    """One SSE event as axum 0.7 frames JSON data: `data:` (no space), JSON, blank line."""
    return f"data:{dumps(doc)}\n\n".encode()
