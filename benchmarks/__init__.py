"""Benchmarks of langchain-k2 against langchain-huggingface, on a loopback fake TGI server.

Run all of them with ``python -m benchmarks`` (or ``python benchmarks/run.py``); ``--quick``
for a smoke run of a few seconds, ``--out DIR`` to write the report somewhere else than
``docs/``. See ``docs/benchmarks.md`` for the figures and what each one means.
"""
