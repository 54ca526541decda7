"""Which core the suite tests: the Cython-compiled modules or their pure-Python source (issue 14).

An in-place extension shadows the ``.py`` of the same name, and pytest puts the
source tree first on ``sys.path``, so what runs depends on what the last
``pip install -e .`` left in the tree.  CI therefore runs the suite with
``CELERIS_EXPECT=compiled`` or ``CELERIS_EXPECT=pure`` and these tests fail when
the modules imported are not the ones it asked for.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from celeris_asgi import __version__
from celeris_asgi._compiled import COMPILED_MODULES, build_mode, compiled_modules
from tests.conftest import ROOT, start_cli, stop_process

pytestmark = pytest.mark.timeout(30)


def test_the_core_under_test_is_the_one_expected():
    expected = os.environ.get("CELERIS_EXPECT")
    if not expected:
        pytest.skip("CELERIS_EXPECT is not set (CI sets it to compiled or pure)")
    assert expected in ("compiled", "pure"), f"CELERIS_EXPECT={expected!r}"
    assert build_mode() == expected, compiled_modules()


def test_in_place_extensions_are_not_older_than_their_source():
    """A source edit after ``pip install -e .`` does not run until the extension is rebuilt: say so."""
    for name in COMPILED_MODULES:
        built = Path(importlib.import_module(name).__file__ or "")
        if built.suffix == ".py" or ROOT not in built.parents:
            continue
        for source in (built.parent / (name.rpartition(".")[2] + suffix) for suffix in (".py", ".pxd")):
            if source.exists():
                assert built.stat().st_mtime >= source.stat().st_mtime, f"{built} is stale: pip install -e . again"


def test_version_names_the_core():
    result = subprocess.run(
        [sys.executable, "-m", "celeris_asgi", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=20
    )
    assert result.stdout.strip() == f"celeris-asgi {__version__} ({build_mode()} core)"


def test_startup_log_names_the_core():
    process = start_cli("tests.cli_apps:app", "--port", "0", "--no-access-log", wait_ready=False)
    try:
        assert process.proc.stdout is not None
        deadline = time.monotonic() + 15
        lines: list[bytes] = []
        while time.monotonic() < deadline and not (lines and b"running on" in lines[-1]):
            line = process.proc.stdout.readline()
            assert line, b"".join(lines)
            lines.append(line)
        output = b"".join(lines).decode()
        assert re.search(rf"Celeris is using the {build_mode()} core\n", output), output
    finally:
        stop_process(process.proc)
