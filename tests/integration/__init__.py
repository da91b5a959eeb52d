"""Integration tests: real processes and loopback servers."""
