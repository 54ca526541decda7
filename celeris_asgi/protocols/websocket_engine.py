"""The WebSocket frame engine: websockets' sans-I/O ServerProtocol, read into ASGI messages.

websockets parses, checks and answers frames (pings, the close handshake, permessage-deflate). This
module changes three things about how it reads, all inside its parser, so that an error stops it at
the frame where it is and nothing after that frame is processed (RFC 6455 7.1.7):

- each data frame becomes the websocket.receive message it completes; text is decoded as frames
  arrive, and invalid UTF-8 fails the connection with 1007 there (RFC 6455 8.1);
- the part of a text frame that has arrived is checked before the frame ends (UnfinishedTextCheck);
- a close frame between two fragments is answered (RFC 6455 5.4, 5.5.1) where websockets fails with
  1002 (Autobahn 7.1.5); the unfinished message is dropped.

Imported only when the websockets library is installed (see websocket.py).
"""

from __future__ import annotations

import codecs
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.utils import apply_mask

Message = dict[str, Any]
_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE  # plain globals: faster
_NO_MASK = b"\0\0\0\0"


class FrameEngine(ServerProtocol):
    """A ServerProtocol whose events_received() are websocket.receive messages and control frames."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text_decoder: codecs.IncrementalDecoder | None = None  # the fragmented text message's
        self.message_parts: list[Any] = []
        self.text_check = UnfinishedTextCheck()

    def receive_data(self, data: bytes | bytearray) -> None:
        super().receive_data(data)
        if self.state is OPEN:
            try:
                self.text_check.feed(data, self.text_decoder)
            except UnicodeDecodeError as exc:
                self.fail(1007, f"{exc.reason} in a text frame")

    def recv_frame(self, frame: Frame) -> None:
        """Called by the parser for each frame; an exception here fails the connection (1007 for UTF-8)."""
        opcode = frame.opcode
        if opcode is _CLOSE:
            # Forget the message in progress so the close is answered. Its size is current_size in recent
            # websockets, cur_size before.
            setattr(self, "current_size" if hasattr(self, "current_size") else "cur_size", None)
        super().recv_frame(frame)  # checks where the frame may come, answers pings and closes, adds the event
        if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
            events: list[Any] = self.events  # our messages stand in for websockets' frame events
            del events[-1]  # the frame becomes the message it completes, if any
            if frame.fin and opcode is not _CONT:  # the common case: a whole message in one frame
                if opcode is _TEXT:
                    events.append({"type": "websocket.receive", "text": str(frame.data, "utf-8")})
                else:
                    events.append({"type": "websocket.receive", "bytes": bytes(frame.data)})
            else:
                message = self.add_fragment(frame)
                if message is not None:
                    events.append(message)

    def add_fragment(self, frame: Frame) -> Message | None:
        """The message a fragment completes, if any; text is decoded fragment by fragment as it comes."""
        if frame.opcode is not _CONT:
            self.text_decoder = codecs.getincrementaldecoder("utf-8")() if frame.opcode is _TEXT else None
            self.message_parts = []
        decoder = self.text_decoder
        self.message_parts.append(frame.data if decoder is None else decoder.decode(frame.data, frame.fin))
        if not frame.fin:
            return None
        parts, self.message_parts = self.message_parts, []
        if decoder is not None:
            return {"type": "websocket.receive", "text": "".join(parts)}
        return {"type": "websocket.receive", "bytes": b"".join(parts)}


class UnfinishedTextCheck:
    """Checks the UTF-8 of a text frame that is still arriving, so bad bytes fail at once (RFC 6455 8.1).

    websockets' parser hands over a frame only once all of it is there, and FrameEngine decodes whole
    frames. A frame that arrives in chops (Autobahn 6.4.3, 6.4.4) must fail at its first bad byte, so
    this follows the frame boundaries in every read (headers only) and unmasks and decodes just the
    payload of an uncompressed text frame that a read leaves unfinished.
    """

    __slots__ = ("checked", "continuation", "head", "mask", "remaining", "seen", "text_message", "validator")

    def __init__(self) -> None:
        self.head = b""  # the start of a frame header cut by the end of a read
        self.remaining = 0  # payload bytes of the unfinished frame still to come
        self.seen = 0  # payload bytes of the unfinished frame already checked: the mask's phase
        self.mask = _NO_MASK
        self.checked = False  # the unfinished frame carries uncompressed text
        self.continuation = False
        self.text_message = False  # the message in progress is uncompressed text
        self.validator: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes | bytearray, message_decoder: codecs.IncrementalDecoder | None) -> None:
        """Follow one read; raises UnicodeDecodeError if it leaves a text frame unfinished with bad UTF-8.

        message_decoder is the engine's decoder for the fragmented text message in progress: where a
        continuation frame's bytes go on from, once the read's whole frames went through it.
        """
        if self.head:  # rare: a header was cut; a copy of this read keeps the loop below simple
            data = self.head + data
            self.head = b""
        pos, end = 0, len(data)
        remaining = self.remaining
        if remaining:
            if end < remaining:
                self.remaining = remaining - end
                if self.checked:
                    self.check(data, message_decoder)
                return
            pos, self.remaining, self.validator = remaining, 0, None  # it ends here: checked whole by the engine
        text_message = self.text_message
        while end - pos >= 2:
            first, second = data[pos], data[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length >= 126:
                start += 2 if length == 126 else 8
                if start > end:
                    break
                length = int.from_bytes(data[pos + 2 : start], "big")
            if second & 0x80:
                start += 4
            if start > end:
                break
            opcode, reserved = first & 0x0F, first & 0x70
            if opcode == 1 or opcode == 2:  # a new message: text (uncompressed unless RSV1) or binary
                text_message = opcode == 1 and not reserved
            if start + length <= end:
                pos = start + length
                continue
            self.text_message = text_message
            self.remaining = start + length - end  # the frame goes on in the next read
            self.checked = text_message and opcode <= 1 and not reserved
            if self.checked:
                self.continuation = opcode == 0
                self.mask = bytes(data[start - 4 : start]) if second & 0x80 else _NO_MASK
                self.seen = 0
                self.check(data[start:], message_decoder)
            return
        self.text_message = text_message
        if pos < end:
            self.head = bytes(data[pos:])

    def check(self, payload: bytes | bytearray, message_decoder: codecs.IncrementalDecoder | None) -> None:
        validator = self.validator
        if validator is None:
            self.validator = validator = codecs.getincrementaldecoder("utf-8")()
            if self.continuation and message_decoder is not None:
                validator.setstate(message_decoder.getstate())
        phase = self.seen % 4
        mask = self.mask[phase:] + self.mask[:phase] if phase else self.mask
        self.seen += len(payload)
        validator.decode(apply_mask(payload, mask))
