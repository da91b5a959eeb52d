"""The chat model's settings as one call reads them (`langchain_k2._settings`), and the
``tokenizer`` field's type (`langchain_k2._tokenizer.Tokenizer`: what counting uses).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from pydantic import ValidationError

from langchain_k2 import ChatK2
from langchain_k2._settings import settings_of
from langchain_k2.backends._base import BackendInfo
from tests.support.scripted_backend import ScriptedBackend


class CharTokenizer:
    """A loaded tokenizer as counting sees it: one token per character, plus a BOS."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, text: str, /, *, add_special_tokens: bool = False, **_: Any) -> list[int]:
        self.texts.append(text)
        return [0] * (len(text) + (1 if add_special_tokens else 0))


def test_a_loaded_tokenizer_counts_locally() -> None:
    tokenizer = CharTokenizer()
    llm = ChatK2(backend=ScriptedBackend(), tokenizer=tokenizer)
    assert llm.get_num_tokens("abcd") == 5  # with the BOS, as the server counts a prompt
    assert tokenizer.texts == ["abcd"]


def test_a_tokenizer_of_the_wrong_kind_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="tokenizer"):
        ChatK2(backend=ScriptedBackend(), tokenizer=42)


def test_the_settings_follow_the_served_family_once_the_engine_says_it() -> None:
    backend = ScriptedBackend()
    backend.info_value = BackendInfo(model_id="LLM360/K2-V2-Instruct")
    llm = ChatK2(backend=backend, reasoning_effort="low", max_new_tokens=33, model="mine")
    before = settings_of(llm)
    backend.script(["</think_faster>", "ok"])
    message = llm.invoke([HumanMessage("q")])
    after = settings_of(llm)
    assert (before.fmt.name, after.fmt.name) == ("k2-chat", "k2-v2")
    assert (after.reasoning_effort, after.sampling.max_new_tokens) == ("low", 33)
    assert after.model_name == "mine"
    assert message.response_metadata["prompt_format"] == "k2-v2"
    assert message.response_metadata["model_name"] == "LLM360/K2-V2-Instruct"
