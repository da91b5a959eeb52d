"""What ChatK2 declares to LangChain's standard integration suite, in one place.

In: nothing (subclasses add ``chat_model_params``, and may swap ``chat_model_class``).
Out: `ChatK2Capabilities`, the ``ChatModelIntegrationTests`` base of every standard-suite
class (the K2 endpoint, local llama.cpp, real vLLM, and each newer family on a scripted
engine): tool choice, structured output, JSON mode and usage yes; images, audio, PDF,
video and per-call model override no.
"""

from __future__ import annotations

from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_k2 import ChatK2


class ChatK2Capabilities(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatK2]:
        return ChatK2

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return False

    @property
    def supports_video_inputs(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False
