"""The message chunks a streamed turn releases, their content-block indexes from one counter.

In: what a turn keeps, in order: text deltas, reasoning deltas and validated tool-call
blocks. Out: the ``AIMessageChunk`` for each. Under ``indexed_text``
(``output_version="v1"``) text and reasoning runs are content blocks carrying an index,
and they share one counter with the tool calls (as Anthropic's content blocks do):
LangChain merges chunks by index, and a text block sharing index 0 with the first call
would absorb the call. Without it text is a plain string and calls count from 0.

Example:
    >>> chunks = StreamChunks(indexed_text=True)
    >>> chunks.text("Hi").content, chunks.text(" there").content
    ([{'type': 'text', 'text': 'Hi', 'index': 0}], [{'type': 'text', 'text': ' there', 'index': 0}])
    >>> chunks.reasoning("hm").content
    [{'type': 'reasoning', 'reasoning': 'hm', 'index': 1}]
    >>> StreamChunks(indexed_text=False).text("Hi").content
    'Hi'
"""

from __future__ import annotations

from langchain_core.messages import AIMessageChunk

from langchain_k2._tool_calls import ToolBlock, block_chunk

__all__ = ["StreamChunks"]


class StreamChunks:
    """Chunks of one turn's stream, numbered as LangChain merges them.

    Attributes:
        indexed_text: text and reasoning deltas are content blocks carrying an index.
        next_index: the next content-block index (text runs, reasoning runs and calls
            share it).
        text_index: the index of the text run going on, if any.
        reasoning_index: the same, for a reasoning run.
    """

    def __init__(self, *, indexed_text: bool) -> None:
        self.indexed_text = indexed_text
        self.next_index = 0
        self.text_index: int | None = None
        self.reasoning_index: int | None = None

    def text(self, text: str) -> AIMessageChunk:
        """A text delta, as a content block carrying its index under ``indexed_text``."""
        self.reasoning_index = None
        if not self.indexed_text:  # text is a plain string: calls count from 0
            return AIMessageChunk(content=text)
        if self.text_index is None:
            self.text_index = self.next_index
            self.next_index += 1
        return AIMessageChunk(content=[{"type": "text", "text": text, "index": self.text_index}])

    def reasoning(self, text: str) -> AIMessageChunk:
        """A reasoning delta, in ``additional_kwargs["reasoning_content"]``.

        LangChain merges chunks by concatenating it; under ``indexed_text`` the delta is
        also a standard ``reasoning`` content block with its own index, as text runs have.
        """
        self.text_index = None
        extra = {"reasoning_content": text}
        if not self.indexed_text:
            return AIMessageChunk(content="", additional_kwargs=extra)
        if self.reasoning_index is None:
            self.reasoning_index = self.next_index
            self.next_index += 1
        block = {"type": "reasoning", "reasoning": text, "index": self.reasoning_index}
        return AIMessageChunk(content=[block], additional_kwargs=extra)

    def block(self, block: ToolBlock, *, emit: bool) -> AIMessageChunk | None:
        """The chunk of a kept tool-call block (``None`` unless ``emit``).

        Its calls take the next indexes either way, and the text and reasoning runs end.
        """
        chunk = block_chunk(block, self.next_index) if emit else None
        self.next_index += len(block.tool_calls) + len(block.invalid_tool_calls)
        self.text_index = self.reasoning_index = None
        return chunk
