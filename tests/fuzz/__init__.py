"""Fuzzing of the three parsers that face the network: HTTP/1.1, HTTP/2 with HPACK, WebSocket frames.

In the test suite (`pytest tests/fuzz`) each target runs a short hypothesis budget against one real
server per module. For a longer run, by one command:

    python -m tests.fuzz --minutes 5                  # every target, 5 minutes each
    python -m tests.fuzz --minutes 1 --target http2   # one target

It reports how many inputs each target ran and every failure found with its exact input.
"""
