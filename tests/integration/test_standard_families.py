"""LangChain's standard integration suite on each newer K2 family, over a scripted engine.

K2-V2 (``prompt_format="k2-v2"``), K2-Think-V2 (``"k2-think-v2"``) and K2-V3 (``"k2-v3"``)
each run ``ChatModelIntegrationTests`` against the loopback fake vLLM (and, for some, the fake
TGI and SGLang; a non-default effort; K2-V3's other call forms) whose every reply is computed
from the raw prompt by ``tests/support/family_responder.py``: a thought closed
by the effort's tag, then the answer, the JSON the schema asks for, or a call in the
family's own syntax. What is under test is ChatK2's wire, rendering, parsing and reasoning
handling, not a model's intelligence. ``_ReasoningChecked`` runs every generation of the
suite through one more check: the thought comes back as reasoning and never in the content
or in a call's arguments.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.tools import tool

from langchain_k2 import ChatK2
from tests.support.fake_engine import FakeEngine, FakeEngineError
from tests.support.fake_engine.client import reply
from tests.support.family_responder import THOUGHT_MARK, respond
from tests.support.standard_suite import ChatK2Capabilities

RESPONDER = "tests.support.family_responder:respond"


def _visible(message: BaseMessage) -> str:
    """The content and call arguments a user would see (where reasoning must not be)."""
    content = (
        message.content
        if isinstance(message.content, str)
        else json.dumps(
            [
                b
                for b in message.content
                if not (isinstance(b, dict) and b.get("type") == "reasoning")
            ]
        )
    )
    calls = getattr(message, "tool_calls", []) + getattr(message, "invalid_tool_calls", [])
    return content + json.dumps([c.get("args") for c in calls], ensure_ascii=False)


def _check(message: BaseMessage) -> None:
    assert THOUGHT_MARK not in _visible(message), f"reasoning leaked: {message!r}"
    assert THOUGHT_MARK in str(message.additional_kwargs.get("reasoning_content", "")), (
        f"no reasoning: {message!r}"
    )


class _ReasoningChecked(ChatK2):
    """ChatK2 whose every answer is checked: the scripted thought is reasoning, never text."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        result = super()._generate(messages, *args, **kwargs)
        _check(result.generations[0].message)
        return result

    async def _agenerate(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> ChatResult:
        result = await super()._agenerate(messages, *args, **kwargs)
        _check(result.generations[0].message)
        return result

    def _stream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        whole: ChatGenerationChunk | None = None
        for chunk in super()._stream(messages, *args, **kwargs):
            whole = chunk if whole is None else whole + chunk
            yield chunk
        assert whole is not None
        _check(whole.message)

    async def _astream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        whole: ChatGenerationChunk | None = None
        async for chunk in super()._astream(messages, *args, **kwargs):
            whole = chunk if whole is None else whole + chunk
            yield chunk
        assert whole is not None
        _check(whole.message)


def _scripted(engine: str) -> Iterator[FakeEngine]:
    with FakeEngine(engine=engine) as server:
        server.set_default(reply(text="(no responder)", responder=RESPONDER))
        yield server


@pytest.fixture(scope="module")
def scripted_vllm() -> Iterator[FakeEngine]:
    """One fake vLLM for the module, every reply computed by the family responder."""
    yield from _scripted("vllm")


@pytest.fixture(scope="module")
def scripted_tgi() -> Iterator[FakeEngine]:
    """The same scripted model behind the fake TGI (grammar constraints, no structural tag)."""
    yield from _scripted("tgi")


@pytest.fixture(scope="module")
def scripted_sglang() -> Iterator[FakeEngine]:
    """The same scripted model behind the fake SGLang."""
    yield from _scripted("sglang")


class _FamilySuite(ChatK2Capabilities):
    prompt_format = ""
    engine = "vllm"
    options: dict[str, Any] = {}  # noqa: RUF012 -- read only

    @pytest.fixture(autouse=True)
    def _server(self, request: pytest.FixtureRequest) -> None:
        self._url = request.getfixturevalue(f"scripted_{self.engine}").url

    @property
    def chat_model_class(self) -> type[ChatK2]:
        return _ReasoningChecked

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "endpoint_url": self._url,
            "engine": self.engine,
            "prompt_format": self.prompt_format,
            "temperature": 0,
            "timeout": 10,
            "retry_backoff": 0.0,
            **self.options,
        }


class TestK2V2(_FamilySuite):
    prompt_format = "k2-v2"


class TestK2ThinkV2(_FamilySuite):
    prompt_format = "k2-think-v2"


class TestK2V3(_FamilySuite):
    prompt_format = "k2-v3"


