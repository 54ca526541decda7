"""Scenario names: `{app}-{endpoint}-{proto}`, e.g. `raw-simple-h1`, `starlette-json-h2`.

app: raw | starlette | fastapi. endpoint: simple (GET /), json (GET /json), params
(GET /user/42/post/7), and, on h2 only, browser: GET /user/{i}/post/{j} on BROWSER_PATHS distinct
paths in turn, each request with the pseudo-headers plus BROWSER_HEADERS as a browser sends them,
so that neither a decoded-header-block cache nor a Huffman string cache can answer from memory.
proto: h1 (wrk, keep-alive), h1p (wrk, 10 requests pipelined per write), h2 (h2load, h2c).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

APPS = ("raw", "starlette", "fastapi")
ENDPOINTS = {"simple": "/", "json": "/json", "params": "/user/42/post/7", "browser": "/user/0/post/0"}
PROTOCOLS = ("h1", "h1p", "h2")
PIPELINE_DEPTH = 10
# Ratios are taken to the usual reference for each protocol: uvicorn for HTTP/1.1 and granian
# for HTTP/2 (uvicorn's default stack has no HTTP/2).
BASELINE = {"h1": "uvicorn", "h1p": "uvicorn", "h2": "granian"}
# More distinct paths than celeris keeps decoded header blocks (64 KiB of them per connection)
# or Huffman strings (2048) for, visited in a cycle, so every request's :path is new to the caches.
BROWSER_PATHS = 5000
# What a desktop Chrome sends for a navigation besides the pseudo-headers (h2load -H; values
# shortened from a real request). h2load's own user-agent, accept and accept-encoding are replaced.
BROWSER_HEADERS = (
    "user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "accept-encoding: gzip, deflate, br, zstd",
    "accept-language: en-US,en;q=0.9,de;q=0.8",
    "cache-control: max-age=0",
    'sec-ch-ua: "Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
    "sec-ch-ua-mobile: ?0",
    'sec-ch-ua-platform: "Linux"',
    "sec-fetch-dest: document",
    "sec-fetch-mode: navigate",
    "sec-fetch-site: same-origin",
    "sec-fetch-user: ?1",
    "upgrade-insecure-requests: 1",
    "cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=1",
)


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
        """The path the server is warmed with (and, except for browser, the only one loaded)."""
        return ENDPOINTS[self.endpoint]

    @property
    def paths(self) -> list[str]:
        """Every path of the load, used in turn."""
        if self.endpoint == "browser":
            return [f"/user/{i}/post/{i * 7919 % 10007}" for i in range(BROWSER_PATHS)]
        return [self.path]

    @property
    def headers(self) -> tuple[str, ...]:
        """Request headers the load generator adds to its own (`name: value`)."""
        return BROWSER_HEADERS if self.endpoint == "browser" else ()

    @property
    def family(self) -> str:
        """The server protocol family: pipelined HTTP/1.1 runs on the same server as plain."""
        return "h2" if self.proto == "h2" else "h1"

    @property
    def baseline(self) -> str:
        return BASELINE[self.proto]


ALL = [
    Scenario(a, e, p)
    for a in APPS
    for e in ENDPOINTS
    for p in PROTOCOLS
    if e != "browser" or p == "h2"  # browser-sized headers matter where HPACK decodes them: HTTP/2
]


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
