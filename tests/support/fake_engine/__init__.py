"""A fake text-generation-inference (TGI 3.3.6) server for integration tests.

`FakeEngine` runs `tests.support.fake_engine.server` in a subprocess on 127.0.0.1 and scripts its
replies; the helpers build reply specs. `openapi_schema` turns TGI's OpenAPI components into
JSON Schemas for validating what goes over the wire.
"""

from .client import (
    FakeEngine,
    FakeEngineError,
    hang,
    http_error,
    reply,
    reset_before_headers,
    special,
    token,
    tokens_of,
)

__all__ = [
    "FakeEngine",
    "FakeEngineError",
    "hang",
    "http_error",
    "reply",
    "reset_before_headers",
    "special",
    "token",
    "tokens_of",
]
