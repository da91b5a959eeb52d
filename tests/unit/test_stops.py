"""Stop strings (``langchain_k2._stops``): one filter for the turn and the llama.cpp backend."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_k2._stops import StopFilter, TokenStopFilter

PIECES = st.lists(st.text(alphabet="ab<|>", max_size=5), max_size=10)
STOPS = st.lists(st.text(alphabet="ab<|>", max_size=4), max_size=3)


def test_text_is_cut_where_the_stop_begins_across_deltas() -> None:
    f = StopFilter(["<|im_end|>"])
    assert [f.feed(d) for d in ["Hi <|im", "_en", "d|> after", "more"]] == ["Hi ", "", "", ""]
    assert (f.stopped, f.stop_found, f.flush()) == (True, "<|im_end|>", "")


def test_a_held_prefix_that_never_completes_is_released() -> None:
    f = StopFilter(["</s>"])
    assert (f.feed("a </"), f.feed("x"), f.feed(" </s"), f.flush()) == ("a ", "</x", " ", "</s")
    assert not f.stopped


def test_earliest_stop_wins_and_end_releases_held_text() -> None:
    f = StopFilter(["bb", "ab"])
    assert (f.feed("xabb"), f.stop_found) == ("x", "ab")
    g = StopFilter(["END"])
    assert (g.feed("to EN"), g.end(), g.feed("D"), g.stopped) == ("to ", "EN", "", True)


def test_token_filter_keeps_tokens_whole_and_cuts_the_stop_token() -> None:
    f: TokenStopFilter[bool] = TokenStopFilter(["<|im_end|>"])
    assert f.add("Hello", False) == ([("Hello", False)], False)
    assert f.add(" <|", False) == ([], False)  # " " is safe, but the token is held whole
    assert f.add("im_end|>", True) == ([(" ", False)], True)


def test_token_filter_releases_held_tokens_and_empty_ones_in_order() -> None:
    f: TokenStopFilter[str] = TokenStopFilter(["</s>"])
    assert f.add("a<", "t1") == ([], False)
    assert f.add("", "t2") == ([], False)  # a token whose character is not complete yet
    assert f.add("b", "t3") == ([("a<", "t1"), ("", "t2"), ("b", "t3")], False)
    assert f.add("</", "t4") == ([], False)
    assert f.flush() == [("</", "t4")]


@settings(max_examples=400, deadline=None)
@given(PIECES, STOPS)
def test_both_filters_release_the_same_text_and_stop_at_a_stop(
    pieces: list[str], stops: list[str]
) -> None:
    text_filter = StopFilter(stops)
    token_filter: TokenStopFilter[int] = TokenStopFilter(stops)
    released, tokens, stopped = "", [], False
    for number, piece in enumerate(pieces):
        released += text_filter.feed(piece)
        ready, stopped = token_filter.add(piece, number)
        tokens += ready
        if stopped:
            break
    if not stopped:
        released += text_filter.flush()
        tokens += token_filter.flush()
    whole = "".join(pieces)
    assert "".join(text for text, _ in tokens) == released
    assert stopped == text_filter.stopped
    assert whole.startswith(released)
    # Every token comes out once, in order, whole; only the one the stop begins in is cut.
    numbers = [number for _, number in tokens]
    assert numbers == list(range(len(numbers)))
    assert [text for text, _ in tokens[:-1]] == pieces[: max(0, len(tokens) - 1)]
    if stopped:
        assert text_filter.stop_found is not None
        assert whole[len(released) :].startswith(text_filter.stop_found)
    else:
        assert released == whole
        assert not any(stop and stop in whole for stop in stops)
