"""From the APP import string to an ASGI 3 callable: import, --factory, and --interface asgi2.

Kept apart from Config so its one job (settings, defaults, validation) stays one file.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from celeris_asgi.asgi_types import ASGIApp, Receive, Scope, Send
from celeris_asgi.importer import ImportFromStringError, import_from_string


class AppLoadError(Exception):
    """The app cannot be served; the message is one line for the user (the cause, if any, is chained)."""


def load_app(import_string: str, factory: bool, interface: str) -> ASGIApp:
    """Import APP, call it with --factory, and wrap an ASGI2 app (explicit, or detected with auto)."""
    try:
        app = import_from_string(import_string)
    except ImportFromStringError as exc:
        raise AppLoadError(str(exc)) from exc.__cause__
    if factory:
        if not callable(app):
            raise AppLoadError(f"--factory given, but {import_string!r} is not callable.")
        try:
            app = app()
        except TypeError as exc:
            raise AppLoadError(f"Error calling the app factory {import_string!r}: {exc}") from None
    elif inspect.isfunction(app) and not inspect.iscoroutinefunction(app) and _looks_like_factory(app):
        raise AppLoadError(f"{import_string!r} looks like an app factory; pass --factory to call it.")
    if not callable(app):
        raise AppLoadError(f"{import_string!r} is not an ASGI application (not callable).")
    if interface == "asgi2" or (interface == "auto" and is_asgi2(app)):
        return ASGI2App(app)
    return app  # type: ignore[no-any-return]


class ASGI2App:
    """Serves an ASGI2 (double-callable) app as ASGI3: `app(scope)` gives the instance to await."""

    __slots__ = ("app",)

    def __init__(self, app: Callable[[Any], Callable[[Receive, Send], Awaitable[None]]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope)(receive, send)


def is_asgi2(app: Any) -> bool:
    """uvicorn's rule (a class without __await__, or a callable that is not a coroutine function),
    narrowed to callables that take the scope alone, so sync wrappers of ASGI3 apps stay ASGI3."""
    if inspect.isclass(app):
        if hasattr(app, "__await__"):
            return False
    elif inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__):
        return False
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return False
    return _binds(signature, 1) and not _binds(signature, 3)


def _binds(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def _looks_like_factory(func: Callable[..., Any]) -> bool:
    """A plain function taking no arguments cannot be an ASGI app; it is almost surely a factory."""
    try:
        return not inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
