"""8. Real-world schemas: what binds, what llama.cpp compiles, valid answers, prompt cost.

The corpus is `unit_tests.schema_corpus` (MCP reference servers, langchain-community,
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
  tools, so the schema is only in its grammar.
"""

from __future__ import annotations

import importlib.util
import json
import random
import warnings
from collections import Counter
from typing import Any

import jsonschema
from langchain_core.messages import HumanMessage

from benchmarks.common import Row, Settings
from langchain_k2 import ChatK2, K2ConfigError, K2SchemaWarning, ToolDefinitionError
from langchain_k2.backends.llamacpp import find_smollm2_gguf
from langchain_k2.prompt import K2Format
from langchain_k2.structured import build_spec
from langchain_k2.tool_binding import normalize_tools
from langchain_k2.turn import call_grammar

SECTION = "8. Real-world schemas"
FAMILIES = ("mcp", "langchain-community", "bfcl", "schemastore", "kubernetes")
KEYS = tuple(
    f"schemas.{family}.{what}" for family in FAMILIES for what in ("bound", "valid", "tokens")
)
QUESTION = "Fill in an example that fits."
SAMPLE = 8
"""Schemas per family answered on the stand-in model, each side."""


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


def _compiles(llama_cpp: Any, schema: dict[str, Any]) -> bool:
    from langchain_k2.backends.llamacpp_compat import schema_to_gbnf

    try:
        gbnf = schema_to_gbnf(llama_cpp, json.dumps(schema))
        llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)
        return True
    except Exception:
        return False


def _ours_grammar(entry: Any) -> dict[str, Any] | None:
    try:
        if entry.kind == "tool":
            return call_grammar(normalize_tools([entry.schema]), "llamacpp")["value"]
        grammar = build_spec(entry.schema, "json_schema", engine="llamacpp").grammar
        return None if grammar is None else dict(grammar["value"])
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


def _k2_answer(llm: ChatK2, entry: Any, whole: dict[str, Any]) -> tuple[bool, int]:
    """Whether ChatK2's answer is valid against the whole schema; the prompt tokens."""
    message = HumanMessage(QUESTION)
    if entry.kind == "tool":
        [tool] = normalize_tools([entry.schema])
        name = tool["function"]["name"]
        reply = llm.bind_tools([tool], tool_choice=name).invoke([message])
        calls = [c for c in reply.tool_calls if c["name"] == name]
        ok = bool(calls) and not _rejects(whole, calls[0]["args"])
    else:
        result = llm.with_structured_output(entry.schema, include_raw=True).invoke([message])
        reply = result["raw"]
        ok = result["parsed"] is not None and not _rejects(whole, result["parsed"])
    usage = reply.usage_metadata
    return ok, int(usage["input_tokens"]) if usage else 0


def _peer_answer(llama: Any, entry: Any, whole: dict[str, Any]) -> tuple[bool, int]:
    messages = [{"role": "user", "content": QUESTION}]
    greedy = {"temperature": 0.0, "top_k": 1, "max_tokens": 256}
    try:
        if entry.kind == "tool":
            tool = _tool_dict(entry)
            name = tool["function"]["name"]
            out = llama.create_chat_completion(
                messages, tools=[tool],
                tool_choice={"type": "function", "function": {"name": name}}, **greedy,
            )  # fmt: skip
            calls = out["choices"][0]["message"].get("tool_calls") or []
            args = json.loads(calls[0]["function"]["arguments"]) if calls else None
        else:
            out = llama.create_chat_completion(
                messages, response_format={"type": "json_object", "schema": whole}, **greedy
            )
            args = json.loads(out["choices"][0]["message"]["content"] or "null")
    except Exception:
        return False, 0
    return args is not None and not _rejects(whole, args), int(out["usage"]["prompt_tokens"])


def _bare_prompt_tokens(llm: ChatK2, llama: Any) -> tuple[int, int]:
    message = HumanMessage(QUESTION)
    ours = llm.invoke([message], max_new_tokens=1).usage_metadata
    peer = llama.create_chat_completion([{"role": "user", "content": QUESTION}], max_tokens=1)
    return (int(ours["input_tokens"]) if ours else 0), int(peer["usage"]["prompt_tokens"])


def _bound_row(family: str, members: list[Any], llama_cpp: Any) -> tuple[Row, dict[str, Any]]:
    outcomes: Counter[str] = Counter()
    wholes: dict[str, dict[str, Any]] = {}
    ours_ok = peer_ok = 0
    for entry in members:
        outcome, whole = _bind(entry)
        outcomes[outcome] += 1
        if whole is not None:
            wholes[entry.id] = whole
        if llama_cpp is not None:
            grammar = _ours_grammar(entry)
            ours_ok += grammar is not None and _compiles(llama_cpp, grammar)
            peer_ok += _compiles(llama_cpp, _peer_schema(entry))
    total = len(members)
    row = Row(
        key=f"schemas.{family}.bound", section=SECTION,
        measure=f"{family}: schemas bound (of {total})", k2=outcomes["bound"],
        peer=None, unit="schemas", peer_name="-", compare=False,
        note=(f"bound {outcomes['bound']}, refused clearly {outcomes['refused']}, "
              f"crashed {outcomes['crashed']}; " + (
                  f"llama.cpp compiles ChatK2's grammar for {ours_ok}/{total}, "
                  f"llama-cpp-python's converter the schema as given {peer_ok}/{total}"
                  if llama_cpp is not None else "llama.cpp grammars not measured (no llama_cpp)")),
    )  # fmt: skip
    return row, wholes


