# C declarations for flow.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cimport cython

cpdef wake(object waiter)


@cython.final
cdef class FlowControl:
    cdef public object drain_waiter
    cdef public bint read_paused
    cdef public double send_deadline
    cdef public object transport
    cdef public bint write_paused

    cpdef pause_reading(self)
    cpdef resume_reading(self)
    cpdef pause_writing(self, double now, double timeout_send)
    cpdef resume_writing(self)
    cpdef bint send_timed_out(self, double now)
