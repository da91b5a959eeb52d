"""Shared test support: fake engine servers, scripted backends, corpora, real-server launchers."""
