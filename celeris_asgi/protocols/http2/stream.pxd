# C declarations for stream.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# The how-closed constants stay Python globals: other modules import them.
cimport cython

from celeris_asgi.metrics cimport Metrics


@cython.final
cdef class Stream:
    cdef public Py_ssize_t stream_id
    cdef public Py_ssize_t send_window
    cdef public Py_ssize_t recv_window
    cdef public bint remote_closed
    cdef public bint local_closed
    cdef public object content_length
    cdef public Py_ssize_t received
    cdef public Py_ssize_t unacked
    cdef public object pending
    cdef public bint pending_end
    cdef public object pending_trailers


@cython.final
cdef class StreamTable:
    cdef public dict streams
    cdef public dict lingering
    cdef public dict _closed
    cdef public dict _closed_before
    cdef public Py_ssize_t _memory
    cdef public Metrics metrics  # None with metrics off

    cpdef void open(self, Stream stream) except *
    @cython.locals(stream=Stream)
    cpdef Stream close(self, object stream_id, Py_ssize_t how)  # boxed once by the caller, not per dict it touches
    cpdef void close_all(self) except *
