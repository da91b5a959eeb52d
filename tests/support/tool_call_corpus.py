"""Model outputs in K2-Chat's Hermes tool-call format, with their expected parses.

The shapes come from the K2-Chat model card (``shared/spec/k2-format.md`` section 2) and
from the public test suites of other Hermes-format parsers (vLLM's hermes tool parser
tests, llama.cpp's ``test-chat`` Hermes 2 Pro cases, SGLang's Qwen 2.5 detector tests).
The cases are written here; only the shapes are borrowed.

Each case gives the text, which tool set is bound (a key of ``TOOL_SETS`` or ``None``),
the expected content (exact), the valid calls as ``(name, args)`` and the invalid calls
as ``(name, error substring)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {  # bare function dict, as K2's own prompt lists them
    "name": "search",
    "description": "Search the web",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
}
PRODUCT_TOOL = {
    "type": "function",
    "function": {
        "name": "get_product_info",
        "description": "Get detailed information of a product",
        "parameters": {
            "type": "object",
            "properties": {
                "product_id": {"type": "integer"},
                "inserted": {"type": "boolean"},
            },
            "required": ["product_id", "inserted"],
        },
    },
}

TOOL_SETS: dict[str, list[dict[str, Any]]] = {
    "weather_search": [WEATHER_TOOL, SEARCH_TOOL],
    "product": [PRODUCT_TOOL],
}

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


def block(payload: Any, *, pre: str = "", post: str = "") -> str:
    """A closed block around ``json.dumps(payload)``."""
    return OPEN + pre + json.dumps(payload, ensure_ascii=False) + post + CLOSE


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    content: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    invalid: list[tuple[str | None, str]] = field(default_factory=list)
    tools: str | None = None


NEWS = {"name": "get_news_headlines", "arguments": {"country": "United States"}}
WEATHER_BOS = {"name": "get_weather", "arguments": {"city": "Boston"}}
SEARCH_BOOKS = {"name": "search", "arguments": {"query": "books"}}
SPECIAL = '{"name": "special_function", "arguments": {"arg1": 1}}'

CORPUS: list[Case] = [
    # --- the model card's form: a JSON list in one block -------------------------------
    Case(
        "k2_card_list",
        block([NEWS]),
        "",
        [("get_news_headlines", {"country": "United States"})],
    ),
    Case(
        "k2_card_list_two_calls",
        block([WEATHER_BOS, {"name": "get_weather", "arguments": {"city": "Tokyo"}}]),
        "",
        [("get_weather", {"city": "Boston"}), ("get_weather", {"city": "Tokyo"})],
    ),
    Case(
        "k2_list_after_text",
        "Sure, let me look that up.\n" + block([NEWS]),
        "Sure, let me look that up.\n",
        [("get_news_headlines", {"country": "United States"})],
    ),
    Case(
        "k2_system_prompt_order",  # the prompt's own example puts arguments first
        '<tool_call>{"arguments": {"city": "Boston"}, "name": "get_weather"}</tool_call>',
        "",
        [("get_weather", {"city": "Boston"})],
    ),
    Case(
        "k2_list_one_element_compact",
        '<tool_call>[{"name":"search","arguments":{"query":"k2 chat"}}]</tool_call>',
        "",
        [("search", {"query": "k2 chat"})],
    ),
    # --- one object per block (Hermes 2 Pro, Qwen) --------------------------------------
    Case(
        "single_object",
        block(WEATHER_BOS),
        "",
        [("get_weather", {"city": "Boston"})],
    ),
    Case(
        "single_object_newlines",  # vLLM's final_answer shape
        '<tool_call>\n{"name": "final_answer", "arguments": {"trigger": true}}\n</tool_call>',
        "",
        [("final_answer", {"trigger": True})],
    ),
    Case(
        "single_object_split_lines",  # vLLM's streaming case, line breaks inside the JSON
        '<tool_call>{"name": "get_current_temperature",\n"arguments": {"location":\n'
        '"San Francisco, California, United States", "unit": "celsius"}}</tool_call>',
        "",
        [
            (
                "get_current_temperature",
                {"location": "San Francisco, California, United States", "unit": "celsius"},
            )
        ],
    ),
    Case(
        "single_object_indented",
        OPEN + "\n" + json.dumps(WEATHER_BOS, indent=2) + "\n" + CLOSE,
        "",
        [("get_weather", {"city": "Boston"})],
    ),
    Case(
        "single_object_leading_spaces",  # llama.cpp: indented body
        "<tool_call>\n  " + SPECIAL + "\n</tool_call>",
        "",
        [("special_function", {"arg1": 1})],
    ),
    Case(
        "single_object_crlf",
        "<tool_call>\r\n" + SPECIAL + "\r\n</tool_call>",
        "",
        [("special_function", {"arg1": 1})],
    ),
    Case(
        "single_object_tabs",
        "<tool_call>\t" + SPECIAL + "\t</tool_call>",
        "",
        [("special_function", {"arg1": 1})],
    ),
    # --- several blocks ------------------------------------------------------------------
    Case(
        "two_blocks_newline",  # llama.cpp / SGLang parallel calls
        "<tool_call>\n"
        + SPECIAL
        + "\n</tool_call>\n<tool_call>\n"
        + '{"name": "python", "arguments": {"code": "print(\'hello\')"}}'
        + "\n</tool_call>",
        "\n",
        [("special_function", {"arg1": 1}), ("python", {"code": "print('hello')"})],
    ),
    Case(
        "two_blocks_adjacent",
        block(WEATHER_BOS) + block(SEARCH_BOOKS),
        "",
        [("get_weather", {"city": "Boston"}), ("search", {"query": "books"})],
    ),
    Case(
        "three_blocks_lists",
        block([WEATHER_BOS]) + "\n" + block([SEARCH_BOOKS, NEWS]) + "\n" + block([NEWS]),
        "\n\n",
        [
            ("get_weather", {"city": "Boston"}),
            ("search", {"query": "books"}),
            ("get_news_headlines", {"country": "United States"}),
            ("get_news_headlines", {"country": "United States"}),
        ],
    ),
    Case(
        "text_between_blocks",
        "First the weather: "
        + block(WEATHER_BOS)
        + " and then a search: "
        + block(SEARCH_BOOKS)
        + " done.",
        "First the weather:  and then a search:  done.",
        [("get_weather", {"city": "Boston"}), ("search", {"query": "books"})],
    ),
    # --- text around blocks --------------------------------------------------------------
    Case(
        "text_before",  # llama.cpp message_assist_call_content
        "Hello, world!\nWhat's up?<tool_call>\n" + SPECIAL + "\n</tool_call>",
        "Hello, world!\nWhat's up?",
        [("special_function", {"arg1": 1})],
    ),
    Case(
        "text_before_trailing_space",  # SGLang: the space before the tag is kept
        "Let me check the weather. "
        + block({"name": "get_weather", "arguments": {"city": "Tokyo"}}),
        "Let me check the weather. ",
        [("get_weather", {"city": "Tokyo"})],
    ),
    Case(
        "text_after",
        block(WEATHER_BOS) + "\nI have asked for the weather.",
        "\nI have asked for the weather.",
        [("get_weather", {"city": "Boston"})],
    ),
    Case(
        "text_around_whitespace_exact",
        "\n\n  " + block(WEATHER_BOS) + "  \n",
        "\n\n    \n",
        [("get_weather", {"city": "Boston"})],
    ),
    Case(
        "block_inside_markdown_fence_in_content",
        "```\n" + block(WEATHER_BOS) + "\n```",
        "```\n\n```",
        [("get_weather", {"city": "Boston"})],
    ),
    # --- markdown fences inside the tags -------------------------------------------------
    Case(
        "fence_json",
        "<tool_call>\n```json\n" + SPECIAL + "\n```\n</tool_call>",
        "",
        [("special_function", {"arg1": 1})],
    ),
    Case(
        "fence_plain",
        "<tool_call>```\n" + SPECIAL + "\n```</tool_call>",
        "",
        [("special_function", {"arg1": 1})],
    ),
    Case(
        "fence_list",
        "<tool_call>\n```json\n" + json.dumps([NEWS, WEATHER_BOS]) + "\n```\n</tool_call>",
        "",
        [("get_news_headlines", {"country": "United States"}), ("get_weather", {"city": "Boston"})],
    ),
    Case(
        "fence_inline",
        "<tool_call>```json" + SPECIAL + "```</tool_call>",
        "",
        [("special_function", {"arg1": 1})],
    ),
    # --- glaive / Hermes data quirks -----------------------------------------------------
    Case(
        "glaive_string_arguments",
        '<tool_call>{"name": "calculate_tip", "arguments": '
        '"{\\"bill_amount\\": 50, \\"tip_percentage\\": 20}"}</tool_call>',
        "",
        [("calculate_tip", {"bill_amount": 50, "tip_percentage": 20})],
    ),
    Case(
        "glaive_string_arguments_in_list",
        '<tool_call>[{"name": "convert_currency", "arguments": '
        '"{\\"amount\\": 1000, \\"from\\": \\"USD\\", \\"to\\": \\"EUR\\"}"}]</tool_call>',
        "",
        [("convert_currency", {"amount": 1000, "from": "USD", "to": "EUR"})],
    ),
    Case(
        "glaive_string_arguments_single_quotes",
        '<tool_call>{"name": "calculator", "arguments": "{\'expression\': \'2+2\'}"}</tool_call>',
        "",
        [("calculator", {"expression": "2+2"})],
    ),
    Case(
        "glaive_string_arguments_empty_object",
        '<tool_call>{"name": "get_time", "arguments": "{}"}</tool_call>',
        "",
        [("get_time", {})],
    ),
    Case(
        "parameters_instead_of_arguments",
        '<tool_call>{"name": "get_weather", "parameters": {"city": "Oslo"}}</tool_call>',
        "",
        [("get_weather", {"city": "Oslo"})],
    ),
    Case(
        "parameters_as_string",
        '<tool_call>{"name": "get_weather", "parameters": "{\\"city\\": \\"Oslo\\"}"}</tool_call>',
        "",
        [("get_weather", {"city": "Oslo"})],
    ),
    Case(
        "arguments_win_over_parameters",
        '<tool_call>{"name": "f", "arguments": {"a": 1}, "parameters": {"b": 2}}</tool_call>',
        "",
        [("f", {"a": 1})],
    ),
    Case(
        "missing_arguments",
        '<tool_call>{"name": "get_time"}</tool_call>',
        "",
        [("get_time", {})],
    ),
    Case(
        "missing_arguments_in_list",
        '<tool_call>[{"name": "get_time"}, {"name": "get_date"}]</tool_call>',
        "",
        [("get_time", {}), ("get_date", {})],
    ),
    Case(
        "extra_keys_ignored",
        '<tool_call>{"id": "x1", "type": "function", "name": "f", "arguments": {"a": 1}}'
        "</tool_call>",
        "",
        [("f", {"a": 1})],
    ),
    Case(
        "python_dict_single_quotes",  # the Hermes-Function-Calling README's own output
        "<tool_call>\n{'arguments': {'symbol': 'TSLA'}, 'name': 'get_current_stock_price'}\n"
        "</tool_call>",
        "",
        [("get_current_stock_price", {"symbol": "TSLA"})],
    ),
    Case(
        "python_dict_true_false_none",
        "<tool_call>{'name': 'set_flags', 'arguments': {'a': True, 'b': False, 'c': None}}"
        "</tool_call>",
        "",
        [("set_flags", {"a": True, "b": False, "c": None})],
    ),
    Case(
        "python_list_of_dicts",
        "<tool_call>[{'name': 'f', 'arguments': {'x': 1.5}}, {'name': 'g'}]</tool_call>",
        "",
        [("f", {"x": 1.5}), ("g", {})],
    ),
    # --- unclosed final block ------------------------------------------------------------
    Case(
        "unclosed_complete_json",  # vLLM: call until EOS
        '<tool_call>\n{"name": "final_answer", "arguments": {"trigger": true}}',
        "",
        [("final_answer", {"trigger": True})],
    ),
    Case(
        "unclosed_complete_list_after_text",
        "Checking. " + OPEN + json.dumps([NEWS]),
        "Checking. ",
        [("get_news_headlines", {"country": "United States"})],
    ),
    Case(
        "unclosed_complete_json_partial_close_tag",
        OPEN + json.dumps(WEATHER_BOS) + "\n</tool_",
        "",
        [("get_weather", {"city": "Boston"})],
    ),
    Case(
        "unclosed_complete_json_fence_open",
        OPEN + "\n```json\n" + json.dumps(WEATHER_BOS) + "\n",
        "",
        [("get_weather", {"city": "Boston"})],
    ),
    Case(
        "unclosed_truncated_json",  # vLLM: missing closing brace, until EOS
        '<tool_call>\n{"name": "final_answer", "arguments": {"trigger": true}',
        "",
        [],
        [(None, "not closed")],
    ),
    Case(
        "unclosed_truncated_list",
        'Sure. <tool_call>[{"name": "f", "arguments": {"a": 1',
        "Sure. ",
        [],
        [(None, "not closed")],
    ),
    Case(
        "unclosed_name_only",  # llama.cpp partial: the name has not even finished
        "Let's call something\n<tool_call>{\"name",
        "Let's call something\n",
        [],
        [(None, "not closed")],
    ),
    Case(
        "unclosed_empty",
        "Let me call a tool: <tool_call>",
        "Let me call a tool: ",
        [],
        [(None, "empty")],
    ),
    Case(
        "valid_then_truncated",
        block(WEATHER_BOS) + "\n" + OPEN + '{"name": "search", "arguments": {"query": "bo',
        "\n",
        [("get_weather", {"city": "Boston"})],
        [(None, "not closed")],
    ),
    # --- malformed blocks: invalid, never dropped ----------------------------------------
    Case(
        "closed_missing_brace",
        '<tool_call>\n{"name": "final_answer", "arguments": {"trigger": true}\n</tool_call>',
        "",
        [],
        [(None, "not valid JSON")],
    ),
    Case(
        "not_json_then_valid",  # SGLang skips the broken block; here it is kept, invalid
        "<tool_call>\n{not valid json}\n</tool_call>\n" + block(SEARCH_BOOKS),
        "\n",
        [("search", {"query": "books"})],
        [(None, "not valid JSON")],
    ),
    Case("empty_block", "<tool_call></tool_call>", "", [], [(None, "empty tool call block")]),
    Case(
        "whitespace_block",
        "Hmm <tool_call>\n \n</tool_call>",
        "Hmm ",
        [],
        [(None, "empty tool call block")],
    ),
    Case(
        "empty_fence_block",
        "<tool_call>```json\n```</tool_call>",
        "",
        [],
        [(None, "empty tool call block")],
    ),
    Case(
        "top_level_string",
        '<tool_call>"get_weather"</tool_call>',
        "",
        [],
        [(None, "must be an object or a list of objects, got str")],
    ),
    Case(
        "top_level_number",
        "<tool_call>42</tool_call>",
        "",
        [],
        [(None, "must be an object or a list of objects, got int")],
    ),
    Case("empty_list", "<tool_call>[]</tool_call>", "", [], [(None, "empty list")]),
    Case(
        "no_name",
        '<tool_call>{"arguments": {"city": "Boston"}}</tool_call>',
        "",
        [],
        [(None, "has no string 'name'")],
    ),
    Case(
        "name_not_string",
        '<tool_call>{"name": 5, "arguments": {}}</tool_call>',
        "",
        [],
        [(None, "has no string 'name'")],
    ),
    Case(
        "arguments_list",
        '<tool_call>{"name": "f", "arguments": [1, 2]}</tool_call>',
        "",
        [],
        [("f", "'arguments' of 'f' must be an object, got list")],
    ),
    Case(
        "arguments_null",
        '<tool_call>{"name": "f", "arguments": null}</tool_call>',
        "",
        [],
        [("f", "must be an object, got NoneType")],
    ),
    Case(
        "arguments_string_not_json",
        '<tool_call>{"name": "f", "arguments": "city=Boston"}</tool_call>',
        "",
        [],
        [("f", "not a JSON-encoded object")],
    ),
    Case(
        "arguments_string_encoding_list",
        '<tool_call>{"name": "f", "arguments": "[1, 2]"}</tool_call>',
        "",
        [],
        [("f", "not a JSON-encoded object")],
    ),
    Case(
        "list_one_element_no_name",
        '<tool_call>[{"name": "f", "arguments": {"a": 1}}, {"arguments": {"b": 2}}]</tool_call>',
        "",
        [("f", {"a": 1})],
        [(None, "tool call #2 in the list has no string 'name'")],
    ),
    Case(
        "list_one_element_not_object",
        '<tool_call>[{"name": "f", "arguments": {"a": 1}}, 42]</tool_call>',
        "",
        [("f", {"a": 1})],
        [(None, "#2 in the list is not an object")],
    ),
    Case(
        "list_one_element_bad_arguments",
        '<tool_call>[{"name": "f", "arguments": "oops"}, {"name": "g"}]</tool_call>',
        "",
        [("g", {})],
        [("f", "not a JSON-encoded object")],
    ),
    Case(
        "json_true_in_python_dict",  # mixes both syntaxes: not guessed
        "<tool_call>{'name': 'f', 'arguments': {'a': true}}</tool_call>",
        "",
        [],
        [(None, "not valid JSON")],
    ),
    Case(
        "python_tuple_not_json",
        "<tool_call>{'name': 'f', 'arguments': {'a': (1, 2)}}</tool_call>",
        "",
        [],
        [(None, "JSON cannot carry")],
    ),
    Case(
        "two_objects_no_list",
        '<tool_call>{"name": "f"}\n{"name": "g"}</tool_call>',
        "",
        [],
        [(None, "Extra data")],
    ),
    Case(
        "trailing_text_inside_block",
        '<tool_call>{"name": "f", "arguments": {}} thanks</tool_call>',
        "",
        [],
        [(None, "not valid JSON")],
    ),
    Case(
        "nested_open_tag",  # the first block is cut off by the second: invalid, kept
        "<tool_call><tool_call>" + SPECIAL + "</tool_call>",
        "",
        [("special_function", {"arg1": 1})],
        [(None, "a new <tool_call> began before its </tool_call>")],
    ),
    Case(
        "other_wrapper_tags_not_parsed",  # llama.cpp accepts <function=...>; K2 does not
        '<function=special_function>{"arg1": 1}</function>',
        '<function=special_function>{"arg1": 1}</function>',
    ),
    # --- strings with tricky characters --------------------------------------------------
    Case(
        "nested_json_braces_and_lt_in_strings",
        block(
            {
                "name": "run_code",
                "arguments": {"code": "if (a < b) { return {x: [1, 2]}; } // <tool>", "n": 1},
            }
        ),
        "",
        [("run_code", {"code": "if (a < b) { return {x: [1, 2]}; } // <tool>", "n": 1})],
    ),
    Case(
        "html_in_arguments",
        block({"name": "render", "arguments": {"html": "<b>bold</b> <i>x</i> <tool_x>"}}),
        "",
        [("render", {"html": "<b>bold</b> <i>x</i> <tool_x>"})],
    ),
    Case(
        "deeply_nested_arguments",
        block(
            {
                "name": "create_event",
                "arguments": {
                    "event": {
                        "title": "Sync",
                        "attendees": [
                            {"email": "a@x.org", "optional": False},
                            {"email": "b@x.org"},
                        ],
                        "when": {"start": "2024-05-01T10:00:00Z", "minutes": 30},
                    },
                    "notify": None,
                },
            }
        ),
        "",
        [
            (
                "create_event",
                {
                    "event": {
                        "title": "Sync",
                        "attendees": [
                            {"email": "a@x.org", "optional": False},
                            {"email": "b@x.org"},
                        ],
                        "when": {"start": "2024-05-01T10:00:00Z", "minutes": 30},
                    },
                    "notify": None,
                },
            )
        ],
    ),
    Case(
        "escaped_quotes_backslashes_newlines",
        block(
            {"name": "write_file", "arguments": {"path": "C:\\tmp\\a.txt", "text": 'say "hi"\n'}}
        ),
        "",
        [("write_file", {"path": "C:\\tmp\\a.txt", "text": 'say "hi"\n'})],
    ),
    # --- unicode -------------------------------------------------------------------------
    Case(
        "unicode_arguments",
        block({"name": "get_weather", "arguments": {"city": "São Paulo"}})
        + block({"name": "get_weather", "arguments": {"city": "東京"}}),
        "",
        [("get_weather", {"city": "São Paulo"}), ("get_weather", {"city": "東京"})],
    ),
    Case(
        "unicode_escapes",
        '<tool_call>{"name": "greet", "arguments": {"who": "Ren\\u00e9e \\ud83d\\ude00"}}'
        "</tool_call>",
        "",
        [("greet", {"who": "Renée 😀"})],
    ),
    Case(
        "unicode_content_and_name",
        "Voilà 🌦️ — je vérifie : " + block({"name": "天気", "arguments": {"都市": "大阪"}}) + " ✔",
        "Voilà 🌦️ — je vérifie :  ✔",
        [("天気", {"都市": "大阪"})],
    ),
    # --- plain content that only looks like tags -----------------------------------------
    Case(
        "plain_text",
        "The weather in Beijing is sunny today.",
        "The weather in Beijing is sunny today.",
    ),
    Case("empty_text", "", ""),
    Case(
        "stray_close_tag",  # SGLang: a close tag alone is not a call; nor is it shown
        "some text </tool_call> trailing",
        "some text  trailing",
    ),
    Case(
        "open_tag_prefix_at_end",
        "I will now call a tool <tool_call",
        "I will now call a tool <tool_call",
    ),
    Case("short_prefix_at_end", "I think <tool_", "I think <tool_"),
    Case("lt_at_end", "a < b and b <", "a < b and b <"),
    Case(
        "near_miss_tags",
        "<tox> <tool_cal> <tool call> <Tool_call> tool_call>",
        "<tox> <tool_cal> <tool call> <Tool_call> tool_call>",
    ),
    Case(
        "json_without_tags_is_content",  # llama.cpp parses bare JSON; K2's parser does not
        "This is not a tool call:\n" + SPECIAL,
        "This is not a tool call:\n" + SPECIAL,
    ),
    Case(
        "block_then_stray_close",
        block(WEATHER_BOS) + "</tool_call>",
        "",
        [("get_weather", {"city": "Boston"})],
    ),
    # --- tags written inside JSON strings (vLLM #45167, SGLang #28698) --------------------
    Case(
        "close_tag_in_string_argument",  # vLLM #45167's shape: a file-editing argument
        '<tool_call>\n{"name": "write_file", "arguments": {"path": "notes.md", '
        '"content": "End a call with </tool_call> and nothing else."}}\n</tool_call>',
        "",
        [
            (
                "write_file",
                {"path": "notes.md", "content": "End a call with </tool_call> and nothing else."},
            )
        ],
    ),
    Case(
        "open_tag_in_string_argument",
        "Searching. "
        + block({"name": "search", "arguments": {"query": "what does <tool_call> mean"}})
        + " Done.",
        "Searching.  Done.",
        [("search", {"query": "what does <tool_call> mean"})],
    ),
    Case(
        "whole_block_quoted_in_string_argument",  # a call echoing K2's own format, in a list
        block(
            [
                {"name": "echo", "arguments": {"text": '<tool_call>{"name": "x"}</tool_call>'}},
                {"name": "get_time"},
            ]
        ),
        "",
        [("echo", {"text": '<tool_call>{"name": "x"}</tool_call>'}), ("get_time", {})],
    ),
    Case(
        "close_tag_in_string_after_escaped_quotes",
        '<tool_call>{"name": "say", "arguments": {"text": "a \\"quoted\\" </tool_call> b \\\\"}}'
        "</tool_call> after",
        " after",
        [("say", {"text": 'a "quoted" </tool_call> b \\'})],
    ),
    Case(
        "close_tag_in_glaive_string_arguments",
        '<tool_call>{"name": "run", "arguments": "{\\"cmd\\": \\"echo </tool_call>\\"}"}'
        "</tool_call>",
        "",
        [("run", {"cmd": "echo </tool_call>"})],
    ),
    Case(
        "close_tag_in_python_dict_string",
        "<tool_call>{'name': 'run', 'arguments': {'cmd': 'echo \"</tool_call>\"'}}</tool_call>",
        "",
        [("run", {"cmd": 'echo "</tool_call>"'})],
    ),
    Case(
        "close_tag_in_string_block_unclosed",  # complete JSON, generation ended before the tag
        OPEN + json.dumps({"name": "note", "arguments": {"text": "x</tool_call>y"}}),
        "",
        [("note", {"text": "x</tool_call>y"})],
    ),
    Case(
        "unterminated_string_ends_at_close_tag",  # the string never ends: the tag was real
        '<tool_call>{"name": "f", "arguments": {"text": "oops}}</tool_call> Here you go.',
        " Here you go.",
        [],
        [(None, "not valid JSON")],
    ),
    Case(
        "unterminated_string_then_valid_block",
        '<tool_call>{"name": "f", "arguments": {"a": "x}}</tool_call>\n'
        '<tool_call>{"name": "g"}</tool_call>',
        "\n",
        [("g", {})],
        [(None, "not valid JSON")],
    ),
    Case(
        "unterminated_string_then_open_tag",
        '<tool_call>{"name": "f", "arguments": {"a": "x <tool_call>{"name": "g"}</tool_call>',
        "",
        [("g", {})],
        [(None, "a new <tool_call> began")],
    ),
    Case(
        "python_dict_odd_double_quote",  # one '"' in a Python string: read to the end, then cut
        "<tool_call>{'name': 'say', 'arguments': {'text': 'He said \"hi'}}</tool_call> ok",
        " ok",
        [("say", {"text": 'He said "hi'})],
    ),
    # --- glaive: arguments as a single-quoted string (glaive-function-calling-v2) -------
    Case(
        "glaive_single_quoted_arguments",  # glaive's own form
        '<tool_call>{"name": "get_news_headlines", "arguments": \'{"country": "United States"}\'}'
        "</tool_call>",
        "",
        [("get_news_headlines", {"country": "United States"})],
    ),
    Case(
        "glaive_single_quoted_raw_newlines",
        '<tool_call>{"name": "send_email", "arguments": \'{"to": "bob@x.org", '
        '"body": "Hi Bob,\nSee you at 5.\n"}\'}</tool_call>',
        "",
        [("send_email", {"to": "bob@x.org", "body": "Hi Bob,\nSee you at 5.\n"})],
    ),
    Case(
        "glaive_single_quoted_pretty_printed",
        '<tool_call>\n{"name": "calculate_bmi", "arguments": \'{\n  "weight": 70,\n'
        '  "height": 1.75\n}\'}\n</tool_call>',
        "",
        [("calculate_bmi", {"weight": 70, "height": 1.75})],
    ),
    Case(
        "glaive_single_quoted_apostrophe",
        '<tool_call>{"name": "translate", "arguments": \'{"text": "It\'s raining", '
        '"to": "fr"}\'}</tool_call>',
        "",
        [("translate", {"text": "It's raining", "to": "fr"})],
    ),
    Case(
        "glaive_single_quoted_arguments_first",
        '<tool_call>{"arguments": \'{"query": "rock \'n\' roll"}\', "name": "search"}</tool_call>',
        "",
        [("search", {"query": "rock 'n' roll"})],
    ),
    Case(
        "glaive_single_quoted_in_list",
        '<tool_call>[{"name": "search_recipes", "arguments": \'{"dish": "shepherd\'s pie"}\'}]'
        "</tool_call>",
        "",
        [("search_recipes", {"dish": "shepherd's pie"})],
    ),
    Case(
        "glaive_single_quoted_checked_against_tools",
        '<tool_call>{"name": "get_weather", "arguments": \'{"city": "Val d\'Isère"}\'}</tool_call>',
        "",
        [("get_weather", {"city": "Val d'Isère"})],
        tools="weather_search",
    ),
    Case(
        "glaive_single_quoted_not_json",
        '<tool_call>{"name": "f", "arguments": \'it\'s\nnot json\'}</tool_call>',
        "",
        [],
        [("f", "not a JSON-encoded object")],
    ),
    # --- empty arguments strings -----------------------------------------------------------
    Case(
        "arguments_empty_string",
        '<tool_call>{"name": "get_time", "arguments": ""}</tool_call>',
        "",
        [("get_time", {})],
    ),
    Case(
        "arguments_whitespace_string",
        '<tool_call>[{"name": "get_time", "arguments": " \\n\\t "}, {"name": "get_date", '
        '"parameters": ""}]</tool_call>',
        "",
        [("get_time", {}), ("get_date", {})],
    ),
    Case(
        "glaive_arguments_empty_single_quoted",
        '<tool_call>{"name": "get_time", "arguments": \'\'}</tool_call>',
        "",
        [("get_time", {})],
    ),
    Case(
        "tools_arguments_empty_string_checked",
        '<tool_call>{"name": "search", "arguments": ""}</tool_call>',
        "",
        [],
        [("search", "'query' is a required property")],
        tools="weather_search",
    ),
    # --- a new open tag inside a block that never closed ----------------------------------
    Case(
        "cut_off_by_next_block",
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Boston"}\n'
        + block(SEARCH_BOOKS),
        "",
        [("search", {"query": "books"})],
        [(None, "a new <tool_call> began before its </tool_call>")],
    ),
    Case(
        "cut_off_complete_json_is_still_invalid",
        'Two calls: <tool_call>{"name": "a"}\n<tool_call>{"name": "b"}</tool_call>',
        "Two calls: ",
        [("b", {})],
        [(None, "not closed: a new <tool_call>")],
    ),
    Case(
        "cut_off_twice",
        '<tool_call>[{"name": "a"}<tool_call>{"name": "b"<tool_call>{"name": "c"}</tool_call>',
        "",
        [("c", {})],
        [(None, "a new <tool_call> began"), (None, "a new <tool_call> began")],
    ),
    Case(
        "cut_off_then_unclosed",
        'Text <tool_call>{"name": "a", <tool_call>{"name": "b"}',
        "Text ",
        [("b", {})],
        [(None, "a new <tool_call> began")],
    ),
    # --- stray close tags: dropped from the content ---------------------------------------
    Case("stray_close_only", "</tool_call>", ""),
    Case("stray_close_at_start", "</tool_call>Hello!", "Hello!"),
    Case(
        "stray_close_between_blocks",
        block(WEATHER_BOS) + "</tool_call>\n</tool_call>" + block(SEARCH_BOOKS) + " ok",
        "\n ok",
        [("get_weather", {"city": "Boston"}), ("search", {"query": "books"})],
    ),
    Case(
        "stray_close_after_fence",  # llama.cpp: a model closing a call it wrote as markdown
        '```json\n{"name": "f"}\n```</tool_call>',
        '```json\n{"name": "f"}\n```',
    ),
    # --- with bound tools ----------------------------------------------------------------
    Case(
        "tools_valid_both_forms",
        block([WEATHER_BOS, SEARCH_BOOKS]),
        "",
        [("get_weather", {"city": "Boston"}), ("search", {"query": "books"})],
        tools="weather_search",
    ),
    Case(
        "tools_unknown_tool",
        block({"name": "get_stock_price", "arguments": {"symbol": "TSLA"}}),
        "",
        [],
        [("get_stock_price", "unknown tool 'get_stock_price'; bound tools: get_weather, search")],
        tools="weather_search",
    ),
    Case(
        "tools_schema_missing_required",
        block({"name": "get_weather", "arguments": {"unit": "celsius"}}),
        "",
        [],
        [("get_weather", "arguments for 'get_weather' fail its schema: 'city' is a required")],
        tools="weather_search",
    ),
    Case(
        "tools_schema_wrong_type",
        block({"name": "get_product_info", "arguments": {"product_id": "abc", "inserted": True}}),
        "",
        [],
        [("get_product_info", "'abc' is not of type 'integer'")],
        tools="product",
    ),
    Case(
        "tools_product_int_and_bool",  # vLLM's product case
        block(
            [{"name": "get_product_info", "arguments": {"product_id": 7355608, "inserted": True}}]
        ),
        "",
        [("get_product_info", {"product_id": 7355608, "inserted": True})],
        tools="product",
    ),
    Case(
        "tools_list_one_unknown",
        block([WEATHER_BOS, {"name": "delete_everything", "arguments": {}}]),
        "",
        [("get_weather", {"city": "Boston"})],
        [("delete_everything", "unknown tool 'delete_everything'")],
        tools="weather_search",
    ),
    Case(
        "tools_glaive_string_checked",
        '<tool_call>{"name": "search", "arguments": "{\\"query\\": 5}"}</tool_call>',
        "",
        [],
        [("search", "5 is not of type 'string'")],
        tools="weather_search",
    ),
    Case(
        "tools_missing_arguments_checked",
        '<tool_call>{"name": "search"}</tool_call>',
        "",
        [],
        [("search", "'query' is a required property")],
        tools="weather_search",
    ),
]

CORPUS_BY_ID = {case.id: case for case in CORPUS}
assert len(CORPUS_BY_ID) == len(CORPUS), "duplicate case ids"
