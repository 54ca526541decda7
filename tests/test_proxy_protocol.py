"""The PROXY protocol parser (HAProxy's proxy-protocol.txt, v1 section 2.1, v2 section 2.2), as tables."""

from __future__ import annotations

import socket
import struct

import pytest

from celeris_asgi.protocols.proxy_protocol import (
    V2_SIGNATURE,
    InvalidProxyHeader,
    ProxyHeader,
    parse_proxy_header,
)


def v2(
    command: int = 1, family: int = 1, transport: int = 1, addresses: bytes = b"", tlvs: bytes = b"", version: int = 2
) -> bytes:
    """A v2 header: signature, version/command, family/transport, length, then addresses and TLVs."""
    body = addresses + tlvs
    return V2_SIGNATURE + bytes([version << 4 | command, family << 4 | transport]) + struct.pack("!H", len(body)) + body


IPV4 = (
    socket.inet_pton(socket.AF_INET, "192.0.2.10")
    + socket.inet_pton(socket.AF_INET, "10.0.0.1")
    + struct.pack("!HH", 56324, 443)
)
IPV6 = (
    socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    + socket.inet_pton(socket.AF_INET6, "2001:db8::2")
    + struct.pack("!HH", 1234, 80)
)
TLV_ALPN = b"\x01\x00\x02h2"  # PP2_TYPE_ALPN, skipped
V2_TCP4 = v2(addresses=IPV4, tlvs=TLV_ALPN)
V1_TCP4 = b"PROXY TCP4 192.0.2.10 10.0.0.1 56324 443\r\n"

PARSED = [
    ("v1", V1_TCP4, ("192.0.2.10", 56324), ("10.0.0.1", 443)),
    ("v1", b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n", ("2001:db8::1", 1234), ("2001:db8::2", 80)),
    ("v1", b"PROXY TCP6 ::ffff:192.0.2.1 ::1 0 65535\r\n", ("::ffff:c000:201", 0), ("::1", 65535)),
    ("v1", b"PROXY UNKNOWN\r\n", None, None),
    ("v1", b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", None, None),
    ("v2", V2_TCP4, ("192.0.2.10", 56324), ("10.0.0.1", 443)),
    ("v2", v2(family=2, addresses=IPV6), ("2001:db8::1", 1234), ("2001:db8::2", 80)),
    ("v2", v2(command=0, family=0, transport=0), None, None),  # LOCAL: the proxy's own health check
    ("v2", v2(command=0, addresses=IPV4), None, None),  # LOCAL ignores any address block
    ("v2", v2(family=0, transport=0, tlvs=TLV_ALPN), None, None),  # PROXY UNSPEC
    ("v2", v2(family=3, addresses=bytes(216)), None, None),  # AF_UNIX: no IP to show
]


@pytest.mark.parametrize(("version", "header", "client", "server"), PARSED)
def test_a_complete_header_gives_its_addresses_and_length(version, header, client, server):
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parse_proxy_header(header + request, version) == ProxyHeader(client, server, len(header))


@pytest.mark.parametrize(("version", "header"), [(row[0], row[1]) for row in PARSED])
def test_every_prefix_of_a_header_needs_more(version, header):
    for end in range(len(header)):
        assert parse_proxy_header(header[:end], version) is None, header[:end]


INVALID = [
    ("v1", b"GET / HTTP/1.1\r\n\r\n", "not a PROXY v1"),
    ("v1", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY v1"),
    ("v1", V2_TCP4, "not a PROXY v1"),
    ("v1", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "TCP4|TCP6"),
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "four fields"),
    ("v1", b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "four fields"),  # one space between fields
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "four fields"),
    ("v1", b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "bad address"),
    ("v1", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad address"),
    ("v1", b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", "bad address"),
    ("v1", b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad address"),
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad port"),
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "bad port"),
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad port"),
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "must end with CRLF"),
    ("v1", b"PROXY UNKNOWN " + b"x" * 120, "longer than 107"),
    ("v2", V1_TCP4, "not a PROXY v2"),
    ("v2", b"\r\n\r\n\x00\r\nQUIx" + bytes(8), "not a PROXY v2"),
    ("v2", v2(version=1, addresses=IPV4), "version other than 2"),
    ("v2", v2(command=2, addresses=IPV4), "unknown command 2"),
    ("v2", v2(family=4, addresses=IPV4), "unknown family"),
    ("v2", v2(transport=3, addresses=IPV4), "unknown family"),
    ("v2", v2(transport=2, addresses=IPV4), "datagram"),
    ("v2", v2(addresses=IPV4[:11]), "shorter than its family"),
    ("v2", v2(family=2, addresses=IPV4), "shorter than its family"),
]


@pytest.mark.parametrize(("version", "data", "reason"), INVALID)
def test_an_invalid_header_is_refused(version, data, reason):
    with pytest.raises(InvalidProxyHeader, match=reason.replace("|", r"\|")):
        parse_proxy_header(data, version)


def test_only_v1_and_v2_exist():
    with pytest.raises(ValueError, match="v1 or v2"):
        parse_proxy_header(V1_TCP4, "v3")
