"""What each engine is sent for a family's stop ids and BOS (spec k2-family sections 5-6).

Crosses a real loopback boundary: ChatK2 talks HTTP to the fake TGI, vLLM and SGLang
servers (`tests/support/fake_engine/`), and the bodies they recorded are read back.
"""

from __future__ import annotations

from typing import Any

import pytest

from langchain_k2 import ChatK2
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply

ROUTE = {"tgi": "/", "vllm": "/v1/completions", "sglang": "/generate"}
IDS = {"k2-v3": [250019, 1], "k2-v2": [250019, 1], "k2-think-v2": [250019, 1, 250003]}


def chat(server: FakeEngine, **kwargs: Any) -> ChatK2:
    return ChatK2(
        endpoint_url=server.url,
        engine=server.engine,
        retry_backoff=0.0,
        timeout=10,
        max_new_tokens=32,
        **kwargs,
    )


def body(server: FakeEngine) -> dict[str, Any]:
    sent = [r["body"] for r in server.requests(ROUTE[server.engine]) if r["method"] == "POST"]
    sent = [b for b in sent if (b.get("sampling_params") or {}).get("max_new_tokens") != 0]
    assert len(sent) == 1
    return sent[0]


@pytest.mark.parametrize("family", ["k2-v3", "k2-v2", "k2-think-v2"])
@pytest.mark.parametrize("streamed", [False, True])
def test_each_engine_gets_the_familys_stop_ids_and_bos_flag(
    served: FakeEngine, family: str, streamed: bool
) -> None:
    served.script(reply(text="Paris."))
    model = chat(served, prompt_format=family)
    if streamed:
        chunks = list(model.stream("Capital of France?"))
        message = chunks[0]
        for chunk in chunks[1:]:
            message += chunk
    else:
        message = model.invoke("Capital of France?")
    # No close tag came: K2-V2's rule keeps it as the (unfinished) thought; K2-V3's (the
    # spec's, upstream vLLM's whole-output rule) makes text with no close tag the answer.
    if family == "k2-v3":
        assert (message.content, message.additional_kwargs) == ("Paris.", {})
    else:
        expected = ("", {"reasoning_content": "Paris."})
        assert (message.content, message.additional_kwargs) == expected
    sent = body(served)
    bos_text = family == "k2-v3"
    if served.engine == "vllm":
        assert sent["stop_token_ids"] == IDS[family]
        assert sent["prompt"].startswith("<|ifm|begin_of_text|>") is bos_text
        # vLLM adds a BOS unless told not to: K2-V3's prompt already holds it.
        assert sent.get("add_special_tokens", True) is (not bos_text)
    elif served.engine == "sglang":
        assert sent["sampling_params"]["stop_token_ids"] == IDS[family]
        assert "add_special_tokens" not in sent  # /generate has no such switch
    else:  # TGI takes no stop ids: the end markers go as stop strings, within its limit
        stops = sent["parameters"]["stop"]
        assert stops[0] == ("<|ifm|im_end|>" if family == "k2-v3" else "<|im_end|>")
        assert "stop_token_ids" not in sent["parameters"]


def test_k2_chat_sends_no_stop_ids_and_lets_the_engine_add_its_bos(served: FakeEngine) -> None:
    served.script(reply(text="Paris."))
    assert chat(served).invoke("Capital of France?").content == "Paris."
    sent = body(served)
    fields = sent.get("sampling_params", sent)
    assert "stop_token_ids" not in fields
    assert "add_special_tokens" not in sent
