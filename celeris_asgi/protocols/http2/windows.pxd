# C declarations for windows.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cimport cython

from .stream cimport Stream


@cython.final
cdef class ReceiveWindows:
    cdef public Py_ssize_t _threshold
    cdef public Py_ssize_t connection
    cdef public Py_ssize_t stream_initial
    cdef public Py_ssize_t unacked

    cpdef void receive(self, Py_ssize_t length) except *
    cpdef bytes credit(self, Stream stream, Py_ssize_t size)
    cpdef bint closed(self, Stream stream) except? -1
