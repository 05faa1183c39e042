"""The stamps every artifact carries: the time it was made (UTC) and the code that made it.

One helper each, so run files, manifests, telemetry, the registry and the ledger agree on the
format: ``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z``.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

__all__ = ["utc_now", "parse_utc", "git_commit"]

_PRECISION = {"seconds": 0, "milliseconds": 3, "microseconds": 6}


def utc_now(timespec: str = "seconds") -> str:
    """The current time in UTC as ``2026-12-03T08:15:02Z`` (``timespec``: seconds, milliseconds, microseconds)."""
    if timespec not in _PRECISION:
        raise ValueError(f"timespec {timespec!r} must be one of {', '.join(_PRECISION)}")
    now = datetime.now(timezone.utc)
    text = now.strftime("%Y-%m-%dT%H:%M:%S")
    digits = _PRECISION[timespec]
    return text + (f".{now.microsecond:06d}"[:digits + 1] if digits else "") + "Z"


def parse_utc(text: Optional[str]) -> Optional[float]:
    """POSIX seconds of a :func:`utc_now` stamp (any precision); None when it is missing or not one."""
    if not text or not text.endswith("Z"):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def git_commit(path: str | Path | None = None) -> str:
    """Commit of the git checkout holding ``path`` (default: this package), ``+dirty`` when tracked files changed.

    "" when there is no git or no checkout (an installed wheel). Untracked files do not make it dirty.
    """
    here = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""
