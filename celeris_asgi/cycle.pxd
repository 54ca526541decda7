# C declarations for cycle.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# The phase constants stay Python globals: the protocols import them.  RequestCycle stays
# subclassable from Python (HTTP/1.1 uses it as is; H2Cycle extends it in C).

cpdef bint admit(object state, object settings) except? -1
cpdef object start_app_task(object state, object coro, object loop, bint eager=*)


cdef class RequestCycle:
    cdef public object scope
    cdef public object owner
    cdef public object body
    cdef public bint body_complete
    cdef public bint disconnected
    cdef public bint eof_delivered
    cdef public bint expect_continue
    cdef public object waiter
    cdef public Py_ssize_t phase
    cdef public bint trailers_expected
    cdef public object status
    cdef public object response_headers
    cdef public object response_bytes  # an app may declare any Content-Length
    cdef public double start_time
    cdef public object task

    cpdef void start(self, bint eager=*) except *
    cpdef void respond_error(self, object status, str reason) except *
    cpdef void wake(self) except *
    cpdef void feed_body(self, object data) except *
    cpdef void feed_eof(self) except *
    cpdef void feed_disconnect(self) except *
    cpdef void app_failed(self) except *
