"""Run every benchmark, print the table, write ``benchmarks.md`` and ``benchmarks.png``.

Usage: ``python -m benchmarks [--quick] [--out DIR] [--only SECTIONS]`` (or
``python benchmarks/run.py ...``). ``--quick`` is a smoke run of seconds (small sizes, every
row still present); ``--out`` defaults to ``docs/``; ``--only overhead,streaming`` runs some
sections (the others' rows say "not run"). Progress goes to stderr, the table to stdout.

Every socket connection is checked to go to a loopback address (no hub lookups, no
network); fake servers are stopped when their section ends. Exit status 1 if a section
raised (its rows then say why), 0 otherwise: the figures themselves pass or fail nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

if __package__ in {None, ""}:  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO_ROOT, Row, Settings, loopback_only, require_bench_extra

require_bench_extra()

from benchmarks import (  # noqa: E402 -- after the check that names the missing extra
    concurrency,
    engines,
    families,
    local,
    malformed,
    overhead,
    parser,
    real_vllm,
    report,
    schemas,
    streaming,
)

SECTIONS: tuple[ModuleType, ...] = (
    parser,
    overhead,
    streaming,
    concurrency,
    malformed,
    local,
    engines,
    families,
    schemas,
    real_vllm,
)
NAMES = {
    "parser": parser,
    "overhead": overhead,
    "streaming": streaming,
    "concurrency": concurrency,
    "malformed": malformed,
    "local": local,
    "engines": engines,
    "families": families,
    "schemas": schemas,
    "real_vllm": real_vllm,
}
#: Every row of the table, in order (the smoke test checks them).
ROW_KEYS: tuple[str, ...] = tuple(key for module in SECTIONS for key in module.KEYS)


def _placeholders(module: ModuleType, why: str) -> list[Row]:
    return [
        Row(key=key, section=module.SECTION, measure=why, k2=None, peer=None, unit="-", note=why)
        for key in module.KEYS
    ]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    cli.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    cli.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "docs",
        help="folder for benchmarks.md and benchmarks.png (default: docs/)",
    )
    cli.add_argument(
        "--only", default="", help=f"comma-separated sections to run, of: {', '.join(NAMES)}"
    )
    args = cli.parse_args(argv)
    unknown = {s for s in args.only.split(",") if s} - NAMES.keys()
    if unknown:
        cli.error(f"unknown section(s) {sorted(unknown)}; known: {', '.join(NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; returns the exit status."""
    args = _parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = Settings(quick=args.quick)
    wanted = {NAMES[s] for s in args.only.split(",") if s} or set(SECTIONS)
    machine = report.machine_info()
    rows: list[Row] = []
    durations: dict[str, float] = {}
    failed = False
    with loopback_only():
        for module in SECTIONS:
            if module not in wanted:
                rows += _placeholders(module, "not run (--only)")
                continue
            sys.stderr.write(f"[benchmarks] {module.SECTION} ...\n")
            sys.stderr.flush()
            start = time.perf_counter()
            try:
                rows += module.run(settings)
            except Exception as exc:
                failed = True
                traceback.print_exc()
                rows += _placeholders(module, f"failed: {type(exc).__name__}: {exc}"[:300])
            durations[module.SECTION] = time.perf_counter() - start
            sys.stderr.write(f"[benchmarks]   done in {durations[module.SECTION]:.1f} s\n")
    machine["load_end"] = report.load_average()

    kind = "quick smoke run" if settings.quick else "full run"
    print(f"langchain-k2 benchmarks ({kind}); {machine['cpu']}; {machine['python']}")
    print(f"load average at start {machine['load_start']}, at end {machine['load_end']}\n")
    print(report.markdown_table(rows))
    print()
    print(report.notes(rows))

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report.plot(
        rows, out / "benchmarks.png", f"langchain-k2 benchmarks ({kind}, {machine['date']})"
    )
    text = report.markdown_report(
        rows,
        machine,
        quick=settings.quick,
        modules=SECTIONS,
        durations=durations,
        image="benchmarks.png",
    )
    (out / "benchmarks.md").write_text(text, encoding="utf-8")
    sys.stderr.write(f"[benchmarks] wrote {out / 'benchmarks.md'} and {out / 'benchmarks.png'}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
