"""`celeris APP [flags]`: argparse to Config, nothing more.

Every flag can also come from the environment as CELERIS_<FLAG> (dashes become underscores;
booleans take 1/0, true/false, yes/no, on/off; repeatable flags take one value per line).
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from celeris_asgi.config import (
    DEFAULT_ACCESS_LOG_FORMAT,
    DEFAULT_SSL_CIPHERS,
    HTTP_CHOICES,
    LIFESPAN_CHOICES,
    LOG_LEVELS,
    LOOP_CHOICES,
    WS_CHOICES,
    Config,
    ConfigError,
)

ENV_PREFIX = "CELERIS_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class OneLineParser(argparse.ArgumentParser):
    """Errors as one line on stderr (no usage wall), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _env_name(dest: str) -> str:
    return ENV_PREFIX + dest.upper()


def _env_bool(dest: str, default: bool) -> bool:
    raw = os.environ.get(_env_name(dest))
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ConfigError(f"{_env_name(dest)} must be a boolean (1/0, true/false), got {raw!r}.")


# (flags, argparse keyword arguments). Defaults come from Config unless given here.
_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--host",), {"default": "127.0.0.1", "help": "Bind to this address."}),
    (("--port",), {"type": int, "default": 8000, "help": "Bind to this port (0 picks a free one)."}),
    (("--uds",), {"help": "Bind to this unix domain socket."}),
    (("--fd",), {"type": int, "help": "Serve on this inherited socket file descriptor (systemd)."}),
    (("--loop",), {"choices": LOOP_CHOICES, "default": "auto", "help": "Event loop."}),
    (("--http",), {"choices": HTTP_CHOICES, "default": "auto", "help": "HTTP versions: h1, h2 or both."}),
    (("--ws",), {"choices": WS_CHOICES, "default": "auto", "help": "WebSocket support."}),
    (("--lifespan",), {"choices": LIFESPAN_CHOICES, "default": "auto", "help": "ASGI lifespan."}),
    (("--factory",), {"bool": False, "help": "APP is a factory: call it to get the app."}),
    (("--app-dir",), {"default": ".", "help": "Add this directory to sys.path before importing APP."}),
    (("--root-path",), {"default": "", "help": "ASGI root_path for apps mounted below a prefix."}),
    (("--proxy-headers",), {"bool": True, "help": "Trust X-Forwarded-* and Forwarded from allowed IPs."}),
    (("--forwarded-allow-ips",), {"help": "Comma-separated IPs/CIDRs/* trusted for proxy headers."}),
    (("--workers",), {"type": int, "help": "Worker processes (default $WEB_CONCURRENCY or 1)."}),
    (("--reuse-port",), {"bool": False, "help": "Per-worker SO_REUSEPORT socket; restarts reset its queue."}),
    (("--timeout-worker-healthcheck",), {"type": float, "default": 10, "help": "Seconds a worker may not answer."}),
    (("--timeout-worker-startup",), {"type": float, "default": 60, "help": "Seconds a worker may take to start."}),
    (("--limit-max-requests",), {"type": int, "help": "Recycle a worker after this many requests."}),
    (("--limit-max-requests-jitter",), {"type": int, "default": 0, "help": "Random extra requests (0..N)."}),
    (("--workers-max-rss",), {"type": int, "help": "Recycle a worker above this RSS (MiB)."}),
    (("--workers-lifetime",), {"type": float, "help": "Recycle a worker after this many seconds."}),
    (("--pid-file",), {"help": "Write the master's pid to this file."}),
    (("--reload",), {"bool": False, "help": "Restart workers when source files change."}),
    (("--reload-dir",), {"dest": "reload_dirs", "action": "append", "help": "Directory to watch (repeatable)."}),
    (("--reload-include",), {"dest": "reload_includes", "action": "append", "help": "Glob to watch."}),
    (("--reload-exclude",), {"dest": "reload_excludes", "action": "append", "help": "Glob to ignore."}),
    (("--timeout-keep-alive",), {"type": float, "default": 5, "help": "Seconds an idle connection stays open."}),
    (("--timeout-graceful-shutdown",), {"type": float, "default": 30, "help": "Seconds to finish on exit."}),
    (("--timeout-request-header",), {"type": float, "default": 10, "help": "Seconds to receive headers (408)."}),
    (("--timeout-request-body",), {"type": float, "default": 30, "help": "Seconds a body may stall (408)."}),
    (("--timeout-send",), {"type": float, "default": 30, "help": "Seconds a client may not read."}),
    (("--limit-concurrency",), {"type": int, "help": "Answer 503 beyond this many requests in flight."}),
    (("--limit-request-line",), {"type": int, "default": 8190, "help": "Max request-target bytes (414)."}),
    (("--limit-request-headers",), {"type": int, "default": 100, "help": "Max header fields (431)."}),
    (("--limit-request-header-size",), {"type": int, "default": 8190, "help": "Max bytes per field (431)."}),
    (("--limit-request-body",), {"type": int, "help": "Max request body bytes (413); unlimited by default."}),
    (
        ("--limit-request-min-rate",),
        {
            "type": int,
            "default": 500,
            "help": "Min bytes/s a head or body must average once its timeout passed (408); 0 off.",
        },
    ),
    (("--backlog",), {"type": int, "default": 2048, "help": "Listen backlog."}),
    (("--header",), {"dest": "headers", "action": "append", "metavar": "NAME:VALUE", "help": "Extra header."}),
    (("--server-header",), {"bool": True, "help": "Send 'server: celeris'."}),
    (("--date-header",), {"bool": True, "help": "Send the Date header."}),
    (("--gc-tuning",), {"bool": True, "help": "Tune the GC for serving: freeze start-up objects, gen0 >= 2000."}),
    (("--log-level",), {"choices": list(LOG_LEVELS), "default": "info", "help": "Log level."}),
    (("--log-config",), {"help": "Logging config file (.json, .yaml, .ini)."}),
    (("--access-log",), {"bool": True, "help": "Write the access log."}),
    (("--access-log-format",), {"default": DEFAULT_ACCESS_LOG_FORMAT, "help": "gunicorn-style atoms."}),
    (("--env-file",), {"help": "Load KEY=VALUE lines into the environment."}),
    (("--ssl-keyfile",), {"help": "TLS private key file."}),
    (("--ssl-certfile",), {"help": "TLS certificate (chain) file."}),
    (("--ssl-keyfile-password",), {"help": "Password of the TLS key."}),
    (("--ssl-ca-certs",), {"help": "CA certificates to verify clients."}),
    (("--ssl-cert-reqs",), {"type": int, "default": int(ssl.CERT_NONE), "help": "0 none, 1 optional, 2 required."}),
    (("--ssl-ciphers",), {"default": DEFAULT_SSL_CIPHERS, "help": "TLS 1.2 cipher list."}),
    (("--h2-max-concurrent-streams",), {"type": int, "default": 100, "help": "HTTP/2 streams per connection."}),
    (("--h2-initial-window-size",), {"type": int, "default": 1024 * 1024, "help": "HTTP/2 receive window."}),
    (("--h2-max-frame-size",), {"type": int, "default": 16384, "help": "HTTP/2 max frame size."}),
    (("--h2-max-header-list-size",), {"type": int, "default": 65536, "help": "HTTP/2 max header list bytes."}),
    (("--ws-max-size",), {"type": int, "default": 16 * 1024 * 1024, "help": "Max WebSocket message bytes."}),
    (("--ws-max-queue",), {"type": int, "default": 32, "help": "WebSocket messages queued for the app."}),
    (("--ws-ping-interval",), {"type": float, "default": 20.0, "help": "Seconds between WebSocket pings."}),
    (("--ws-ping-timeout",), {"type": float, "default": 20.0, "help": "Seconds to wait for a pong."}),
    (("--ws-per-message-deflate",), {"bool": True, "help": "WebSocket permessage-deflate."}),
]


