"""The pipeline's ledger (``OUT/pipeline.json``): stage keys, statuses, timings; what it reports to a display.

Every stage records a **key**: the SHA-256 of its inputs (the data's content
hash, the resolved configuration, the device, the keys of the stages it
depends on and the code version). A stage whose key is unchanged and whose
outputs are still there is reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import KwsError

__all__ = ["LEDGER_NAME", "LEDGER_FORMAT", "StageEvent", "PipelineStageError", "read_json", "read_ledger",
           "code_version",
           "stage_key", "why_not_reused", "cpu_seconds", "ROOMS"]

LEDGER_NAME = "pipeline.json"
LEDGER_FORMAT = 1
#: the sub-packages whose source makes the code version (with kws_edge itself)
ROOMS = ("training", "converters", "devices", "pipeline", "workstation")


@dataclass(frozen=True)
class StageEvent:
    """What the pipeline reports to its display.

    ``kind``: "start", "progress", "done", "reused", "failed", "interrupted", "skipped".
    """

    kind: str
    stage: str
    index: int
    total: int
    message: str = ""
    done: int = 0
    of: int = 0
    seconds: float = 0.0


class PipelineStageError(KwsError):
    """A stage failed; earlier stages' outputs are kept."""

    exit_code = 1

    def __init__(self, stage: str, cause: BaseException, out_dir: Path) -> None:
        self.stage = stage
        self.cause = cause
        text = str(cause) if isinstance(cause, KwsError) else f"{type(cause).__name__}: {cause}"
        text = " ".join(text.split())  # one line, whatever the cause's message looked like
        super().__init__(
            f"stage '{stage}' failed: {text} (earlier stages' outputs are kept in {out_dir}; "
            "fix the cause and run the same command again to resume)"
        )
        if isinstance(cause, KwsError):
            self.exit_code = cause.exit_code if cause.exit_code != 2 else 1


def stage_key(obj: Any) -> str:
    """SHA-256 of a stage's inputs (canonical JSON)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


_REQUIRED = object()


def read_json(path: str | Path, default: Any = _REQUIRED) -> Any:
    """A JSON file the pipeline wrote; ``default`` when it is missing or unreadable (else ``KwsError``)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if default is not _REQUIRED:
            return default
        raise KwsError(f"cannot read {path} ({exc}); run the stage that writes it again") from None


def read_ledger(out_dir: str | Path) -> dict[str, Any]:
    """The ledger of a pipeline output folder (empty if there is none or it is unreadable)."""
    data = read_json(Path(out_dir) / LEDGER_NAME, None)
    if isinstance(data, dict) and isinstance(data.get("stages"), dict):
        return data
    return {"format_version": LEDGER_FORMAT, "stages": {}}


def code_version() -> str:
    """kws-edge version and a SHA-256 of the installed source (every ``.py`` and ``.toml`` of the package).

    A content hash rather than the git commit: it changes exactly when the
    code that produces the artifacts changes, also for uncommitted edits and
    for installs without git. (The git commit is recorded in run.json and the
    manifests for provenance.)
    """
    import kws_edge

    roots = {Path(kws_edge.__file__).resolve().parent}
    for sub in ROOMS:
        try:
            mod = __import__(f"kws_edge.{sub}", fromlist=["__file__"])
            roots.add(Path(mod.__file__).resolve().parent)
        except ImportError:
            continue
    h = hashlib.sha256()
    for root in sorted(roots):
        for p in sorted(root.rglob("*")):
            if p.suffix in (".py", ".toml") and p.is_file() and "__pycache__" not in p.parts:
                h.update(p.relative_to(root.parent).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return f"{__version__}+src.{h.hexdigest()[:16]}"


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def why_not_reused(forced: bool, entry: dict[str, Any], key: str, inputs: dict[str, Any], code: str,
                    outputs_ok: Callable[[], bool]) -> str:
    if forced:
        return "forced"
    if not entry:
        return "first run"
    if entry.get("status") != "done":
        return f"previous attempt {entry.get('status', 'unknown')}"
    if entry.get("key") != key:
        old = entry.get("inputs") or {}
        changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
        if entry.get("code") not in (None, code):
            changed.append("code version")
        return "inputs changed: " + (", ".join(changed) or "code version")
    if not outputs_ok():
        return "outputs missing or damaged"
    return "rerun"
