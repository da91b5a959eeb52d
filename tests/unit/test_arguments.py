"""No constructor or call argument vanishes (issue 15, item 3).

LangChain's usual names work (``max_tokens`` for ``max_new_tokens``, ``base_url`` for
``endpoint_url``; ``api_key``, ``model``, ``timeout`` and ``stop_sequences`` already), on
the constructor and per call (``bind``, ``invoke`` kwargs); anything else no field takes
raises ``K2ConfigError`` naming the nearest field, while every field of LangChain's own
``BaseChatModel`` (callbacks, tags, cache, rate_limiter...) is still accepted.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import StdOutCallbackHandler
from langchain_core.load import dumpd, dumps, loads
from langchain_core.rate_limiters import InMemoryRateLimiter

from langchain_k2 import ChatK2, K2ConfigError
from tests.support.scripted_backend import ScriptedBackend


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_TOKEN", "K2_ENDPOINT_URL", "K2_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)


def sent_max_new_tokens(llm: Any, backend: ScriptedBackend, **kwargs: Any) -> int:
    backend.script(["ok", "<|endoftext|>"])
    llm.invoke("q", **kwargs)
    return backend.requests[-1][1].max_new_tokens


def test_max_tokens_is_max_new_tokens() -> None:
    backend = ScriptedBackend()
    llm = ChatK2(backend=backend, max_tokens=5)
    assert llm.max_new_tokens == 5
    assert sent_max_new_tokens(llm, backend) == 5
    assert llm._get_ls_params()["ls_max_tokens"] == 5


def test_base_url_is_endpoint_url_even_with_the_environment_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("K2_ENDPOINT_URL", "http://127.0.0.1:9999")
    llm = ChatK2(base_url="http://127.0.0.1:8080")
    assert llm.endpoint_url == "http://127.0.0.1:8080"
    assert repr(llm._get_backend()) == "AutoBackend(urls=['http://127.0.0.1:8080'])"


@pytest.mark.parametrize(
    ("given", "suggested"),
    [
        ({"temprature": 0.5}, "temperature"),
        ({"max_new_token": 5}, "max_new_tokens"),
        ({"endpoint": "http://127.0.0.1:8080"}, "endpoint_url"),
        ({"top_kk": 3}, "top_k"),
    ],
)
def test_a_misspelled_argument_names_the_nearest_field(
    given: dict[str, Any], suggested: str
) -> None:
    (name,) = given
    with pytest.raises(
        K2ConfigError,
        match=rf"ChatK2 got an unknown argument '{name}': did you mean '{suggested}'\?",
    ):
        ChatK2(endpoint_url="http://127.0.0.1:8080", **given)


def test_an_unknown_argument_without_a_near_field_lists_the_fields() -> None:
    with pytest.raises(K2ConfigError, match=r"unknown argument 'frobnicate': It takes ") as info:
        ChatK2(endpoint_url="http://127.0.0.1:8080", frobnicate=True)
    assert "max_new_tokens" in str(info.value)
    assert "max_tokens" in str(info.value)


def test_an_alias_and_its_field_together_are_refused() -> None:
    with pytest.raises(K2ConfigError, match="Both max_tokens= and max_new_tokens="):
        ChatK2(endpoint_url="http://127.0.0.1:8080", max_tokens=5, max_new_tokens=6)
    with pytest.raises(K2ConfigError, match="Both base_url= and endpoint_url="):
        ChatK2(endpoint_url="http://127.0.0.1:8080", base_url="http://127.0.0.1:8081")


def test_langchains_own_fields_and_existing_aliases_are_accepted() -> None:
    limiter = InMemoryRateLimiter(requests_per_second=100)
    llm = ChatK2(
        endpoint_url="http://127.0.0.1:8080",
        callbacks=[StdOutCallbackHandler()],
        tags=["t"],
        metadata={"k": "v"},
        cache=InMemoryCache(),
        verbose=False,
        rate_limiter=limiter,
        disable_streaming="tool_calling",
        output_version="v1",
        name="k2",
        custom_get_token_ids=None,
        api_key="hf_x",
        model="LLM360/K2-Chat",
        timeout=5,
        stop_sequences=["END"],
    )
    assert (llm.tags, llm.rate_limiter, llm.name) == (["t"], limiter, "k2")
    assert llm.metadata is not None
    assert llm.metadata["k"] == "v"
    assert (llm.disable_streaming, llm.output_version) == ("tool_calling", "v1")
    assert (llm.timeout, llm.stop, llm.model_name) == (5, ["END"], "LLM360/K2-Chat")


def test_max_tokens_per_call_and_bound() -> None:
    backend = ScriptedBackend()
    llm = ChatK2(backend=backend)
    assert sent_max_new_tokens(llm.bind(max_tokens=7), backend) == 7
    assert sent_max_new_tokens(llm, backend, max_tokens=9) == 9
    assert llm._get_ls_params(max_tokens=9)["ls_max_tokens"] == 9
    with pytest.raises(K2ConfigError, match="Both max_tokens= and max_new_tokens="):
        llm.invoke("q", max_tokens=5, max_new_tokens=6)
    with pytest.raises(K2ConfigError, match=r"Unknown call option\(s\) \['temprature'\]"):
        llm.invoke("q", temprature=0.5)


@pytest.mark.filterwarnings("ignore:The function `loads` is in beta")
def test_an_alias_survives_dump_and_load() -> None:
    llm = ChatK2(base_url="http://127.0.0.1:8080", max_tokens=5)
    kwargs = dumpd(llm)["kwargs"]
    assert (kwargs["endpoint_url"], kwargs["max_new_tokens"]) == ("http://127.0.0.1:8080", 5)
    loaded = loads(dumps(llm), valid_namespaces=["langchain_k2"], allowed_objects=[ChatK2])
    assert (loaded.endpoint_url, loaded.max_new_tokens) == ("http://127.0.0.1:8080", 5)


def test_engine_with_model_path_is_refused(tmp_path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    with pytest.raises(K2ConfigError, match=r"engine='vllm' names the server at endpoint_url"):
        ChatK2(model_path=str(gguf), engine="vllm")
    assert ChatK2(model_path=str(gguf), engine="auto").engine == "auto"
