"""1. Per-call overhead: ``ChatK2.invoke`` against ``ChatHuggingFace.invoke``.

Both talk to the same fake TGI server, which answers at once with the same 40-token text
(or the same tool call). ChatK2 uses TGI's ``/`` route, one JSON answer with ``details`` (its
tokens, special ones included; the prompt's token count comes in ``x-prompt-tokens``); the
peer, ``ChatHuggingFace`` over ``HuggingFaceEndpoint(endpoint_url=...)``, uses
``/v1/chat/completions``. The same plain turn is also timed through ``ainvoke`` (one call at
a time), and a last pair times the bare HTTP exchange each side makes, without LangChain, so
the gap can be split into the wire and the wrapper's own work.

The peer is built offline: with ``endpoint_url`` (no ``repo_id``) ``ChatHuggingFace`` takes
the URL as its ``model_id`` and loads no tokenizer, and ``HuggingFaceEndpoint`` sends no token
to a non-hub URL. Against 20 tools the fake's chat route answers like TGI: the tools go into
the prompt it tokenizes, and the call comes back as an OpenAI ``tool_calls`` entry.
"""

from __future__ import annotations

import asyncio
from typing import Any

from huggingface_hub import InferenceClient
from langchain_core.messages import HumanMessage
from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

from benchmarks.common import (
    TOOL_CALL,
    Row,
    Settings,
    call_ok,
    fake_engine,
    interleaved,
    make_tools,
    median_ms,
    quartiles_ms,
    words,
)
from langchain_k2 import ChatK2
from langchain_k2._prompt import DEFAULT_FORMAT
from langchain_k2.backends._base import GenerationParams
from langchain_k2.backends._tgi import TGIBackend

SECTION = "1. Per-call overhead"
KEYS = ("overhead.plain", "overhead.tools", "overhead.async", "overhead.wire", "overhead.sse")
REPLY_TOKENS = 40
QUESTION = "Tell me something."
MESSAGES = [HumanMessage(QUESTION)]


def k2_model(url: str, **fields: Any) -> ChatK2:
    """ChatK2 on the fake server, greedy, no retries of its own beyond the defaults."""
    options: dict[str, Any] = {"temperature": 0, "max_new_tokens": 256, **fields}
    return ChatK2(endpoint_url=url, **options)


def peer_model(url: str, **fields: Any) -> ChatHuggingFace:
    """``ChatHuggingFace`` over ``HuggingFaceEndpoint(endpoint_url=url)``: no hub lookups.

    With an ``endpoint_url`` (and no ``repo_id``) ``ChatHuggingFace`` takes the URL as its
    ``model_id`` and loads no tokenizer; a loopback URL also gets no token attached.
    """
    options: dict[str, Any] = {"max_new_tokens": 256, "temperature": None, **fields}
    return ChatHuggingFace(llm=HuggingFaceEndpoint(endpoint_url=url, **options))


def _row(
    key: str,
    measure: str,
    samples: dict[str, list[float]],
    note: str,
    peer_name: str = "ChatHuggingFace",
) -> Row:
    k2, peer = samples["k2"], samples["peer"]
    k2_q, peer_q = quartiles_ms(k2), quartiles_ms(peer)
    spread = (
        f"IQR ChatK2 {k2_q[0]:.2f}-{k2_q[1]:.2f} ms, peer {peer_q[0]:.2f}-{peer_q[1]:.2f} ms; "
        f"{len(k2)} calls each."
    )
    return Row(
        key=key,
        section=SECTION,
        measure=measure,
        k2=median_ms(k2),
        peer=median_ms(peer),
        unit="ms/call",
        peer_name=peer_name,
        reference="ratio <= 1.0",
        note=f"{note} {spread}".strip(),
    )


def _plain(tgi: Any, calls: int) -> Row:
    text = words(REPLY_TOKENS)
    tgi.set_default({"text": text})
    k2, peer = k2_model(tgi.url), peer_model(tgi.url)
    assert k2.invoke(MESSAGES).content == text
    assert peer.invoke(MESSAGES).content == text
    samples = interleaved(
        {"k2": lambda: k2.invoke(MESSAGES), "peer": lambda: peer.invoke(MESSAGES)}, calls
    )
    return _row(
        "overhead.plain", f"`invoke`, {REPLY_TOKENS}-token answer, instant server", samples, ""
    )


