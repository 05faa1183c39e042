"""Paths as they may be written into a manifest or run file: never the build machine's absolute paths.

A bundle or run directory travels (a wheel, a registry, another machine); the
folder it was made in on the build machine means nothing there and leaks that
machine's layout. Relative paths stay as given (they are what the user typed,
relative to where the command ran); absolute ones are replaced by their last
part, the name of the run, teacher, data folder or profile file.
"""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

__all__ = ["is_absolute_path", "portable_path", "portable_json", "absolute_paths_in"]


def is_absolute_path(text: str) -> bool:
    """True for a POSIX (``/x``) or Windows (``C:\\x``, ``\\\\server\\x``) absolute path."""
    return PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()


def portable_path(path: Any) -> str:
    """``path`` as text for a manifest: relative as given, absolute by its name (``/a/b/run`` -> ``run``)."""
    text = str(path)
    if not is_absolute_path(text):
        return text
    pure = PurePosixPath(text) if PurePosixPath(text).is_absolute() else PureWindowsPath(text)
    return pure.name or text[:1]


def portable_json(value: Any) -> Any:
    """A copy of a JSON value with every absolute path string replaced by :func:`portable_path`."""
    if isinstance(value, dict):
        return {k: portable_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable_json(v) for v in value]
    if isinstance(value, str) and is_absolute_path(value):
        return portable_path(value)
    return value


def absolute_paths_in(value: Any) -> list[str]:
    """Every string in a JSON value that is an absolute path, in document order."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in absolute_paths_in(v)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in absolute_paths_in(v)]
    return [value] if isinstance(value, str) and is_absolute_path(value) else []
