"""``ChatK2.profile`` tells LangChain what K2-Chat can do (issue 15, item 5).

The static capabilities are there from construction; the window comes from
``context_window`` at once, and from the engine once it has reported its limits (the
first call), narrowed by ``context_window``. A profile the user passes is kept as given.
LangChain's ``SummarizationMiddleware(trigger=("fraction", ...))`` accepts the model (it
raises for a model without ``max_input_tokens``) and summarizes at the fraction of the
engine's window.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from langchain_k2 import ChatK2
from langchain_k2.backends._base import BackendInfo
from tests.support.scripted_backend import ScriptedBackend


def scripted(info: BackendInfo | None = None, **kwargs: Any) -> tuple[ChatK2, ScriptedBackend]:
    backend = ScriptedBackend()
    if info is not None:
        backend.info_value = info
    return ChatK2(backend=backend, **kwargs), backend


def test_static_capabilities_are_known_at_construction() -> None:
    llm, _ = scripted()
    profile = llm.profile
    assert profile is not None
    assert profile["open_weights"] is True
    assert (profile["tool_calling"], profile["tool_choice"]) == (True, True)
    assert profile["tool_call_streaming"] is True
    assert profile["text_inputs"] is True
    assert not any(profile[k] for k in ("image_inputs", "audio_inputs", "pdf_inputs"))
    assert "max_input_tokens" not in profile  # the window is not known yet


def test_context_window_gives_the_window_at_once() -> None:
    llm, _ = scripted(context_window=8192)
    assert llm.profile is not None
    assert (llm.profile["max_input_tokens"], llm.profile["max_output_tokens"]) == (8192, 8192)


@pytest.mark.parametrize("run", ["invoke", "ainvoke", "stream", "astream"])
async def test_the_engines_limits_fill_the_window_after_a_call(run: str) -> None:
    info = BackendInfo(max_stop_sequences=4, max_input_tokens=4095, max_total_tokens=4096)
    llm, backend = scripted(info)
    backend.script(["ok"])
    if run == "invoke":
        llm.invoke("q")
    elif run == "ainvoke":
        await llm.ainvoke("q")
    elif run == "stream":
        list(llm.stream("q"))
    else:
        [c async for c in llm.astream("q")]
    assert llm.profile is not None
    assert (llm.profile["max_input_tokens"], llm.profile["max_output_tokens"]) == (4095, 4096)
    assert llm.profile["tool_calling"] is True


def test_context_window_narrows_the_engines_window() -> None:
    info = BackendInfo(max_stop_sequences=4, max_input_tokens=4095, max_total_tokens=4096)
    llm, backend = scripted(info, context_window=2048)
    backend.script(["ok"])
    llm.invoke("q")
    assert llm.profile is not None
    assert (llm.profile["max_input_tokens"], llm.profile["max_output_tokens"]) == (2048, 2048)


def test_a_profile_given_by_the_user_is_kept() -> None:
    info = BackendInfo(max_stop_sequences=4, max_input_tokens=4095, max_total_tokens=4096)
    llm, backend = scripted(info, profile={"max_input_tokens": 1000})
    backend.script(["ok"])
    llm.invoke("q")
    assert llm.profile == {"max_input_tokens": 1000}


def test_summarization_middleware_accepts_the_model_and_uses_its_window() -> None:
    from langchain.agents.middleware import SummarizationMiddleware

    llm, backend = scripted(context_window=2000, max_new_tokens=64)
    middleware = SummarizationMiddleware(model=llm, trigger=("fraction", 0.5), keep=("messages", 2))
    history: list[Any] = []
    for turn in range(30):
        history += [HumanMessage(f"Question {turn} " + "word " * 40), AIMessage(f"Answer {turn}")]
    assert llm.get_num_tokens_from_messages(history) > 1000
    backend.script(["A summary of the early turns."])
    update = middleware.before_model({"messages": history}, runtime=None)  # type: ignore[arg-type]
    assert update is not None  # over half of the 2000-token window: summarized
    kept = update["messages"]
    assert any("A summary of the early turns." in str(m.content) for m in kept)
    assert [m.content for m in kept[-2:]] == [history[-2].content, history[-1].content]
    small = history[-2:]
    assert middleware.before_model({"messages": small}, runtime=None) is None  # type: ignore[arg-type]


def test_summarization_middleware_refuses_a_model_without_a_window() -> None:
    from langchain.agents.middleware import SummarizationMiddleware

    llm, _ = scripted()
    with pytest.raises(ValueError, match="Model profile information is required"):
        SummarizationMiddleware(model=llm, trigger=("fraction", 0.5))


@pytest.mark.parametrize(
    ("fmt", "levels", "default"),
    [
        ("k2-chat", None, None),
        ("k2-v2", ["low", "medium", "high"], "medium"),
        ("k2-think-v2", ["low", "medium", "high"], "high"),
        ("k2-v3", ["low", "medium", "high"], "high"),
    ],
)
def test_each_family_reports_reasoning_and_streamed_calls(
    fmt: str, levels: list[str] | None, default: str | None
) -> None:
    llm, _ = scripted(prompt_format=fmt)
    profile: Any = llm.profile
    assert profile["tool_call_streaming"] is True
    assert profile["reasoning_output"] is (levels is not None)
    assert profile.get("reasoning_effort_levels") == levels
    assert profile.get("reasoning_effort_default") == default
