# C declarations for blocks.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cimport cython

from .hpack_codec cimport Decoder
from .validation cimport RequestHead, validate_request


cdef Py_ssize_t _ITEM_MAX
cdef Py_ssize_t _BUDGET


@cython.final
cdef class HeaderBlocks:
    cdef Decoder _decoder
    cdef Py_ssize_t _max_list_size
    cdef bint _connect
    cdef public dict heads
    cdef Py_ssize_t _heads_size

    @cython.locals(fields=list, oversized=bint, head=RequestHead, decoder=Decoder)
    cpdef RequestHead request(self, Py_ssize_t sid, bytes block)

    cpdef tuple decode(self, bytes block)