def _tools(tgi: Any, calls: int) -> Row:
    tgi.set_default({"tool_call": TOOL_CALL})
    tools = make_tools(20)
    k2 = k2_model(tgi.url).bind_tools(tools)
    peer = peer_model(tgi.url).bind_tools(tools)
    assert call_ok(k2.invoke(MESSAGES)), "ChatK2 did not get the tool call"
    peer_reply = peer.invoke(MESSAGES)
    assert call_ok(peer_reply), f"the peer did not get the tool call: {peer_reply!r}"
    samples = interleaved(
        {"k2": lambda: k2.invoke(MESSAGES), "peer": lambda: peer.invoke(MESSAGES)}, calls
    )
    return _row(
        "overhead.tools",
        "`invoke` with 20 bound tools, answer is 1 tool call",
        samples,
        "ChatK2 parses `<tool_call>` text; the peer gets an OpenAI `tool_calls` entry from the "
        "chat route (the fake answers chat requests with tools the way TGI does).",
    )


def _async(tgi: Any, calls: int) -> Row:
    text = words(REPLY_TOKENS)
    tgi.set_default({"text": text})
    k2, peer = k2_model(tgi.url), peer_model(tgi.url)
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(k2.ainvoke(MESSAGES)).content == text
        assert loop.run_until_complete(peer.ainvoke(MESSAGES)).content == text
        samples = interleaved(
            {
                "k2": lambda: loop.run_until_complete(k2.ainvoke(MESSAGES)),
                "peer": lambda: loop.run_until_complete(peer.ainvoke(MESSAGES)),
            },
            calls,
        )
        loop.run_until_complete(peer.llm.async_client.close())
    finally:
        loop.close()
    return _row(
        "overhead.async",
        f"`ainvoke`, one call at a time, {REPLY_TOKENS}-token answer",
        samples,
        "ChatK2 shares one `httpx.AsyncClient` per event loop; the peer's "
        "`AsyncInferenceClient` holds one of its own.",
    )


def _wire(tgi: Any, calls: int) -> list[Row]:
    """The HTTP exchanges alone: ChatK2's backend against huggingface_hub's client calls."""
    tgi.set_default({"text": words(REPLY_TOKENS)})
    client = InferenceClient(base_url=tgi.url)
    backend = TGIBackend(tgi.url)
    prompt = DEFAULT_FORMAT.render_prompt(MESSAGES)
    stops = tuple(DEFAULT_FORMAT.stop_markers)
    params = GenerationParams(max_new_tokens=256, temperature=0, stop=stops)
    chat = [{"role": "user", "content": QUESTION}]

    def k2_whole() -> None:
        list(backend.stream(prompt, params, live=False))

    def k2_stream() -> None:
        list(backend.stream(prompt, params, live=True))

    def hub_stream() -> None:
        for _ in client.text_generation(
            prompt,
            stream=True,
            details=True,
            return_full_text=False,
            max_new_tokens=256,
            do_sample=False,
            stop=list(stops),
        ):
            pass

    def peer_wire() -> None:
        client.chat_completion(messages=chat, max_tokens=256)

    whole_final = list(backend.stream(prompt, params, live=False))[-1]
    stream_final = list(backend.stream(prompt, params, live=True))[-1]
    assert whole_final == stream_final, "the two wire forms disagree on the final event"
    whole = interleaved({"k2": k2_whole, "peer": peer_wire}, calls)
    streams = interleaved({"k2": k2_stream, "peer": hub_stream}, calls)
    client.close()  # type: ignore[no-untyped-call]
    return [
        _row(
            "overhead.wire",
            "bare HTTP exchange each side makes (no LangChain)",
            whole,
            "ChatK2 column: its TGI backend, `live=False` (what invoke sends: one JSON answer, "
            "decoded into events); peer column: `InferenceClient.chat_completion()`.",
        ),
        _row(
            "overhead.sse",
            f"streamed {REPLY_TOKENS}-token answer, SSE decoded into events (no LangChain)",
            streams,
            "ChatK2 column: its TGI backend's SSE decoder (`tgi_wire`); the other column: "
            "`InferenceClient.text_generation(stream=True, details=True)`, which ChatK2 used "
            "before and which parses each event into nested dataclasses.",
            peer_name="huggingface_hub SSE",
        ),
    ]


def run(settings: Settings) -> list[Row]:
    """Plain turn, tool-calling turn with 20 tools, async turn, and the bare client calls."""
    calls = settings.overhead_calls
    with fake_engine() as tgi:
        return [
            _plain(tgi, calls),
            _tools(tgi, calls),
            _async(tgi, calls),
            *_wire(tgi, calls),
        ]
