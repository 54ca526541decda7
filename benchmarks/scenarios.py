"""Scenario names: `{app}-{endpoint}-{proto}`, e.g. `raw-simple-h1`, `starlette-json-h2`.

app: raw | starlette. endpoint: simple (GET /), json (GET /json), params (GET /user/42/post/7).
proto: h1 (wrk, keep-alive), h1p (wrk, 10 requests pipelined per write), h2 (h2load, h2c).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

ENDPOINTS = {"simple": "/", "json": "/json", "params": "/user/42/post/7"}
PROTOCOLS = ("h1", "h1p", "h2")
PIPELINE_DEPTH = 10
# Ratios are taken to the usual reference for each protocol: uvicorn for HTTP/1.1 and granian
# for HTTP/2 (uvicorn's default stack has no HTTP/2).
BASELINE = {"h1": "uvicorn", "h1p": "uvicorn", "h2": "granian"}


@dataclass(frozen=True)
class Scenario:
    app: str
    endpoint: str
    proto: str

    @property
    def name(self) -> str:
        return f"{self.app}-{self.endpoint}-{self.proto}"

    @property
    def path(self) -> str:
        return ENDPOINTS[self.endpoint]

    @property
    def family(self) -> str:
        """The server protocol family: pipelined HTTP/1.1 runs on the same server as plain."""
        return "h2" if self.proto == "h2" else "h1"

    @property
    def baseline(self) -> str:
        return BASELINE[self.proto]


ALL = [Scenario(a, e, p) for a in ("raw", "starlette") for e in ENDPOINTS for p in PROTOCOLS]


def select(patterns: list[str]) -> list[Scenario]:
    """Scenarios matching any shell-style pattern (`raw-*-h1`, `*-simple-*`); error on a dead pattern."""
    chosen = []
    for pattern in patterns:
        matched = [s for s in ALL if fnmatch.fnmatchcase(s.name, pattern)]
        if not matched:
            names = ", ".join(s.name for s in ALL)
            raise ValueError(f"scenario pattern {pattern!r} matches nothing; known: {names}")
        chosen += [s for s in matched if s not in chosen]
    return [s for s in ALL if s in chosen]
