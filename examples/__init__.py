"""Runnable example apps: `celeris examples.hello:app`."""
