"""Transport exceptions from whichever HTTP stack huggingface_hub gives us map to K2 errors.

huggingface_hub 1.x builds its sessions on ``httpx``; 2.x on ``httpx2``, a fork with its own
exception classes. Both must become the same K2 errors, or a dropped connection escapes as
a raw exception and is never retried.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from huggingface_hub import get_session

from langchain_k2.backends._tgi import map_error
from langchain_k2.errors import K2ConnectionError, K2TimeoutError, K2UnavailableError

MODULES = [
    pytest.param(name, id=name)
    for name in ("httpx", "httpx2")
    if importlib.util.find_spec(name) is not None
]


@pytest.mark.parametrize("module_name", MODULES)
@pytest.mark.parametrize(
    ("exception", "expected", "retryable"),
    [
        ("ConnectError", K2ConnectionError, True),
        ("ReadError", K2ConnectionError, True),
        ("RemoteProtocolError", K2ConnectionError, True),
        ("ReadTimeout", K2TimeoutError, True),
        ("PoolTimeout", K2TimeoutError, None),
    ],
)
def test_each_http_stacks_exceptions_map_to_k2_errors(
    module_name: str, exception: str, expected: type[Exception], retryable: bool | None
) -> None:
    module: Any = importlib.import_module(module_name)
    mapped = map_error(getattr(module, exception)("boom"), "http://tgi:8080")
    assert type(mapped) is expected
    assert "http://tgi:8080" in str(mapped)
    if retryable is not None:
        assert mapped.retryable is retryable


def test_the_session_huggingface_hub_hands_out_is_one_we_map() -> None:
    stack = type(get_session()).__module__.split(".")[0]
    assert stack in {"httpx", "httpx2"}
    module: Any = importlib.import_module(stack)
    assert isinstance(map_error(module.ConnectError("refused"), "http://x"), K2UnavailableError)
