# C declarations for http1.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
# The parser callbacks are cpdef (httptools looks them up by name) and the transport events def; the
# cycle's side overrides CycleOwner's C methods; what the connection calls on itself, its writer,
# its flow control and the server state are C calls.
cimport cython

from celeris_asgi.cycle cimport CycleOwner, RequestCycle, build_scope
from celeris_asgi.protocols.flow cimport FlowControl
from celeris_asgi.protocols.http1_response cimport ResponseWriter
from celeris_asgi.protocols.http1_request cimport (
    check_declared_length,
    check_head,
    check_host,
    field_value,
    has_no_body,
    request_method,
    request_target,
)
from celeris_asgi.metrics cimport Metrics
from celeris_asgi.state cimport ServerState

cdef Py_ssize_t HIGH_WATER
cdef Py_ssize_t _BATCH_BYTES
cdef Py_ssize_t _BATCH_WRITES
cdef int IDLE, HEAD, BODY, RESPONDING, CLOSING  # C copies of http1_phase.py's values, set by its import
cdef dict METHODS  # http1_request.py's objects, as C globals set by its import
cdef set GOOD_HOSTS
cdef bytes LAST_HOST


# Not @cython.final: Cython refuses a final class's overrides of its base's cpdef methods.
cdef class HTTP1Protocol(CycleOwner):
    cdef public object addresses  # (server, client) from a PROXY header, or None
    cdef public Py_ssize_t body_bytes
    cdef public Py_ssize_t bytes_in  # read and written since the metrics last took them (Metrics.take_traffic)
    cdef public Py_ssize_t bytes_out
    cdef public double body_deadline
    cdef public object content_length
    cdef public RequestCycle cycle
    cdef public double deadline
    cdef public object endpoint
    cdef public FlowControl flow
    cdef public Py_ssize_t head_bytes
    cdef public Py_ssize_t header_count_limit  # the settings' limits on the head
    cdef public Py_ssize_t header_size_limit
    cdef public Py_ssize_t line_limit
    cdef public list headers
    cdef public Py_ssize_t host_count
    cdef public list out
    cdef public object parser
    cdef public RequestCycle parsing
    cdef public double paused_at
    cdef public object pending_refusal
    cdef public object pipeline
    cdef public Py_ssize_t requests_started
    cdef public double seconds_per_byte
    cdef public double timeout_keep_alive  # the settings' timeouts, read per request
    cdef public double timeout_request_body
    cdef public double timeout_request_header
    cdef public object switch
    cdef public object transfer_encoding
    cdef public object transport
    cdef public object upgrade
    cdef public bytes url
    cdef public ResponseWriter writer
    # the 4-byte fields together, where alone each took 8
    cdef public bint access_logging
    cdef public bint expect_continue
    cdef public bint keep_alive_asked
    cdef public bint trusts_proxy
    cdef public bint forwarded
    cdef public int phase
    cdef public bint timing  # metrics on: the request duration starts at the head
    cdef public bint trace  # main's --log-level trace switch, as metrics

    cpdef data_received(self, object data)
    # the parser callbacks: cpdef, so httptools still finds them by name
    cpdef on_message_begin(self)
    cpdef on_url(self, bytes url)
    @cython.locals(headers=list)
    cpdef on_header(self, bytes name, bytes value)
    @cython.locals(content_length=object, keep_alive=bint, persistent=bint, state=ServerState, cycle=RequestCycle)
    cpdef on_headers_complete(self)
    @cython.locals(limit=object, cycle=RequestCycle)
    cpdef on_body(self, bytes body)
    @cython.locals(cycle=RequestCycle)
    cpdef on_message_complete(self)
    # the cycle's side (CycleOwner's methods: RequestCycle calls them through the vtable)
    @cython.locals(complete=bint, close=bint)
    cpdef bint write_head(self, RequestCycle cycle, object status, object headers, object body, bint more_body) except -1
    cpdef bint write_body(self, RequestCycle cycle, object body, bint more_body) except -1
    @cython.locals(final=bint)
    cpdef bint write_trailers(self, RequestCycle cycle, object headers) except -1
    cpdef void write_informational(self, RequestCycle cycle, object status, object headers) except *
    cpdef void body_consumed(self, RequestCycle cycle, Py_ssize_t nbytes) except *
    cpdef void abort_response(self, RequestCycle cycle) except *
    cpdef void cycle_done(self, RequestCycle cycle) except *

    @cython.locals(out=list)
    cpdef write(self, bytes data)
    cpdef write_deferred(self)
    @cython.locals(out=list)
    cpdef flush(self)
    cpdef close_transport(self)
    cpdef answer(self, int status, str reason)
    cpdef start_cycle(self, RequestCycle cycle, bint keep_alive, bint eager=*)
    @cython.locals(writer=ResponseWriter, state=ServerState, cycle=RequestCycle)
    cpdef next_request(self)
    cpdef refuse(self, int status, str reason)
    cpdef pause_reading(self)
    cpdef resume_reading(self)
