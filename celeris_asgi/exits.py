"""Process exit codes and the one-line report of a start-up failure.

A leaf shared by the single-process entry point (main) and the supervisor's workers
(worker_process), so neither has to import the other: main imports the supervisor, which imports
worker_process.
"""

from __future__ import annotations

import logging

from celeris_asgi.config import ConfigError
from celeris_asgi.lifespan import LifespanFailed
from celeris_asgi.logging import error_logger

EXIT_OK = 0
EXIT_CONFIG = 1  # a start-up error: bad settings, the app not importable, a crashed worker
EXIT_STARTUP_FAILED = 3


def startup_failure_code(exc: ConfigError | LifespanFailed) -> int:
    """Log a start-up failure as one line (a traceback only at debug) and return its exit code."""
    if isinstance(exc, LifespanFailed):
        error_logger.error("Application startup failed: %s", exc)
        return EXIT_STARTUP_FAILED
    cause = exc.__cause__ if error_logger.isEnabledFor(logging.DEBUG) else None
    error_logger.error("%s", exc, exc_info=cause)
    return EXIT_CONFIG
