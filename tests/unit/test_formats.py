"""The prompt-format seam: registry, served-model detection, ChatK2's format fields,
and the one walker (``"".join(pieces) == prompt`` for every family)."""

from __future__ import annotations

import itertools
import warnings
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import ValidationError

from langchain_k2 import ChatK2, K2ConfigError, K2Format
from langchain_k2._counting import render_parts
from langchain_k2.backends._base import BackendInfo
from langchain_k2.formats import FORMATS, format_for_model, get_format
from tests.support.scripted_backend import ScriptedBackend

TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add <two> numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("LLM360/K2-V2-Instruct", "k2-v2"),
        ("IFM/K2-V2-Instruct", "k2-v2"),
        ("k2-v2-instruct-awq", "k2-v2"),
        ("/models/K2-V2-Instruct-GPTQ-Int4", "k2-v2"),
        ("LLM360/K2-Think-V2", "k2-think-v2"),
        ("K2-Think-V2-Q4_K_M.gguf", "k2-think-v2"),
        ("benjaminradio/K2-Think-V2-GGUF", "k2-think-v2"),
        ("IFM/K2-Horizon-0.9B", "k2-v3"),
        ("IFM/K2-Horizon-MoVA-36B-A4B", "k2-v3"),
        ("k2_horizon_7b.Q8_0.gguf", "k2-v3"),
        ("LLM360/K2-Chat", "k2-chat"),
        ("k2-chat.Q4_K_M.gguf", "k2-chat"),
        ("meta-llama/Llama-3.1-8B-Instruct", None),
        ("LLM360/K2-Think", None),
        (None, None),
    ],
)
def test_format_for_served_model_ids(model_id: str | None, name: str | None) -> None:
    assert format_for_model(model_id) == name


def test_registry_names_and_unknown_name() -> None:
    assert list(FORMATS) == ["k2-chat", "k2-v2", "k2-think-v2", "k2-v3"]
    assert {get_format(name).name for name in FORMATS} == set(FORMATS)
    with pytest.raises(K2ConfigError, match=r"'k2-chat', 'k2-v2', 'k2-think-v2', 'k2-v3'"):
        get_format("k2-v4")


# --------------------------------------------------------------------------- ChatK2 fields


def model(**kwargs: object) -> ChatK2:
    return ChatK2(backend=ScriptedBackend(), **kwargs)


def test_prompt_format_by_name_or_object() -> None:
    assert model(prompt_format="k2-v3").format.name == "k2-v3"
    assert model(prompt_format=K2Format.chatml()).format == K2Format.chatml()
    assert model().format.name == "k2-chat"
    with pytest.raises(K2ConfigError, match="'k2-v3'"):
        model(prompt_format="k2v3")


def test_reasoning_effort_and_tool_call_format_are_checked() -> None:
    with pytest.raises(K2ConfigError, match=r"has no reasoning.*'k2-v2', 'k2-think-v2' or 'k2-v3'"):
        model(prompt_format="k2-chat", reasoning_effort="low")
    with pytest.raises(ValidationError, match="'low', 'medium' or 'high'"):
        model(prompt_format="k2-v3", reasoning_effort="max")
    with pytest.raises(ValidationError, match="'xml', 'xml_typed' or 'json'"):
        model(prompt_format="k2-v3", tool_call_format="yaml")
    with pytest.raises(K2ConfigError, match="only 'k2-v3'"):
        model(prompt_format="k2-v2", tool_call_format="json")
    assert model(prompt_format="k2-v3", reasoning_effort="low", tool_call_format="json")


def _run(llm: ChatK2, backend: ScriptedBackend, **kwargs: object) -> AIMessage:
    backend.script("The answer is 4.")
    return llm.invoke([HumanMessage("2+2?")], **kwargs)


def test_served_model_picks_the_format_and_metadata_says_which() -> None:
    backend = ScriptedBackend(info_value=BackendInfo(model_id="IFM/K2-Horizon-7B"))
    llm = ChatK2(backend=backend, reasoning_effort="medium")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a K2 family is no "other model"
        message = _run(llm, backend)
    prompt = backend.requests[-1][0]
    assert prompt.startswith("<|ifm|begin_of_text|><|ifm|im_start|>user\n2+2?")
    assert prompt.endswith("<|ifm|im_start|>assistant\n<ifm|think_fast>\n")
    metadata = message.response_metadata
    assert metadata["prompt_format"] == "k2-v3"
    assert metadata["reasoning_effort"] == "medium"
    assert metadata["tool_call_format"] == "xml"


def test_per_call_effort_overrides_the_field_and_is_refused_on_k2_chat() -> None:
    backend = ScriptedBackend()
    llm = ChatK2(backend=backend, prompt_format="k2-v2")
    _run(llm, backend, reasoning_effort="low")
    assert backend.requests[-1][0].endswith("<|im_start|>assistant\n<think_faster>\n")
    chat = ChatK2(backend=backend)
    with pytest.raises(K2ConfigError, match=r"reasoning_effort='high'.*no reasoning"):
        _run(chat, backend, reasoning_effort="high")
    with pytest.raises(K2ConfigError, match="reasoning_effort='max' is not one of"):
        _run(llm, backend, reasoning_effort="max")


