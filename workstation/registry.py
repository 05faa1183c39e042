"""A local model registry: immutable, content-addressed bundle versions with stages.

Layout of a registry directory::

    ROOT/
      .lock                      the file lock (``filelock``) held while the registry changes
      stages.json                {"format_version", "stages": {stage: id}, "history": [event, ...]}
      versions/<id>/entry.json   what was registered: id, content hash, per-file SHA-256, name, version,
                                 provenance digest (git commit, data hash, config hash), time, source
      versions/<id>/bundle/      an exact, read-only copy of the bundle directory

A version's ``id`` is the first 16 hex digits of the SHA-256 of the bundle's
file listing (``name sha256`` per file, sorted), so the same bundle always
gets the same id and adding it twice is a no-op. Versions are never
rewritten: ``add`` assembles the copy in a temporary sibling and renames it
into place; ``promote`` rewrites ``stages.json`` atomically under the lock,
so concurrent writers (processes) cannot corrupt the registry.

A damaged version (missing or edited file, unreadable ``entry.json``) is
reported by :meth:`ModelRegistry.list` as broken, with the reason; the other
versions stay usable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from ..atomic import DiskFullError, atomic_write_json, deferred_sigint, is_disk_full, pid_alive
from ..bundle import Manifest, Metrics, load_bundle
from ..config import flatten, to_dict
from ..errors import BackendUnavailableError, BundleError, KwsError, RegistryError
from ..stamps import utc_now
from . import WORKSTATION_EXTRA

__all__ = [
    "require_filelock",
    "ModelRegistry",
    "RegistryEntry",
    "BrokenEntry",
    "Listing",
    "STAGES",
    "default_registry_path",
    "bundle_content_digest",
    "diff_entries",
]

FORMAT_VERSION = 1
STAGES = ("candidate", "production", "archived")
ID_LENGTH = 16
_LOCK_TIMEOUT_S = 60.0
_ADD_PREFIX = ".add-"
_OLD_LEFTOVER_S = 3600.0


def default_registry_path() -> Path:
    """``$KWS_REGISTRY``, else ``$XDG_DATA_HOME/kws-edge/registry`` (``~/.local/share/...``)."""
    env = os.environ.get("KWS_REGISTRY")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kws-edge" / "registry"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _bundle_files(path: Path) -> dict[str, str]:
    files = {}
    for p in sorted(path.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts):
            files[p.relative_to(path).as_posix()] = _sha256_file(p)
    return files


def bundle_content_digest(files: dict[str, str]) -> str:
    """SHA-256 of a bundle's sorted ``name sha256`` listing."""
    text = "".join(f"{name} {digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RegistryEntry:
    """A registered, verified version."""

    id: str
    path: Path
    info: dict[str, Any]
    stages: tuple[str, ...] = ()

    @property
    def bundle_path(self) -> Path:
        return self.path / "bundle"

    @property
    def name(self) -> str:
        return str(self.info.get("name", ""))

    @property
    def version(self) -> str:
        return str(self.info.get("version", ""))

    def manifest(self) -> Manifest:
        """The version's manifest, typed (a bundle of an older format is read as the current one)."""
        return load_bundle(self.bundle_path).manifest


@dataclass(frozen=True)
class BrokenEntry:
    """A version directory that fails verification, and why."""

    id: str
    path: Path
    reason: str
    stages: tuple[str, ...] = ()


@dataclass
class Listing:
    entries: list[RegistryEntry] = field(default_factory=list)
    broken: list[BrokenEntry] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)
    #: ``(stage, id)`` of stages that point at a version the registry does not hold
    dangling: list[tuple[str, str]] = field(default_factory=list)
    #: leftovers of interrupted adds removed while listing: ``(folder name, bytes)``
    cleaned: list[tuple[str, int]] = field(default_factory=list)


