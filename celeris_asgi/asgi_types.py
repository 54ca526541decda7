"""Typed ASGI 3 scopes and messages (spec 2.4) at the app boundary.

TypedDicts cost nothing at run time (a scope is still a plain dict literal), but mypy checks that
every protocol builds the same scope and that the cycle reads messages by their real keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Literal, NotRequired, TypedDict

Headers = list[tuple[bytes, bytes]]
Address = tuple[str, int] | None


class ASGIVersions(TypedDict):
    version: str
    spec_version: str


class HTTPScope(TypedDict):
    type: Literal["http"]
    asgi: ASGIVersions
    http_version: str
    server: Address
    client: Address
    scheme: str
    method: str
    root_path: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: Headers
    state: dict[str, Any]
    extensions: dict[str, Any]


class WebSocketScope(TypedDict):
    type: Literal["websocket"]
    asgi: ASGIVersions
    http_version: str
    scheme: str
    server: Address
    client: Address
    root_path: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: Headers
    subprotocols: list[str]
    state: dict[str, Any]
    extensions: dict[str, Any]


class LifespanScope(TypedDict):
    type: Literal["lifespan"]
    asgi: ASGIVersions
    state: dict[str, Any]


class HTTPRequestEvent(TypedDict):
    type: Literal["http.request"]
    body: bytes
    more_body: bool


class HTTPDisconnectEvent(TypedDict):
    type: Literal["http.disconnect"]


class HTTPResponseStartEvent(TypedDict):
    type: Literal["http.response.start"]
    status: int
    headers: NotRequired[Iterable[tuple[bytes, bytes]]]
    trailers: NotRequired[bool]


class HTTPResponseBodyEvent(TypedDict):
    type: Literal["http.response.body"]
    body: NotRequired[bytes]
    more_body: NotRequired[bool]


class HTTPResponseTrailersEvent(TypedDict):
    type: Literal["http.response.trailers"]
    headers: NotRequired[Iterable[tuple[bytes, bytes]]]
    more_trailers: NotRequired[bool]


class HTTPEarlyHintEvent(TypedDict):
    type: Literal["http.response.early_hint"]
    links: list[bytes]


Scope = HTTPScope | WebSocketScope | LifespanScope
# What an app sends and receives. Apps are free to send more keys than these, and the server reads
# messages defensively (message.get), so the loose mapping is the honest type at the boundary.
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Receive, Send], Awaitable[None]]
