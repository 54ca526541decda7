# C declarations for validation.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cimport cython


@cython.final
cdef class RequestHead:
    cdef readonly bytes method
    cdef readonly object scheme
    cdef readonly object authority
    cdef readonly object path
    cdef readonly object protocol
    cdef readonly tuple headers
    cdef readonly object content_length
    cdef public tuple target


cdef bytes _NAME_CHARS
cdef bytes _METHOD_CHARS
cdef frozenset _CONNECTION_SPECIFIC
cdef set _CHECKED
cdef Py_ssize_t _CHECKED_MAX
cdef Py_ssize_t _CHECKED_ITEM_MAX


@cython.locals(text="const unsigned char*", table="const unsigned char*", i=Py_ssize_t)
cdef bint _is_token(bytes data, bytes chars)

@cython.locals(first=cython.uchar, last=cython.uchar)
cdef bint _is_clean_value(bytes value) except -1

cpdef bint field_ok(bytes name, bytes value) except -1
cdef void _check_field(bytes name, bytes value) except *

@cython.locals(value=bytes)
cdef void _remember(tuple field) except *

@cython.locals(
    headers=list,
    i=Py_ssize_t,
    regular=bint,
    duplicate=bint,
    field=tuple,
    name=bytes,
    value=bytes,
    method=bytes,
    scheme=bytes,
    authority=bytes,
    path=bytes,
    protocol=bytes,
)
cpdef RequestHead validate_request(list fields, bint connect_protocol, bytearray vetted=*)
