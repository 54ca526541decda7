"""ASGI middleware that the server wraps around the application (see Config.load)."""
