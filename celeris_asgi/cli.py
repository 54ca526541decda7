"""`celeris APP [flags]`: argparse to Config, nothing more.

Every uvicorn flag is accepted with uvicorn's value syntax (see README, "Migrating from uvicorn");
Config maps the values celeris does its own way and says so in the start-up log. Defaults live in
Config alone: a flag not given is not passed on.

Every flag can also come from the environment as CELERIS_<FLAG> (dashes become underscores;
booleans take 1/0, true/false, yes/no, on/off; repeatable flags take one value per line), and from
a TOML file given with --config (see config_file); flags beat variables, which beat the file.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from celeris_asgi.config import (
    HTTP_CHOICES,
    INTERFACE_CHOICES,
    LIFESPAN_CHOICES,
    LOG_FORMAT_CHOICES,
    LOG_LEVELS,
    LOOP_CHOICES,
    PROXY_PROTOCOL_CHOICES,
    UVICORN_HTTP,
    UVICORN_LOOPS,
    UVICORN_WS,
    WS_CHOICES,
    Config,
    ConfigError,
)

ENV_PREFIX = "CELERIS_"
# click's BOOLEAN words, which uvicorn's `--ws-per-message-deflate BOOLEAN` takes.
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}
CONFIG_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(Config.__init__).parameters.items()
    if parameter.default is not inspect.Parameter.empty
}


class OneLineParser(argparse.ArgumentParser):
    """Errors as one line on stderr (no usage wall), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_bool(raw: str, what: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(f"{what} must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}.")


def boolean_value(raw: str) -> bool:
    """argparse type for `--flag true|false`: a bad word is argparse's one-line error."""
    try:
        return parse_bool(raw, "the value")
    except ConfigError:
        raise argparse.ArgumentTypeError(f"invalid boolean value: {raw!r} (true or false)") from None


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _choices(own: Sequence[str], uvicorn: dict[str, Any]) -> list[str]:
    return [*own, *uvicorn]


# (flag, argparse keyword arguments). "bool": a --flag/--no-flag pair; "bool_value": uvicorn's
# `--flag BOOLEAN` plus the --no-flag form. No defaults here: those of Config apply.
_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--host", {"help": "Bind to this address."}),
    ("--port", {"type": int, "help": "Bind to this port (0 picks a free one)."}),
    ("--uds", {"help": "Bind to this unix domain socket."}),
    ("--fd", {"type": int, "help": "Serve on this inherited socket (systemd's LISTEN_FDS is detected)."}),
    ("--loop", {"choices": _choices(LOOP_CHOICES, UVICORN_LOOPS), "help": "Event loop."}),
    (
        "--http",
        {
            "choices": _choices(HTTP_CHOICES, UVICORN_HTTP),
            "help": "HTTP versions: h1, h2 or both (auto); uvicorn's parser names h11/httptools/zttp serve as auto.",
        },
    ),
    ("--http2", {"bool": True, "help": "uvicorn's switch; HTTP/2 is always on unless --http h1."}),
    ("--ws", {"choices": _choices(WS_CHOICES, UVICORN_WS), "help": "WebSocket support."}),
    ("--lifespan", {"choices": LIFESPAN_CHOICES, "help": "ASGI lifespan."}),
    ("--interface", {"choices": INTERFACE_CHOICES, "help": "ASGI3 or ASGI2 app (auto detects); wsgi is refused."}),
    ("--factory", {"bool": True, "help": "APP is a factory: call it to get the app."}),
    ("--app-dir", {"help": "Add this directory to sys.path before importing APP."}),
    ("--root-path", {"help": "ASGI root_path for apps mounted below a prefix."}),
    ("--proxy-headers", {"bool": True, "help": "Trust X-Forwarded-* and Forwarded from allowed IPs."}),
    ("--forwarded-allow-ips", {"help": "Comma-separated IPs/CIDRs/* trusted for proxy headers."}),
    ("--workers", {"type": int, "help": "Worker processes (default $WEB_CONCURRENCY or 1)."}),
    ("--reuse-port", {"bool": True, "help": "Per-worker SO_REUSEPORT socket; restarts reset its queue."}),
    ("--timeout-worker-healthcheck", {"type": float, "help": "Seconds a worker may not answer."}),
    ("--timeout-worker-startup", {"type": float, "help": "Seconds a worker may take to start."}),
    ("--limit-max-requests", {"type": int, "help": "Recycle a worker after this many requests."}),
    ("--limit-max-requests-jitter", {"type": int, "help": "Random extra requests (0..N)."}),
    ("--workers-max-rss", {"type": int, "help": "Recycle a worker above this RSS (MiB)."}),
    ("--workers-lifetime", {"type": float, "help": "Recycle a worker after this many seconds."}),
    ("--pid-file", {"help": "Write the master's pid to this file."}),
    ("--reload", {"bool": True, "help": "Restart workers when source files change."}),
    ("--reload-dir", {"dest": "reload_dirs", "action": "append", "help": "Directory to watch (repeatable)."}),
    ("--reload-include", {"dest": "reload_includes", "action": "append", "help": "Glob to watch."}),
    ("--reload-exclude", {"dest": "reload_excludes", "action": "append", "help": "Glob to ignore."}),
    ("--reload-delay", {"type": float, "help": "Seconds to gather file changes before restarting."}),
    ("--timeout-keep-alive", {"type": float, "help": "Seconds an idle connection stays open."}),
    ("--timeout-graceful-shutdown", {"type": float, "help": "Seconds to finish on exit."}),
    ("--timeout-request-header", {"type": float, "help": "Seconds to receive headers (408)."}),
    ("--timeout-request-body", {"type": float, "help": "Seconds a body may stall (408)."}),
    ("--timeout-send", {"type": float, "help": "Seconds a client may not read."}),
    ("--limit-concurrency", {"type": int, "help": "Answer 503 beyond this many requests in flight."}),
    ("--limit-request-line", {"type": int, "help": "Max request-target bytes (414)."}),
    ("--limit-request-headers", {"type": int, "help": "Max header fields (431)."}),
    ("--limit-request-header-size", {"type": int, "help": "Max bytes per field (431)."}),
    ("--limit-request-body", {"type": int, "help": "Max request body bytes (413); unlimited by default."}),
    (
        "--limit-request-min-rate",
        {"type": int, "help": "Min bytes/s a head or body must average once its timeout passed (408); 0 off."},
    ),
    (
        "--h11-max-incomplete-event-size",
        {"type": int, "help": "uvicorn's h11 limit; celeris uses the --limit-request-* flags instead."},
    ),
    ("--backlog", {"type": int, "help": "Listen backlog."}),
    ("--header", {"dest": "headers", "action": "append", "metavar": "NAME:VALUE", "help": "Extra header."}),
    ("--server-header", {"bool": True, "help": "Send 'server: celeris'."}),
    ("--date-header", {"bool": True, "help": "Send the Date header."}),
    ("--gc-tuning", {"bool": True, "help": "Tune the GC for serving: freeze start-up objects, gen0 >= 2000."}),
    ("--reset-contextvars", {"bool": True, "help": "uvicorn's switch; celeris always isolates requests' context."}),
    ("--log-level", {"choices": list(LOG_LEVELS), "help": "Log level [default: info]."}),
    ("--log-config", {"help": "Logging config file (.json, .yaml, .ini)."}),
    ("--access-log", {"bool": True, "help": "Write the access log."}),
    ("--access-log-format", {"help": "gunicorn-style atoms, plus client_addr (host:port)."}),
    ("--use-colors", {"bool": True, "help": "Colour the log levels [default: when stderr is a terminal]."}),
    ("--env-file", {"help": "Load KEY=VALUE lines into the environment."}),
    ("--ssl-keyfile", {"help": "TLS private key file."}),
    ("--ssl-certfile", {"help": "TLS certificate (chain) file."}),
    ("--ssl-keyfile-password", {"help": "Password of the TLS key."}),
    ("--ssl-version", {"type": int, "help": "uvicorn's ssl module constant: 17 or 2 (TLS 1.2+1.3), 5 (TLS 1.2 only)."}),
    ("--ssl-ca-certs", {"help": "CA certificates to verify clients."}),
    ("--ssl-cert-reqs", {"type": int, "help": "0 none, 1 optional, 2 required."}),
    ("--ssl-ciphers", {"help": "TLS 1.2 cipher list."}),
    ("--h2-max-concurrent-streams", {"type": int, "help": "HTTP/2 streams per connection."}),
    ("--h2-initial-window-size", {"type": int, "help": "HTTP/2 receive window."}),
    ("--h2-max-frame-size", {"type": int, "help": "HTTP/2 max frame size."}),
    ("--h2-max-header-list-size", {"type": int, "help": "HTTP/2 max header list bytes."}),
    ("--h2-header-table-size", {"type": int, "help": "HPACK dynamic table bytes a client may use for requests."}),
    (
        "--h2-max-header-block-size",
        {"type": int, "help": "Max compressed header block bytes (HEADERS + CONTINUATION); more ends the connection."},
    ),
    ("--h2-max-continuation-frames", {"type": int, "help": "Max CONTINUATION frames in one header block."}),
    ("--h2-max-resets-per-interval", {"type": int, "help": "Stream resets per --h2-flood-interval (rapid reset)."}),
    ("--h2-max-pings-per-interval", {"type": int, "help": "PING frames per --h2-flood-interval."}),
    ("--h2-max-settings-per-interval", {"type": int, "help": "SETTINGS frames per --h2-flood-interval."}),
    ("--h2-max-empty-data-per-interval", {"type": int, "help": "Empty DATA frames per --h2-flood-interval."}),
    (
        "--h2-flood-interval",
        {"type": float, "help": "Seconds the --h2-max-*-per-interval limits count over; above one, GOAWAY."},
    ),
    ("--h2-settings-timeout", {"type": float, "help": "Seconds a client has to acknowledge our SETTINGS."}),
    ("--ws-max-size", {"type": int, "help": "Max WebSocket message bytes."}),
    ("--ws-max-queue", {"type": int, "help": "WebSocket messages queued for the app."}),
    ("--ws-ping-interval", {"type": float, "help": "Seconds between WebSocket pings."}),
    ("--ws-ping-timeout", {"type": float, "help": "Seconds to wait for a pong."}),
    ("--ws-per-message-deflate", {"bool_value": True, "help": "WebSocket permessage-deflate: true or false."}),
    ("--metrics-address", {"metavar": "HOST:PORT", "help": "Serve Prometheus metrics here (off by default)."}),
    ("--log-format", {"choices": LOG_FORMAT_CHOICES, "help": "Log lines as text or one JSON object each."}),
    ("--proxy-protocol", {"choices": PROXY_PROTOCOL_CHOICES, "help": "Expect a PROXY header from trusted peers."}),
]


