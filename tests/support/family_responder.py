"""A prompt-aware scripted K2 model for the newer families (K2-V2, K2-Think-V2, K2-V3).

In: one raw prompt (as ChatK2 renders it) and the engine request's JSON body; the fake
servers call `respond` through their `responder` reply field (fake_engine/responder.py).
Out: the text the model would write, in the family's own output format: a thought closed by
the tag the generation prompt opened (the effort's tag), then either an answer or a call in
the family's call syntax (K2-V2/K2-Think-V2: `<tool_call>` JSON blocks; K2-V3: one
`<ifm|tool_calls>` group in the form the prompt's instructions name: xml, xml_typed or json).

What it answers is read from the prompt: the tools listed in its tools section, a forced
call (the request's structural tag opens the call block), a JSON schema to satisfy (the
structural tag's `json_schema`, else the system prompt's), the last turn's role (a tool
result is answered in words), and the arguments from the last user turn (quoted text for
strings, its integers in order for numbers). Every thought holds `THOUGHT_MARK`, so a test
can prove that no reasoning reached the content or the call arguments.

>>> respond("<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n<think_fast>\\n", {})
'[thought] The user wrote: hi</think_fast>Hello! I am a scripted K2 model.'
"""

from __future__ import annotations

import json
import re
from typing import Any

THOUGHT_MARK = "[thought]"
ANSWER = "Hello! I am a scripted K2 model."
_TURN = re.compile(r"<\|(?:ifm\|)?im_start\|>(\w+)\n(.*?)<\|(?:ifm\|)?im_end\|>", re.DOTALL)
_OPEN_TAG = re.compile(r"<([\w|]+)>\n$")
_TOOLS = re.compile(r"<(?:ifm\|)?tools>\n(.*?)\n</(?:ifm\|)?tools>", re.DOTALL)
_SCHEMA_IN_PROMPT = re.compile(r"It must satisfy this JSON schema: (\{.*\})")


def _turns(prompt: str) -> list[tuple[str, str]]:
    return [(role, text) for role, text in _TURN.findall(prompt)]


def _tools(prompt: str) -> list[dict[str, Any]]:
    found = _TOOLS.search(prompt)
    if found is None:
        return []
    tools = []
    for line in found.group(1).splitlines():
        doc = json.loads(line)
        tools.append(doc.get("function", doc))
    return tools


def _structural_tag(body: Any) -> dict[str, Any] | None:
    outputs = body.get("structured_outputs") if isinstance(body, dict) else None
    tag = outputs.get("structural_tag") if isinstance(outputs, dict) else None
    if not isinstance(tag, str):
        return None
    doc: dict[str, Any] = json.loads(tag)
    return doc


def _elements(body: Any) -> list[dict[str, Any]]:
    tag = _structural_tag(body)
    if tag is None:
        return []
    elements: list[dict[str, Any]] = tag["format"].get("elements", [])
    return elements


def _forced_names(body: Any) -> list[str] | None:
    """The tool names a forced call may take (None: the call is not forced)."""
    elements = _elements(body)
    opens = [str(e.get("value", "")) for e in elements if e.get("type") == "const_string"]
    if not any(v.startswith(("<tool_call>", "<ifm|tool_calls>")) for v in opens):
        return None
    names: list[str] = []
    for element in elements:
        if element.get("type") == "json_schema":
            names += re.findall(r'"name": \{"const": "(\w+)"\}', json.dumps(element))
        if element.get("type") == "grammar":
            names += re.findall(r'k2-tool-\d+ ::= "(\w+)\\n"', element["grammar"])
    return names


def _schema(prompt: str, body: Any) -> dict[str, Any] | None:
    """The JSON schema the answer must satisfy (None: a free answer).

    The structural tag's (vLLM) when it names properties, else the one the system prompt
    states (every engine), else an open object when the prompt asks for JSON alone.
    """
    tagged = [e["json_schema"] for e in _elements(body) if e.get("type") == "json_schema"]
    if tagged and tagged[0].get("properties"):
        schema: dict[str, Any] = tagged[0]
        return schema
    stated = _SCHEMA_IN_PROMPT.search(prompt)
    if stated:
        stated_schema: dict[str, Any] = json.loads(stated.group(1))
        return stated_schema
    if tagged or "Respond with a single JSON object" in prompt:
        return {"type": "object"}
    return None


