# C declarations for handlers.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cimport cython

from celeris_asgi.cycle cimport RequestCycle


@cython.final
cdef class H2Cycle(RequestCycle):
    cdef public double body_deadline
    cdef public double body_rate_start
    cdef public object conn
    cdef public double drain_deadline
    cdef public object drain_waiter
    cdef public bint orphaned
    cdef public Py_ssize_t received
    cdef public Py_ssize_t stream_id
    cdef public object trailers
