"""Believe X-Forwarded-* and RFC 7239 ``Forwarded`` headers, but only from proxies we were told to trust.

Behind a reverse proxy every request arrives from the proxy, so the app would see the proxy's address,
plain ``http`` and the proxy's idea of the Host. When the direct peer is trusted this middleware gives the
app what the client actually used, in a copy of the scope (ASGI: middleware must not mutate the scope it
was given, it may leak upstream):

* ``client`` -- the first untrusted hop, walking the forwarding chain from the right (each proxy appends
  the peer it saw, so entries left of an untrusted hop were written by that untrusted party and are
  ignored). When every hop is trusted the leftmost wins. Port is the given one, else 0. RFC 7239 section 6
  identifiers: ``unknown`` sets ``client`` to None (the ASGI "not known"; keeping the proxy's address
  would let a hidden client pass for the proxy), an obfuscated ``_name`` is kept verbatim as the host.
* ``scheme`` -- http/https (ws/wss for websocket scopes) from ``proto=`` / X-Forwarded-Proto.
* the ``host`` header -- replaced (or added) from ``host=`` / X-Forwarded-Host, in a new headers list.

``Forwarded`` wins outright: when it is present, X-Forwarded-* are ignored, even if ``Forwarded`` is
malformed, since falling back could hand control to a header the client sent through the proxy. The
proto and host come from the same ``Forwarded`` element as the chosen client (the one written by the
proxy that met the client). X-Forwarded-Proto/Host lists are matched to X-Forwarded-For position by
position when their lengths agree, otherwise their rightmost entry (written by the nearest proxy) is used.
A value that does not parse is ignored: that part of the scope stays as it was.

Trusted hosts: IP addresses, CIDR networks, ``*`` (everyone) and ``unix:`` (optionally followed by the
socket path: peers without an address, i.e. ``client`` None, which is how unix-socket connections are
reported; ``*`` includes them). IPv4-mapped IPv6 peers match IPv4 entries. Anything else raises
ValueError when the middleware is built.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Final, overload

from celeris_asgi.asgi_types import Address, ASGIApp, Headers, HTTPScope, Receive, Scope, Send, WebSocketScope

ProxiedScope = HTTPScope | WebSocketScope

_WATCHED = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"))
_SECURE = {"http": False, "https": True, "ws": False, "wss": True}
_SCHEMES = {
    ("http", False): "http",
    ("http", True): "https",
    ("websocket", False): "ws",
    ("websocket", True): "wss",
}

# Forwarded = 1#forwarded-element; element = pair *(";" pair); pair = token "=" (token / quoted-string).
# One match per pair: the separators before it (empty list items and pairs allowed), the pair, trailing
# whitespace. Unquoted values are accepted a little beyond "token" (e.g. an unquoted [v6]:port) because
# real proxies send them; what a value means is checked afterwards.
_PAIR = re.compile(r"""([ \t,;]*)([!#$%&'*+.^_`|~0-9A-Za-z-]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s",;]+))[ \t]*""")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(?::[0-9]{1,5})?")

_CACHE_LIMIT = 1024  # distinct hops remembered; cleared when full, so memory stays bounded
_CACHEABLE_LENGTH = 64  # longer strings are not addresses worth remembering


class _Keep(enum.Enum):
    """A hop that says nothing usable about the client: leave scope["client"] alone."""

    KEEP = enum.auto()


_KEEP: Final = _Keep.KEEP
# A hop's verdict: (is a trusted proxy, the scope["client"] it stands for, or _KEEP).
Verdict = tuple[bool, Address | _Keep]
_UNUSABLE: Verdict = (False, _KEEP)


class TrustedHosts:
    """The proxies allowed to speak for a client: parsed once, the verdict on each hop cached."""

    __slots__ = ("_addresses", "_cache", "_networks", "trust_all", "trust_unix")

    def __init__(self, trusted_hosts: str | Iterable[str]) -> None:
        entries = trusted_hosts.split(",") if isinstance(trusted_hosts, str) else list(trusted_hosts)
        addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.trust_all = self.trust_unix = False
        for raw in entries:
            if not isinstance(raw, str):
                raise ValueError(f"invalid trusted host {raw!r}: expected a string")
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                self.trust_all = True
            elif entry.startswith("unix:"):
                self.trust_unix = True
            elif "/" in entry:
                networks.append(_parse_network(entry))
            else:
                addresses.add(_parse_address(entry))
        self.trust_unix = self.trust_unix or self.trust_all
        self._addresses = frozenset(addresses)
        self._networks = tuple(networks)
        self._cache: dict[str, Verdict] = {}

    def trusts_peer(self, client: Address) -> bool:
        """Whether the connection's peer (scope["client"]) may set proxy headers."""
        if self.trust_all:
            return True
        if client is None:
            return self.trust_unix
        return self.judge(client[0])[0]

    def judge(self, node: str) -> Verdict:
        """(is a trusted proxy, the scope["client"] value the hop stands for, or _KEEP if unusable).

        `node` is a peer address or a forwarding-chain entry: host, host:port, [v6]:port, bare v6,
        ``unknown`` or an obfuscated ``_name`` (RFC 7239 section 6).
        """
        verdict = self._cache.get(node)
        if verdict is None:
            verdict = self._judge(node)
            if len(node) <= _CACHEABLE_LENGTH:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[node] = verdict
        return verdict

    def _judge(self, node: str) -> Verdict:
        parts = _split_node(node)
        port = None if parts is None else _port(parts[1])
        if parts is None or port is None:
            return _UNUSABLE
        host = parts[0]
        if host.lower() == "unknown":
            return False, None
        if host.startswith("_"):
            return (False, (host, port)) if _OBFUSCATED.fullmatch(host) else _UNUSABLE
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return _UNUSABLE
        return self.trust_all or self._covers(ip), (str(ip), port)

    def _covers(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if ip in self._addresses or any(ip in network for network in self._networks):
            return True
        # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; "127.0.0.1" should still match.
        mapped = getattr(ip, "ipv4_mapped", None)
        return mapped is not None and self._covers(mapped)


def _parse_address(entry: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(entry)
    except ValueError:
        raise ValueError(
            f"invalid trusted host {entry!r}: expected an IP address, a CIDR network such as "
            "10.0.0.0/8, '*' (trust everyone) or 'unix:' (trust unix-socket peers)"
        ) from None


def _parse_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(entry)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(
            f"invalid trusted network {entry!r}: expected address/prefix such as 10.0.0.0/8 or fd00::/8"
        ) from None
    raise ValueError(f"invalid trusted network {entry!r}: host bits are set (did you mean {loose}?)")


class ProxyHeaders:
    """The rules of the module docstring as plain calls, for the server's protocols and the middleware.

    The server asks `trusts_peer` once per connection and calls `rewrite` only for connections from a
    trusted peer, so the app is not wrapped in a middleware layer on every request.
    """

    __slots__ = ("trusted",)

    def __init__(self, trusted_hosts: str | Iterable[str] = "127.0.0.1") -> None:
        self.trusted = TrustedHosts(trusted_hosts)

    def trusts_peer(self, client: Address) -> bool:
        """Whether the connection's peer (scope["client"]) may set proxy headers."""
        return self.trusted.trusts_peer(client)

    @overload
    def rewrite(self, scope: HTTPScope) -> HTTPScope: ...
    @overload
    def rewrite(self, scope: WebSocketScope) -> WebSocketScope: ...
    def rewrite(self, scope: ProxiedScope) -> ProxiedScope:
        """The scope as the proxy headers in it tell it (a copy), or `scope` itself when they say nothing.

        Call it only for a trusted peer. Without proxy headers it is one pass over the header names,
        allocating nothing.
        """
        found: dict[bytes, bytes] | None = None
        for name, value in scope["headers"]:
            if name in _WATCHED:
                if found is None:
                    found = {}
                earlier = found.get(name)
                found[name] = value if earlier is None else earlier + b"," + value
        if found is None:
            return scope
        return self._rewrite(scope, found)

    def _rewrite(self, scope: ProxiedScope, found: dict[bytes, bytes]) -> ProxiedScope:
        """Return a copy of `scope` carrying what the proxy headers say, or `scope` itself if nothing."""
        client: Address | _Keep = _KEEP
        forwarded = found.get(b"forwarded")
        if forwarded is not None:
            elements = _parse_forwarded(forwarded.decode("latin-1"))
            if not elements:
                return scope
            index, client = self._walk([element.get("for") for element in elements])
            proto, host = elements[index].get("proto"), elements[index].get("host")
        else:
            hops = _split_list(found.get(b"x-forwarded-for"))
            index = 0
            if hops:
                index, client = self._walk(hops)
            proto = _pick(found.get(b"x-forwarded-proto"), index, len(hops))
            host = _pick(found.get(b"x-forwarded-host"), index, len(hops))

        secure = None if proto is None else _SECURE.get(proto.lower())
        if host is not None and not _HOST.fullmatch(host):
            host = None
        if client is _KEEP and secure is None and host is None:
            return scope
        rewritten = scope.copy()
        if client is not _KEEP:
            rewritten["client"] = client
        if secure is not None:
            rewritten["scheme"] = _SCHEMES[scope["type"], secure]
        if host is not None:
            rewritten["headers"] = _with_host(scope["headers"], host.encode("ascii"))
        return rewritten

    def _walk(self, nodes: Sequence[str | None]) -> tuple[int, Address | _Keep]:
        """Index of the hop that is the client (first untrusted from the right) and its client value."""
        judge = self.trusted.judge
        client: Address | _Keep = _KEEP
        for index in range(len(nodes) - 1, -1, -1):
            node = nodes[index]
            if node is None:  # a Forwarded element without for=: the proxy chose not to say
                return index, _KEEP
            trusted, client = judge(node)
            if not trusted:
                return index, client
        return 0, client  # every hop is a trusted proxy: the leftmost is the client


def _parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """RFC 7239 section 4: elements as {lowercased parameter: unquoted value}; None when malformed."""
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    pos, end = 0, len(value)
    while pos < end:
        pair = _PAIR.match(value, pos)
        if pair is None:
            if value[pos:].strip(" \t,;"):
                return None
            break  # only separators left
        separators, name, quoted, plain = pair.groups()
        if pos and not separators:  # two pairs with only whitespace between them
            return None
        if element and "," in separators:
            elements.append(element)
            element = {}
        name = name.lower()
        if name in element:  # "each parameter MUST NOT occur more than once per forwarded-element"
            return None
        if quoted is None:
            element[name] = plain
        else:
            element[name] = _QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = pair.end()
    if element:
        elements.append(element)
    return elements


def _split_list(value: bytes | None) -> list[str]:
    """A comma-separated header value as its non-empty, stripped items."""
    if value is None:
        return []
    text = value.decode("latin-1")
    if "," not in text:  # the usual single item, without the generator
        text = text.strip()
        return [text] if text else []
    return [item for item in (raw.strip() for raw in text.split(",")) if item]


def _pick(value: bytes | None, index: int, hops: int) -> str | None:
    """The X-Forwarded-Proto/Host item written alongside X-Forwarded-For item `index`, else the last."""
    items = _split_list(value)
    if not items:
        return None
    return items[index] if len(items) == hops else items[-1]


def _split_node(node: str) -> tuple[str, str] | None:
    """'host', 'host:port', '[v6]', '[v6]:port' or a bare IPv6 address -> (host, port text)."""
    if node.startswith("["):
        close = node.find("]")
        rest = node[close + 1 :]
        if close < 0 or (rest and rest[0] != ":"):
            return None
        return node[1:close], rest[1:]
    if node.count(":") == 1:
        host, _, port = node.partition(":")
        return host, port
    return node, ""


def _port(text: str) -> int | None:
    """A node port: digits, an obfuscated port (RFC 7239 section 6.3, reported as 0) or nothing."""
    if not text:
        return 0
    if text[0] == "_":
        return 0 if _OBFUSCATED.fullmatch(text) else None
    if text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535:
        return int(text)
    return None


def _with_host(headers: Iterable[tuple[bytes, bytes]], host: bytes) -> Headers:
    """A new headers list with one Host header, in the place of the first original one (else last)."""
    rewritten: Headers = []
    placed = False
    for item in headers:
        if item[0] == b"host":
            if not placed:
                rewritten.append((b"host", host))
                placed = True
        else:
            rewritten.append(item)
    if not placed:
        rewritten.append((b"host", host))
    return rewritten


class ProxyHeadersMiddleware:
    """ASGI 3 middleware with the same rules, for apps served some other way (the server itself does not wrap)."""

    __slots__ = ("app", "proxy")

    def __init__(self, app: ASGIApp, trusted_hosts: str | Iterable[str] = "127.0.0.1") -> None:
        self.app = app
        self.proxy = ProxyHeaders(trusted_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and self.proxy.trusts_peer(scope.get("client")):
            scope = self.proxy.rewrite(scope)
        await self.app(scope, receive, send)
