"""The engine-neutral wire kit: line splitting, SSE framing, capped decoding, deadlines."""

from __future__ import annotations

import gzip
import re
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from langchain_k2.backends._wire import (
    MAX_ERROR_BODY,
    BodyDecoder,
    BodyTooLargeError,
    Deadline,
    HeadDeadline,
    Limits,
    LineSplitter,
    SSEDecoder,
    WireError,
    default_deadline,
    read_capped,
)

BREAKS = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e"


def split_all(body: bytes, cuts: list[int], limit: int | None = None) -> list[str]:
    splitter = LineSplitter(limit)
    lines: list[str] = []
    start = 0
    for cut in sorted(cuts):
        lines += splitter.feed(body[start:cut])
        start = cut
    return lines + splitter.feed(body[start:]) + splitter.end()


@given(
    st.lists(st.text(alphabet=st.sampled_from("ab\r\n" + BREAKS), max_size=12), max_size=8),
    st.lists(st.integers(min_value=0, max_value=200), max_size=10),
)
def test_lines_are_the_same_however_the_body_is_cut(parts: list[str], cuts: list[int]) -> None:
    body = "".join(parts).encode()
    expected = re.split("\r\n|\r|\n", body.decode())
    if expected and expected[-1] == "":
        expected.pop()  # a final line break ends the last line, it starts none
    assert split_all(body, cuts) == expected


def test_unicode_line_breaks_stay_inside_an_sse_line() -> None:
    line = f"data: {BREAKS}"
    assert split_all(f"{line}\r\n\r\n".encode(), [len(line) + 1]) == [line, ""]
    decoder = SSEDecoder()
    assert [decoder.feed(x) for x in (line, "")] == [None, BREAKS]


def test_a_line_over_its_cap_is_refused_even_when_it_comes_in_pieces() -> None:
    splitter = LineSplitter(limit=10)
    assert splitter.feed(b"data: 12") == []
    with pytest.raises(BodyTooLargeError, match="exceeded 10 bytes"):
        splitter.feed(b"345")


def test_an_event_of_many_data_lines_is_capped() -> None:
    decoder = SSEDecoder(limit=10)
    decoder.feed("data: 12345")
    with pytest.raises(BodyTooLargeError, match="an event of the event stream"):
        decoder.feed("data: 67890")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_capped_after_inflating(encoding: str) -> None:
    packed = (
        gzip.compress(bytes(10 << 20)) if encoding == "gzip" else zlib.compress(bytes(10 << 20))
    )
    decoder = BodyDecoder(encoding, limit=1 << 20)
    with pytest.raises(BodyTooLargeError):
        for _ in decoder.feed(packed):
            pass
    assert decoder.size <= (1 << 20) + 1
    assert b"".join(BodyDecoder(encoding, limit=1 << 30).feed(packed)) == bytes(10 << 20)


def test_an_unasked_encoding_is_refused() -> None:
    with pytest.raises(WireError, match="'br'"):
        BodyDecoder("br")


def test_limits_grow_with_max_new_tokens() -> None:
    small, large = Limits.for_generation(16), Limits.for_generation(8192)
    assert small.body < large.body
    assert small.line < large.line
    assert small.events == 2 * 16 + 256
    assert MAX_ERROR_BODY == 64 * 1024
    assert default_deadline(16) < default_deadline(8192)


def test_a_deadline_is_the_sooner_bound() -> None:
    now = [0.0]
    deadline = Deadline(10.0, clock=lambda: now[0])
    head = HeadDeadline(deadline, 2.0)
    assert head.remaining() == 10.0  # its clock starts at the first read
    head.start()
    assert head.phase == "headers"
    assert head.remaining() == 2.0
    assert HeadDeadline(deadline, None).remaining() == 10.0
    now[0] = 11.0
    assert deadline.passed()
    assert deadline.exceeded().phase == "deadline"


def test_error_bodies_are_cut_not_refused() -> None:
    assert read_capped(iter([b"x" * 40_000] * 4), MAX_ERROR_BODY) == b"x" * MAX_ERROR_BODY