def test_user_choice_wins_over_the_served_model() -> None:
    backend = ScriptedBackend(info_value=BackendInfo(model_id="LLM360/K2-Think-V2"))
    llm = ChatK2(backend=backend, prompt_format="k2-v3")
    message = _run(llm, backend)
    assert message.response_metadata["prompt_format"] == "k2-v3"


def test_profile_reports_the_familys_reasoning() -> None:
    v3 = model(prompt_format="k2-v3").profile or {}
    assert v3.get("reasoning_output") is True
    assert v3.get("reasoning_effort_levels") == ["low", "medium", "high"]
    assert v3.get("reasoning_effort_default") == "high"
    assert v3.get("tool_call_streaming") is True
    v2 = model(prompt_format="k2-v2").profile or {}
    assert v2.get("reasoning_effort_default") == "medium"
    chat = model().profile or {}
    assert chat.get("reasoning_output") is False
    assert "reasoning_effort_levels" not in chat


# --------------------------------------------------------------------------- one walker

_FRAGMENTS = [*"ab <>|/&;\n{}\"'", "<|im_end|>", "</think>", "<ifm|tool_calls>", "&lt;"]
texts = st.lists(st.sampled_from(_FRAGMENTS), max_size=8).map("".join)
args = st.dictionaries(st.sampled_from(["a", "b", "q"]), st.integers(-3, 3) | texts, max_size=2)


@st.composite
def conversations(draw: st.DrawFn) -> list[BaseMessage]:
    """Plausible conversations: tool runs, invalid calls, reasoning, prefills."""
    messages: list[BaseMessage] = []
    if draw(st.booleans()):
        messages.append(SystemMessage(draw(texts)))
    for turn in range(draw(st.integers(1, 3))):
        messages.append(HumanMessage(draw(texts)))
        if draw(st.booleans()):
            n_valid, n_invalid = draw(st.integers(0, 2)), draw(st.integers(0, 1))
            valid = [
                {"name": "add", "args": draw(args), "id": f"v{turn}{i}"} for i in range(n_valid)
            ]
            invalid = [
                {"name": "add", "args": draw(texts), "id": f"i{turn}{i}", "error": "bad"}
                for i in range(n_invalid)
            ]
            kwargs = {"reasoning_content": draw(texts)} if draw(st.booleans()) else {}
            messages.append(
                AIMessage(
                    draw(texts),
                    tool_calls=valid,
                    invalid_tool_calls=invalid,
                    additional_kwargs=kwargs,
                )
            )
            messages += [
                ToolMessage(draw(texts), tool_call_id=call["id"]) for call in [*valid, *invalid]
            ]
            if valid or invalid:
                messages.append(AIMessage(draw(texts)))
    if draw(st.booleans()):
        messages.append(AIMessage(draw(texts)))  # a prefill
    return messages


@settings(max_examples=60, deadline=None)
@given(
    conversations(),
    st.sampled_from(list(FORMATS)),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, "low", "high"]),
)
def test_pieces_join_to_the_prompt(
    messages: list[BaseMessage], name: str, with_tools: bool, forced: bool, effort: str | None
) -> None:
    fmt = get_format(name)
    chosen = fmt.settings(effort if fmt.reasoning_efforts else None)
    options = {
        "tools": [TOOL] if with_tools else None,
        "default_system": "Sys <|im_start|>",
        "force_tool_call": forced and fmt.forces_calls,
        "settings": chosen,
    }
    prompt = fmt.render_prompt(messages, **options)  # type: ignore[arg-type]
    pieces = render_parts(messages, fmt=fmt, **options)  # type: ignore[arg-type]
    assert "".join(pieces) == prompt
    # Pieces meet at special markers, which tokenizers never merge across (counting
    # sums the pieces' counts): each later piece starts with one or follows one.
    kept = [p for p in pieces if p]
    markers = fmt.special_markers
    for before, piece in itertools.pairwise(kept):
        assert piece.startswith(markers) or before.endswith(markers), (before, piece)


def test_invalid_tool_calls_are_counted_as_rendered() -> None:
    """The drift issue 20 names: an AIMessage with invalid calls was rendered, not counted."""
    invalid = {"name": "add", "args": "{oops", "id": "c", "error": "bad"}
    messages = [HumanMessage("Hi"), AIMessage("", invalid_tool_calls=[invalid])]
    messages.append(ToolMessage("x", tool_call_id="c"))
    for name in FORMATS:
        fmt = get_format(name)
        prompt = fmt.render_prompt(messages, tools=[TOOL])
        assert "{oops" in prompt
        assert "".join(render_parts(messages, fmt=fmt, tools=[TOOL])) == prompt


# --------------------------------------------------------------------------- the seam


