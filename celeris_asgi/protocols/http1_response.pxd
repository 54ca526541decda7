# C declarations for http1_response.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cimport cython

from celeris_asgi.headers cimport DefaultHeaders, check_header_value, header_name_kind, status_line, validate_header

cdef frozenset _NO_BODY_STATUS
cdef bytes _END_CLOSE
cdef bytes _END_KEEP_ALIVE_1_0
cdef bytes _LAST_CHUNK

cpdef list field_lines(object headers)
cdef dict _LENGTHS
cdef Py_ssize_t _LENGTHS_MAX

cpdef object declared_length(bytes value)


@cython.final
cdef class ResponseWriter:
    cdef public bint chunked
    cdef public DefaultHeaders default_headers
    cdef public object expected
    cdef public bint http10
    cdef public bint keep_alive
    cdef public bint no_body
    cdef public Py_ssize_t sent

    cpdef reset(self, bint head_request, bint http10, bint keep_alive)
    @cython.locals(parts=list, kinds=dict, good_values=set, lengths=dict, kind=object, chunked=bint, complete=bint, length=Py_ssize_t)
    cpdef bytes head(self, object status, object headers, object body, bint more_body, bint trailers, bint close)
    cpdef bytes head_alone(self, object status, list parts, object expected, object body, bint more_body)
    cpdef bytes end_of_head(self)
    cpdef object body(self, object body, bint more_body, bint trailers)
    @cython.locals(size=Py_ssize_t, last=bint)
    cpdef object frame(self, object body, bint more_body, bint trailers)
    cpdef bytes trailers(self, object headers, bint final)
    cpdef check_length(self)
