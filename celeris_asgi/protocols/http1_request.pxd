# C declarations for http1_request.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# RequestError stays a Python exception class; GOOD_HOSTS, OWS and METHODS stay importable Python objects.
from celeris_asgi.protocols.target cimport split_origin_form

cdef Py_ssize_t _GOOD_HOSTS_MAX

cpdef bytes field_value(bytes value)
cpdef check_host(bytes value)
cpdef check_head(str version, object transfer_encoding, Py_ssize_t host_count)
cpdef check_declared_length(bytes content_length, object limit)
cpdef bint has_no_body(object transfer_encoding, object content_length)
cpdef str request_method(bytes raw)
cpdef tuple request_target(bytes target, str method)
