"""Shared fixtures for the integration tests: the fake TGI server (one process per session).

`fake_tgi_server` starts `integration_tests.fake_tgi.server` once per test session on
127.0.0.1; `tgi` hands it to a test after a reset (empty queue, no default reply, fresh records,
start-up configuration), so every test scripts its own replies.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:  # `integration_tests` has no __init__.py: make it importable
    sys.path.insert(0, str(_REPO_ROOT))

from integration_tests.fake_tgi import FakeTGI  # noqa: E402


@pytest.fixture(scope="session")
def fake_tgi_server() -> Iterator[FakeTGI]:
    """One fake TGI server process for the whole session, stopped at the end."""
    with FakeTGI() as server:
        yield server


@pytest.fixture
def tgi(fake_tgi_server: FakeTGI) -> FakeTGI:
    """The session's fake TGI server, reset: no scripted replies, no records, default config."""
    fake_tgi_server.reset()
    return fake_tgi_server


@pytest.fixture(scope="session")
def fake_vllm_server() -> Iterator[FakeTGI]:
    """One fake vLLM server process (`fake_tgi/engines.py`) for the whole session."""
    with FakeTGI(engine="vllm") as server:
        yield server


@pytest.fixture(scope="session")
def fake_sglang_server() -> Iterator[FakeTGI]:
    """One fake SGLang server process (`fake_tgi/engines.py`) for the whole session."""
    with FakeTGI(engine="sglang") as server:
        yield server


@pytest.fixture(params=["tgi", "vllm", "sglang"])
def served(request: pytest.FixtureRequest) -> FakeTGI:
    """Each fake engine in turn (TGI, vLLM, SGLang), reset; ``.engine`` says which."""
    server: FakeTGI = request.getfixturevalue(f"fake_{request.param}_server")
    server.reset()
    return server
