"""K2-Chat's tokenizer: load it from local files and count a rendered prompt's tokens.

In: a local tokenizer directory (or a ``tokenizer.json`` file, or an already loaded
Hugging Face tokenizer), a rendered prompt. Out: a loaded tokenizer, token ids, token counts.
`Tokenizer` is what counting uses of a loaded one (its ``encode``).
Whether a tokenizer agrees with a `langchain_k2._prompt.K2Format` is checked in
`langchain_k2._format_check`.

Optional extra ``tokenizer`` (``pip install "langchain-k2[tokenizer]"``): ``transformers``
is imported only when a tokenizer is loaded, so the rest of the package works without it.
Nothing here downloads anything: tokenizers load with ``local_files_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from langchain_k2.errors import K2ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_DOWNLOAD_HINT = (
    "Download K2-Chat's tokenizer first, e.g. "
    '`hf download LLM360/K2-Chat --include "tokenizer*" --local-dir ./k2-tokenizer`, '
    "and pass that directory."
)


@runtime_checkable
class Tokenizer(Protocol):
    """What counting uses of a loaded tokenizer: ``encode`` (a ``transformers`` one has it)."""

    def encode(self, text: str, /, *, add_special_tokens: bool = ..., **kwargs: Any) -> list[int]:
        """The token ids of ``text`` (``add_special_tokens``: with a BOS, for instance)."""
        ...


LoadedT = TypeVar("LoadedT", bound=Tokenizer)


def load_tokenizer(
    tokenizer: str | os.PathLike[str] | LoadedT,
) -> LoadedT | PreTrainedTokenizerBase:
    """Load a tokenizer from local files, or return an already loaded one as is.

    Args:
        tokenizer: a directory holding ``tokenizer.json``/``tokenizer_config.json`` (as
            ``hf download`` writes it), a ``tokenizer.json`` file, or a loaded tokenizer.

    Returns:
        A ``transformers`` tokenizer (``PreTrainedTokenizerBase``).

    Raises:
        K2ConfigError: ``transformers`` is not installed, the path does not exist, or it
            holds no tokenizer. Nothing is fetched from the Hugging Face Hub.
    """
    if not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    path = Path(tokenizer).expanduser()
    if not path.exists():
        raise K2ConfigError(
            f"Tokenizer path {str(path)!r} does not exist (tokenizers are never fetched from "
            f"the Hub here). {_DOWNLOAD_HINT}"
        )
    try:
        from transformers import AutoTokenizer, PreTrainedTokenizerFast
    except ImportError as exc:
        raise K2ConfigError(
            'Loading a tokenizer needs transformers: pip install "langchain-k2[tokenizer]".'
        ) from exc
    try:
        if path.is_file():
            return PreTrainedTokenizerFast(tokenizer_file=str(path))  # type: ignore[no-untyped-call]
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise K2ConfigError(
            f"No tokenizer could be loaded from {str(path)!r} ({exc}). {_DOWNLOAD_HINT}"
        ) from exc


def encode(tokenizer: Tokenizer, text: str, *, add_special_tokens: bool = False) -> list[int]:
    """The token ids of ``text``; added tokens (K2's markers) are matched in the text.

    ``split_special_tokens=False`` is passed, so markers stay single tokens even when the
    tokenizer was saved with ``split_special_tokens=True``.
    """
    ids = tokenizer.encode(
        text,
        add_special_tokens=add_special_tokens,
        split_special_tokens=False,
        verbose=False,
    )
    return list(ids)


def count_prompt_tokens(
    tokenizer: Tokenizer, prompt: str, *, add_special_tokens: bool = False
) -> int:
    """Tokens of a rendered K2 prompt; every marker and tag that is a special token counts 1.

    Args:
        tokenizer: a loaded tokenizer (see `load_tokenizer`).
        prompt: the prompt exactly as sent (`langchain_k2._prompt.render_prompt`).
        add_special_tokens: also count what the tokenizer adds around a sequence (a BOS
            token, for Llama-style tokenizers). TGI's ``/generate`` route and ``/tokenize``
            encode with it, so pass ``True`` to match the count TGI checks against
            ``--max-total-tokens``.
    """
    return len(encode(tokenizer, prompt, add_special_tokens=add_special_tokens))


__all__ = ["Tokenizer", "count_prompt_tokens", "encode", "load_tokenizer"]
