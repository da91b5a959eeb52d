"""Test suites: unit, integration, and the support both (and benchmarks) import."""
