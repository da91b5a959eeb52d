"""The engines that take no stop ids get the format's end markers as stop strings.

The hooks are pure JSON codecs (`langchain_k2.backends._engines`), so their bodies are
checked here; the engines with a loopback fake are covered end to end in
``tests/integration/test_family_engine_fields.py``.
"""

from __future__ import annotations

import pytest

from langchain_k2.backends._base import GenerationParams
from langchain_k2.backends._engines import ENGINES
from langchain_k2.formats import K2V3Format

V3 = K2V3Format()
PARAMS = GenerationParams(
    stop=("END",),
    stop_token_ids=V3.stop_token_ids,
    stop_markers=V3.stop_markers,
    bos_in_prompt=True,
)


def body(engine: str) -> dict[str, object]:
    return ENGINES[engine].request_body("p", PARAMS, stream=False, model="m", constraint={})


@pytest.mark.parametrize("engine", ["llama.cpp", "llama-cpp-python"])
def test_llama_cpp_servers_get_the_end_markers_as_stop_strings(engine: str) -> None:
    sent = body(engine)
    assert sent["stop"] == ["END", "<|ifm|im_end|>", "<|ifm|im_start|>", "<|ifm|end_of_text|>"]
    assert "stop_token_ids" not in sent
    assert "add_special_tokens" not in sent  # neither server has a per-request BOS switch


def test_vllm_gets_ids_not_marker_strings() -> None:
    sent = body("vllm")
    assert sent["stop"] == ["END"]
    assert sent["stop_token_ids"] == [250019, 1]
    assert sent["add_special_tokens"] is False


def test_sglang_gets_ids_not_marker_strings() -> None:
    sampling = body("sglang")["sampling_params"]
    assert isinstance(sampling, dict)
    assert sampling["stop"] == ["END"]
    assert sampling["stop_token_ids"] == [250019, 1]
