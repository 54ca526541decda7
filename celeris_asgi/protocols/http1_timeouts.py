"""Which timeout runs in which phase of an HTTP/1.1 connection: the slow-client defences.

Checked by the server's clock tick (0.5 s), never by a timer per request: a head must arrive within
--timeout-request-header (longer by a second per --limit-request-min-rate bytes received), a body may
not stall past --timeout-request-body nor average below the minimum rate while the server reads, an
idle connection closes after --timeout-keep-alive, and a client that stops reading after --timeout-send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celeris_asgi.logging import error_logger
from celeris_asgi.protocols.http1_phase import BODY, HEAD, IDLE

if TYPE_CHECKING:
    from celeris_asgi.protocols.http1 import HTTP1Protocol


def check_timeouts(conn: HTTP1Protocol, now: float) -> None:
    """Called by the server tick: enforce header, body, keep-alive and send timeouts; hand the
    metrics the bytes read and written since the last tick."""
    if conn.metrics is not None:
        conn.metrics.take_traffic(conn)
    if conn.transport is None:
        return
    if conn.flow.send_timed_out(now):
        error_logger.info("Closing a connection whose client stopped reading (--timeout-send).")
        conn.transport.abort()
        return
    deadline = conn.deadline
    if not deadline:
        return
    phase = conn.phase
    if phase == BODY:
        if not conn.flow.read_paused:
            if now >= deadline:
                conn.refuse(408, "Request body timeout")
            elif too_slow(conn, now):
                conn.refuse(408, "Request body slower than --limit-request-min-rate")
    elif phase == HEAD:
        if now >= deadline + conn.head_bytes * conn.seconds_per_byte:
            conn.refuse(408, "Request header timeout")
    elif phase == IDLE and now >= deadline:
        conn.close_transport()  # kept alive long enough, or connected and never sent a byte


def too_slow(conn: HTTP1Protocol, now: float) -> bool:
    """--limit-request-min-rate: the body came slower on average than the minimum rate allows."""
    seconds_per_byte = conn.seconds_per_byte
    return bool(seconds_per_byte) and now >= conn.body_deadline + conn.body_bytes * seconds_per_byte