def _value(schema: dict[str, Any], name: str, user: str, numbers: list[int], defs: Any) -> Any:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _value(options[0], name, user, numbers, defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "string")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _value(v, k, user, numbers, defs) for k, v in props.items()}
    if kind == "array":
        return [_value(schema.get("items", {}), name, user, numbers, defs)]
    if kind == "integer":
        return numbers.pop(0) if numbers else 1
    if kind == "number":
        return float(numbers.pop(0)) if numbers else 1.5
    if kind == "boolean":
        return True
    quoted = re.findall(r"'([^']+)'", user)
    return quoted[0] if quoted else f"{name}: {user}"


def _instance(schema: dict[str, Any], user: str, *, json_mode: bool = False) -> Any:
    numbers = [int(n) for n in re.findall(r"\d+", user)]
    if json_mode and not schema.get(
        "properties"
    ):  # JSON mode with no schema: the keys the user quoted
        keys = re.findall(r"'(\w+)'", user) or ["answer"]
        schema = {"type": "object", "properties": {k: {"type": "string"} for k in keys}}
    return _value(schema, "value", user, numbers, schema.get("$defs", {}))


def _v3_form(prompt: str) -> str:
    """K2-V3's call form, as the prompt's call instructions state it."""
    if "emit one JSON object with the function name" in prompt:
        return "json"
    return "xml_typed" if "<ifm|arg_type>$ARGUMENT_TYPE" in prompt else "xml"


def _call(tool: dict[str, Any], user: str, prompt: str) -> str:
    parameters = tool.get("parameters") or {"type": "object", "properties": {}}
    args = _instance(parameters, user)
    if not isinstance(args, dict):
        args = {}
    if "<ifm|tool_calls>" not in prompt:  # K2-V2 and K2-Think-V2: one JSON block per call
        payload = json.dumps({"name": tool["name"], "arguments": args}, ensure_ascii=False)
        return f"<tool_call>\n{payload}\n</tool_call>"
    form = _v3_form(prompt)
    if form == "json":
        payload = json.dumps({"name": tool["name"], "arguments": args}, ensure_ascii=False)
        return f"<ifm|tool_calls>\n<ifm|tool_call>{payload}</ifm|tool_call>\n</ifm|tool_calls>"
    pairs = ""
    for key, value in args.items():
        pairs += f"<ifm|arg_key>{key}</ifm|arg_key>\n"
        if form == "xml_typed":
            kind = parameters["properties"][key].get("type", "string")
            pairs += f"<ifm|arg_type>{kind}</ifm|arg_type>\n"
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        pairs += f"<ifm|arg_value>{text}</ifm|arg_value>\n"
    call = f"<ifm|tool_call>{tool['name']}\n{pairs}</ifm|tool_call>"
    return f"<ifm|tool_calls>\n{call}\n</ifm|tool_calls>"


def respond(prompt: str, body: Any) -> str:
    """The scripted model's whole output for `prompt` (see the module docstring)."""
    opened = _OPEN_TAG.search(prompt)
    close = f"</{opened.group(1)}>" if opened else ""
    turns = _turns(prompt)
    last_role, last_text = turns[-1] if turns else ("user", "")
    user = next((text for role, text in reversed(turns) if role == "user"), "")
    thought = f"{THOUGHT_MARK} The user wrote: {user}{close}"
    tools = _tools(prompt)
    forced = _forced_names(body)
    schema = _schema(prompt, body)
    if forced is not None or (tools and last_role == "user"):
        names = forced or [t["name"] for t in tools]
        named = [t for t in tools if t["name"] in names and t["name"] in user]
        chosen = (named or [t for t in tools if t["name"] in names] or tools)[0]
        return thought + _call(chosen, user, prompt)
    if schema is not None:
        return thought + json.dumps(_instance(schema, user, json_mode=True), ensure_ascii=False)
    if last_role == "tool":
        return thought + f"The tool answered: {last_text}"
    return thought + ANSWER


__all__ = ["ANSWER", "THOUGHT_MARK", "respond"]
