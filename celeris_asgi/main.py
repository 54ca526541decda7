"""`run()`: the embedding entry point, shared by the command line.

Turns a Config into a running server (one process) or a supervisor (several workers or reload),
and every start-up failure into one logged line and an exit code instead of a traceback (the
traceback of an app that fails to import is added at --log-level debug).
"""

from __future__ import annotations

import sys
from typing import Any

from celeris_asgi.config import Config, ConfigError
from celeris_asgi.exits import EXIT_CONFIG, EXIT_OK, startup_failure_code
from celeris_asgi.lifespan import LifespanFailed
from celeris_asgi.server import Server


def serve_config(config: Config) -> int:
    """Run what the config asks for; return the process exit code."""
    try:
        if config.use_subprocess:
            if not isinstance(config.app, str):
                raise ConfigError(
                    'Pass the application as an import string ("module:app") to use workers > 1 or reload.'
                )
            from celeris_asgi.supervisor import Supervisor

            return Supervisor(config).run()
        Server(config).run()
    except (ConfigError, LifespanFailed) as exc:
        return startup_failure_code(exc)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def run(app: Any, **settings: Any) -> None:
    """Serve `app` (an ASGI app or a "module:attr" string) with the given settings; exits on failure.

    Takes uvicorn.run()'s keywords (http="httptools", interface="asgi2", ws="wsproto", use_colors=...).
    """
    try:
        config = Config(app, **settings)
    except (ValueError, TypeError) as exc:  # a bad value, a log_config that fails, an unknown keyword
        print(f"celeris: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    code = serve_config(config)
    if code != EXIT_OK:
        sys.exit(code)
