"""Logging set-up and the access log with gunicorn-style atoms.

The access log is formatted lazily: an atom is computed only when the format names it, so the
default format costs a handful of lookups per request, and a disabled access log costs nothing.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import time
from typing import Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_logger = logging.getLogger("celeris.error")
access_logger = logging.getLogger("celeris.access")

DEFAULT_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"format": "%(levelname)s:     %(message)s"},
        "access": {"format": "%(levelname)s:     %(message)s"},
    },
    "handlers": {
        "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "celeris": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "celeris.error": {"level": "INFO"},
        "celeris.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def configure_logging(log_config: str | dict[str, Any] | None, log_level: int, access_log: bool) -> None:
    """Apply the default config or the user's (.json, .yaml/.yml, or an .ini fileConfig)."""
    if isinstance(log_config, dict):
        logging.config.dictConfig(log_config)
    elif isinstance(log_config, str):
        if not os.path.exists(log_config):
            raise ValueError(f"--log-config file {log_config!r} does not exist.")
        if log_config.endswith(".json"):
            with open(log_config, encoding="utf-8") as file:
                logging.config.dictConfig(json.load(file))
        elif log_config.endswith((".yaml", ".yml")):
            import yaml

            with open(log_config, encoding="utf-8") as file:
                logging.config.dictConfig(yaml.safe_load(file))
        else:
            logging.config.fileConfig(log_config, disable_existing_loggers=False)
    else:
        logging.config.dictConfig(DEFAULT_LOG_CONFIG)
    logging.getLogger("celeris").setLevel(log_level)
    logging.getLogger("celeris.error").setLevel(log_level)
    if not access_log:
        access_logger.handlers = []
        access_logger.propagate = False
        access_logger.disabled = True
    else:
        access_logger.disabled = False


def reopen_log_files() -> None:
    """SIGUSR1, after logrotate moved the log files: close every file handler's stream.

    A FileHandler (WatchedFileHandler, RotatingFileHandler...) with no stream opens its file by
    name on the next record, so logging goes on in a new file instead of the moved one.
    """
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {h for logger in loggers if isinstance(logger, logging.Logger) for h in logger.handlers}
    for handler in handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.flush()
                    handler.stream.close()
                    handler.stream = None  # type: ignore[assignment]
            finally:
                handler.release()
    error_logger.info("Received SIGUSR1: log files reopened.")


class _Atoms(dict):  # type: ignore[type-arg]
    """The gunicorn atoms, computed on first use by the % formatter."""

    def __init__(
        self,
        scope: dict[str, Any],
        status: int,
        response_headers: list[tuple[bytes, bytes]],
        body_bytes: int,
        duration: float,
    ) -> None:
        super().__init__()
        self.scope = scope
        self.status = status
        self.response_headers = response_headers
        self.body_bytes = body_bytes
        self.duration = duration

    def _request_header(self, name: str) -> str:
        wanted = name.lower().encode("latin-1")
        for key, value in self.scope["headers"]:
            if key == wanted:
                return value.decode("latin-1")
        return "-"

    def _response_header(self, name: str) -> str:
        wanted = name.lower().encode("latin-1")
        for key, value in self.response_headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return "-"

    def __missing__(self, key: str) -> Any:
        scope = self.scope
        if key.startswith("{") and len(key) > 3 and key[-2] == "}":
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                return self._request_header(name)
            if kind == "o":
                return self._response_header(name)
            if kind == "e":
                return os.environ.get(name, "-")
            return "-"
        if key == "h":
            client = scope.get("client")
            return client[0] if client else "-"
        if key in ("l", "u"):
            return "-"
        if key == "t":
            return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
        if key == "r":
            query = scope["query_string"]
            path = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
            if query:
                path = f"{path}?{query.decode('latin-1')}"
            return f"{scope['method']} {path} HTTP/{scope['http_version']}"
        if key == "m":
            return scope["method"]
        if key == "U":
            return scope["path"]
        if key == "q":
            return scope["query_string"].decode("latin-1")
        if key == "H":
            return f"HTTP/{scope['http_version']}"
        if key == "s":
            return self.status
        if key == "B":
            return self.body_bytes
        if key == "b":
            return self.body_bytes or "-"
        if key == "f":
            return self._request_header("referer")
        if key == "a":
            return self._request_header("user-agent")
        if key == "T":
            return int(self.duration)
        if key == "D":
            return int(self.duration * 1_000_000)
        if key == "M":
            return int(self.duration * 1000)
        if key == "L":
            return f"{self.duration:.6f}"
        if key == "p":
            return f"<{os.getpid()}>"
        return "-"


class AccessLog:
    """Writes one access-log line per finished request in the configured gunicorn-style format."""

    __slots__ = ("enabled", "format")

    def __init__(self, access_log_format: str, enabled: bool) -> None:
        self.format = access_log_format
        self.enabled = enabled and not access_logger.disabled

    def log(
        self,
        scope: dict[str, Any],
        status: int,
        response_headers: list[tuple[bytes, bytes]],
        body_bytes: int,
        duration: float,
    ) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        try:
            line = self.format % _Atoms(scope, status, response_headers, body_bytes, duration)
        except (KeyError, TypeError, ValueError) as exc:
            line = f"invalid --access-log-format ({exc}): {scope.get('method')} {scope.get('path')} {status}"
        access_logger.info(line)