class ModelRegistry:
    """A registry directory (created on first write)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_registry_path()
        self.versions_dir = self.root / "versions"
        self.stages_path = self.root / "stages.json"
        self.lock_path = self.root / ".lock"

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def lock(self, timeout_s: float = _LOCK_TIMEOUT_S) -> Iterator[None]:
        """Exclusive lock on the registry between processes (``filelock``: flock on POSIX, msvcrt on Windows)."""
        filelock = require_filelock()
        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.lock_path), timeout=timeout_s)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise RegistryError(f"registry lock {self.lock_path} is held by another process for over "
                                f"{timeout_s:.0f} s; wait for it to finish or check for a hung kws process") from None
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------------ stages
    def _read_stages(self) -> dict[str, Any]:
        if not self.stages_path.exists():
            return {"format_version": FORMAT_VERSION, "stages": {}, "history": []}
        try:
            data = json.loads(self.stages_path.read_text(encoding="utf-8"))
            _check_stages_data(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise RegistryError(
                f"{self.stages_path} is damaged ({str(exc)[:160]}); restore it from a backup or delete it to clear "
                "all stages"
            ) from None
        except OSError as exc:
            raise RegistryError(f"cannot read {self.stages_path}: {exc.strerror or exc}") from None
        data.setdefault("history", [])
        return data

    def stages(self) -> dict[str, str]:
        """``{stage: version id}``."""
        return dict(self._read_stages()["stages"])

    def history(self) -> list[dict[str, Any]]:
        return list(self._read_stages()["history"])

    def _stages_of(self, vid: str, stages: dict[str, str]) -> tuple[str, ...]:
        return tuple(sorted(s for s, v in stages.items() if v == vid))

    # ------------------------------------------------------------------ add
    def add(self, bundle_path: str | Path, *, stage: Optional[str] = None, note: str = "",
            source: Optional[str] = None, new_stage: Optional[str] = None) -> tuple[RegistryEntry, bool]:
        """Register a bundle; returns ``(entry, created)``. The same content twice gives the same entry.

        The bundle is verified with :func:`~kws_edge.bundle.load_bundle` first,
        so a tampered bundle is refused. ``stage`` puts the version in that stage
        whether it is new or not (an explicit promotion); ``new_stage`` only a
        version registered for the first time, so re-adding a bundle never takes
        a stage away from a newer version unless asked.
        """
        bundle_path = Path(bundle_path)
        try:
            bundle = load_bundle(bundle_path)
        except BundleError as exc:
            raise RegistryError(f"cannot register {bundle_path}: {exc}") from None
        for s in (stage, new_stage):
            if s is not None:
                _check_stage(s)
        files = _bundle_files(bundle_path)
        digest = bundle_content_digest(files)
        vid = digest[:ID_LENGTH]
        m = bundle.manifest
        prov = m.provenance
        info = {
            "format_version": FORMAT_VERSION,
            "id": vid,
            "content_sha256": digest,
            "files": files,
            "name": m.name,
            "version": m.version,
            "model_sha256": m.model.sha256,
            "model_size_bytes": m.model.size_bytes,
            "git_commit": prov.git_commit or None,
            "data_sha256": prov.data_sha256 or None,
            "config_sha256": prov.config_sha256 or None,
            "seed": prov.seed,
            "device": m.budgets.device or None,
            "within_budget": m.budgets.within_budget if m.budgets.device else None,
            "added_utc": utc_now("microseconds"),
            "source": source if source is not None else str(bundle_path.resolve()),
            "note": note,
        }
        target = self.versions_dir / vid
        created = False
        # once the version is committed, Ctrl-C waits until add() returns: a committed add is never reported
        # as interrupted (self.interrupted_after_commit tells the caller that one arrived)
        after_commit = contextlib.ExitStack()
        self.interrupted_after_commit = False
        with after_commit:
            if not self._is_valid(target):
                self.versions_dir.mkdir(parents=True, exist_ok=True)
                self.clean_leftovers()
                tmp = Path(tempfile.mkdtemp(prefix=f"{_ADD_PREFIX}{vid}-{os.getpid()}-", dir=self.versions_dir))
                try:
                    shutil.copytree(bundle_path, tmp / "bundle",
                                    ignore=shutil.ignore_patterns(".*"))
                    got = _bundle_files(tmp / "bundle")
                    if got != files:
                        raise RegistryError(f"{bundle_path} changed while it was being registered; try again")
                    (tmp / "entry.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
                    _make_read_only(tmp)
                    with self.lock():
                        if not self._is_valid(target):
                            deferred = after_commit.enter_context(deferred_sigint())
                            if target.exists():  # a broken leftover with this id: move it aside for inspection
                                os.replace(target, self.versions_dir / f".broken-{vid}-{int(time.time() * 1000)}")
                            os.replace(tmp, target)
                            created = True
                            self._log_event_locked({"event": "add", "id": vid, "name": m.name, "version": m.version})
                except OSError as exc:  # shutil.Error (an OSError) carries a list of (src, dst, reason)
                    if is_disk_full(exc):
                        raise DiskFullError(f"no space left on the device while adding {bundle_path} to registry "
                                            f"{self.root}; nothing was registered: free some space and retry") from None
                    reason = exc.strerror or (exc.args[0][0][2] if isinstance(exc, shutil.Error) and exc.args
                                              and exc.args[0] else exc)
                    raise RegistryError(f"cannot write to registry {self.root}: {str(reason)[:200]}") from None
                finally:
                    if tmp.exists():
                        _rmtree(tmp)
            if stage is not None or (created and new_stage is not None):
                self.promote(vid, stage if stage is not None else new_stage)
            entry = self.get(vid)
            if created:
                self.interrupted_after_commit = bool(deferred[0])
        return entry, created

    def clean_leftovers(self) -> list[tuple[str, int]]:
        """Remove the temporary folders of adds whose process is gone (killed, power cut); returns (name, bytes).

        A folder is ``.add-<id>-<pid>-<random>``; one whose pid still runs is a concurrent add and stays.
        Folders of older kws-edge versions carry no pid: they are removed once an hour old.
        """
        removed: list[tuple[str, int]] = []
        if not self.versions_dir.is_dir():
            return removed
        for p in self.versions_dir.iterdir():
            if not p.name.startswith(_ADD_PREFIX) or not p.is_dir():
                continue
            parts = p.name[len(_ADD_PREFIX):].split("-")
            stale = False
            if len(parts) >= 3 and parts[1].isdigit():
                stale = not pid_alive(int(parts[1]))
            else:
                with contextlib.suppress(OSError):
                    stale = time.time() - p.stat().st_mtime > _OLD_LEFTOVER_S
            if stale:
                size = _folder_bytes(p)
                _rmtree(p)
                if not p.exists():
                    removed.append((p.name, size))
        return removed

    def _log_event_locked(self, event: dict[str, Any]) -> None:
        data = self._read_stages()
        data["history"].append({"time_utc": utc_now("microseconds"), **event})
        atomic_write_json(self.stages_path, data)

    # ------------------------------------------------------------------ read
    def _verify(self, vdir: Path) -> dict[str, Any]:
        """Return the entry info or raise RegistryError naming what is wrong."""
        try:
            info = json.loads((vdir / "entry.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError("entry.json is missing") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryError(f"entry.json is not valid JSON ({exc})") from None
        if not isinstance(info, dict) or not isinstance(info.get("files"), dict):
            raise RegistryError("entry.json has no file list")
        if info.get("id") != vdir.name:
            raise RegistryError(f"entry.json names id {info.get('id')!r}, not {vdir.name!r}")
        bdir = vdir / "bundle"
        if not bdir.is_dir():
            raise RegistryError("the bundle directory is missing")
        try:
            files = _bundle_files(bdir)
        except OSError as exc:
            raise RegistryError(f"cannot read the bundle ({exc.strerror or exc})") from None
        for name, digest in info["files"].items():
            if name not in files:
                raise RegistryError(f"bundle file {name} is missing")
            if files[name] != digest:
                raise RegistryError(f"bundle file {name} does not match its registered SHA-256 (edited or corrupted)")
        extra = sorted(set(files) - set(info["files"]))
        if extra:
            raise RegistryError(f"bundle holds an unregistered file {extra[0]}")
        if bundle_content_digest(files)[:ID_LENGTH] != vdir.name:
            raise RegistryError("the content hash does not match the version id")
        return info

    def _is_valid(self, vdir: Path) -> bool:
        if not vdir.exists():
            return False
        try:
            self._verify(vdir)
            return True
        except RegistryError:
            return False

    def list(self) -> Listing:
        """Every version, verified; broken ones are listed with the reason, not raised."""
        stages = self.stages()
        out = Listing(stages=stages)
        if not self.versions_dir.is_dir():
            out.dangling = sorted(stages.items())
            return out
        out.cleaned = self.clean_leftovers()
        for vdir in sorted(self.versions_dir.iterdir()):
            if vdir.name.startswith(".") or not vdir.is_dir():
                continue
            try:
                info = self._verify(vdir)
            except RegistryError as exc:
                out.broken.append(BrokenEntry(vdir.name, vdir, str(exc), self._stages_of(vdir.name, stages)))
                continue
            out.entries.append(RegistryEntry(vdir.name, vdir, info, self._stages_of(vdir.name, stages)))
        out.entries.sort(key=lambda e: (e.info.get("added_utc", ""), e.id))
        held = {e.id for e in out.entries} | {b.id for b in out.broken}
        out.dangling = sorted((stage, vid) for stage, vid in stages.items() if vid not in held)
        return out

    def resolve(self, ref: str) -> str:
        """A version id from an id, a unique id prefix (4+ characters), a stage name or ``name@version``."""
        ref = ref.strip()
        stages = self.stages()
        if ref in stages:
            return stages[ref]
        if ref in STAGES:
            raise RegistryError(f"no version is in stage {ref!r}; promote one with: kws registry promote ID --to {ref}")
        ids = [p.name for p in self.versions_dir.iterdir() if not p.name.startswith(".")] \
            if self.versions_dir.is_dir() else []
        if "@" in ref:
            name, _, version = ref.partition("@")
            hits = [e.id for e in self.list().entries if e.name == name and e.version == version]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise RegistryError(f"{ref} matches {len(hits)} versions ({', '.join(hits)}); use an id")
            raise RegistryError(f"no registered version is {ref}; see kws registry list")
        if len(ref) < 4:
            raise RegistryError(f"version reference {ref!r} is too short; give at least 4 characters of an id")
        hits = [i for i in ids if i.startswith(ref.lower())]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise RegistryError(f"{ref!r} matches {len(hits)} versions; give more characters")
        raise RegistryError(f"no version {ref!r} in registry {self.root}; see kws registry list")

    def get(self, ref: str) -> RegistryEntry:
        """A verified entry; a broken one raises RegistryError with the reason."""
        vid = self.resolve(ref)
        vdir = self.versions_dir / vid
        try:
            info = self._verify(vdir)
        except RegistryError as exc:
            raise RegistryError(f"registry version {vid} is broken: {exc}") from None
        return RegistryEntry(vid, vdir, info, self._stages_of(vid, self.stages()))

    # ------------------------------------------------------------------ stages
    def promote(self, ref: str, stage: str = "production") -> Optional[str]:
        """Put a version in ``stage``; returns the id it replaced there (or None).

        Promoting to ``production`` moves the version that was there to
        ``archived``. A broken version cannot be promoted.
        """
        _check_stage(stage)
        vid = self.get(ref).id
        with self.lock():
            data = self._read_stages()
            previous = data["stages"].get(stage)
            if previous == vid:
                return previous
            data["stages"][stage] = vid
            if stage == "production" and previous:
                data["stages"]["archived"] = previous
            if stage != "candidate" and data["stages"].get("candidate") == vid:
                del data["stages"]["candidate"]
            data["history"].append({"time_utc": utc_now("microseconds"), "event": "promote", "id": vid, "stage": stage,
                                    "previous": previous})
            atomic_write_json(self.stages_path, data)
        return previous

    def diff(self, ref_a: str, ref_b: str) -> dict[str, Any]:
        """Compare two versions' metrics, config, data hash, model and budgets."""
        return diff_entries(self.get(ref_a), self.get(ref_b))


