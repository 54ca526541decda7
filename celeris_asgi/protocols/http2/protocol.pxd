# C declarations for protocol.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# A C class cannot inherit asyncio.Protocol; uvloop and asyncio only duck-type protocols (and
# transport.set_protocol, for the h2c upgrade, takes any object with the protocol's methods).
cimport cython

from celeris_asgi.cycle cimport build_scope
from celeris_asgi.metrics cimport Metrics

from .connection cimport H2Connection
from .handlers cimport H2Cycle


cdef class HTTP2Protocol:
    cdef public object addresses  # (server, client) from a PROXY header, or None
    cdef public object settings
    cdef public object state
    cdef public object loop
    cdef public object access_log
    cdef public Metrics metrics  # None with metrics off
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
    cpdef void start_cycle(self, H2Cycle cycle) except *

    # The cycle's owner side: C methods with the cycle typed (a Python caller still reaches them).
    @cython.locals(engine=H2Connection, sid=Py_ssize_t, end=bint)
    cpdef bint write_head(self, H2Cycle cycle, object status, object headers, object body, bint more_body) except? -1

    @cython.locals(end=bint)
    cpdef bint write_body(self, H2Cycle cycle, object body, bint more_body) except? -1

    @cython.locals(sid=Py_ssize_t, streams=dict, engine=H2Connection)
    cpdef void cycle_done(self, H2Cycle cycle) except *
