"""--reload: edited source files restart the workers (with --workers too); bad edits keep the old ones."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from celeris_asgi.reload import ReloadFilter
from tests.conftest import ROOT, start_cli, stop_process
from tests.test_supervisor import LogTail, fetch

pytest.importorskip("watchfiles")

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": {body!r}}})
"""


def wait_for_body(port: int, expected: bytes, timeout: float = 10) -> None:
    """Until every worker answers with the new code (a few fresh connections in a row)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 6:
        assert time.monotonic() < deadline, f"never served {expected!r}"
        try:
            body = fetch(port)[1].encode()
        except OSError:
            body = b""
        streak = streak + 1 if body == expected else 0
        time.sleep(0.02)


@pytest.mark.timeout(30)
def test_reload_with_two_workers_picks_up_edits_and_survives_a_syntax_error(tmp_path: Path) -> None:
    source = tmp_path / "app.py"
    source.write_text(APP.format(body=b"first version"))
    process = start_cli(
        "app:app",
        "--app-dir",
        str(tmp_path),
        "--reload",
        "--reload-dir",
        str(tmp_path),
        "--workers",
        "2",
        "--port",
        "0",
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "2",
        wait_ready=False,
    )
    tail = LogTail(process.proc)
    try:
        port = int(tail.wait_for(r"running on http://127\.0\.0\.1:(\d+)")[0][1])
        tail.wait_for(r"is serving", count=2)
        wait_for_body(port, b"first version")

        (tmp_path / "notes.txt").write_text("not a source file")
        source.write_text(APP.format(body=b"the second version"))  # another size: no stale .pyc
        tail.wait_for(r"Detected changes in 'app\.py'; restarting the workers")
        wait_for_body(port, b"the second version")
        assert "notes.txt" not in tail.text()

        source.write_text("def app(:\n")
        tail.wait_for(r"Restart abandoned: the running workers keep serving the previous code")
        wait_for_body(port, b"the second version")

        source.write_text(APP.format(body=b"third, fixed version"))
        wait_for_body(port, b"third, fixed version")
    finally:
        assert stop_process(process.proc) == 0


@pytest.mark.timeout(15)
def test_reload_without_watchfiles_is_one_clear_error(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "watchfiles.py").write_text("raise ImportError('not installed')\n")
    (tmp_path / "app.py").write_text(APP.format(body=b"x"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "celeris_asgi",
            "app:app",
            "--app-dir",
            str(tmp_path),
            "--reload",
            "--port",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=10,
        env={"PYTHONPATH": str(shadow), "PATH": "/usr/bin"},
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 1
    assert len(lines) == 1 and "--reload needs the watchfiles package" in lines[0]


@pytest.mark.parametrize(
    ("path", "includes", "excludes", "expected"),
    [
        ("app.py", [], [], True),
        ("pkg/models.py", [], [], True),
        ("templates/index.html", [], [], False),
        ("templates/index.html", ["*.html"], [], True),
        ("app.pyc", [], [], False),
        ("__pycache__/app.cpython-311.py", [], [], False),
        (".git/hooks/pre-commit.py", [], [], False),
        (".env", [".*"], [], True),
        ("tests/test_app.py", [], ["tests"], False),
        ("migrations/0001.py", [], ["migrations/*"], False),
    ],
)
def test_reload_filter(tmp_path: Path, path: str, includes: list[str], excludes: list[str], expected: bool) -> None:
    # Directories above the watched one never count: a project may live under a hidden directory.
    root = tmp_path / ".hidden" / "project"
    assert ReloadFilter([root], includes, excludes)(None, str(root / path)) is expected
