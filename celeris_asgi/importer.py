"""Turn "module:attribute" into an object, with errors a user can act on."""

from __future__ import annotations

import importlib
import sysconfig
import traceback
from typing import Any

_STDLIB = sysconfig.get_paths()["stdlib"]


class ImportFromStringError(Exception):
    """The import string is malformed, or its module or attribute cannot be found."""


def where_raised(exc: BaseException) -> str:
    """`File "...", line N` of the user's code that raised: the innermost frame outside the standard
    library and importlib (a KeyError from os.environ points at the line that read it)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f'File "{exc.filename}", line {exc.lineno}'
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not frame.filename.startswith("<")]
    frames = [f for f in frames if not f.filename.startswith(_STDLIB) and f.filename != __file__] or frames
    if not frames:
        return "no traceback"
    return f'File "{frames[-1].filename}", line {frames[-1].lineno}'


def import_from_string(import_str: Any) -> Any:
    """Import `package.module:attr.subattr`; non-strings are returned as they are.

    A module that raises while importing gives one line with the exception, file and line; the
    exception stays chained (`__cause__`) for the full traceback at --log-level debug.
    """
    if not isinstance(import_str, str):
        return import_str
    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise ImportFromStringError(f'Import string "{import_str}" must be in format "<module>:<attribute>".')
    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if exc.name != module_str and not module_str.startswith(f"{exc.name}."):
            raise ImportFromStringError(f'Error loading module "{module_str}": {exc} ({where_raised(exc)}).') from exc
        raise ImportFromStringError(f'Could not import module "{module_str}".') from exc
    except Exception as exc:
        raise ImportFromStringError(
            f'Error loading module "{module_str}": {type(exc).__name__}: {exc} ({where_raised(exc)})'
        ) from exc
    instance: Any = module
    try:
        for attr in attrs_str.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise ImportFromStringError(f'Attribute "{attrs_str}" not found in module "{module_str}".') from None
    return instance
