# C declarations for headers.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# Module-level tables other modules import (STATUS_LINES, name_kinds, checked_values) stay Python objects.
cimport cython

cdef Py_ssize_t _CACHE_LIMIT

cpdef bytes status_line(object status)
cpdef Py_ssize_t header_name_kind(object name) except -1
cpdef check_header_value(object value)
cpdef validate_header(object name, object value)


@cython.final
cdef class DefaultHeaders:
    cdef public long long _second
    cdef public bytes block
    cdef public bint date_enabled
    cdef public list extra
    cdef public list pairs
    cdef public list server
