"""4. Tool-call success when the model writes malformed calls 20% of the time.

The fake server answers every generation request with a call of ``tool_07`` and decides per
request, with its own seeded random generator, whether to corrupt it (probability 0.2; one
of: truncated JSON, an unquoted key, a wrong closing bracket, prose after the object). A
request that carries a JSON grammar is never corrupted: grammar-constrained decoding cannot
produce malformed JSON, so that is what a constrained request models. The client cannot
influence the decision; the server records it, so the corruption rate it applied is shown.

Three ChatK2 configurations run the same turns (20 tools bound, ``tool_choice="auto"``),
each against a fresh random generator with the same seed:

- ``max_tool_call_retries=2``, grammar enabled on the server: a malformed call is repaired by
  a grammar-constrained request (expected: every turn valid);
- ``max_tool_call_retries=2``, server started with grammar disabled: the repair request's
  grammar is refused (422) and ChatK2 falls back to plain prompting, which can be corrupted
  again (expected: 1 - 0.2^3 = 99.2%);
- ``max_tool_call_retries=0``: no repair (expected: 80%).

A turn counts as valid when its message holds exactly the expected call and no invalid call.
The peer does not take part: TGI's chat route decodes every tool call under a grammar, so
this fake never corrupts its calls.
"""

from __future__ import annotations

import json
import math
from typing import Any

from langchain_core.messages import HumanMessage

from benchmarks.common import TOOL_CALL, Row, Settings, call_ok, fake_engine, make_tools
from benchmarks.overhead import k2_model
from langchain_k2._tool_calls import parse_block
from tests.support.fake_engine.bench import CORRUPTIONS, corrupt

SECTION = "4. Malformed tool calls"
KEYS = ("malformed.grammar", "malformed.no_grammar", "malformed.no_retries")
CORRUPT_P = 0.2
SEED = 20240515
CONFIGS: tuple[tuple[str, str, int, bool, float], ...] = (
    ("malformed.grammar", "retries=2, grammar on", 2, True, 1.0),
    ("malformed.no_grammar", "retries=2, grammar off", 2, False, 1 - CORRUPT_P**3),
    ("malformed.no_retries", "retries=0", 0, True, 1 - CORRUPT_P),
)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def check_corruptions_are_invalid() -> None:
    """Every corruption the server applies must be unreadable to ChatK2's parser."""
    call_json = json.dumps(TOOL_CALL)
    for kind in CORRUPTIONS:
        block = parse_block("<tool_call>" + corrupt(call_json, kind) + "</tool_call>", make_tools())
        assert block.invalid_tool_calls, f"{kind} parses as valid"
        assert not block.tool_calls, f"{kind} parses as valid"


def _turns(tgi: Any, retries: int, grammar: bool, turns: int) -> tuple[int, list[dict[str, Any]]]:
    tgi.reset()
    tgi.configure(grammar_enabled=grammar)
    tgi.set_default({"tool_call": TOOL_CALL, "corrupt_p": CORRUPT_P, "corrupt_seed": SEED})
    model = k2_model(tgi.url, max_tool_call_retries=retries).bind_tools(make_tools())
    messages = [HumanMessage("Look up 3 rows of Paris data in metric units.")]
    valid = sum(call_ok(model.invoke(messages)) for _ in range(turns))
    return valid, tgi.requests()


def run(settings: Settings) -> list[Row]:
    """Share of valid turns per configuration, with the server's own corruption count."""
    check_corruptions_are_invalid()
    turns = settings.malformed_turns
    rows: list[Row] = []
    with fake_engine() as tgi:
        for key, label, retries, grammar, expected in CONFIGS:
            valid, records = _turns(tgi, retries, grammar, turns)
            generations = [r for r in records if r["path"] == "/"]
            decided = [r["bench"] for r in generations if r.get("bench")]
            corrupted = sum(d["corrupted"] for d in decided)
            unconstrained = sum(not d["constrained"] for d in decided)
            constrained = len(decided) - unconstrained
            refused = sum(1 for r in generations if r["fault"] == "validation")
            low, high = wilson(valid, turns)
            rows.append(
                Row(
                    key=key,
                    section=SECTION,
                    measure=f"turns ending with a valid call, {label}",
                    k2=100.0 * valid / turns,
                    peer=None,
                    unit="% of turns",
                    peer_name="-",
                    reference=f"expected {100 * expected:.1f}% at p=0.2",
                    note=(
                        f"{valid}/{turns} valid (95% CI {100 * low:.1f}-{100 * high:.1f}%); "
                        f"server corrupted {corrupted} of {unconstrained} unconstrained replies "
                        f"({100 * corrupted / max(unconstrained, 1):.1f}%), answered "
                        f"{constrained} grammar-constrained repairs, refused {refused} "
                        f"grammars; {len(generations) / turns:.2f} requests per turn."
                    ),
                    extra={"expected": 100.0 * expected},
                )
            )
    return rows
