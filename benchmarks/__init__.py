"""Benchmark harness: celeris against uvicorn, hypercorn and granian on the same apps.

Kept out of the ``celeris_asgi`` package and the unit test suite on purpose: it needs
wrk, h2load, pinned CPUs and minutes of wall time. Run it with ``python -m benchmarks.run``.
"""
