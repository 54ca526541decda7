"""WebSocket correctness found by Autobahn and RFC 6455 (issue 12, defects 10 and 11), on a live server.

Raw sockets craft the frames a well-behaved client never sends (reserved bits and opcodes, a close
between fragments, a frame cut in the middle of a UTF-8 sequence); the websockets client covers the
rest. The Autobahn case each test stands for is named in its docstring.
"""

from __future__ import annotations

import queue
import random
import socket
from typing import Any

import pytest
from websockets.frames import Opcode
from websockets.utils import apply_mask

from tests.conftest import raw_exchange, response_status
from tests.rawhttp import first_response
from tests.test_websocket import RawClient, connect, echo, recording, upgrade_request
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


# ----- defect 10: nothing after a close, everything before an error --------------------------------


def test_rfc6455_5_4_close_between_fragments_is_echoed_with_1000(serve):
    """Autobahn 7.1.5: a text fragment, a close, a fragment: the close is answered, the rest ignored."""
    events: queue.Queue[Any] = queue.Queue()
    server = serve(recording(events))
    client = RawClient(server.port)
    try:
        client.sock.sendall(raw_frame(TEXT, b"fragment1"))
        client.sock.sendall(raw_frame(FIN | CLOSE, (1000).to_bytes(2, "big")))
        client.sock.sendall(raw_frame(FIN | CONT, b"fragment2"))
        frames = frames_until_eof(client)
    finally:
        client.close()
    assert frames == [(Opcode.CLOSE, (1000).to_bytes(2, "big"))]
    assert events.get(timeout=5)["code"] == 1000


@pytest.mark.parametrize(
    ("bad_frame", "code"),
    [
        (raw_frame(FIN | 0x20 | TEXT, b"reserved bit"), 1002),  # Autobahn 3.2, 3.3
        (raw_frame(FIN | 0x3, b"reserved opcode"), 1002),  # 4.1.3, 4.1.4
        (raw_frame(FIN | 0xB, b"reserved control opcode"), 1002),  # 4.2.3, 4.2.4
        (raw_frame(CONT, b"nothing to continue"), 1002),  # 5.15
        (raw_frame(FIN | TEXT, b"\xce\xba\xff"), 1007),
    ],
    ids=["reserved-bit", "reserved-opcode", "reserved-control-opcode", "orphan-continuation", "bad-utf8"],
)
def test_messages_before_a_bad_frame_in_the_same_read_are_answered_first(serve, bad_frame, code):
    """Autobahn 3.2 to 5.15: the valid messages before a bad frame are delivered and answered, then the
    connection fails; nothing after the bad frame (a ping, a message) is processed."""
    server = serve(echo)
    client = RawClient(server.port)
    try:
        client.sock.sendall(
            raw_frame(FIN | TEXT, b"Hello")
            + raw_frame(TEXT, b"fragment1")
            + raw_frame(FIN | CONT, b"fragment2")
            + bad_frame
            + raw_frame(FIN | PING, b"after")
            + raw_frame(FIN | TEXT, b"never")
        )
        frames = frames_until_eof(client)
    finally:
        client.close()
    assert frames[:-1] == [(Opcode.TEXT, b"Hello"), (Opcode.TEXT, b"fragment1fragment2")]
    assert frames[-1][0] is Opcode.CLOSE
    assert int.from_bytes(frames[-1][1][:2], "big") == code


def test_a_message_and_a_close_in_one_read_are_answered_before_the_close(serve):
    server = serve(echo)
    client = RawClient(server.port)
    try:
        client.sock.sendall(raw_frame(FIN | TEXT, b"last words") + raw_frame(FIN | CLOSE, (1000).to_bytes(2, "big")))
        frames = frames_until_eof(client)
    finally:
        client.close()
    assert frames == [(Opcode.TEXT, b"last words"), (Opcode.CLOSE, (1000).to_bytes(2, "big"))]


@pytest.mark.parametrize(
    ("first_frames", "chops"),
    [
        (b"", [KOSME, b"\xf4\x90\x80\x80", b"edited"]),  # Autobahn 6.4.3: the bad bytes in the 2nd chop
        (b"", [KOSME + b"\xf4", b"\x90", b"\x80\x80edited"]),  # 6.4.4: one bad byte in the 2nd chop
        (raw_frame(TEXT, KOSME + b"\xf4"), [b"", b"\x90", b"\x80\x80edited"]),  # a sequence across frames
    ],
    ids=["whole-sequence", "one-byte", "sequence-across-frames"],
)
def test_rfc6455_8_1_bad_utf8_in_a_frame_still_arriving_fails_at_once(serve, first_frames, chops):
    """The connection fails with 1007 at the first bad byte, before the rest of the frame is sent."""
    server = serve(echo)
    client = RawClient(server.port)
    first_byte = CONT if first_frames else TEXT
    frame = raw_frame(FIN | first_byte, b"".join(chops))
    header = len(frame) - sum(map(len, chops))
    try:
        client.sock.sendall(first_frames + frame[: header + len(chops[0])])
        client.sock.sendall(frame[header + len(chops[0]) : header + len(chops[0]) + len(chops[1])])
        frames = frames_until_eof(client)  # the third chop is never sent: a late check times out here
    finally:
        client.close()
    assert [opcode for opcode, _ in frames] == [Opcode.CLOSE]
    assert int.from_bytes(frames[0][1][:2], "big") == 1007


def random_text(size: int) -> str:
    """Incompressible text of 1- to 4-byte characters, so reads cut frames inside UTF-8 sequences."""
    rng = random.Random(12)
    alphabet = "aé€𝄞ж中😀z"
    return "".join(rng.choice(alphabet) for _ in range(size))


@pytest.mark.parametrize("compression", ["deflate", None], ids=["compressed", "uncompressed"])
def test_large_text_frames_cut_by_reads_are_not_taken_for_bad_utf8(serve, compression):
    """Megabyte text frames reach the server in many reads cut anywhere; each part is checked as it comes."""
    server = serve(echo, ws_max_size=8 * 1024 * 1024)
    text = random_text(400_000)
    with connect(server, compression=compression, max_size=None) as ws:
        ws.send(text)
        assert ws.recv(timeout=15) == text
        parts = [text[:150_001], text[150_001:300_003], text[300_003:]]
        ws.send(parts)  # a fragmented message: continuation frames resume the decoder mid-sequence
        assert ws.recv(timeout=15) == text


def test_a_text_frame_dribbled_byte_by_byte_is_checked_and_delivered(serve):
    """Every cut of a frame, one byte per write with TCP_NODELAY: header, mask and payload split anywhere."""
    server = serve(echo)
    client = RawClient(server.port)
    payload = random_text(40).encode()
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for frame in (raw_frame(TEXT, payload[:33]), raw_frame(FIN | CONT, payload[33:])):
            for index in range(len(frame)):
                client.sock.sendall(frame[index : index + 1])
        echoed = client.read_frame()
    finally:
        client.close()
    assert (echoed.opcode, echoed.data) == (Opcode.TEXT, payload)


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
    response = first_response(server.port, request)
    assert (response.status, response.body) == (200, b"POST")
