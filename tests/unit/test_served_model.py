"""The model the engine serves is checked and reported (issue 15, item 12).

TGI's ``/info`` (and llama.cpp's model file) name the served model. A server serving a
model other than ``model_name`` would get K2-Chat's prompts without a word: ChatK2 warns
once per model and backend, when it renders K2-Chat's own format (a custom
``prompt_format`` says the user adapted the prompts). ``response_metadata["model_name"]``
(and ``llm_output``) report the served model's id when the engine gives one.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.outputs import ChatResult

from langchain_k2 import ChatK2, K2Format
from langchain_k2.backends._base import BackendInfo
from tests.support.scripted_backend import ScriptedBackend

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support.fake_engine import FakeEngine  # noqa: E402

OTHER = "meta-llama/Llama-3.1-8B-Instruct"


def scripted(model_id: str | None, **kwargs: Any) -> tuple[ChatK2, ScriptedBackend]:
    backend = ScriptedBackend()
    backend.info_value = BackendInfo(max_stop_sequences=4, model_id=model_id)
    backend.script(*(["ok"] for _ in range(4)))
    return ChatK2(backend=backend, **kwargs), backend


def test_another_model_warns_once_and_is_reported() -> None:
    llm, _ = scripted(OTHER)
    with pytest.warns(
        UserWarning, match=r"serves 'meta-llama/Llama-3\.1-8B-Instruct', not 'LLM360/K2-Chat'"
    ) as caught:
        message = llm.invoke("q")
    assert len([w for w in caught if "serves" in str(w.message)]) == 1
    assert "prompt_format=" in str(caught[0].message)  # names the ways out
    assert message.response_metadata["model_name"] == OTHER
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: not again for this model and backend
        chunks = list(llm.stream("q"))
    assert chunks[-1].response_metadata["model_name"] == OTHER


async def test_another_model_warns_on_the_async_path_too() -> None:
    llm, _ = scripted(OTHER)
    with pytest.warns(UserWarning, match="serves 'meta-llama"):
        message = await llm.ainvoke("q")
    assert message.response_metadata["model_name"] == OTHER


def test_llm_output_reports_the_served_model() -> None:
    llm, _ = scripted(OTHER, prompt_format=K2Format())
    result: ChatResult = llm._generate([HumanMessage("q")])
    assert result.llm_output is not None
    assert result.llm_output["model_name"] == OTHER


@pytest.mark.parametrize(
    "served",
    ["LLM360/K2-Chat", "/data/models/K2-Chat", "k2-chat.Q4_K_M.gguf", "llm360/k2-chat"],
)
def test_k2_under_another_path_or_file_name_does_not_warn(served: str) -> None:
    llm, _ = scripted(served)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = llm.invoke("q")
    assert message.response_metadata["model_name"] == served


def test_a_custom_prompt_format_or_matching_model_name_does_not_warn() -> None:
    for kwargs in ({"prompt_format": K2Format.chatml()}, {"model_name": OTHER}):
        llm, _ = scripted(OTHER, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            message = llm.invoke("q")
        assert message.response_metadata["model_name"] == OTHER


def test_an_engine_that_names_no_model_reports_model_name() -> None:
    llm, _ = scripted(None, model_name="my-k2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = llm.invoke("q")
    assert message.response_metadata["model_name"] == "my-k2"


@pytest.fixture(scope="module")
def fake_engine() -> Iterator[FakeEngine]:
    with FakeEngine() as server:
        yield server


async def test_over_tgi_info_model_id_is_checked(fake_engine: FakeEngine) -> None:
    fake_engine.reset()
    fake_engine.configure(model_id=OTHER)
    fake_engine.set_default({"text": "Hi"})
    llm = ChatK2(endpoint_url=fake_engine.url, timeout=10, max_retries=0)
    with pytest.warns(UserWarning, match=r"TGI at http://127\.0\.0\.1:\d+ serves 'meta-llama"):
        first = llm.invoke("q")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = await llm.ainvoke("q")
    assert first.response_metadata["model_name"] == second.response_metadata["model_name"] == OTHER
    assert len(fake_engine.requests("/info")) == 1


@pytest.mark.parametrize(
    ("prompt_format", "family"),
    [
        (None, "LLM360/K2-Chat"),
        ("k2-v2", "LLM360/K2-V2-Instruct"),
        ("k2-think-v2", "LLM360/K2-Think-V2"),
        ("k2-v3", "IFM/K2-Horizon"),
    ],
)
def test_langsmith_names_the_families_model_then_the_served_one(
    prompt_format: str | None, family: str
) -> None:
    llm, _ = scripted("/models/served.gguf", prompt_format=prompt_format)
    assert llm._get_ls_params()["ls_model_name"] == family  # before the engine is asked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # K2-Chat's: another model served (tested above)
        llm.invoke("q")
    assert llm._get_ls_params()["ls_model_name"] == "/models/served.gguf"
    assert llm._get_ls_params(model="per-call")["ls_model_name"] == "per-call"


def test_langsmith_names_the_users_model_name_until_the_engine_says() -> None:
    llm, _ = scripted(None, prompt_format="k2-v3", model="my-k2-v3")
    assert llm._get_ls_params()["ls_model_name"] == "my-k2-v3"
    llm.invoke("q")  # the engine names no model: the user's name stays
    assert llm._get_ls_params()["ls_model_name"] == "my-k2-v3"
