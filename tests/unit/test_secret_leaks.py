"""Secrets in odd shapes never surface, not even in errors (issue 23, item 1).

A token read from a file keeps its trailing newline; one pasted from a document may hold a
non-ASCII character. Today such a token reached httpx, whose error text quotes the whole
``Authorization`` header, and that text was copied into the retried "could not reach"
error. Now surrounding whitespace is stripped, any other character no HTTP header may carry
is refused at construction (without echoing the token), and a transport's error text is
redacted before it is shown. A mis-shaped ``endpoint_url`` (a list holding ``None`` from an
unset variable, a dict, a number) is refused before pydantic could print the other URLs
with their passwords. Each test searches ``str``/``repr`` of the error and its whole
``__cause__``/``__context__`` chain, DEBUG logs and every callback payload.
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import huggingface_hub
import pytest
from huggingface_hub.utils._http import default_async_client_factory, default_client_factory
from langchain_core.load import dumps, loads

from langchain_k2 import ChatK2, K2BackendError, K2ConfigError, K2UnavailableError
from tests.support.leaks import Recorder, exception_text

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support.fake_engine import FakeEngine, http_error, reply  # noqa: E402

TOKEN = "hf_" + secrets.token_hex(16)  # unique: any occurrence anywhere is a leak
PASSWORD = "pw" + secrets.token_hex(12)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_TOKEN", "K2_ENDPOINT_URL", "K2_MODEL_PATH", "K2_ENGINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tgi_server() -> Iterator[FakeEngine]:
    with FakeEngine() as server:
        yield server


@pytest.fixture
def tgi(tgi_server: FakeEngine) -> FakeEngine:
    tgi_server.reset()
    return tgi_server


def make(way: str, token: str, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> ChatK2:
    kwargs.setdefault("retry_backoff", 0.0)
    if way == "field":
        return ChatK2(hf_token=token, **kwargs)
    if way == "alias":
        return ChatK2(api_key=token, **kwargs)
    monkeypatch.setenv("HF_TOKEN", token)
    return ChatK2(**kwargs)


@pytest.mark.parametrize("way", ["field", "alias", "env"])
@pytest.mark.parametrize("padded", [TOKEN + "\n", f"  {TOKEN}\r\n", f"\t{TOKEN} "])
def test_a_token_read_from_a_file_is_sent_without_its_newline(
    way: str, padded: str, tgi: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tgi.script(reply("Hello"))
    llm = make(way, padded, monkeypatch, endpoint_url=tgi.url, max_retries=0)
    assert llm.invoke("Hi").content == "Hello"
    sent = [r["headers"].get("authorization") for r in tgi.requests() if r["path"] == "/"]
    assert sent == [f"Bearer {TOKEN}"]


@pytest.mark.parametrize("way", ["field", "alias", "env"])
@pytest.mark.parametrize(
    "bad", [f"{TOKEN[:8]}\n{TOKEN[8:]}", f"{TOKEN}é", f"{TOKEN[:5]}\x1b{TOKEN[5:]}", "ключ" + TOKEN]
)
def test_a_token_no_header_can_carry_is_refused_without_being_shown(
    way: str, bad: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(K2ConfigError) as info:
        make(way, bad, monkeypatch, endpoint_url="http://127.0.0.1:8080")
    message = str(info.value)
    assert "cannot be sent in an HTTP header" in message
    assert ("HF_TOKEN" if way == "env" else ("api_key" if way == "alias" else "hf_token")) in (
        message
    )
    shown = exception_text(info.value) + caplog.text
    for piece in (bad, TOKEN, TOKEN[:8], TOKEN[8:]):
        assert piece not in shown


@pytest.mark.parametrize("value", [12345678901234, b"hf_bytes_token", ["hf_x"]])
def test_a_token_of_the_wrong_type_is_refused_by_type_only(value: Any) -> None:
    with pytest.raises(K2ConfigError, match=r"hf_token must be a string") as info:
        ChatK2(endpoint_url="http://127.0.0.1:8080", hf_token=value)
    text = exception_text(info.value)
    assert str(value) not in text
    assert repr(value) not in text


@pytest.fixture
def echoing_transport() -> Iterator[list[str]]:
    """huggingface_hub's sessions on a transport that fails quoting the request's headers.

    This is what a proxy's or an HTTP library's error text can look like (h11 quotes an
    illegal header value whole): the message holds ``Authorization: Bearer <token>``.
    """
    seen: list[str] = []

    def fail(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        seen.append(auth)
        message = f"proxy refused the connection for headers {{'authorization': {auth!r}}}"
        raise httpx.ConnectError(message, request=request)

    async def afail(request: httpx.Request) -> httpx.Response:
        return fail(request)

    huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(fail)))
    huggingface_hub.set_async_client_factory(
        lambda: httpx.AsyncClient(transport=httpx.MockTransport(afail))
    )
    try:
        yield seen
    finally:
        huggingface_hub.set_client_factory(default_client_factory)
        huggingface_hub.set_async_client_factory(default_async_client_factory)


@pytest.mark.parametrize("run", ["invoke", "stream", "ainvoke", "astream"])
async def test_a_transport_error_quoting_the_token_is_redacted_everywhere(
    run: str, echoing_transport: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    llm = ChatK2(
        endpoint_url="https://k2.example.com",
        engine="tgi",
        hf_token=TOKEN,
        max_retries=1,
        retry_backoff=0.0,
    )
    recorder = Recorder()
    config: Any = {"callbacks": [recorder]}

    async def call() -> None:
        if run == "invoke":
            llm.invoke("Hi", config=config)
        elif run == "stream":
            list(llm.stream("Hi", config=config))
        elif run == "ainvoke":
            await llm.ainvoke("Hi", config=config)
        else:
            [chunk async for chunk in llm.astream("Hi", config=config)]

    with caplog.at_level(logging.DEBUG), pytest.raises(K2UnavailableError) as info:
        await call()
    assert echoing_transport
    assert set(echoing_transport) == {f"Bearer {TOKEN}"}  # the token was in play...
    assert "Could not reach TGI at https://k2.example.com" in str(info.value)
    assert "Bearer ***" in str(info.value)  # ...the transport's text is kept, redacted
    assert TOKEN not in exception_text(info.value)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in payload for payload in recorder.seen)


@pytest.mark.parametrize("run", ["invoke", "stream"])
@pytest.mark.parametrize("status", [400, 422, 503])
def test_a_server_echoing_the_token_in_its_error_body_is_redacted(
    run: str, status: int, tgi: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    echoed = f"rejected request with header 'Authorization: Bearer {TOKEN}'"
    tgi.set_default(http_error(status, echoed))
    llm = ChatK2(endpoint_url=tgi.url, engine="tgi", hf_token=TOKEN, max_retries=0)
    call = llm.invoke if run == "invoke" else (lambda text: list(llm.stream(text)))
    with caplog.at_level(logging.DEBUG), pytest.raises(K2BackendError) as info:
        call("Hi")
    assert "rejected request with header" in str(info.value)  # the server's words are kept
    assert TOKEN not in exception_text(info.value)
    assert TOKEN not in caplog.text


# ------------------------------------------------------------------------ endpoint_url shapes


@pytest.mark.parametrize(
    "endpoint",
    [
        [f"https://k2:{PASSWORD}@a.example.com", None],
        (f"https://k2:{PASSWORD}@a.example.com", 8080),
        {"primary": f"https://k2:{PASSWORD}@a.example.com"},
        [f"https://k2:{PASSWORD}@a.example.com", {"url": f"https://k2:{PASSWORD}@b.example"}],
        8080,
        [],
    ],
    ids=["list-with-None", "tuple-with-int", "dict", "list-with-dict", "number", "empty"],
)
def test_a_mis_shaped_endpoint_url_is_refused_with_every_url_redacted(
    endpoint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(K2ConfigError) as info:
        ChatK2(endpoint_url=endpoint)
    message = str(info.value)
    assert message.startswith("endpoint_url must be a URL string or a non-empty list")
    if isinstance(endpoint, list) and endpoint and isinstance(endpoint[0], str):
        assert "https://***@a.example.com" in message  # shown, redacted
    assert PASSWORD not in exception_text(info.value)
    assert PASSWORD not in caplog.text


def test_none_in_a_list_hints_at_an_unset_variable() -> None:
    with pytest.raises(K2ConfigError, match="unset environment variable"):
        ChatK2(endpoint_url=["http://127.0.0.1:8080", None])


# ------------------------------------------------------------------------ load(dumps(...))


def test_loads_of_dumps_reads_hf_token_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN + "\n")
    text = dumps(ChatK2(endpoint_url="http://127.0.0.1:8080"))
    assert TOKEN not in text
    other = "hf_" + secrets.token_hex(16)
    monkeypatch.setenv("HF_TOKEN", other)  # the token of the process that loads it
    where: Any = {"valid_namespaces": ["langchain_k2"], "allowed_objects": [ChatK2]}
    loaded = loads(text, secrets_from_env=True, **where)
    assert isinstance(loaded, ChatK2)
    assert loaded.hf_token is not None
    assert loaded.hf_token.get_secret_value() == other
    plain = loads(text, **where)  # secrets_from_env=False, langchain-core's default
    assert plain.hf_token is not None
    assert plain.hf_token.get_secret_value() == other
    monkeypatch.delenv("HF_TOKEN")
    assert loads(text, **where).hf_token is None


def test_an_empty_token_sends_none_even_with_hf_token_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert ChatK2(endpoint_url="http://127.0.0.1:8080", hf_token="").hf_token is None
    assert ChatK2(endpoint_url="http://127.0.0.1:8080", hf_token=None).hf_token is not None


def test_redaction_keeps_k2s_own_wording_and_catches_header_values() -> None:
    from langchain_k2 import K2AuthenticationError
    from langchain_k2._urls import scrub_exception

    own = K2AuthenticationError(f"refused: set hf_token (the bearer token) {TOKEN}", status=401)
    scrub_exception(own, [TOKEN])
    assert str(own) == "refused: set hf_token (the bearer token) ***"
    transport = httpx.LocalProtocolError(f"Illegal header value b'Bearer {TOKEN}\\n'")
    wrapper = K2UnavailableError("Could not reach TGI")
    wrapper.__cause__ = transport
    scrub_exception(wrapper, ["some-other-secret"])  # an unknown value, in header form
    assert str(transport) == "Illegal header value b'Bearer ***'"
