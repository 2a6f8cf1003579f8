"""The main process's PID file, and finding the running proxy from it (``quicproxy reload``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PidFileError", "read_pid", "written"]


class PidFileError(OSError):
    """No running proxy can be found from the PID file (names the file and the reason)."""


@contextlib.contextmanager
def written(path: Path | None) -> Iterator[None]:
    """Write this process's PID to ``path`` (if any) for the duration; remove it after.
    PidFileError when the file names another process that is still running."""
    if path is None:
        yield
        return
    try:
        running: int | None = read_pid(path)
    except PidFileError:  # none, stale or unreadable: ours to write
        running = None
    if running is not None and running != os.getpid():
        raise PidFileError(f"{path}: process {running} is running: is the proxy started already?")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


def read_pid(path: Path) -> int:
    """The PID in ``path`` of a process that is alive."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise PidFileError(f"{path}: {exc.strerror}: is the proxy running?") from None
    if not text.isdigit():
        raise PidFileError(f"{path}: holds {text[:20]!r}, not a process ID")
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise PidFileError(f"{path}: process {pid} is not running") from None
    except PermissionError:
        pass  # alive, owned by another user: the signal itself will say
    return pid
