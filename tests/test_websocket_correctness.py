"""WebSocket correctness found by Autobahn and RFC 6455 (issue 12, defects 10 and 11), on a live server.

Raw sockets craft the frames a well-behaved client never sends (reserved bits and opcodes, a close
between fragments, a frame cut in the middle of a UTF-8 sequence); the websockets client covers the
rest. The Autobahn case each test stands for is named in its docstring.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.frames import Opcode
from websockets.utils import apply_mask

from tests.conftest import raw_exchange, response_status
from tests.test_websocket import RawClient, echo, upgrade_request
from tests.test_websocket_h2 import H2WebSocketClient

pytestmark = pytest.mark.timeout(20)

FIN = 0x80
TEXT, BINARY, CLOSE, PING, CONT = 0x1, 0x2, 0x8, 0x9, 0x0
KOSME = "κόσμε".encode()  # Autobahn's valid UTF-8 prefix
MASK = b"\x5a\xa5\x3c\xc3"


def raw_frame(first_byte: int, payload: bytes) -> bytes:
    """A masked client frame with any first byte (FIN, RSV bits, opcode), valid or not."""
    length = len(payload)
    if length < 126:
        head = bytes([first_byte, 0x80 | length])
    elif length < 65536:
        head = bytes([first_byte, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first_byte, 0x80 | 127]) + length.to_bytes(8, "big")
    return head + MASK + apply_mask(payload, MASK)


def frames_until_eof(client: RawClient) -> list[tuple[Opcode, bytes]]:
    return [(frame.opcode, bytes(frame.data)) for frame in client.read_until_eof()]


# ----- defect 11: the opening handshake ------------------------------------------------------------


@pytest.mark.parametrize("version_line", [b"Sec-WebSocket-Version: 8\r\n", b""], ids=["version-8", "no-version"])
def test_rfc6455_4_2_2_unsupported_version_is_a_400_naming_version_13(serve, version_line):
    server = serve(echo)
    request = upgrade_request().replace(b"Sec-WebSocket-Version: 13\r\n", version_line)
    head = raw_exchange(server.port, request).partition(b"\r\n\r\n")[0]
    assert response_status(head) == 400
    assert b"\r\nsec-websocket-version: 13" in head.lower()


def test_rfc8441_unsupported_version_is_a_400_naming_version_13(serve):
    server = serve(echo)
    client = H2WebSocketClient(server.port)
    try:
        sid = client.open(headers=((b"sec-websocket-version", b"8"),))
        assert client.status(sid) == 400
        assert client.responses[sid][b"sec-websocket-version"] == b"13"
    finally:
        client.close()


async def method_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Plain HTTP: answers 200 with the request's method."""
    if scope["type"] != "http":
        return
    body = scope["method"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def test_rfc6455_4_1_a_post_with_upgrade_websocket_is_a_plain_request(serve):
    """Only a GET opens a WebSocket; a POST asking for one is an ordinary request for the app."""
    server = serve(method_echo)
    request = upgrade_request().replace(b"GET ", b"POST ", 1).replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n")
    response = raw_exchange(server.port, request)
    assert response_status(response) == 200
    assert response.endswith(b"\r\n\r\nPOST")
