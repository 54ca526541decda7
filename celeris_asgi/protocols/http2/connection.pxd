# C declarations for connection.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# The frame handlers are C methods of the receive loop; what the protocol calls stays a Python method.
cimport cython

from .blocks cimport HeaderBlocks
from .flood cimport FloodGuard
from .sending cimport Sender
from .stream cimport Stream, StreamTable
from .windows cimport ReceiveWindows

# Frame types and flags, and the flood kinds, imported by name: compiled, C constants rather than
# a module attribute lookup and a Python comparison per frame.
cdef Py_ssize_t CONTINUATION, DATA, GOAWAY, HEADERS, PING, PRIORITY, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE
cdef Py_ssize_t FLAG_ACK, FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY
cdef Py_ssize_t EMPTY_DATA, PINGS, RESETS, SETTINGS_FLOOD
cdef Py_ssize_t _MASK


@cython.final
cdef class H2Connection:
    cdef public object settings
    cdef public object _listener_request
    cdef public object _listener_data
    cdef public object _listener_reset
    cdef public object _clock
    cdef public StreamTable table
    cdef public dict streams
    cdef public dict _lingering
    cdef public Sender sender
    cdef public ReceiveWindows windows
    cdef public FloodGuard _flood
    cdef public object data_to_send
    cdef public object send_headers
    cdef public object send_status
    cdef public object send_response
    cdef public object send_data
    cdef public object send_trailers
    cdef public object is_blocked
    cdef public object _buf
    cdef public Py_ssize_t _need
    cdef public bint _preface
    cdef public bint _expect_settings
    cdef public bint closed
    cdef public object error_code
    cdef public Py_ssize_t highest_stream_id
    cdef public bint peer_goaway
    cdef public bint settings_acked
    cdef public Py_ssize_t orphaned_streams
    cdef public HeaderBlocks blocks
    cdef public dict _heads
    cdef public Py_ssize_t _hb_stream
    cdef public list _hb_parts
    cdef public Py_ssize_t _hb_flags
    cdef public Py_ssize_t _hb_size
    cdef public Py_ssize_t _hb_frames
    cdef public Py_ssize_t _shutdown_stage
    cdef public Py_ssize_t _goaway_last_id

    @cython.locals(
        pos=Py_ssize_t,
        end=Py_ssize_t,
        max_frame=Py_ssize_t,
        high=Py_ssize_t,
        low=Py_ssize_t,
        ftype=Py_ssize_t,
        flags=Py_ssize_t,
        sid=Py_ssize_t,
        length=Py_ssize_t,
        start=Py_ssize_t,
        stop=Py_ssize_t,
    )
    cpdef void receive_data(self, object data) except *

    @cython.locals(pad=Py_ssize_t, self_dependent=bint)
    cdef void _headers_frame(self, Py_ssize_t flags, Py_ssize_t sid, object data, Py_ssize_t start, Py_ssize_t stop) except *

    @cython.locals(hb_flags=Py_ssize_t)
    cdef void _continuation_frame(
        self, Py_ssize_t flags, Py_ssize_t sid, object data, Py_ssize_t start, Py_ssize_t stop
    ) except *

    @cython.locals(stream=Stream)
    cdef void _header_block(self, Py_ssize_t sid, bytes block, Py_ssize_t end_stream, bint self_dependent) except *

    cdef void _trailer_block(self, Py_ssize_t sid, Stream stream, bytes block, Py_ssize_t end_stream) except *
    cdef void _end_remote(self, Stream stream) except *

    @cython.locals(length=Py_ssize_t, stream=Stream, end_stream=Py_ssize_t, pad=Py_ssize_t, size=Py_ssize_t, received=Py_ssize_t)
    cdef void _data_frame(self, Py_ssize_t flags, Py_ssize_t sid, object data, Py_ssize_t start, Py_ssize_t stop) except *

    @cython.locals(increment=Py_ssize_t, stream=Stream)
    cdef void _window_update_frame(self, Py_ssize_t sid, object data, Py_ssize_t start, Py_ssize_t stop) except *

    cdef void _settings_frame(self, Py_ssize_t flags, Py_ssize_t sid, object data, Py_ssize_t start, Py_ssize_t stop) except *
    cdef void _rst_stream_frame(self, Py_ssize_t sid, object data, Py_ssize_t start, Py_ssize_t stop) except *
    cdef void _ping_frame(self, Py_ssize_t flags, Py_ssize_t sid, object data, Py_ssize_t start, Py_ssize_t stop) except *
    cdef void _priority_frame(self, Py_ssize_t sid, object data, Py_ssize_t start, Py_ssize_t stop) except *
    cdef void _goaway_frame(self, Py_ssize_t sid, Py_ssize_t length) except *
    cdef void _connection_error(self, object code, str message) except *
    cdef void _on_closed_stream(self, Py_ssize_t sid, str kind) except *

    @cython.locals(stream=Stream)
    cdef void _reset(self, Py_ssize_t sid, Py_ssize_t code, bint notify) except *

    cpdef void consume(self, Py_ssize_t sid, Py_ssize_t size) except *

    @cython.locals(stream=Stream)
    cpdef void finish_stream(self, Py_ssize_t sid, bint linger=*) except *
