# C declarations for protocol.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# A C class cannot inherit asyncio.Protocol; uvloop and asyncio only duck-type protocols (and
# transport.set_protocol, for the h2c upgrade, takes any object with the protocol's methods).
cimport cython

from celeris_asgi.cycle cimport CycleOwner, RequestCycle, build_scope

from .connection cimport H2Connection
from .handlers cimport H2Cycle
from .validation cimport RequestHead

cdef frozenset _NO_BODY_STATUS


cdef class HTTP2Protocol(CycleOwner):
    cdef public object addresses  # (server, client) from a PROXY header, or None
    cdef public object access_log
    cdef public object tracer  # a FrameTrace at --log-level trace, else None
    cdef public H2Connection engine
    cdef public object transport
    cdef public object endpoint
    cdef public dict streams
    cdef public bint flush_scheduled
    cdef public double connected_at
    cdef public double idle_since
    cdef public double ticked_at
    cdef public double shutdown_started
    cdef public bint closing
    cdef public object upgrade_body_left
    cdef public object upgrade_cycle
    cdef public bint upgrade_paused
    cdef public double upgrade_deadline
    cdef public double upgrade_rate_start
    cdef public object upgrade_received
    cdef public bint holding
    cdef public object flow
    cdef object __weakref__

    cpdef void schedule_flush(self) except *
    cpdef void receive(self, object data) except *
    cpdef void on_request(self, object stream_id, RequestHead head, bint end_stream) except *  # boxed once, used boxed
    cpdef void start_cycle(self, H2Cycle cycle) except *
    cpdef object target(self, object head)

    # The cycle's owner side: CycleOwner's C methods; `cycle` is the request as an H2Cycle.
    @cython.locals(cycle=H2Cycle, engine=H2Connection, sid=object, end=bint)  # sid boxed once for every call it goes to
    cpdef bint write_head(self, RequestCycle request, object status, object headers, object body, bint more_body) except -1
    @cython.locals(cycle=H2Cycle, end=bint)
    cpdef bint write_body(self, RequestCycle request, object body, bint more_body) except -1
    @cython.locals(cycle=H2Cycle)
    cpdef bint write_trailers(self, RequestCycle request, object headers) except -1
    @cython.locals(cycle=H2Cycle)
    cpdef void write_informational(self, RequestCycle request, object status, object headers) except *
    @cython.locals(cycle=H2Cycle)
    cpdef void body_consumed(self, RequestCycle request, Py_ssize_t nbytes) except *
    @cython.locals(cycle=H2Cycle)
    cpdef void abort_response(self, RequestCycle request) except *
    @cython.locals(cycle=H2Cycle, sid=Py_ssize_t, streams=dict, engine=H2Connection)
    cpdef void cycle_done(self, RequestCycle request) except *
