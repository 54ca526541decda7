"""The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a load balancer sends first.

A pure parser over the first bytes of a connection, with no I/O: `parse_proxy_header(data, version)`
answers None while the header is still incomplete, a `ProxyHeader` (the client and server
addresses it names, and how many bytes it took) once complete, or raises `InvalidProxyHeader`.
Addresses are None for v1 `UNKNOWN`, v2 `LOCAL` (a health check by the proxy itself) and address
families without an IP (UNSPEC, UNIX): the connection's own addresses then stand.
v2 TLVs (ALPN, authority, SSL details...) are skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the spec's worst case, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = struct.Struct("!12sBBH")  # signature, version+command, family+transport, address length
V2_IPV4 = struct.Struct("!4s4sHH")
V2_IPV6 = struct.Struct("!16s16sHH")
V2_LOCAL, V2_PROXY = 0x0, 0x1
V2_UNSPEC, V2_INET, V2_INET6, V2_UNIX = 0x0, 0x1, 0x2, 0x3
V2_STREAM = 0x1

Address = tuple[str, int]


class InvalidProxyHeader(ValueError):
    """The bytes are not a PROXY header of the expected version: close the connection."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A complete header: the addresses it names (None: keep the connection's) and its length."""

    client: Address | None
    server: Address | None
    consumed: int

    @property
    def addresses(self) -> tuple[Address | None, Address | None] | None:
        """(server, client) for the scope, as addresses.Addresses; None: keep the connection's own."""
        return None if self.client is None else (self.server, self.client)


def parse_proxy_header(data: bytes, version: str) -> ProxyHeader | None:
    """Parse a `version` ("v1" or "v2") header at the start of `data`; None until it is complete."""
    if version == "v1":
        return parse_v1(data)
    if version == "v2":
        return parse_v2(data)
    raise ValueError(f"PROXY protocol version must be v1 or v2, not {version!r}")


def parse_v1(data: bytes) -> ProxyHeader | None:
    """`PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\\r\\n` or `PROXY UNKNOWN ...\\r\\n`."""
    if not data.startswith(V1_PREFIX[: len(data)]):
        raise InvalidProxyHeader("not a PROXY v1 header")
    line_feed = data.find(b"\n", 0, V1_MAX_LENGTH)
    if line_feed < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise InvalidProxyHeader("PROXY v1 header longer than 107 bytes")
        return None
    end = line_feed - 1
    if data[end] != 0x0D:
        raise InvalidProxyHeader("PROXY v1 header must end with CRLF")
    fields = data[:end].split(b" ")
    consumed = end + 2
    if len(fields) >= 2 and fields[1] == b"UNKNOWN":
        return ProxyHeader(None, None, consumed)  # the rest of the line is ignored (spec 2.1)
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        raise InvalidProxyHeader("PROXY v1 header needs TCP4|TCP6 and four fields")
    kind = ipaddress.IPv4Address if fields[1] == b"TCP4" else ipaddress.IPv6Address
    client = (_v1_address(fields[2], kind), _v1_port(fields[4]))
    server = (_v1_address(fields[3], kind), _v1_port(fields[5]))
    return ProxyHeader(client, server, consumed)


def _v1_address(raw: bytes, kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]) -> str:
    try:
        return str(kind(raw.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        raise InvalidProxyHeader(f"bad address in PROXY v1 header: {raw!r}") from None


def _v1_port(raw: bytes) -> int:
    if not raw.isdigit() or len(raw) > 5 or (raw[:1] == b"0" and raw != b"0") or int(raw) > 65535:
        raise InvalidProxyHeader(f"bad port in PROXY v1 header: {raw!r}")
    return int(raw)


def parse_v2(data: bytes) -> ProxyHeader | None:
    """The binary header: 12-byte signature, version/command, family/transport, length, addresses, TLVs."""
    if not data.startswith(V2_SIGNATURE[: len(data)]):
        raise InvalidProxyHeader("not a PROXY v2 header")
    if len(data) < V2_HEADER.size:
        return None
    _, version_command, family_transport, length = V2_HEADER.unpack_from(data)
    if version_command >> 4 != 2:
        raise InvalidProxyHeader("PROXY v2 header with a version other than 2")
    command = version_command & 0xF
    if command not in (V2_LOCAL, V2_PROXY):
        raise InvalidProxyHeader(f"PROXY v2 header with unknown command {command}")
    consumed = V2_HEADER.size + length
    if len(data) < consumed:
        return None
    family, transport = family_transport >> 4, family_transport & 0xF
    if family > V2_UNIX or transport > 2:
        raise InvalidProxyHeader(f"PROXY v2 header with unknown family/transport {family_transport:#04x}")
    if command == V2_LOCAL or family in (V2_UNSPEC, V2_UNIX):
        return ProxyHeader(None, None, consumed)  # LOCAL: the proxy's own connection (a health check)
    if transport != V2_STREAM:
        raise InvalidProxyHeader("PROXY v2 header for a datagram connection")
    layout = V2_IPV4 if family == V2_INET else V2_IPV6
    if length < layout.size:
        raise InvalidProxyHeader("PROXY v2 address block shorter than its family needs")
    source, destination, source_port, destination_port = layout.unpack_from(data, V2_HEADER.size)
    kind = ipaddress.IPv4Address if family == V2_INET else ipaddress.IPv6Address
    return ProxyHeader(
        (str(kind(source)), source_port), (str(kind(destination)), destination_port), consumed
    )  # the TLVs after the addresses are skipped
