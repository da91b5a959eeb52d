"""The endpoint token never leaks: not in reprs, dumps, LangSmith params, logs or errors.

``hf_token`` is given as the field, as its alias ``api_key``, or through ``HF_TOKEN``. The
token is looked for in everything a user or a tracing tool gets to see: ``repr``/``str``,
``model_dump_json``, LangChain's ``dumpd``/``dumps`` (which must name the env variable
instead), ``_get_ls_params``, callback payloads, DEBUG logs of an invoke (in-memory backend,
and a loopback fake TGI answering an error, with huggingface_hub's request logging on), and
the whole chain of the exception raised. Sending it over plain http to a host other than a
loopback address warns (no request is made to that address); https and loopback do not.
"""

from __future__ import annotations

import logging
import secrets
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
from langchain_core.globals import get_debug, set_debug
from langchain_core.load import dumpd
from langchain_core.messages import HumanMessage

from langchain_k2 import ChatK2, K2BackendError, K2IncompleteGenerationError
from tests.support.leaks import Recorder, exception_text, representations
from tests.support.scripted_backend import ScriptedBackend

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support.fake_engine import FakeEngine, http_error  # noqa: E402

TOKEN = "hf_" + secrets.token_hex(16)  # unique: any occurrence anywhere is a leak
WAYS = ["field", "alias", "env"]


def make(way: str, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> ChatK2:
    """ChatK2 configured with TOKEN in one of the three ways."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    kwargs.setdefault("retry_backoff", 0.0)
    if way == "field":
        return ChatK2(hf_token=TOKEN, **kwargs)
    if way == "alias":
        return ChatK2(api_key=TOKEN, **kwargs)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return ChatK2(**kwargs)


# ------------------------------------------------------------------------------ representations


@pytest.mark.parametrize("way", WAYS)
def test_token_is_in_the_model_but_in_none_of_its_representations(
    way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm = make(way, monkeypatch, endpoint_url="http://127.0.0.1:8080")
    assert llm.hf_token is not None
    assert llm.hf_token.get_secret_value() == TOKEN  # configured, so it is there...
    shown = representations(llm)
    for name, text in shown.items():  # ...but never shown
        assert TOKEN not in text, name
    assert dumpd(llm)["kwargs"]["hf_token"] == {"lc": 1, "type": "secret", "id": ["HF_TOKEN"]}


# ------------------------------------------------------------------------------ logs and errors


@pytest.mark.parametrize("way", WAYS)
def test_debug_logs_and_callbacks_of_an_invoke_hold_no_token(
    way: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend = ScriptedBackend()
    backend.script(["Hello", "<|endoftext|>"], ["Again", "<|endoftext|>"])
    llm = make(way, monkeypatch, backend=backend)
    recorder = Recorder()
    previous = get_debug()
    set_debug(True)  # LangChain prints every run's inputs, outputs and invocation params
    try:
        with caplog.at_level(logging.DEBUG):
            config: Any = {"callbacks": [recorder]}
            assert llm.invoke([HumanMessage("Hi")], config=config).content == "Hello"
            assert "".join(str(c.content) for c in llm.stream("Hi", config=config)) == "Again"
    finally:
        set_debug(previous)
    printed = capsys.readouterr()
    assert "[llm/start]" in printed.out  # the debug console did print the runs
    # The callbacks got the model's serialized form (its secret slot names HF_TOKEN) and its
    # invocation params: the two places a tracer would copy a token from.
    assert any("invocation_params" in seen and "HF_TOKEN" in seen for seen in recorder.seen)
    for text in (caplog.text, printed.out, printed.err, *recorder.seen):
        assert TOKEN not in text


@pytest.fixture(scope="module")
def tgi_server() -> Iterator[FakeEngine]:
    with FakeEngine() as server:
        yield server


@pytest.fixture
def tgi(tgi_server: FakeEngine) -> FakeEngine:
    tgi_server.reset()
    return tgi_server


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(
    ("status", "error_type", "raised"),
    [(401, None, K2BackendError), (500, "incomplete_generation", K2IncompleteGenerationError)],
)
@pytest.mark.parametrize("run", ["invoke", "ainvoke"])
async def test_an_error_from_the_server_leaks_no_token(
    *,
    tgi: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    way: str,
    status: int,
    error_type: str | None,
    raised: type[Exception],
    run: str,
) -> None:
    tgi.set_default(http_error(status, "Unauthorized" if status == 401 else None, error_type))
    # huggingface_hub's own debug logging (a curl line per request) on, as HF_DEBUG=1 does.
    monkeypatch.setattr(huggingface_hub.constants, "HF_DEBUG", True)
    llm = make(way, monkeypatch, endpoint_url=tgi.url, max_retries=1, timeout=10)
    recorder = Recorder()
    config: Any = {"callbacks": [recorder]}

    async def call() -> None:
        if run == "invoke":
            llm.invoke("q", config=config)
        else:
            await llm.ainvoke("q", config=config)

    with caplog.at_level(logging.DEBUG), pytest.raises(raised) as info:
        await call()
    # The token was sent (so it was in play)...
    sent = [r["headers"].get("authorization") for r in tgi.requests() if r["path"] == "/"]
    assert sent
    assert set(sent) == {f"Bearer {TOKEN}"}
    # ...and shows up nowhere a user, a log or a tracer could see it.
    assert info.value.status == status  # type: ignore[attr-defined]
    assert TOKEN not in exception_text(info.value)
    assert caplog.records
    assert TOKEN not in caplog.text
    assert all(TOKEN not in payload for payload in recorder.seen)
    if status == 401:
        assert "hf_token" in str(info.value)  # the message names the fix, not the value


# ------------------------------------------------------------------------------ plain http


@pytest.mark.parametrize(
    "endpoint",
    ["http://10.1.2.3:8080", ["http://127.0.0.1:8080", "http://10.1.2.3:8080"]],
    ids=["one", "one-of-replicas"],
)
def test_token_over_plain_http_to_a_remote_host_warns(
    endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    llm = ChatK2(endpoint_url=endpoint, hf_token="x" + TOKEN)
    # Building the backend makes no request (nothing is sent to 10.1.2.3).
    with pytest.warns(UserWarning, match=r"plain http to 10\.1\.2\.3; use https") as caught:
        llm._get_backend()
    assert all(TOKEN not in str(w.message) for w in caught)


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3:8443",
        "https://k2.example.com",
        "http://127.0.0.1:8080",
        "http://127.9.9.9:8080",
        "http://localhost:8080",
        "http://[::1]:8080",
    ],
)
def test_https_or_loopback_does_not_warn(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    llm = ChatK2(endpoint_url=url, hf_token=TOKEN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        llm._get_backend()


def test_no_token_over_plain_http_does_not_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    llm = ChatK2(endpoint_url="http://10.1.2.3:8080")
    assert llm.hf_token is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        llm._get_backend()