def _check_stages_data(data: Any) -> None:
    """``stages.json`` as strictly as any config: raises ValueError naming the first thing wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"the top level is a {type(data).__name__}, not an object")
    unknown = sorted(set(data) - {"format_version", "stages", "history"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    if data.get("format_version", FORMAT_VERSION) != FORMAT_VERSION or isinstance(data.get("format_version"), bool):
        raise ValueError(f"format_version {str(data.get('format_version'))[:20]!r} is not {FORMAT_VERSION}")
    stages = data.get("stages")
    if not isinstance(stages, dict):
        raise ValueError("no 'stages' object")
    for stage, vid in stages.items():
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage[:40]!r}")
        if not isinstance(vid, str) or len(vid) != ID_LENGTH or any(c not in "0123456789abcdef" for c in vid):
            raise ValueError(f"stage {stage!r} holds {type(vid).__name__} {str(vid)[:40]!r}, not a version id")
    history = data.get("history", [])
    if not isinstance(history, list):
        raise ValueError(f"'history' is a {type(history).__name__}, not a list")
    for i, event in enumerate(history):
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise ValueError(f"history[{i}] is not an event object")


def _folder_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise RegistryError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")


def diff_entries(a: RegistryEntry, b: RegistryEntry) -> dict[str, Any]:
    """Differences between two registry entries.

    ``metrics``: every number of the typed manifests' ``metrics`` by its path (the same figure has the
    same path in every bundle, since every figure is defined once: ``streaming.report.score.false_reject_rate``
    is the one streaming evaluation's FRR; a format-2 pipeline bundle's own stream stays under
    ``extra.streaming_before_format_3``, not beside it), with both values and ``b - a``; confusion
    matrices and curves left out; ``config``: the training-configuration keys whose values differ;
    ``data``: both data hashes and whether they are equal; ``model``: size, peak activation memory,
    MACs, SHA-256; ``budgets``: device and verdict of each.
    """
    ma, mb = a.manifest(), b.manifest()
    fa, fb = _numbers(ma.metrics), _numbers(mb.metrics)
    metrics = []
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key), fb.get(key)
        num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        if not (num(va) or num(vb)):
            continue
        delta = (vb - va) if num(va) and num(vb) else None
        metrics.append({"key": key, "a": va, "b": vb, "delta": delta})
    ca, cb = flatten(ma.provenance.config), flatten(mb.provenance.config)
    config = [{"key": k, "a": ca.get(k), "b": cb.get(k)} for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]
    model_keys = ("size_bytes", "peak_activation_bytes", "weight_bytes", "macs_per_inference", "sha256", "quantization")
    model = [{"key": k, "a": getattr(ma.model, k), "b": getattr(mb.model, k)} for k in model_keys]
    da, db = a.info.get("data_sha256"), b.info.get("data_sha256")
    return {
        "a": {"id": a.id, "name": a.name, "version": a.version, "git_commit": a.info.get("git_commit")},
        "b": {"id": b.id, "name": b.name, "version": b.version, "git_commit": b.info.get("git_commit")},
        "identical": a.id == b.id,
        "metrics": metrics,
        "config": config,
        "data": {"a": da, "b": db, "same": da == db},
        "model": model,
        "budgets": {"a": {"device": ma.budgets.device or None,
                          "within_budget": ma.budgets.within_budget if ma.budgets.device else None},
                    "b": {"device": mb.budgets.device or None,
                          "within_budget": mb.budgets.within_budget if mb.budgets.device else None}},
    }


def _numbers(metrics: Metrics) -> dict[str, float]:
    """Every number of a typed ``metrics`` by its path; confusion matrices and curves left out."""
    return {k: v for k, v in flatten(to_dict(metrics)).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ---------------------------------------------------------------------- helpers
def _make_read_only(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            os.chmod(p, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _rmtree(path: Path) -> None:
    def onerror(func, p, _exc):  # read-only files inside: make writable, retry
        with contextlib.suppress(OSError):
            os.chmod(p, stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
            func(p)

    shutil.rmtree(path, onerror=onerror)


def require_filelock() -> Any:
    """The ``filelock`` module, or one line naming the extra that installs it."""
    try:
        import filelock
    except ImportError:
        raise BackendUnavailableError(f"the model registry needs the workstation extra (filelock): "
                                      f"pip install {WORKSTATION_EXTRA}") from None
    return filelock
