"""The phase of an HTTP/1.1 connection: what it reads, and which timeout runs (http1_timeouts.py).

A leaf module, so that the connection (http1.py) and the modules it calls (its timeouts, its upgrade
point) share one definition without importing each other. It stays Python: compiled, http1.py copies
the values into C ints when it imports them (http1.pxd), while the Python modules import them as they are.
"""

from __future__ import annotations

IDLE = 0  # no request being read and none answered: the keep-alive (or first request's) timeout
HEAD = 1  # a request head is being read: the header timeout, unless a response is in progress
BODY = 2  # the body of `parsing` is being read: the body timeout and the minimum rate
RESPONDING = 3  # every request read is complete; a response is in progress: no read timeout
CLOSING = 4  # refused, handed to another protocol, or lost: nothing more is read