def _answer_rows(
    family: str, sample: list[Any], *, wholes: dict[str, Any], llm: ChatK2, llama: Any,
    bare: tuple[int, int],
) -> list[Row]:  # fmt: skip
    valid = {"k2": 0, "peer": 0}
    tokens: dict[str, list[int]] = {"k2": [], "peer": []}
    for entry in sample:
        whole = wholes[entry.id]
        ok, used = _k2_answer(llm, entry, whole)
        valid["k2"] += ok
        tokens["k2"].append(used - bare[0])
        ok, used = _peer_answer(llama, entry, whole)
        valid["peer"] += ok
        if used:
            tokens["peer"].append(used - bare[1])
    n = len(sample)
    k2_tokens = sum(tokens["k2"]) / max(1, len(tokens["k2"]))
    peer_tokens = sum(tokens["peer"]) / max(1, len(tokens["peer"]))
    return [
        Row(
            key=f"schemas.{family}.valid", section=SECTION,
            measure=f"{family}: valid answers, sample of {n}, SmolLM2-135M greedy",
            k2=100.0 * valid["k2"] / n, peer=100.0 * valid["peer"] / n, unit="% valid",
            peer_name="llama-cpp-python create_chat_completion",
            reference="higher is better",
            note=f"ChatK2 {valid['k2']}/{n}, llama-cpp-python {valid['peer']}/{n}",
        ),
        Row(
            key=f"schemas.{family}.tokens", section=SECTION,
            measure=f"{family}: prompt tokens one schema adds", k2=k2_tokens,
            peer=peer_tokens, unit="tokens", peer_name="llama-cpp-python create_chat_completion",
            compare=False,
            note=("ChatK2: the model card's tools prompt holds the schema; the peer's chat "
                  "template (SmolLM2's) has no tools, the schema is in its grammar only. "
                  "ChatK2's prompts are byte-prefixes across turns, so a prefix cache (vLLM, "
                  "SGLang, TGI, llama.cpp's slot cache) pays them once per conversation"),
        ),
    ]  # fmt: skip


def _not_run(family: str, why: str, whats: tuple[str, ...]) -> list[Row]:
    return [
        Row(key=f"schemas.{family}.{what}", section=SECTION, measure=what, k2=None, peer=None,
            unit="-", note=why)
        for what in whats
    ]  # fmt: skip


def run(settings: Settings) -> list[Row]:
    """Bind every corpus schema; answer a sample each side on the stand-in model.

    ``--quick`` binds the Schema Store family only (no MCP servers, no downloads) and
    answers nothing.
    """
    from unit_tests.schema_corpus import corpus

    warnings.simplefilter("ignore", K2SchemaWarning)
    families = ("schemastore",) if settings.quick else FAMILIES
    entries = corpus(families)
    llama_cpp = None
    if importlib.util.find_spec("llama_cpp") is not None:
        import llama_cpp
    path = find_smollm2_gguf()
    llm = llama = None
    if llama_cpp is not None and path is not None and not settings.quick:
        llm = ChatK2(model_path=str(path), prompt_format=K2Format.chatml(), temperature=0,
                     max_new_tokens=256, max_tool_call_retries=1)  # fmt: skip
        llama = llm._get_backend()._ensure_loaded()  # type: ignore[attr-defined]
    bare = _bare_prompt_tokens(llm, llama) if llm is not None else (0, 0)
    rows: list[Row] = []
    for family in FAMILIES:
        if family not in families:
            rows += _not_run(family, "not run in --quick", ("bound", "valid", "tokens"))
            continue
        members = [e for e in entries if e.family == family]
        if settings.quick:  # the four smallest
            members = sorted(members, key=lambda e: len(json.dumps(e.schema)))[:4]
        row, wholes = _bound_row(family, members, llama_cpp)
        rows.append(row)
        sample = [e for e in members if e.id in wholes]
        random.Random(family).shuffle(sample)
        if llm is None or not sample:
            why = "not run in --quick" if settings.quick else "skipped: no llama.cpp or SmolLM2"
            rows += _not_run(family, why, ("valid", "tokens"))
            continue
        rows += _answer_rows(
            family, sample[:SAMPLE], wholes=wholes, llm=llm, llama=llama, bare=bare
        )
    return rows
