"""Counting a prompt that holds its own BOS (K2-V3's) as the engine will see it.

An engine that adds a BOS to every prompt (TGI, SGLang, the llama.cpp servers) counts it in
the prompt's input tokens, and in what its tokenizer counts. vLLM and the in-process
backend are told to add none to a prompt that starts with its own BOS text (their
``bos_switch``), while their tokenizer would still add one to a text it counts: there
`get_num_tokens_from_messages` leaves that BOS out, with the server counting pieces and
with a whole-prompt counter (a local tokenizer) alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_k2 import ChatK2
from langchain_k2._counting import count_messages
from langchain_k2._settings import settings_of
from tests.support.fake_engine.tokenizer import SimpleTokenizer
from tests.support.scripted_backend import ScriptedBackend

TOKENIZER = SimpleTokenizer()


@dataclass
class BosBackend(ScriptedBackend):
    """A backend whose tokenizer adds a BOS to every text it counts."""

    bos_switch: bool = False

    def count_tokens(self, text: str) -> int:
        return 1 + len(TOKENIZER.encode(text))


@pytest.mark.parametrize("bos_switch", [True, False])
@pytest.mark.parametrize("prompt_format", ["k2-v3", "k2-chat", "k2-v2"])
def test_the_engines_own_bos_is_counted_only_where_it_adds_one(
    bos_switch: bool, prompt_format: str
) -> None:
    backend = BosBackend(bos_switch=bos_switch)
    backend.script("Fine.")
    llm = ChatK2(backend=backend, prompt_format=prompt_format)
    messages = [SystemMessage("Be brief."), HumanMessage("How are you?")]
    llm.invoke(messages)
    prompt = backend.requests[0][0]
    own_bos = bos_switch and llm.format.bos_in_prompt  # only K2-V3's prompt holds its BOS
    expected = len(TOKENIZER.encode(prompt)) + (0 if own_bos else 1)
    assert llm.get_num_tokens_from_messages(messages) == expected  # piece by piece
    counter = backend.count_tokens  # a whole-prompt counter, as a local tokenizer is
    whole = count_messages(
        settings_of(llm), messages, None, None, counter, engine_skips_bos=bos_switch
    )
    assert whole == expected
