# C declarations for cycle.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# The phase constants stay Python globals: the protocols import them.  RequestCycle stays
# subclassable from Python (HTTP/1.1 uses it as is; H2Cycle extends it in C).  CycleOwner is the C
# base of HTTP1Protocol and HTTP2Protocol: the cycle's calls into its owner go through its vtable.

cimport cython

from celeris_asgi.metrics cimport Metrics
from celeris_asgi.state cimport ServerState


cdef class RequestCycle


cdef class CycleOwner:
    cdef public object settings
    cdef public ServerState state
    cdef public object loop
    cdef public Metrics metrics  # None with metrics off

    cpdef bint write_head(self, RequestCycle cycle, object status, object headers, object body, bint more_body) except -1
    cpdef bint write_body(self, RequestCycle cycle, object body, bint more_body) except -1
    cpdef bint write_trailers(self, RequestCycle cycle, object headers) except -1
    cpdef void write_informational(self, RequestCycle cycle, object status, object headers) except *
    cpdef void body_consumed(self, RequestCycle cycle, Py_ssize_t nbytes) except *
    cpdef void abort_response(self, RequestCycle cycle) except *
    cpdef void cycle_done(self, RequestCycle cycle) except *


@cython.final
cdef class Endpoint:
    cdef public object client
    cdef public object extensions
    cdef public object proxy
    cdef public object scheme
    cdef public object server


cdef object _Task

cdef dict _SCOPE_TEMPLATE

@cython.locals(app_state=dict, scope=dict)
cpdef object build_scope(object settings, ServerState state, Endpoint endpoint, object http_version, object method,
                         object path, object raw_path, object query_string, object headers,
                         bint proxy_headers=*)
cpdef bint admit(ServerState state, object settings) except? -1
cpdef object start_app_task(ServerState state, object coro, object loop, bint eager=*)


@cython.final
cdef class Ready:
    pass

cdef object _EXHAUSTED
cdef Ready READY


cdef class RequestCycle:
    cdef public object scope
    cdef public CycleOwner owner
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

    cdef void prepare(self, object scope, CycleOwner owner, bint expect_continue, bint body_complete, double start_time) except *
    @cython.locals(owner=CycleOwner, metrics=Metrics, state=ServerState)
    cpdef void start(self, bint eager=*) except *
    @cython.locals(metrics=Metrics)
    cpdef void respond_error(self, object status, str reason) except *
    cpdef void wake(self) except *
    cpdef void feed_body(self, object data) except *
    cpdef void feed_eof(self) except *
    cpdef void feed_disconnect(self) except *
    cpdef void app_failed(self) except *
    @cython.locals(msg=dict, owner=CycleOwner, more_body=bint, wait=bint)
    cpdef object send(self, object message)