def build_parser() -> argparse.ArgumentParser:
    from celeris_asgi import __version__
    from celeris_asgi._compiled import build_mode

    parser = OneLineParser(
        prog="celeris",
        description="Serve an ASGI app over HTTP/1.1 and HTTP/2 on one port.",
        epilog="Every flag can also be set as CELERIS_<FLAG> in the environment, e.g. CELERIS_PORT=9000.",
    )
    parser.add_argument("app", nargs="?", metavar="APP", help='The ASGI app as "module:attribute".')
    for flags, spec in _OPTIONS:
        spec = dict(spec)
        name = flags[0][2:].replace("-", "_")  # CELERIS_HEADER for --header, even though dest is "headers"
        dest = spec.pop("dest", name)
        env = os.environ.get(_env_name(name))
        if "bool" in spec:
            default = _env_bool(dest, spec.pop("bool"))
            parser.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction, default=default, **spec)
            continue
        if env is not None:
            spec["default"] = env.splitlines() if spec.get("action") == "append" else env
        parser.add_argument(*flags, dest=dest, **spec)
    parser.add_argument("--version", action="version", version=f"celeris-asgi {__version__} ({build_mode()} core)")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Parse the command line (and CELERIS_* variables) into a validated Config."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    app = args.pop("app") or os.environ.get(ENV_PREFIX + "APP")
    if not app:
        parser.error('missing APP, the application as "module:attribute" (e.g. celeris main:app)')
    return Config(app, **{key: value for key, value in args.items() if value is not None})


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from celeris_asgi.logging import configure_logging
    from celeris_asgi.main import serve_config

    try:
        config = parse_config(argv)
        configure_logging(config.log_config, config.log_level_number, config.access_log)
    except (ConfigError, ValueError) as exc:
        print(f"celeris: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve_config(config))