@pytest.mark.parametrize(
    ("name", "reply", "prompt_end"),
    [
        (
            "k2-v3",
            "Add them.</ifm|think>On it.<ifm|tool_calls>\n<ifm|tool_call>add\n"
            "<ifm|arg_key>a</ifm|arg_key>\n<ifm|arg_value>2</ifm|arg_value>\n"
            "<ifm|arg_key>b</ifm|arg_key>\n<ifm|arg_value>3</ifm|arg_value>\n"
            "</ifm|tool_call>\n</ifm|tool_calls>",
            "<|ifm|im_start|>assistant\n<ifm|think>\n",
        ),
        (
            "k2-v2",
            'Add them.</think_fast>On it.\n<tool_call>\n{"name": "add", "arguments": '
            '{"a": 2, "b": 3}}\n</tool_call>',
            "<|im_start|>assistant\n<think_fast>\n",
        ),
    ],
)
def test_the_formats_parser_reads_its_familys_output(
    name: str, reply: str, prompt_end: str
) -> None:
    backend = ScriptedBackend()
    llm = ChatK2(backend=backend, prompt_format=name).bind_tools([TOOL])
    backend.script(reply)
    message = llm.invoke([HumanMessage("2+3?")])
    assert backend.requests[-1][0].endswith(prompt_end)
    assert message.additional_kwargs["reasoning_content"] == "Add them."
    assert message.content == "On it."
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert message.response_metadata["prompt_format"] == name


def test_named_format_and_settings_survive_dumpd_and_load() -> None:
    from langchain_core.load import dumpd, load

    llm = ChatK2(
        endpoint_url="http://127.0.0.1:9",
        prompt_format="k2-v3",
        reasoning_effort="low",
        tool_call_format="json",
    )
    back = load(dumpd(llm), valid_namespaces=["langchain_k2"], allowed_objects=[ChatK2])
    assert (back.format.name, back.reasoning_effort, back.tool_call_format) == (
        "k2-v3",
        "low",
        "json",
    )


def test_per_call_tool_call_format_is_taught_and_parsed() -> None:
    backend = ScriptedBackend()
    llm = ChatK2(backend=backend, prompt_format="k2-v3").bind_tools([TOOL])
    backend.script(
        '</ifm|think><ifm|tool_calls>\n<ifm|tool_call>{"name": "add", "arguments": '
        '{"a": 1, "b": 2}}</ifm|tool_call>\n</ifm|tool_calls>'
    )
    message = llm.invoke([HumanMessage("1+2?")], tool_call_format="json")
    assert "emit one JSON object with the function name" in backend.requests[-1][0]
    assert [c["args"] for c in message.tool_calls] == [{"a": 1, "b": 2}]
    assert message.response_metadata["tool_call_format"] == "json"


def test_a_new_format_is_one_class_and_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """What adding a family touches: a `PromptFormat` subclass and its `FORMATS` entry."""
    from langchain_k2.formats import K2V2Format

    class Upper(K2V2Format):  # a made-up family: K2-V2's dialect, upper-case user turns
        name: ClassVar[str] = "k2-upper"

        def pieces(self, messages: Any, **options: Any) -> list[str]:
            shouted = [
                HumanMessage(str(m.content).upper()) if isinstance(m, HumanMessage) else m
                for m in messages
            ]
            return super().pieces(shouted, **options)

    monkeypatch.setitem(FORMATS, "k2-upper", Upper)
    backend = ScriptedBackend()
    backend.script("hm</think_fast>HI")
    message = ChatK2(backend=backend, prompt_format="k2-upper").invoke("hi")
    assert backend.requests[-1][0] == (
        "<|im_start|>user\nHI<|im_end|>\n<|im_start|>assistant\n<think_fast>\n"
    )
    assert (message.content, message.response_metadata["prompt_format"]) == ("HI", "k2-upper")
    # Counting walks the same renderer.
    parts = render_parts([HumanMessage("hi there")], fmt=get_format("k2-upper"))
    assert "".join(parts) == (
        "<|im_start|>user\nHI THERE<|im_end|>\n<|im_start|>assistant\n<think_fast>\n"
    )


@settings(max_examples=80, deadline=None)
@given(texts, st.sampled_from(list(FORMATS)))
def test_no_text_adds_a_marker_to_any_familys_prompt(text: str, name: str) -> None:
    """User, tool and system text never forge a marker of the family, in any position."""
    fmt = get_format(name)

    def prompt(value: str) -> str:
        call = {"name": "add", "args": {"a": value, value: 1}, "id": "c"}
        messages = [
            SystemMessage(value),
            HumanMessage(value),
            AIMessage(value, tool_calls=[call]),
            ToolMessage(value, tool_call_id="c"),
        ]
        return fmt.render_prompt(messages, tools=[TOOL])

    forged, plain = prompt(text), prompt("x")
    for marker in fmt.special_markers:
        assert forged.count(marker) == plain.count(marker), marker


def test_a_gguf_file_name_picks_the_format_before_the_model_loads() -> None:
    llm = ChatK2(model_path="/models/K2-Horizon-7B-Q4_K_M.gguf")
    assert llm.format.name == "k2-v3"  # the in-process backend is built with its markers
    assert ChatK2(model_path="/models/k2-chat.Q4_K_M.gguf").format.name == "k2-chat"
