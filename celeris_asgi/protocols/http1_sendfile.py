"""HTTP/1.1 file bodies by os.sendfile: the fast path of pathsend/zerocopysend (CycleOwner.send_file).

uvloop has no loop.sendfile, so the socket is written directly through a dup() of its descriptor once
the transport's own buffer is empty; a full socket waits for writability (bounded by --timeout-send).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from celeris_asgi.cycle import ClientDisconnected, FileSendError

if TYPE_CHECKING:
    from celeris_asgi.cycle import RequestCycle
    from celeris_asgi.protocols.http1 import HTTP1Protocol


async def send_file(conn: HTTP1Protocol, cycle: RequestCycle, fd: int, offset: int, count: int) -> bool:
    """The file body by os.sendfile (the CycleOwner fast path): no byte of it passes through Python.

    Only on a plain socket with Content-Length framing that has room for all `count` bytes
    (otherwise False: the cycle's chunk loop frames, cuts or encrypts). The transport's buffer is
    emptied first so the file follows what was written before it; then the socket is written
    directly, through a dup() of its descriptor, which stays ours even if the transport closes.
    """
    transport = conn.transport
    writer = conn.writer
    expected = writer.expected
    if (
        cycle is not conn.cycle
        or transport is None
        or writer.chunked
        or writer.no_body
        or expected is None
        or writer.sent + count > expected
        or transport.get_extra_info("sslcontext") is not None
    ):
        return False
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    conn.flush()
    if transport.get_write_buffer_size():
        low, high = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(high=0)  # resume_writing once the buffer is empty
        try:
            await conn.flow.drain(conn.loop)
        finally:
            if conn.transport is not None:
                transport.set_write_buffer_limits(high=high, low=low)
    out = os.dup(sock.fileno())
    try:
        await _sendfile_loop(conn, out, fd, offset, count)
    finally:
        os.close(out)
    return True


async def _sendfile_loop(conn: HTTP1Protocol, out: int, fd: int, offset: int, count: int) -> None:
    """os.sendfile until `count` bytes are out; a full socket waits (up to --timeout-send) to be writable."""
    writer = conn.writer
    metrics = conn.metrics
    flow = conn.flow
    while count:
        if conn.transport is None:
            raise ClientDisconnected("The client disconnected.")
        try:
            sent = os.sendfile(out, fd, offset, count)
        except BlockingIOError:
            flow.pause_writing(conn.state.now, conn.settings.timeout_send)  # check_timeouts enforces it
            conn.loop.add_writer(out, flow.resume_writing)
            try:
                await flow.drain(conn.loop)  # woken when writable, or by connection_lost
            finally:
                conn.loop.remove_writer(out)
            continue
        except (BrokenPipeError, ConnectionResetError):
            raise ClientDisconnected("The client disconnected.") from None
        except OSError as exc:
            raise FileSendError(f"Sending the file failed: {exc.strerror}.") from None
        if not sent:
            raise FileSendError(f"The file ended {count} bytes early (truncated while it was sent?).")
        offset += sent
        count -= sent
        writer.sent += sent
        if metrics is not None:
            metrics.bytes_sent(sent)
