"""0. The streaming tool-call parser: headline figures of ``bench_stream_parser.py``.

Calls that script's own functions (text generator, deltas, the two parsers, its median
timer): ``ToolCallStreamParser.feed`` against the re-parse-everything baseline (vLLM's
hermes approach). The full run uses the script's sizes (100 KB and 1 MB for the parser,
10 KB and 100 KB for the quadratic baseline); ``--quick`` uses 10 KB and 100 KB, and the
baseline at 10 KB only.
"""

from __future__ import annotations

from benchmarks import bench_stream_parser as script
from benchmarks.common import Row, Settings
from langchain_k2._tool_calls import parse_tool_calls

SECTION = "0. Stream parser"
KEYS = ("parser.speedup", "parser.linear")
BASELINE = "re-parse baseline"


def run(settings: Settings) -> list[Row]:
    """Parser time against the baseline at one size, and how the parser's time grows."""
    small, large = ("10k", "100k") if settings.quick else ("100k", "1m")
    baseline_sizes = ("10k",) if settings.quick else ("10k", "100k")
    sizes = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
    texts = {key: script.make_text(sizes[key]) for key in {small, large, *baseline_sizes}}
    deltas = {key: script.make_deltas(text) for key, text in texts.items()}
    nbytes = {key: len(text.encode()) for key, text in texts.items()}
    expected = len(parse_tool_calls(texts[small]).blocks)
    assert script.run_ours(deltas[small]) == expected
    assert script.run_baseline(deltas[small]) == expected

    repeats = 3 if settings.quick else 5
    ours = {
        key: script.median_time(script.run_ours, deltas[key], repeats) for key in (small, large)
    }
    base = {key: script.median_time(script.run_baseline, deltas[key], 3) for key in baseline_sizes}
    growth = ours[large] / ours[small]
    base_growth = base["100k"] / base["10k"] if "100k" in base else None
    return [
        Row(
            key="parser.speedup",
            section=SECTION,
            measure=f"parse a {script.fmt_size(nbytes[small])} stream in 1-7 char deltas",
            k2=ours[small] * 1000,
            peer=base[small] * 1000,
            unit="ms",
            peer_name=BASELINE,
            reference="ratio < 1",
            note=(
                f"`ToolCallStreamParser.feed` {nbytes[small] / 1e6 / ours[small]:.1f} MB/s; "
                f"{base[small] / ours[small]:.0f}x faster than re-scanning the whole text "
                f"per delta."
            ),
        ),
        Row(
            key="parser.linear",
            section=SECTION,
            measure=(
                f"time growth for 10x the text ({script.fmt_size(nbytes[large])} / "
                f"{script.fmt_size(nbytes[small])})"
            ),
            k2=growth,
            peer=base_growth,
            unit="x",
            peer_name=f"{BASELINE} (100 KB / 10 KB)",
            reference="ChatK2 <= 12 (linear)",
            compare=False,
            note=(
                f"`feed` at {script.fmt_size(nbytes[large])}: "
                f"{nbytes[large] / 1e6 / ours[large]:.1f} MB/s"
                + ("" if base_growth is not None else "; baseline growth not run in --quick")
                + "."
            ),
        ),
    ]
