"""Prompt formats of the K2 family (rendering and output parsing)."""
