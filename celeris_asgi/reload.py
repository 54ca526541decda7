"""--reload: a watcher process that tells the supervisor which source files changed.

watchfiles runs in a forked process of its own rather than in a thread of the supervisor: the
supervisor keeps forking workers, and forking a process that has threads (watchfiles' notifier is
one) can deadlock the child. The watcher writes each batch of changed paths to a pipe, one batch
per message ending in NUL; the supervisor answers with a rolling restart of its workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from fnmatch import fnmatch
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from celeris_asgi.config import Config, ConfigError

if TYPE_CHECKING:
    from watchfiles import Change

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", "*.py[cod]", "*~", "__pycache__")
MESSAGE_LIMIT = 4000  # below PIPE_BUF, so a message is written in one piece
PARENT_CHECK_MS = 1000  # how often the watcher notices that the supervisor is gone


def check_available() -> None:
    """Fail with one line (and a non-zero exit, via ConfigError) when watchfiles is missing."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ConfigError("--reload needs the watchfiles package: pip install 'celeris-asgi[reload]'") from None


def watch_dirs(config: Config) -> list[Path]:
    """--reload-dir values (default: the current directory), each an existing directory."""
    dirs = [Path(d).resolve() for d in (config.reload_dirs or [os.getcwd()])]
    for directory in dirs:
        if not directory.is_dir():
            raise ConfigError(f"--reload-dir {str(directory)!r} is not a directory.")
    return dirs


class ReloadFilter:
    """Which changed paths matter: --reload-include globs (plus *.py), minus --reload-exclude globs.

    A glob matches a path's file name, any of its directory names below the watched directory, or
    the whole path relative to it. Including a glob that is also a default exclude (say ".*")
    takes it off the exclude list.
    """

    def __init__(self, roots: Sequence[Path], includes: Sequence[str] = (), excludes: Sequence[str] = ()) -> None:
        self.roots = [PurePath(root) for root in roots]
        self.includes = [*DEFAULT_INCLUDES, *includes]
        self.excludes = [p for p in DEFAULT_EXCLUDES if p not in includes] + list(excludes)

    def relative(self, path: str) -> PurePath:
        pure = PurePath(path)
        for root in self.roots:
            if pure.is_relative_to(root):
                return pure.relative_to(root)
        return PurePath(pure.name)

    def __call__(self, change: Change, path: str) -> bool:
        relative = self.relative(path)
        text = relative.as_posix()
        for pattern in self.excludes:
            if fnmatch(text, pattern) or any(fnmatch(part, pattern) for part in relative.parts):
                return False
        return any(fnmatch(relative.name, pattern) or fnmatch(text, pattern) for pattern in self.includes)


class _ParentGone:
    """watchfiles' stop_event: stop when the supervisor that started us has exited."""

    def __init__(self, ppid: int) -> None:
        self.ppid = ppid

    def is_set(self) -> bool:
        return os.getppid() != self.ppid


def watch(dirs: Sequence[Path], watch_filter: ReloadFilter, delay: float, fd: int, ppid: int) -> int:
    """The watcher process: report batches of changes until the supervisor goes away."""
    import watchfiles

    # CTRL+C and `systemctl stop` signal the whole group: only the master stops the watcher (SIGKILL:
    # it holds no state), so it never goes away while the master still counts on it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    for changes in watchfiles.watch(
        *dirs,
        watch_filter=watch_filter,
        step=max(1, int(delay * 1000)),
        stop_event=_ParentGone(ppid),
        rust_timeout=PARENT_CHECK_MS,
        raise_interrupt=False,
    ):
        paths = sorted({watch_filter.relative(path).as_posix() for _, path in changes})
        message = "\n".join(paths).encode("utf-8", "replace")[:MESSAGE_LIMIT] + b"\0"
        try:
            os.write(fd, message)
        except OSError:
            return 0
    return 0


class Watcher:
    """The supervisor's handle on the watcher process."""

    def __init__(self, config: Config) -> None:
        self.dirs = watch_dirs(config)
        self.filter = ReloadFilter(self.dirs, config.reload_includes, config.reload_excludes)
        self.delay = config.reload_delay
        self.pid = 0
        self.fd = -1
        self.buffer = b""

    def start(self, fork: Callable[[Callable[[], int]], int]) -> None:
        """Fork the watcher with the supervisor's `fork` (which cleans the child up)."""
        read_fd, write_fd = os.pipe()
        ppid = os.getpid()

        def child() -> int:
            os.close(read_fd)
            return watch(self.dirs, self.filter, self.delay, write_fd, ppid)

        self.pid = fork(child)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.fd = read_fd

    def read(self) -> list[list[str]] | None:
        """The batches of changed paths now readable, or None when the watcher has gone."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        if not data:
            return None
        *messages, self.buffer = (self.buffer + data).split(b"\0")
        return [message.decode("utf-8", "replace").split("\n") for message in messages]

    def stop(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
