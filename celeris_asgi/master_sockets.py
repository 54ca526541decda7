"""The listening sockets the prefork master binds once and hands to every worker it forks."""

from __future__ import annotations

import contextlib
import socket

from celeris_asgi.config import Config, ConfigError
from celeris_asgi.logging import error_logger

MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


def bind_master_sockets(config: Config) -> list[socket.socket]:
    """Bind once in the master: a port in use is one clear error, privileged ports work.

    With --reuse-port each worker binds its own SO_REUSEPORT socket; the master then only holds the
    port (bound, never listening, so the kernel hands it no connections) and learns it for --port 0.
    """
    if config.reuse_port and (config.uds or config.fd is not None):
        error_logger.warning("--reuse-port applies to --host/--port only; the workers share the socket.")
        config.reuse_port = False
    if not config.reuse_port:
        sock = config.bind_socket()
        if sock.family != socket.AF_UNIX and config.fd is None:
            config.port = sock.getsockname()[1]  # --port 0: the port picked, for logs and sd_notify
        return [sock]
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Cannot bind to {config.host}:{config.port}: {exc.strerror}.") from None
    config.port = sock.getsockname()[1]
    with contextlib.suppress(OSError), open(MIGRATE_REQ, encoding="ascii") as file:
        if file.read().strip() == "0":
            error_logger.warning(
                "--reuse-port: connections queued at a stopping worker are reset (restarts, recycling); "
                "sysctl net.ipv4.tcp_migrate_req=1 (Linux 5.14+) hands them to the other workers."
            )
    return [sock]


def describe_listeners(config: Config) -> str:
    """Where the server listens, for the start-up log and sd_notify's STATUS."""
    if config.uds:
        return f"unix socket {config.uds}"
    if config.fd is not None:
        return f"inherited socket fd {config.fd}"
    scheme = "https" if config.is_ssl else "http"
    host = f"[{config.host}]" if ":" in config.host else config.host
    mode = " (SO_REUSEPORT: one socket per worker)" if config.reuse_port else ""
    return f"{scheme}://{host}:{config.port}{mode}"