def _with_default(help_text: str, dest: str) -> str:
    default = CONFIG_DEFAULTS.get(dest)
    if default is None or default == "" or "default" in help_text or isinstance(default, (dict, list)):
        return help_text
    return f"{help_text} [default: {str(default).replace('%', '%%')}]"  # argparse %-formats help


def build_parser() -> argparse.ArgumentParser:
    """The parser; a CELERIS_<FLAG> variable becomes that flag's default, which the command line beats."""
    from celeris_asgi import __version__
    from celeris_asgi._compiled import build_mode

    parser = OneLineParser(
        prog="celeris",
        description="Serve an ASGI app over HTTP/1.1 and HTTP/2 on one port.",
        epilog="Every flag can also be set as CELERIS_<FLAG> in the environment, e.g. CELERIS_PORT=9000.",
        allow_abbrev=False,  # `--head` must not quietly mean --header
    )
    parser.add_argument("app", nargs="?", metavar="APP", help='The ASGI app as "module:attribute".')
    for flag, spec in _OPTIONS:
        spec = dict(spec)
        name = flag[2:].replace("-", "_")  # CELERIS_HEADER for --header, even though dest is "headers"
        dest = spec.pop("dest", name)
        spec["help"] = _with_default(spec["help"], dest)
        env = os.environ.get(_env_name(name))
        if spec.pop("bool", False):
            default = None if env is None else parse_bool(env, _env_name(name))
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default, **spec)
        elif spec.pop("bool_value", False):
            default = None if env is None else parse_bool(env, _env_name(name))
            parser.add_argument(
                flag, dest=dest, nargs="?", const=True, type=boolean_value, metavar="BOOLEAN", default=default, **spec
            )
            parser.add_argument(f"--no-{flag[2:]}", dest=dest, action="store_false", help=argparse.SUPPRESS)
        else:
            if env is not None:
                spec["default"] = env.splitlines() if spec.get("action") == "append" else env
            parser.add_argument(flag, dest=dest, **spec)
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get(ENV_PREFIX + "CONFIG"),
        help="A TOML file with flag names as keys; flags and CELERIS_* variables override it.",
    )
    parser.add_argument("--version", action="version", version=f"celeris-asgi {__version__} ({build_mode()} core)")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Parse the command line (and CELERIS_* variables) into a validated Config (which sets up logging)."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    config_file = args.pop("config")
    if config_file:
        from celeris_asgi.config_file import read_config_file

        for dest, value in read_config_file(config_file, _OPTIONS).items():
            if args.get(dest) is None:  # not set by a flag or a CELERIS_* variable
                args[dest] = value
    app = args.pop("app") or os.environ.get(ENV_PREFIX + "APP")
    if not app:
        parser.error('missing APP, the application as "module:attribute" (e.g. celeris main:app)')
    return Config(app, **{key: value for key, value in args.items() if value is not None})


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from celeris_asgi.main import serve_config

    try:
        config = parse_config(argv)
    except ValueError as exc:  # ConfigError, or a --log-config that cannot be applied
        print(f"celeris: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve_config(config))