class TestK2V2HighEffort(_FamilySuite):
    prompt_format = "k2-v2"
    options = {"reasoning_effort": "high"}  # noqa: RUF012


class TestK2ThinkV2LowEffort(_FamilySuite):
    prompt_format = "k2-think-v2"
    options = {"reasoning_effort": "low"}  # noqa: RUF012


class TestK2V3LowEffortXmlTyped(_FamilySuite):
    prompt_format = "k2-v3"
    options = {"reasoning_effort": "low", "tool_call_format": "xml_typed"}  # noqa: RUF012


class TestK2V3JsonCalls(_FamilySuite):
    prompt_format = "k2-v3"
    options = {"tool_call_format": "json"}  # noqa: RUF012


class TestK2V2OnTGI(_FamilySuite):
    prompt_format = "k2-v2"
    engine = "tgi"


class TestK2ThinkV2OnSGLang(_FamilySuite):
    prompt_format = "k2-think-v2"
    engine = "sglang"


class TestK2V3OnTGI(_FamilySuite):
    prompt_format = "k2-v3"
    engine = "tgi"


class TestK2V3OnSGLang(_FamilySuite):
    prompt_format = "k2-v3"
    engine = "sglang"


@tool
def lookup_customer(name: str, limit: int) -> str:
    """Find a customer by name."""
    return name * limit


# (prompt_format, options) -> what the scripted model writes after the thought
FORMS = {
    ("k2-v2", ""): "</think_fast><tool_call>\n"
    '{"name": "lookup_customer", "arguments": {"name": "你好", "limit": 2}}\n</tool_call>',
    ("k2-think-v2", "low"): "</think_faster><tool_call>\n"
    '{"name": "lookup_customer", "arguments": {"name": "你好", "limit": 2}}\n</tool_call>',
    ("k2-v3", "xml"): "</ifm|think><ifm|tool_calls>\n<ifm|tool_call>lookup_customer\n"
    "<ifm|arg_key>name</ifm|arg_key>\n<ifm|arg_value>你好</ifm|arg_value>\n"
    "<ifm|arg_key>limit</ifm|arg_key>\n<ifm|arg_value>2</ifm|arg_value>\n"
    "</ifm|tool_call>\n</ifm|tool_calls>",
    ("k2-v3", "xml_typed"): "</ifm|think><ifm|tool_calls>\n<ifm|tool_call>lookup_customer\n"
    "<ifm|arg_key>name</ifm|arg_key>\n<ifm|arg_type>string</ifm|arg_type>\n"
    "<ifm|arg_value>你好</ifm|arg_value>\n<ifm|arg_key>limit</ifm|arg_key>\n"
    "<ifm|arg_type>integer</ifm|arg_type>\n<ifm|arg_value>2</ifm|arg_value>\n"
    "</ifm|tool_call>\n</ifm|tool_calls>",
    ("k2-v3", "json"): "</ifm|think><ifm|tool_calls>\n<ifm|tool_call>"
    '{"name": "lookup_customer", "arguments": {"name": "你好", "limit": 2}}'
    "</ifm|tool_call>\n</ifm|tool_calls>",
}


@pytest.mark.parametrize(("family", "variant"), sorted(FORMS))
def test_the_scripted_model_writes_the_family_s_own_call_form(
    scripted_vllm: FakeEngine, family: str, variant: str
) -> None:
    """What the suite runs on is each family's real output syntax, for the prompt ChatK2 sent."""
    options: dict[str, Any] = {}
    if family == "k2-v3":
        options["tool_call_format"] = variant
    elif variant:
        options["reasoning_effort"] = variant
    llm = ChatK2(endpoint_url=scripted_vllm.url, engine="vllm", prompt_format=family, **options)
    message = llm.bind_tools([lookup_customer]).invoke("Find '你好', 2 of them.")
    sent = scripted_vllm.requests()[-1]["body"]
    written = respond(sent["prompt"], sent)
    assert written.startswith(THOUGHT_MARK)
    assert written.endswith(FORMS[family, variant])
    assert message.tool_calls[0]["args"] == {"name": "你好", "limit": 2}
    assert message.content == ""
    assert message.additional_kwargs["reasoning_content"].startswith(THOUGHT_MARK)


def test_a_responder_that_cannot_be_loaded_is_refused(scripted_vllm: FakeEngine) -> None:
    with pytest.raises(FakeEngineError, match="cannot be loaded"):
        scripted_vllm.script(reply(text="x", responder="tests.integration.nowhere:respond"))
    with pytest.raises(FakeEngineError, match=r"package\.module:function"):
        scripted_vllm.script(reply(text="x", responder="no_colon"))
