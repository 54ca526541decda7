"""`--config celeris.toml`: every flag's name as a key, checked as strictly as the command line.

The file only fills in what neither a flag nor a CELERIS_* variable set (cli.parse_config applies
it last). An unknown key or a value of the wrong kind is one ConfigError line naming the file and
the key; the values then go through Config's own validation like any flag's.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from typing import Any

from celeris_asgi.config import ConfigError


def read_config_file(path: str, options: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The file's settings as Config keywords (`app` included); keys may use dashes or underscores."""
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"Cannot read --config {path!r}: {exc.strerror}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path!r} is not valid TOML: {exc}.") from None
    specs = {flag[2:].replace("-", "_"): spec for flag, spec in options}
    settings: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        where = f"--config {path!r}: {key}"
        if name == "app":
            settings["app"] = _string(value, where)
            continue
        if name not in specs:
            raise ConfigError(f"{where}: unknown key (keys are the flag names, e.g. port, workers, log-level).")
        spec = specs[name]
        settings[spec.get("dest", name)] = _value(value, spec, where)
    return settings


def _value(value: Any, spec: dict[str, Any], where: str) -> Any:
    """One key's value, checked against its flag's kind: boolean, number, choice, list or string."""
    if spec.get("bool") or spec.get("bool_value"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false; got {value!r}.")
        return value
    if spec.get("action") == "append":
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(item, str) for item in values):
            raise ConfigError(f"{where} must be a string or a list of strings; got {value!r}.")
        return values
    kind = spec.get("type")
    if kind is int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"{where} must be a whole number; got {value!r}.")
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"{where} must be a number; got {value!r}.")
    if kind is None:
        value = _string(value, where)
    choices = spec.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}; got {value!r}.")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string; got {value!r}.")
    return value
