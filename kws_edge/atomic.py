"""Atomic writes: a crash, a full disk or Ctrl-C never leaves half an artifact.

Files are written to a temporary sibling and renamed into place; directories
are assembled in a temporary sibling directory and renamed as a whole.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import KwsError

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_copy_file", "atomic_directory",
           "DiskFullError", "is_disk_full", "disk_full_error", "deferred_sigint", "pid_alive"]


class DiskFullError(KwsError):
    """The disk filled up while writing; nothing partial was left behind."""

    exit_code = 1


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` or an exception it was raised from is "no space left" (libraries wrap OSError)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full_error(path: str | Path) -> DiskFullError:
    return DiskFullError(f"no space left on the device while writing {path}; free some space and retry")


def _raise_os(exc: OSError, path: Path) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise disk_full_error(path) from None
    raise KwsError(f"cannot write {path}: {exc.strerror or exc}") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # only when writing (0.9 MiB of modules a detector never needs)

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get normal permissions
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        _raise_os(exc, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_copy_file(src: str | Path, dst: str | Path) -> None:
    """Copy a (small) file atomically: a full disk leaves no empty or partial ``dst``."""
    atomic_write_bytes(dst, Path(src).read_bytes())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unlink_quietly(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` when the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary directory is
    removed and ``path`` is left exactly as it was.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise KwsError(f"{path} already exists; choose another path or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous version back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_os(exc, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def deferred_sigint() -> Iterator[list[bool]]:
    """While inside, Ctrl-C (SIGINT) sets ``flag[0]`` instead of raising: for the few statements that commit
    a result and record it, so an interrupt cannot land between the two. Main thread only (else a no-op)."""
    import signal
    import threading

    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def note(signum: int, frame: Any) -> None:
        flag[0] = True

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (someone else's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True
