"""Logging set-up and the access log with gunicorn-style atoms.

The access log is formatted lazily: an atom is computed only when the format names it, so the
default format costs a handful of lookups per request, and a disabled access log costs nothing.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.config
import os
import sys
import time
from configparser import RawConfigParser
from typing import IO, Any, Union

TRACE = 5
# What uvicorn's log_config takes: a dictConfig dict, a .json/.yaml/.ini path, a RawConfigParser or an
# open .ini file; None leaves logging alone.
LogConfig = Union[str, "os.PathLike[str]", dict[str, Any], RawConfigParser, IO[str], None]
logging.addLevelName(TRACE, "TRACE")

error_logger = logging.getLogger("celeris.error")
access_logger = logging.getLogger("celeris.access")

DEFAULT_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"()": "celeris_asgi.logging.LevelPrefixFormatter", "fmt": "%(levelprefix)s %(message)s"},
        "access": {"()": "celeris_asgi.logging.LevelPrefixFormatter", "fmt": "%(levelprefix)s %(message)s"},
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


# --log-format json: the same loggers and handlers, each line one JSON object.
JSON_LOG_CONFIG: dict[str, Any] = {
    **DEFAULT_LOG_CONFIG,
    "formatters": {
        "default": {"()": "celeris_asgi.logging.JsonFormatter"},
        "access": {"()": "celeris_asgi.logging.JsonFormatter"},
    },
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and pid); access lines add the request's
    fields, error lines with a traceback add `exception`. Usable from a --log-config file too
    (`"()": "celeris_asgi.logging.JsonFormatter"`)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        atoms = record.__dict__.get("access")
        if isinstance(atoms, _Atoms):
            line.update(atoms.fields())
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class LevelPrefixFormatter(logging.Formatter):
    """uvicorn's `INFO:     message` layout; the level in colour when `use_colors` (None: stderr is a tty)."""

    COLOURS = {
        TRACE: "34",
        logging.DEBUG: "36",
        logging.INFO: "32",
        logging.WARNING: "33",
        logging.ERROR: "31",
        logging.CRITICAL: "1;31",
    }

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, use_colors: bool | None = None) -> None:
        super().__init__(fmt, datefmt)
        self.use_colors = sys.stderr.isatty() if use_colors is None else use_colors

    def formatMessage(self, record: logging.LogRecord) -> str:
        name = record.levelname
        padding = " " * max(0, 8 - len(name))
        if self.use_colors:
            name = f"\x1b[{self.COLOURS.get(record.levelno, '0')}m{name}\x1b[0m"
        record.__dict__["levelprefix"] = f"{name}:{padding}"
        return super().formatMessage(record)


def configure_logging(
    log_config: LogConfig,
    log_level: str | int | None,
    access_log: bool,
    use_colors: bool | None = None,
    log_format: str = "text",
) -> None:
    """Apply the default config or the user's (.json, .yaml/.yml, or an .ini fileConfig), as uvicorn's
    Config does; None leaves the logging set-up to the embedding program and only sets the levels.
    log_format "json" swaps the default config's formatters for JsonFormatter (a user's config wins)."""
    if log_config is DEFAULT_LOG_CONFIG and log_format == "json":
        log_config = JSON_LOG_CONFIG
    if log_config is DEFAULT_LOG_CONFIG and use_colors is not None:
        log_config = copy.deepcopy(DEFAULT_LOG_CONFIG)
        for formatter in log_config["formatters"].values():
            formatter["use_colors"] = use_colors
    if isinstance(log_config, dict):
        logging.config.dictConfig(log_config)
    elif isinstance(log_config, (str, os.PathLike)):
        apply_log_config_file(os.fspath(log_config))
    elif log_config is not None:  # uvicorn also takes a RawConfigParser or an open .ini file
        logging.config.fileConfig(log_config, disable_existing_loggers=False)
    if log_level is not None:
        level = logging.getLevelName(log_level.upper()) if isinstance(log_level, str) else log_level
        logging.getLogger("celeris").setLevel(level)
        logging.getLogger("celeris.error").setLevel(level)
    if not access_log:
        access_logger.handlers = []
        access_logger.propagate = False
        access_logger.disabled = True
    else:
        access_logger.disabled = False


def apply_log_config_file(path: str) -> None:
    """Apply a .json, .yaml/.yml or .ini logging file; any failure is one ValueError naming the file."""
    if not os.path.exists(path):
        raise ValueError(f"--log-config file {path!r} does not exist.")
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as file:
                logging.config.dictConfig(json.load(file))
        elif path.endswith((".yaml", ".yml")):
            import yaml

            with open(path, encoding="utf-8") as file:
                logging.config.dictConfig(yaml.safe_load(file))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except Exception as exc:  # json, yaml, configparser and logging each raise their own kinds
        raise ValueError(f"--log-config file {path!r} cannot be applied: {type(exc).__name__}: {exc}") from None


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
                    handler.stream = None
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

    def fields(self) -> dict[str, Any]:
        """The request's fields for a JSON access line."""
        scope = self.scope
        client = scope.get("client")
        request_id = self._request_header("x-request-id")
        fields: dict[str, Any] = {
            "client": f"{client[0]}:{client[1]}" if client else None,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "protocol": f"HTTP/{scope.get('http_version')}",
            "status": self.status,
            "response_bytes": self.body_bytes,
            "duration_ms": round(self.duration * 1000, 3),
        }
        if request_id != "-":
            fields["request_id"] = request_id
        return fields

    def _request_header(self, name: str) -> str:
        wanted = name.lower().encode("latin-1")
        headers: list[tuple[bytes, bytes]] = self.scope["headers"]
        for key, value in headers:
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
        if key == "client_addr":  # uvicorn's atom: host:port
            client = scope.get("client")
            return f"{client[0]}:{client[1]}" if client else "-"
        if key in ("l", "u"):
            return "-"
        if key == "t":
            return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
        if key in ("r", "request_line"):
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
        if key in ("s", "status_code"):
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
        atoms = _Atoms(scope, status, response_headers, body_bytes, duration)
        try:
            line = self.format % atoms
        except (KeyError, TypeError, ValueError) as exc:
            line = f"invalid --access-log-format ({exc}): {scope.get('method')} {scope.get('path')} {status}"
        access_logger.info(line, extra={"access": atoms})  # JsonFormatter's fields
