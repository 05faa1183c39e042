"""Index a Speech Commands-layout folder into labelled, speaker-disjoint splits.

Layout: one folder per word holding ``<speaker>_nohash_<n>.wav`` clips, and
optionally ``_background_noise_/`` with long noise recordings,
``validation_list.txt`` and ``testing_list.txt``.

Splits ("train", "validation", "test") follow the TensorFlow speech_commands
example's ``which_set``: SHA-1 of the speaker part of the file name, so one
speaker never lands in two splits. Where the list files exist they win: a
listed file goes to its list's split, and the other files of a listed speaker
follow that speaker (so lists never split a speaker either); unlisted speakers
use the hash (the method the official lists were made with).

Several folders make one dataset (``TrainConfig.data`` as a list): every folder's clips are named
``<folder name>/<word>/<file>``, read through a folder of links in the cache (so the rest of the
pipeline sees one root), and split by the same speaker hash, so a speaker found in two folders lands
in one split; a speaker listed in one folder's lists takes every folder's clips of that speaker along.
The data manifest records each folder's content hash and no absolute path.

Classes: the keywords; ``_unknown_`` drawn from every other word; ``_silence_``
made of crops of the background-noise files at a wide range of loudness
(``silence_levels_dbfs``) plus a share of digital zero. Each noise file is cut
in time into train / validation / test portions so no noise sample is shared
between splits. Unreadable clips are skipped and listed, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..audio import decode_wav, read_wav
from ..errors import AudioFormatError, DataError
from ..model import fit_clip
from .config import SILENCE_LABEL, UNKNOWN_LABEL, TrainConfig

__all__ = [
    "SPLITS",
    "NOISE_DIR",
    "Clip",
    "DatasetIndex",
    "which_set",
    "speaker_of",
    "index_dataset",
    "link_folders",
    "load_clip_audio",
    "NoiseBank",
    "synthetic_negative_clips",
]

SPLITS = ("train", "validation", "test")
NOISE_DIR = "_background_noise_"
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # as in TensorFlow's speech_commands input_data.py
_NOHASH = re.compile(r"_nohash_.*$")


def speaker_of(filename: str) -> str:
    """Speaker part of ``<speaker>_nohash_<n>.wav`` (the whole stem if there is no ``_nohash_``)."""
    base = Path(filename).name
    stem = _NOHASH.sub("", base)
    return stem if stem != base else Path(base).stem


def which_set(filename: str, validation_percentage: float, testing_percentage: float) -> str:
    """The TensorFlow speech_commands split of a file, by a stable hash of its speaker."""
    digest = hashlib.sha1(speaker_of(filename).encode("utf-8")).hexdigest()
    percentage = (int(digest, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    if percentage < validation_percentage + testing_percentage:
        return "test"
    return "train"


@dataclass(frozen=True)
class Clip:
    """One example: a word clip, or a silence crop of a noise file.

    For silence, ``path`` is the noise file (``""`` = digital zero when the
    folder has no noise), ``offset_samples`` the crop start and
    ``level_dbfs`` the RMS level it is scaled to (``None`` = digital zero).
    """

    path: str
    label: str
    speaker: str
    split: str
    word: str
    sha256: str = ""
    offset_samples: int = 0
    level_dbfs: Optional[float] = None

    @property
    def is_silence(self) -> bool:
        return self.label == SILENCE_LABEL

    def key(self) -> str:
        """Content key for caches: file hash plus, for silence, crop and level."""
        if not self.is_silence:
            return self.sha256
        text = f"{self.sha256}:{self.offset_samples}:{self.level_dbfs}"
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class DatasetIndex:
    """The indexed dataset: clips of all splits, noise files, what was skipped."""

    root: Path
    clips: list[Clip]
    noise_files: list[dict] = field(default_factory=list)  # {"path", "sha256", "n_samples"}
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    labels: tuple[str, ...] = ()
    #: the folder names clip paths start with (several folders), or () for one folder
    folder_names: tuple[str, ...] = ()

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {s: {label: 0 for label in self.labels} for s in SPLITS}
        for c in self.clips:
            out[c.split][c.label] += 1
        return out

    def files(self) -> list[dict]:
        """Every file used: word clips (once) and noise files."""
        rows = [{"path": c.path, "label": c.label, "speaker": c.speaker, "split": c.split, "sha256": c.sha256}
                for c in self.clips if not c.is_silence]
        rows += [{"path": n["path"], "label": NOISE_DIR, "speaker": "", "split": "all", "sha256": n["sha256"]}
                 for n in self.noise_files]
        return sorted(rows, key=lambda r: r["path"])

    def silence(self) -> list[dict]:
        return [{"source": c.path, "split": c.split, "offset_samples": c.offset_samples,
                 "level_dbfs": c.level_dbfs} for c in self.clips if c.is_silence]

    @property
    def content_sha256(self) -> str:
        """One hash over every file's content, label and split, and the silence crops.

        Machine-independent: dataset files are named relative to the root already; files from
        elsewhere (synthetic negatives in the cache) by their last three path parts (synthetic set
        key, word, file), so the same data gives the same hash on any machine.
        """
        files = [{**r, "path": _portable(r["path"])} for r in self.files()]
        text = json.dumps({"files": files, "silence": self.silence()}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def folder_sha256(self) -> dict[str, str]:
        """Each folder's own content hash (several folders): its files' content, label and split."""
        out = {}
        for name in self.folder_names:
            files = [r for r in self.files() if r["path"].startswith(name + "/")]
            text = json.dumps(files, sort_keys=True, separators=(",", ":"))
            out[name] = hashlib.sha256(text.encode()).hexdigest()
        return out

    @property
    def root_name(self) -> str:
        """What the manifest calls the root: the folder, or the folders' names joined by ``+`` (several
        folders are read through a link folder in this machine's cache, which names nothing)."""
        return "+".join(self.folder_names) if self.folder_names else str(self.root)

    def manifest(self) -> dict:
        """The run directory's ``data_manifest.json``."""
        out = {"root": self.root_name, "content_sha256": self.content_sha256, "files": self.files(),
               "skipped": list(self.skipped), "counts": self.counts(), "silence": self.silence()}
        if self.folder_names:
            out["folders"] = [{"name": n, "content_sha256": h} for n, h in self.folder_sha256().items()]
        return out


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {line.strip().replace("\\", "/") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def _assign_splits(rel_paths: list[str], root: Path, config: TrainConfig,
                   prefixes: tuple[str, ...] = ("",)) -> dict[str, str]:
    listed: dict[str, str] = {}
    for prefix in prefixes:
        for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
            for p in _read_list(root / prefix / name):
                listed[prefix + p] = split
    speaker_split: dict[str, str] = {}
    for p, split in sorted(listed.items()):
        speaker_split.setdefault(speaker_of(p), split)
    out = {}
    for p in rel_paths:
        if p in listed:
            out[p] = listed[p]
        elif speaker_of(p) in speaker_split:
            out[p] = speaker_split[speaker_of(p)]
        else:
            out[p] = which_set(p, config.validation_percentage, config.testing_percentage)
    return out


def _check_file(path: Path, sample_rate_hz: int) -> tuple[str, int, str]:
    """(sha256, n_samples, "") or ("", 0, reason) for an unusable file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return "", 0, f"unreadable ({exc.strerror})"
    try:
        wav = decode_wav(data, name=path.name, sample_rate_hz=sample_rate_hz)
    except AudioFormatError as exc:
        return "", 0, str(exc)
    return hashlib.sha256(data).hexdigest(), len(wav.samples), ""


def _check_folder(root: Path) -> Path:
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; pass --data DIR (Speech Commands layout) or synthetic")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder; pass a Speech Commands-layout folder")
    return root


def link_folders(folders: Sequence[str | Path]) -> tuple[Path, tuple[str, ...]]:
    """One root for several dataset folders: a folder of links ``<name> -> folder`` in the cache.

    Names are the folders' own names, which must differ (they name the clips in manifests). The
    link folder is keyed by the folders' absolute paths and made atomically, so runs may share it.
    """
    from .featurize import cache_root

    roots = [_check_folder(f) for f in folders]
    names = tuple(r.name for r in roots)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"two data folders are both named {dup[0]!r}; clips are named by their folder, so "
                        "rename one (or link it under another name)")
    key = hashlib.sha256("\0".join(str(r) for r in roots).encode()).hexdigest()[:16]
    union = cache_root() / "data-links" / key
    if not all((union / n).resolve() == r.resolve() for n, r in zip(names, roots)):
        tmp = union.with_name(f".{key}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for n, r in zip(names, roots):
            (tmp / n).symlink_to(r, target_is_directory=True)
        shutil.rmtree(union, ignore_errors=True)
        try:
            os.replace(tmp, union)
        except OSError:  # another run made it first
            shutil.rmtree(tmp, ignore_errors=True)
    return union, names


def index_dataset(root: str | Path | Sequence[str | Path], config: TrainConfig) -> DatasetIndex:
    """Index ``root`` (a folder, or several as one dataset) for ``config``'s labels and splits; raises ``DataError``."""
    if isinstance(root, (str, Path)) or len(root) == 1:
        root = _check_folder(root if isinstance(root, (str, Path)) else root[0])
        names: tuple[str, ...] = ()
        prefixes = ("",)
    else:
        root, names = link_folders(root)
        prefixes = tuple(n + "/" for n in names)
    sr = config.features.sample_rate_hz
    word_dirs = sorted((p for prefix in prefixes for p in (root / prefix).iterdir()
                        if p.is_dir() and not p.name.startswith((".", "_")) and p.name not in config.exclude_words),
                       key=lambda p: (p.parent.name, p.name) if names else p.name)
    missing = [k for k in config.keywords
               if not any((root / prefix / k).is_dir() and any((root / prefix / k).glob("*.wav")) for prefix in prefixes)]
    if missing:
        found = ", ".join(sorted({p.name for p in word_dirs})[:8]) or "no word folders"
        where = " or ".join(str((root / p).resolve()) for p in prefixes)
        raise DataError(
            f"no clips for keyword {missing[0]!r} in {where} (found: {found}); expected {missing[0]}/*.wav "
            "in the Speech Commands layout"
        )
    rel_paths = [f"{d.relative_to(root).as_posix()}/{f.name}" for d in word_dirs for f in sorted(d.glob("*.wav"))]
    splits = _assign_splits(rel_paths, root, config, prefixes)
    clips: list[Clip] = []
    skipped: list[dict] = []
    for rel in rel_paths:
        word = rel.split("/")[-2]
        sha, _, reason = _check_file(root / rel, sr)
        if reason:
            skipped.append({"path": rel, "reason": reason})
            continue
        label = word if word in config.keywords else UNKNOWN_LABEL
        clips.append(Clip(path=rel, label=label, speaker=speaker_of(rel), split=splits[rel], word=word, sha256=sha))
    noise = []
    noise_paths = [f"{prefix}{NOISE_DIR}/{f.name}" for prefix in prefixes if (root / prefix / NOISE_DIR).is_dir()
                   for f in sorted((root / prefix / NOISE_DIR).glob("*.wav"))]
    for rel in noise_paths:
        f = root / rel
        sha, n, reason = _check_file(f, sr)
        if reason or n < config.features.clip_samples * 10:
            skipped.append({"path": rel, "reason": reason or "noise file shorter than 10 clips"})
            continue
        noise.append({"path": rel, "sha256": sha, "n_samples": n})
    rng = np.random.default_rng(config.seed)
    selected: list[Clip] = []
    for split in SPLITS:
        kw = [c for c in clips if c.split == split and c.label != UNKNOWN_LABEL]
        if not kw:
            raise DataError(
                f"the {split} split of {root} has no keyword clips ({len(clips)} usable clips, "
                f"{len(skipped)} skipped); it needs more speakers, or fix validation_list.txt/testing_list.txt"
            )
        unknown = [c for c in clips if c.split == split and c.label == UNKNOWN_LABEL]
        n_unknown = min(len(unknown), int(round(config.unknown_percentage / 100.0 * len(kw))))
        pick = sorted(rng.choice(len(unknown), size=n_unknown, replace=False).tolist()) if n_unknown else []
        n_silence = int(round(config.silence_percentage / 100.0 * len(kw)))
        selected += kw + [unknown[i] for i in pick] + _silence_clips(split, n_silence, noise, config, rng)
    return DatasetIndex(root=root, clips=selected, noise_files=noise, skipped=skipped, labels=tuple(config.labels),
                        folder_names=names)


def _portable(path: str) -> str:
    """A file's name for content hashes: relative paths as they are, absolute ones by their last three parts."""
    p = Path(path)
    return "/".join(p.parts[-3:]) if p.is_absolute() else path


def synthetic_negative_clips(folder: Path, config: TrainConfig) -> list[Clip]:
    """``config.synthetic_negatives`` clips drawn from a synthetic word folder, as training ``_unknown_``.

    Keywords and ``exclude_words`` are never drawn; the draw is seeded by
    ``config.seed``. Paths are absolute (the folder lives in the cache), so
    they resolve against any dataset root.
    """
    files = [f for d in sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
             if d.name not in config.keywords and d.name not in config.exclude_words for f in sorted(d.glob("*.wav"))]
    if not files:
        raise DataError(f"the synthetic word folder {folder} has no usable words; check [synthetic] other_words")
    rng = np.random.default_rng([config.seed, 11])
    n = min(config.synthetic_negatives, len(files))
    out = []
    for i in sorted(rng.choice(len(files), size=n, replace=False).tolist()):
        f = files[i]
        sha, _, reason = _check_file(f, config.features.sample_rate_hz)
        if reason:
            continue
        out.append(Clip(path=str(f.resolve()), label=UNKNOWN_LABEL, speaker="tts-" + speaker_of(f.name), split="train",
                        word=f.parent.name, sha256=sha))
    return out


def _split_range(split: str, n_samples: int, config: TrainConfig) -> tuple[int, int]:
    v, t = config.validation_percentage / 100.0, config.testing_percentage / 100.0
    bounds = {"train": (0.0, 1.0 - v - t), "validation": (1.0 - v - t, 1.0 - t), "test": (1.0 - t, 1.0)}[split]
    return int(bounds[0] * n_samples), int(bounds[1] * n_samples)


def _silence_clips(split: str, n: int, noise: list[dict], config: TrainConfig, rng: np.random.Generator) -> list[Clip]:
    out = []
    clip_n = config.features.clip_samples
    lo_db, hi_db = config.silence_levels_dbfs
    for i in range(n):
        zero = not noise or rng.random() < config.silence_zero_share
        if zero:
            out.append(Clip(path="", label=SILENCE_LABEL, speaker="_noise_", split=split, word="_zero_",
                            sha256="0" * 64, offset_samples=i, level_dbfs=None))
            continue
        src = noise[int(rng.integers(len(noise)))]
        start, stop = _split_range(split, src["n_samples"], config)
        offset = int(rng.integers(start, max(start + 1, stop - clip_n)))
        level = float(np.round(rng.uniform(lo_db, hi_db), 2))
        out.append(Clip(path=src["path"], label=SILENCE_LABEL, speaker="_noise_", split=split, word=NOISE_DIR,
                        sha256=src["sha256"], offset_samples=offset, level_dbfs=level))
    return out


class NoiseBank:
    """Background-noise recordings of a dataset, loaded once, sliced per split."""

    def __init__(self, root: Path, noise_files: list[dict], config: TrainConfig) -> None:
        self.config = config
        self.audio = {n["path"]: read_wav(root / n["path"], sample_rate_hz=config.features.sample_rate_hz).samples
                      for n in noise_files}

    def get(self, path: str) -> np.ndarray:
        return self.audio[path]

    def split_audio(self, split: str) -> list[np.ndarray]:
        """The portion of every noise file that belongs to ``split``."""
        out = []
        for a in self.audio.values():
            start, stop = _split_range(split, len(a), self.config)
            out.append(a[start:stop])
        return out


def scale_to_dbfs(samples: np.ndarray, level_dbfs: float) -> np.ndarray:
    """Scale ``samples`` so their RMS is ``level_dbfs`` (relative to full scale 1.0)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms <= 0:
        return np.zeros_like(samples, dtype=np.float32)
    return np.clip(samples * (10 ** (level_dbfs / 20.0) / rms), -1.0, 1.0).astype(np.float32)


def load_clip_audio(root: Path, clip: Clip, config: TrainConfig, noise: NoiseBank | None) -> np.ndarray:
    """The clip's samples: float32, exactly one clip long (short clips zero-padded, centred)."""
    n = config.features.clip_samples
    if clip.is_silence:
        if not clip.path or clip.level_dbfs is None or noise is None:
            return np.zeros(n, np.float32)
        crop = noise.get(clip.path)[clip.offset_samples:clip.offset_samples + n]
        return fit_clip(scale_to_dbfs(crop, clip.level_dbfs), n)
    audio = read_wav(root / clip.path, sample_rate_hz=config.features.sample_rate_hz).samples
    return fit_clip(audio, n)
