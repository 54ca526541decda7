# C declarations for state.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cimport cython

from celeris_asgi.headers cimport DefaultHeaders


@cython.final
cdef class ServerState:
    cdef public object app_state
    cdef public set connections
    cdef public DefaultHeaders default_headers
    cdef public list deferred_writers
    cdef public double now
    cdef public bint shutting_down
    cdef public set tasks
    cdef public Py_ssize_t total_requests

    cpdef write_soon(self, object writer, object loop)
    cpdef write_deferred(self)
