"""The sentences ChatK2 writes for the model live in one module, and read as pinned here.

``langchain_k2._model_text`` holds every sentence ChatK2 itself adds to a prompt (the
model cards' own prompts stay with their formats). A change to any of them changes what
the model reads and the engine's prefix cache, so each is pinned byte for byte below
(change the golden on purpose, with the prompts), and no other module of the package may
spell one out again (a copy would drift from the golden).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from langchain_k2 import _model_text
from langchain_k2._model_text import (
    ONE_CALL,
    answer_reask,
    call_reask,
    json_answer,
    response_format_answer,
)

PACKAGE = Path(_model_text.__file__).resolve().parent
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
SCHEMA_JSON = '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}'

GOLDEN = {
    "one call": (ONE_CALL, "Call at most one function per turn."),
    "json mode": (json_answer(None), "Respond with a single JSON object and nothing else."),
    "json schema": (
        json_answer(SCHEMA),
        "Respond with a single JSON object and nothing else. It must satisfy this JSON "
        f"schema: {SCHEMA_JSON}",
    ),
    "response format, no tools": (
        response_format_answer(SCHEMA, tools_offered=False),
        "Respond with a single JSON object and nothing else. It must satisfy this JSON "
        f"schema: {SCHEMA_JSON}",
    ),
    "response format, tools": (
        response_format_answer(SCHEMA, tools_offered=True),
        "When you answer without calling a function, respond with a single JSON object and "
        f"nothing else. It must satisfy this JSON schema: {SCHEMA_JSON}",
    ),
    "response format, tools, no schema": (
        response_format_answer(None, tools_offered=True),
        "When you answer without calling a function, respond with a single JSON object and "
        "nothing else.",
    ),
    "re-ask a call": (
        call_reask("age: Input should be >= 0 {x}", "Person"),
        "Error: age: Input should be >= 0 {x}\nCall Person again with corrected arguments.",
    ),
    "re-ask an answer": (
        answer_reask("Expected a JSON object, got 'no'"),
        "That answer cannot be used: Expected a JSON object, got 'no'\n"
        "Answer again with a single JSON object and nothing else.",
    ),
}


@pytest.mark.parametrize("case", list(GOLDEN))
def test_each_sentence_is_pinned(case: str) -> None:
    written, golden = GOLDEN[case]
    assert written == golden


def _fragments() -> set[str]:
    """The fixed words of every sentence in the module (placeholders cut out)."""
    texts = [
        value
        for name, value in vars(_model_text).items()
        if isinstance(value, str) and not name.startswith("__")  # the module's constants
    ]
    pieces = {piece.strip(" .,:\n") for text in texts for piece in re.split(r"\{\w+\}|\n", text)}
    return {piece.lower() for piece in pieces if len(piece) >= 12}


def test_the_fragments_cover_every_sentence() -> None:
    fragments = _fragments()
    for _written, golden in GOLDEN.values():
        assert any(fragment in golden.lower() for fragment in fragments), golden


def test_no_other_module_spells_out_a_sentence() -> None:
    fragments = _fragments()
    assert "call at most one function per turn" in fragments
    assert "again with corrected arguments" in fragments
    copies = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_model_text.py":
            continue
        text = " ".join(path.read_text(encoding="utf-8").lower().split())
        copies += [f"{path.relative_to(PACKAGE)}: {f!r}" for f in fragments if f in text]
    assert not copies, "model-facing sentences outside langchain_k2/_model_text.py:\n" + "\n".join(
        copies
    )
