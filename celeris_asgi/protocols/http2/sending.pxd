# C declarations for sending.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# Bodies and header lists stay untyped: an application may hand over any bytes-like body.
cimport cython

from celeris_asgi.metrics cimport Metrics

from .hpack_codec cimport Encoder
from .stream cimport Stream, StreamTable

# Imported by name: compiled, C constants rather than a module attribute lookup each.
cdef Py_ssize_t DATA, FLAG_END_HEADERS, FLAG_END_STREAM, HEADERS


@cython.final
cdef class Sender:
    cdef public dict _blocked
    cdef public object _default_headers
    cdef public Encoder _encoder
    cdef public object _on_drained
    cdef public dict _streams
    cdef public StreamTable _table
    cdef public Py_ssize_t initial_window
    cdef public Py_ssize_t max_frame_size
    cdef public Metrics metrics  # None with metrics off
    cdef public bytearray out
    cdef public Py_ssize_t window

    cpdef bytearray data_to_send(self)

    # send_headers and send_data stay Python methods: H2Connection re-exports them as bound methods,
    # which Cython cannot make of a C method with optional arguments.

    @cython.locals(
        stream=Stream, block=bytes, size=Py_ssize_t, body_size=Py_ssize_t, out=bytearray, max_frame=Py_ssize_t
    )
    cpdef bint send_response(
        self, object sid, object status, object headers, object defaults, object body, bint end_stream
    ) except? -1

    @cython.locals(stream=Stream)
    cpdef void send_trailers(self, Py_ssize_t sid, object headers) except *

    cpdef bint is_blocked(self, Py_ssize_t sid) except? -1
    cpdef void send_reset(self, Py_ssize_t sid, Py_ssize_t code) except *
    cpdef void forget(self, Py_ssize_t sid) except *
    cpdef void send_goaway(self, Py_ssize_t last_stream_id, Py_ssize_t code, bytes debug=*) except *
    cpdef void open_connection_window(self, Py_ssize_t increment) except *
    cpdef void open_stream_window(self, Stream stream, Py_ssize_t increment) except *

    @cython.locals(stream=Stream)
    cpdef void flush_blocked(self) except *

    @cython.locals(out=bytearray, sid=Py_ssize_t, end_with_data=bint, size=Py_ssize_t, last=bint)
    cdef bint _flush_stream(self, Stream stream) except? -1

    cdef void _close_local(self, Stream stream) except *
