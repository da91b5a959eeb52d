"""Tokenizers for the fake TGI server: text in, tokens (id, text, offsets, special) out.

Two implementations share one small interface (`Tokenizer`):

- `SimpleTokenizer` (the default) is deterministic and dependency-free. Every K2 turn marker
  (`<|...|>`) and each tool tag (`<tool_call>`, `</tool_call>`, `<tool_response>`,
  `</tool_response>`) is ONE token; other text is split by the regex
  `\\s*\\w+|\\s*[^\\w\\s]|\\s+`, so the token texts always concatenate back to the input.
  Ids are stable hashes of the token text (the same text has the same id in every process).
  Which markers count as *special* (left out of `generated_text`) is configurable.
- `HFTokenizer` wraps a `tokenizers` JSON file (`--tokenizer PATH`); the library is imported
  lazily, only when such a file is asked for.

Token texts for replies come from `split_reply` (the reply's text is cut into tokens);
input lengths and `/tokenize` come from `encode`.
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

#: K2-Chat's turn markers and the Hermes tool tags, in a fixed order (their ids are 1..N).
K2_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|endofsystemprompt|>",
    "<|beginofuser|>",
    "<|beginofsystem|>",
    "<|endofchat|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)

_MARKER = r"<\|[A-Za-z0-9_]+\|>"
_WORDS = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
_FIRST_PLAIN_ID = 1000
_PLAIN_ID_RANGE = 99_000


@dataclass(frozen=True)
class Tok:
    """One token: id, text, character offsets into the encoded string, and whether special."""

    id: int
    text: str
    start: int
    stop: int
    special: bool


class Tokenizer(Protocol):
    """What the server needs from a tokenizer."""

    def encode(self, text: str) -> list[Tok]:
        """Tokenize `text` (an input or a reply); offsets are character offsets."""
        ...

    def token(self, text: str, special: bool) -> Tok:
        """Describe one scripted token (its id) given its text and specialness."""
        ...


class SimpleTokenizer:
    """Deterministic regex tokenizer with single-token K2 markers and tool tags."""

    def __init__(self, special_tokens: tuple[str, ...] = K2_SPECIAL_TOKENS) -> None:
        """Build the splitter; `special_tokens` are the marker/tag strings marked special."""
        self.special_tokens = tuple(special_tokens)
        known = sorted(set(K2_SPECIAL_TOKENS) | set(self.special_tokens), key=len, reverse=True)
        alternatives = [re.escape(t) for t in known] + [_MARKER]
        self._markers = re.compile("|".join(alternatives))

    def _id(self, text: str, special: bool) -> int:
        if text in K2_SPECIAL_TOKENS:
            return K2_SPECIAL_TOKENS.index(text) + 1
        if special:
            return 100 + zlib.crc32(text.encode()) % 800
        return _FIRST_PLAIN_ID + zlib.crc32(text.encode()) % _PLAIN_ID_RANGE

    def token(self, text: str, special: bool) -> Tok:
        """Return the token for a scripted piece of text (id derived from the text)."""
        return Tok(self._id(text, special), text, 0, len(text), special)

    def encode(self, text: str) -> list[Tok]:
        """Split `text` into tokens whose texts concatenate back to `text`."""
        out: list[Tok] = []
        pos = 0
        for marker in self._markers.finditer(text):
            out.extend(self._plain(text, pos, marker.start()))
            piece = marker.group()
            special = piece in self.special_tokens
            out.append(Tok(self._id(piece, special), piece, marker.start(), marker.end(), special))
            pos = marker.end()
        out.extend(self._plain(text, pos, len(text)))
        return out

    def _plain(self, text: str, start: int, stop: int) -> list[Tok]:
        return [
            Tok(self._id(m.group(), False), m.group(), start + m.start(), start + m.end(), False)
            for m in _WORDS.finditer(text[start:stop])
        ]


class HFTokenizer:
    """A `tokenizers` JSON file; token texts are recovered by incremental decoding like TGI."""

    def __init__(self, path: str) -> None:
        """Load the tokenizer file at `path` (imports `tokenizers` now)."""
        from tokenizers import Tokenizer as _HFTokenizer

        self._tok: Any = _HFTokenizer.from_file(path)
        decoder = self._tok.get_added_tokens_decoder()
        self._special_ids = {i for i, added in decoder.items() if getattr(added, "special", False)}

    def token(self, text: str, special: bool) -> Tok:
        """Return the token for a scripted piece of text (the vocabulary id when it has one)."""
        found = self._tok.token_to_id(text)
        ids = self._tok.encode(text, add_special_tokens=False).ids
        token_id = found if found is not None else (ids[0] if ids else 0)
        return Tok(int(token_id), text, 0, len(text), special)

    def encode(self, text: str) -> list[Tok]:
        """Encode without template tokens; texts by prefix-diff decoding, so they rejoin."""
        encoding = self._tok.encode(text, add_special_tokens=False)
        out: list[Tok] = []
        previous = ""
        ids: list[int] = []
        cursor = 0
        for token_id in encoding.ids:
            ids.append(token_id)
            decoded = self._tok.decode(ids, skip_special_tokens=False)
            piece = decoded[len(previous) :] if decoded.startswith(previous) else decoded
            previous = decoded
            special = token_id in self._special_ids
            out.append(Tok(token_id, piece, cursor, cursor + len(piece), special))
            cursor += len(piece)
        return out


class CachedTokenizer:
    """A tokenizer whose `encode` remembers the texts it saw last.

    Prompts repeat: a benchmark sends the same one hundreds of times, and an agent's history
    is re-sent every turn. Encoding a 20-tool prompt takes the simple tokenizer about 4 ms
    (the HF one longer), which would otherwise dominate a loopback request.
    """

    def __init__(self, inner: Tokenizer, size: int = 128) -> None:
        """Wrap `inner`, keeping the encodings of the last `size` distinct texts."""
        self.inner = inner
        self._encode = functools.lru_cache(maxsize=size)(lambda text: tuple(inner.encode(text)))

    def encode(self, text: str) -> list[Tok]:
        """`inner.encode(text)`, from the cache when `text` was seen recently."""
        return list(self._encode(text))

    def token(self, text: str, special: bool) -> Tok:
        """`inner.token(text, special)`."""
        return self.inner.token(text, special)


def load_tokenizer(path: str | None, special_tokens: tuple[str, ...]) -> Tokenizer:
    """Return the tokenizer file at `path`, or the simple tokenizer when `path` is None."""
    inner: Tokenizer = HFTokenizer(path) if path else SimpleTokenizer(special_tokens)
    return CachedTokenizer(inner)
