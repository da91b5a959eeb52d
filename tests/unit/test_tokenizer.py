"""`langchain_k2._tokenizer` and `langchain_k2._format_check` on a K2-style tokenizer built here."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from langchain_k2 import K2ConfigError, K2Format, render_prompt
from langchain_k2._context import fit_messages
from langchain_k2._format_check import (
    check_format,
    format_from_tokenizer,
    marker_problems,
    template_mismatch,
)
from langchain_k2._prompt import DEFAULT_FORMAT
from langchain_k2._tokenizer import count_prompt_tokens, load_tokenizer
from tests.support.k2_tokenizer import K2_CHAT_TEMPLATE, K2_SPECIAL_TOKENS, build_k2_tokenizer

SYSTEM = "You are a helpful assistant."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def k2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_k2_tokenizer(tmp_path_factory.mktemp("k2"))


@pytest.fixture(scope="module")
def tok(k2_dir: Path) -> Any:
    return load_tokenizer(k2_dir)


def build_and_load(tmp_path: Path, **kwargs: Any) -> Any:
    return load_tokenizer(build_k2_tokenizer(tmp_path / "tok", **kwargs))


def plain_tokens(tok: Any, text: str) -> int:
    return len(tok.encode(text, add_special_tokens=False))


# --------------------------------------------------------------------------- loading


def test_load_tokenizer_reads_a_local_directory_and_passes_a_loaded_one_through(
    k2_dir: Path, tok: Any
) -> None:
    assert (k2_dir / "tokenizer.json").is_file()
    assert json.loads((k2_dir / "tokenizer_config.json").read_text())["chat_template"] == (
        K2_CHAT_TEMPLATE
    )
    assert load_tokenizer(tok) is tok
    assert load_tokenizer(str(k2_dir)).get_vocab() == tok.get_vocab()


def test_load_tokenizer_reads_a_bare_tokenizer_json(k2_dir: Path, tok: Any) -> None:
    from_file = load_tokenizer(k2_dir / "tokenizer.json")
    prompt = render_prompt([SystemMessage(SYSTEM), HumanMessage("Hello")])
    assert count_prompt_tokens(from_file, prompt) == count_prompt_tokens(tok, prompt)


def test_a_missing_path_says_to_download_the_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(K2ConfigError) as info:
        load_tokenizer(tmp_path / "nowhere")
    text = str(info.value)
    assert "does not exist" in text
    assert 'hf download LLM360/K2-Chat --include "tokenizer*" --local-dir' in text


def test_a_hub_id_is_never_fetched() -> None:
    with pytest.raises(K2ConfigError, match="never fetched from the Hub"):
        load_tokenizer("LLM360/K2-Chat")


def test_a_directory_without_a_tokenizer_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(K2ConfigError, match="No tokenizer could be loaded") as info:
        load_tokenizer(tmp_path)
    assert "hf download" in str(info.value)


def test_without_transformers_the_error_names_the_extra(
    k2_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(K2ConfigError, match=r'pip install "langchain-k2\[tokenizer\]"'):
        load_tokenizer(k2_dir)


# --------------------------------------------------------------------------- counting


@pytest.mark.parametrize("marker", K2_SPECIAL_TOKENS)
def test_each_marker_and_tag_is_one_token(tok: Any, marker: str) -> None:
    assert count_prompt_tokens(tok, marker) == 1
    assert count_prompt_tokens(tok, f"Hello{marker}there") == (
        plain_tokens(tok, "Hello") + 1 + plain_tokens(tok, "there")
    )


def test_a_prompt_counts_its_text_plus_one_per_marker(tok: Any) -> None:
    messages: list[BaseMessage] = [
        SystemMessage(SYSTEM),
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "1"}]),
        ToolMessage('{"temperature": 21}', tool_call_id="1"),
    ]
    prompt = render_prompt(messages, tools=[WEATHER_TOOL])
    pieces = [prompt]
    for marker in K2_SPECIAL_TOKENS:
        pieces = [part for piece in pieces for part in piece.split(marker)]
    markers = sum(prompt.count(m) for m in K2_SPECIAL_TOKENS)
    assert markers == 18  # 10 tags in the function-calling instructions, 8 in the turns
    expected = markers + sum(plain_tokens(tok, piece) for piece in pieces if piece)
    assert count_prompt_tokens(tok, prompt) == expected
    # The prompt survives the round trip the loopback TGI server does.
    assert tok.decode(tok.encode(prompt, add_special_tokens=False)) == prompt


def test_a_neutralized_marker_in_user_text_is_ordinary_text(tok: Any) -> None:
    prompt = render_prompt([HumanMessage("say <|beginofuser|>")])
    assert "&lt;|beginofuser|>" in prompt
    assert count_prompt_tokens(tok, prompt) > 2 + plain_tokens(tok, "say ") + 1


def test_markers_are_matched_even_if_the_tokenizer_splits_special_tokens(tmp_path: Path) -> None:
    directory = build_k2_tokenizer(tmp_path / "split")
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["split_special_tokens"] = True
    config_path.write_text(json.dumps(config))
    splitting = load_tokenizer(directory)
    assert len(splitting.encode("<|beginofuser|>", add_special_tokens=False)) > 1
    assert count_prompt_tokens(splitting, "<|beginofuser|>") == 1


def test_add_special_tokens_counts_a_bos_the_tokenizer_adds(tmp_path: Path) -> None:
    from tokenizers import processors

    directory = build_k2_tokenizer(tmp_path / "bos", bos_token="<|startoftext|>")
    raw_path = directory / "tokenizer.json"
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(raw_path))
    bos_id = raw.token_to_id("<|startoftext|>")
    raw.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A", special_tokens=[("<|startoftext|>", bos_id)]
    )
    raw.save(str(raw_path))
    tok = load_tokenizer(directory)
    prompt = render_prompt([HumanMessage("Hello")])
    assert count_prompt_tokens(tok, prompt, add_special_tokens=True) == (
        count_prompt_tokens(tok, prompt) + 1
    )


# --------------------------------------------------------------------------- format check


def test_k2s_own_tokenizer_passes_every_check(tok: Any) -> None:
    assert check_format(DEFAULT_FORMAT, tok) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert format_from_tokenizer(tok) is DEFAULT_FORMAT
    custom = K2Format(assistant_suffix="")
    assert format_from_tokenizer(tok, base=custom) is custom


def test_a_template_missing_the_system_marker_is_reported_at_the_right_position(
    tmp_path: Path,
) -> None:
    broken = build_and_load(
        tmp_path, chat_template=K2_CHAT_TEMPLATE.replace("<|endofsystemprompt|>", "")
    )
    position = len(SYSTEM) + len("<|")  # both go on with a marker: "<|endof..." / "<|beginof..."
    with pytest.raises(K2ConfigError) as info:
        format_from_tokenizer(broken)
    text = str(info.value)
    assert f"first at character {position}:" in text
    assert (
        "K2Format:      'You are a helpful assistant.<|' | 'endofsystemprompt|><|beginofus'" in text
    )
    assert (
        "chat_template: 'You are a helpful assistant.<|' | 'beginofuser|>Hello, who are yo'" in text
    )
    assert check_format(DEFAULT_FORMAT, broken) == [text]


def test_a_mismatch_deep_in_the_chat_shows_30_characters_each_side(tmp_path: Path) -> None:
    # The template closes assistant turns with <|endoftext|>; K2Format does not.
    template = K2_CHAT_TEMPLATE.replace(
        "<|beginofsystem|>{{ message['content'] }}",
        "<|beginofsystem|>{{ message['content'] }}<|endoftext|>",
    )
    ours = render_prompt(
        [
            SystemMessage(SYSTEM),
            HumanMessage("Hello, who are you?"),
            AIMessage("I am K2, a language model."),
            HumanMessage("What can you do?"),
        ]
    )
    position = ours.index("model.") + len("model.<|")
    mismatch = template_mismatch(DEFAULT_FORMAT, build_and_load(tmp_path, chat_template=template))
    assert mismatch is not None
    assert f"first at character {position}:" in mismatch
    assert repr(ours[position - 30 : position]) + " | " + repr(ours[position : position + 30]) in (
        mismatch
    )
    # Declaring the suffix in the format makes them agree.
    assert (
        template_mismatch(
            K2Format(assistant_suffix="<|endoftext|>"),
            build_and_load(tmp_path / "again", chat_template=template),
        )
        is None
    )


def test_a_marker_that_is_not_a_special_token_warns_naming_it(tmp_path: Path) -> None:
    lacking = build_and_load(
        tmp_path, special_tokens=[m for m in K2_SPECIAL_TOKENS if m != "<tool_call>"]
    )
    with pytest.warns(UserWarning, match="'<tool_call>' is not a single token") as record:
        assert format_from_tokenizer(lacking) is DEFAULT_FORMAT
    assert len(record) == 1
    problems = marker_problems(DEFAULT_FORMAT, lacking)
    assert len(problems) == 1
    assert "so the model reads it as ordinary text" in problems[0]


def test_a_leading_bos_written_by_the_template_is_ignored(tmp_path: Path) -> None:
    with_bos = build_and_load(
        tmp_path, bos_token="<|startoftext|>", chat_template="{{ bos_token }}" + K2_CHAT_TEMPLATE
    )
    assert template_mismatch(DEFAULT_FORMAT, with_bos) is None


def test_no_chat_template_means_only_markers_are_checked(tmp_path: Path) -> None:
    bare = build_and_load(tmp_path, chat_template=None)
    assert template_mismatch(DEFAULT_FORMAT, bare) is None
    assert check_format(DEFAULT_FORMAT, bare) == []


def test_chatml_markers_against_k2s_tokenizer_are_all_reported(tok: Any) -> None:
    problems = check_format(K2Format.chatml(), tok)
    assert [p.split(" is not")[0] for p in problems[:-1]] == ["'<|im_start|>'", "'<|im_end|>'"]
    assert problems[-1].startswith("K2Format and the tokenizer's chat_template render")


# --------------------------------------------------------------------------- with fit_messages


def test_fit_messages_with_exact_counts_never_overflows(tok: Any) -> None:
    def count(messages: list[BaseMessage]) -> int:
        return count_prompt_tokens(tok, render_prompt(messages, tools=[WEATHER_TOOL]))

    messages: list[BaseMessage] = [SystemMessage(SYSTEM)]
    for t in range(8):
        messages += [
            HumanMessage(f"Weather in city {t}?"),
            AIMessage(
                "", tool_calls=[{"name": "get_weather", "args": {"city": str(t)}, "id": f"{t}"}]
            ),
            ToolMessage('{"temperature": 21, "ok": true} ' * 10, tool_call_id=f"{t}"),
            AIMessage("It is mild."),
        ]
    messages.append(HumanMessage("And Tokyo?"))
    full = count(messages)
    for window in range(count([messages[0], messages[-1]]) + 16, full + 16, 7):
        kept = fit_messages(messages, count=count, window=window, max_new_tokens=16, trim=True)
        assert count(kept) + 16 <= window
        assert kept[0] is messages[0]
        assert kept[-1] is messages[-1]
        assert isinstance(kept[1], HumanMessage)
