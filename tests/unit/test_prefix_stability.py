"""The prompt of each turn starts with the previous turn's prompt and what the model wrote.

That is what lets a serving engine's prefix cache (vLLM's, SGLang's radix cache,
llama-server's slot cache) serve every earlier turn of an agent conversation: ChatK2
re-renders the history it gave back (the ``AIMessage``, the tool calls parsed from it)
byte for byte as the model generated it -- no whitespace trimmed, no stop string lost, the
tool-call block in the form the format writes. Checked over an in-memory backend that
records the prompts, for K2-Chat's own markers and the ChatML stand-in's.
"""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from langchain_k2 import ChatK2, K2Format
from tests.support.scripted_backend import ScriptedBackend

FORMATS = {"k2-chat": K2Format(), "chatml": K2Format.chatml()}


@tool
def lookup(city: str) -> str:
    """Look up the population of a city."""
    return f"{city}: 2.1 million"


def call(city: str) -> str:
    """A call as K2 writes it (the model card's form: a JSON list inside the tags)."""
    body = json.dumps([{"name": "lookup", "arguments": {"city": city}}])
    return f"<tool_call>{body}</tool_call>"


def converse(fmt: K2Format, turns: list[tuple[str, str]], *, forced: bool = False) -> list[str]:
    """Run an agent conversation; return each request's prompt followed by what came back.

    ``turns`` are (the user's question, the model's reply text) pairs; a reply holding a
    call is answered with a tool result and the model is asked again (its second reply is
    the next pair's text when it starts with ``->``).
    """
    backend = ScriptedBackend()
    llm = ChatK2(backend=backend, prompt_format=fmt, retry_backoff=0.0)
    auto = llm.bind_tools([lookup])
    history: list[BaseMessage] = [SystemMessage("You answer questions about cities.")]
    seen: list[str] = []
    for question, reply in turns:
        if question:
            history.append(HumanMessage(question))
        model = llm.bind_tools([lookup], tool_choice="lookup") if forced and question else auto
        generated = reply.removeprefix("<tool_call>") if forced and question else reply
        backend.script([generated, fmt.stop_markers[0]])
        message = model.invoke(history)
        assert message.invalid_tool_calls == []
        seen.append(backend.requests[-1][0] + generated)
        history.append(message)
        for number, made in enumerate(message.tool_calls):
            history.append(ToolMessage(f"{number + 1}.5 million", tool_call_id=made["id"]))
    history.append(HumanMessage("Bye."))
    backend.script(["Bye!", fmt.stop_markers[0]])
    auto.invoke(history)
    seen.append(backend.requests[-1][0])
    return seen


AGENT = [
    ("How many people live in Paris?", call("Paris")),
    ("", "Paris has about 1.5 million people."),
    ("And Rome?", "Let me check. " + call("Rome")),
    ("", " Rome has about 2.5 million people.\n"),  # whitespace the model wrote stays
    ("Thanks!", "You're welcome.\n\n"),
]


@pytest.mark.parametrize("name", FORMATS)
def test_every_turn_starts_with_the_last_prompt_and_the_models_text(name: str) -> None:
    fmt = FORMATS[name]
    seen = converse(fmt, AGENT)
    assert len(seen) == len(AGENT) + 1
    for before, after in pairwise(seen):
        assert after.startswith(before), (before[-80:], after[len(before) - 80 :][:160])


def test_the_end_marker_the_model_wrote_is_kept_where_the_format_writes_one() -> None:
    """ChatML closes every model turn with ``<|im_end|>``: the stop token the model emitted
    is in the next prompt too, so the cache holds the whole earlier turn."""
    fmt = FORMATS["chatml"]
    seen = converse(fmt, AGENT)
    for before, after in pairwise(seen):
        assert after.startswith(before + "<|im_end|>"), after[len(before) :][:40]


@pytest.mark.parametrize("name", FORMATS)
def test_a_forced_call_is_re_rendered_as_the_model_wrote_it(name: str) -> None:
    """A forced call's prompt ends with the open tag; the model writes the rest."""
    fmt = FORMATS[name]
    forced = [AGENT[0], AGENT[1], ("And Rome?", call("Rome")), AGENT[3]]
    seen = converse(fmt, forced, forced=True)
    assert seen[0].endswith(fmt.assistant_prefix + call("Paris"))
    for before, after in pairwise(seen):
        assert after.startswith(before), (before[-80:], after[len(before) - 80 :][:160])
