# C declarations for metrics.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# Metrics is a C class so the compiled protocols and request cycle, which declare their `metrics`
# attribute with this type, count an event with a C call instead of running Python bytecode.
cimport cython

cdef dict _SLOTS_BY_PROTOCOL
cdef tuple _H1
cdef double _FIRST_BOUND
cdef Py_ssize_t _SUM
cdef double _BOUNDS[15]  # metrics.py's _BOUNDS: DURATION_BUCKETS and +Inf


@cython.final
cdef class Metrics:
    cdef public object page
    cdef public Py_ssize_t sequence
    cdef public list values

    @cython.locals(values=list, by_method=dict, other=tuple, histogram=Py_ssize_t, slot=Py_ssize_t, bucket=Py_ssize_t)
    cpdef void request_finished(self, str protocol, str method, int status, double duration) except *
    cpdef void server_response(self, int status) except *
    cpdef void app_exception(self) except *
    cpdef void connection_opened(self) except *
    cpdef void h2_stream_opened(self) except *
    cpdef void h2_stream_closed(self) except *
    @cython.locals(values=list)
    cpdef void take_traffic(self, object conn) except *
    cpdef void bytes_received(self, Py_ssize_t count) except *
    cpdef void bytes_sent(self, Py_ssize_t count) except *
    cpdef void h2_goaway_sent(self, Py_ssize_t error_code) except *
    cpdef void h2_reset_sent(self, Py_ssize_t error_code) except *
