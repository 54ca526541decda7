# C declarations for flood.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# RESETS & co. stay Python globals: the connection imports them.
cimport cython


@cython.final
cdef class FloodGuard:
    cdef public list _buckets
    cdef public object _clock
    cdef public tuple _rates
    cdef public tuple limits

    @cython.locals(bucket=list, now=double, tokens=double)
    cpdef void spend(self, Py_ssize_t kind, str message) except *
