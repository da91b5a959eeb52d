"""Credentials written into ``endpoint_url`` are sent and never shown (issue 15, item 1).

``http://user:password@host:port`` is common for a TGI behind a proxy with Basic auth. The
credentials are sent as an ``Authorization: Basic`` header to the URL without them, and are
looked for in everything a user, a log or a tracer gets to see: ``repr``/``str``,
``model_dump``, ``dumpd``/``dumps`` (which name ``K2_ENDPOINT_URL`` instead), LangSmith and
identifying params, callback payloads, httpx's INFO request log (one line per request, with
its URL), and every error (a refused connection, an HTTP error, a bad URL).
"""

from __future__ import annotations

import base64
import logging
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.load import dumpd, dumps, loads

from langchain_k2 import ChatK2, K2BackendError, K2ConfigError
from tests.support.leaks import Recorder, exception_text, representations

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support.fake_engine import FakeEngine, http_error  # noqa: E402

USER = "k2user"
PASSWORD = "pw" + secrets.token_hex(12)  # unique: any occurrence anywhere is a leak


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_TOKEN", "K2_ENDPOINT_URL", "K2_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "endpoint",
    [
        f"http://{USER}:{PASSWORD}@127.0.0.1:8080",
        [f"http://{USER}:{PASSWORD}@127.0.0.1:8080", "http://127.0.0.1:8081"],
        "env",
    ],
    ids=["one", "replicas", "env"],
)
def test_credentials_are_in_no_representation(
    endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if endpoint == "env":
        monkeypatch.setenv("K2_ENDPOINT_URL", f"http://{USER}:{PASSWORD}@127.0.0.1:8080")
        llm = ChatK2()
    else:
        llm = ChatK2(endpoint_url=endpoint)
    shown = representations(llm)
    for name, text in shown.items():
        assert PASSWORD not in text, name
        assert USER not in text, name
    assert "***@127.0.0.1:8080" in repr(llm)  # the host is still shown
    assert "***@127.0.0.1:8080" in repr(llm._identifying_params)
    assert dumpd(llm)["kwargs"]["endpoint_url"] == {
        "lc": 1,
        "type": "secret",
        "id": ["K2_ENDPOINT_URL"],
    }


@pytest.mark.filterwarnings("ignore:The function `loads` is in beta")
def test_a_dump_loads_back_with_the_url_given_as_a_secret() -> None:
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:8080"
    loaded = loads(
        dumps(ChatK2(endpoint_url=url, temperature=0)),
        secrets_map={"K2_ENDPOINT_URL": url},
        valid_namespaces=["langchain_k2"],
        allowed_objects=[ChatK2],
    )
    assert isinstance(loaded, ChatK2)
    assert loaded.endpoint_url == url
    assert loaded.temperature == 0


def test_a_url_without_credentials_is_dumped_as_it_is() -> None:
    llm = ChatK2(endpoint_url="http://127.0.0.1:8080")
    assert dumpd(llm)["kwargs"]["endpoint_url"] == "http://127.0.0.1:8080"
    assert "hf_token" not in dumpd(llm)["kwargs"]


def test_a_bad_url_with_credentials_is_refused_without_showing_them() -> None:
    llm = ChatK2(endpoint_url=f"ftp://{USER}:{PASSWORD}@files.example.com")
    with pytest.raises(K2ConfigError, match=r"ftp://\*\*\*@files\.example\.com") as info:
        llm._get_backend()
    assert PASSWORD not in exception_text(info.value)


def test_credentials_and_an_explicit_token_conflict() -> None:
    llm = ChatK2(endpoint_url=f"https://{USER}:{PASSWORD}@k2.example.com", api_key="hf_x")
    with pytest.raises(K2ConfigError, match="carries credentials and hf_token") as info:
        llm._get_backend()
    assert PASSWORD not in exception_text(info.value)


def test_credentials_over_plain_http_to_a_remote_host_warn() -> None:
    llm = ChatK2(endpoint_url=f"http://{USER}:{PASSWORD}@10.1.2.3:8080")
    with pytest.warns(UserWarning, match=r"credentials will be sent over plain http") as caught:
        llm._get_backend()
    assert all(PASSWORD not in str(w.message) for w in caught)


# ------------------------------------------------------------------------------ over the wire


@pytest.fixture(scope="module")
def tgi_server() -> Iterator[FakeEngine]:
    with FakeEngine() as server:
        yield server


@pytest.fixture
def tgi(tgi_server: FakeEngine) -> FakeEngine:
    tgi_server.reset()
    return tgi_server


def with_credentials(url: str, user: str = USER, password: str = PASSWORD) -> str:
    return url.replace("://", f"://{user}:{password}@", 1)


@pytest.mark.parametrize("run", ["invoke", "stream", "ainvoke", "astream"])
async def test_requests_carry_basic_auth_and_the_request_log_no_password(
    tgi: FakeEngine, caplog: pytest.LogCaptureFixture, run: str
) -> None:
    tgi.set_default({"text": "Hello"})
    llm = ChatK2(endpoint_url=with_credentials(tgi.url), max_retries=0, timeout=10)
    recorder = Recorder()
    config: Any = {"callbacks": [recorder]}
    with caplog.at_level(logging.INFO):
        if run == "invoke":
            text = str(llm.invoke("q", config=config).content)
        elif run == "stream":
            text = "".join(str(c.content) for c in llm.stream("q", config=config))
        elif run == "ainvoke":
            text = str((await llm.ainvoke("q", config=config)).content)
        else:
            text = "".join([str(c.content) async for c in llm.astream("q", config=config)])
    assert text == "Hello"
    sent = {r["path"]: r["headers"].get("authorization") for r in tgi.requests()}
    assert sent == {"/info": basic(USER, PASSWORD), "/": basic(USER, PASSWORD)}
    # huggingface_hub 1.x sends through httpx, 2.x through its fork httpx2: each logs there.
    logged = [r for r in caplog.records if r.name in {"httpx", "httpx2"}]
    assert logged  # httpx did log every request with its URL...
    assert all(tgi.url in r.getMessage() for r in logged)
    assert PASSWORD not in caplog.text  # ...without the credentials
    assert all(PASSWORD not in payload for payload in recorder.seen)


def test_percent_encoded_credentials_are_decoded(tgi: FakeEngine) -> None:
    tgi.set_default({"text": "ok"})
    llm = ChatK2(endpoint_url=with_credentials(tgi.url, "a%20b", "p%40ss"), max_retries=0)
    assert llm.invoke("q").content == "ok"
    assert {r["headers"].get("authorization") for r in tgi.requests()} == {basic("a b", "p@ss")}


def test_the_url_credentials_win_over_hf_token_from_the_environment(
    tgi: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    tgi.set_default({"text": "ok"})
    llm = ChatK2(endpoint_url=with_credentials(tgi.url), max_retries=0)
    assert llm.invoke("q").content == "ok"
    assert {r["headers"].get("authorization") for r in tgi.requests()} == {basic(USER, PASSWORD)}


@pytest.mark.parametrize("run", ["invoke", "ainvoke"])
async def test_errors_name_the_url_without_credentials(
    tgi: FakeEngine, caplog: pytest.LogCaptureFixture, run: str
) -> None:
    tgi.set_default(http_error(401, "Unauthorized", None))
    llm = ChatK2(endpoint_url=with_credentials(tgi.url), max_retries=0, timeout=10)

    async def call() -> None:
        if run == "invoke":
            llm.invoke("q")
        else:
            await llm.ainvoke("q")

    with caplog.at_level(logging.DEBUG), pytest.raises(K2BackendError) as info:
        await call()
    assert info.value.status == 401
    assert PASSWORD not in exception_text(info.value)
    assert PASSWORD not in caplog.text


def test_a_refused_connection_names_the_url_without_credentials() -> None:
    llm = ChatK2(endpoint_url=f"http://{USER}:{PASSWORD}@127.0.0.1:9", max_retries=0, timeout=5)
    with pytest.raises(K2BackendError, match=r"127\.0\.0\.1:9") as info:
        llm.invoke("q")
    assert PASSWORD not in exception_text(info.value)
