"""Clips to MFCC features, through :func:`kws_edge.features.mfcc` only.

Clean (un-augmented) features are cached on disk, one ``.npy`` per clip, keyed
by the clip's content hash and the hash of the feature configuration:
``$KWS_EDGE_CACHE/features/<feature-config-hash>/<key[:2]>/<key>.npy``
(``KWS_EDGE_CACHE`` defaults to ``~/.cache/kws-edge``). Augmented copies are
recomputed (they depend on the seed) but deterministically: copy ``j`` of clip
``i`` uses ``numpy.random.default_rng([seed, i, j])`` whatever the number of
worker processes.

Extraction runs in a process pool (spawn, so it is safe after TensorFlow was
imported) and reports progress through a ``progress(done, total)`` callback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..config import config_hash
from ..features import mfcc
from .augment import augment_audio
from .config import TrainConfig
from .dataset import Clip, NoiseBank, load_clip_audio

__all__ = ["cache_root", "clean_features", "augmented_features", "FeatureStats"]

Progress = Callable[[int, int], None]
_CHUNK = 64
_IN_PROCESS_BELOW = 400


def cache_root() -> Path:
    return Path(os.environ.get("KWS_EDGE_CACHE", "~/.cache/kws-edge")).expanduser()


@dataclasses.dataclass
class FeatureStats:
    """What a feature extraction did (for the run report)."""

    n_clips: int = 0
    cache_hits: int = 0
    computed: int = 0
    #: augmented copies read from / computed for the whole-set augmentation cache
    augmented_hits: int = 0
    augmented_computed: int = 0


# ---- worker side -----------------------------------------------------------------------------

_W: dict = {}


def _init_worker(root: str, config: TrainConfig, noise_files: list[dict], split: str) -> None:
    _W.clear()
    _W.update(root=Path(root), config=config, noise_files=noise_files, split=split, bank=None)


def _bank() -> NoiseBank | None:
    if _W["bank"] is None and _W["noise_files"]:
        _W["bank"] = NoiseBank(_W["root"], _W["noise_files"], _W["config"])
    return _W["bank"]


def _clean_task(clips: list[Clip]) -> np.ndarray:
    cfg: TrainConfig = _W["config"]
    bank = _bank()
    return np.stack([mfcc(load_clip_audio(_W["root"], c, cfg, bank), cfg.features) for c in clips])


def _augment_task(task: tuple[int, list[Clip], int, int]) -> np.ndarray:
    first, clips, copies, seed = task
    cfg: TrainConfig = _W["config"]
    bank = _bank()
    noise = bank.split_audio(_W["split"]) if bank is not None else []
    out = []
    for i, c in enumerate(clips):
        audio = load_clip_audio(_W["root"], c, cfg, bank)
        for j in range(copies):
            rng = np.random.default_rng([seed, first + i, j])
            aug = augment_audio(audio, rng, cfg.augment, noise, sample_rate_hz=cfg.features.sample_rate_hz)
            out.append(mfcc(aug, cfg.features))
    return np.stack(out) if out else np.zeros((0, cfg.features.frames_per_clip, cfg.features.n_cepstra), np.float32)


# ---- driver side -----------------------------------------------------------------------------

def _workers(n_items: int, workers: int | None) -> int:
    if workers is None:
        workers = min(os.cpu_count() or 1, 4)
    return 1 if n_items < _IN_PROCESS_BELOW else max(1, workers)


_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def single_threaded_blas():
    """Limit BLAS to one thread (in this process, and in processes spawned inside the block).

    The feature matrices are tiny (49 x 513 @ 513 x 40); a multi-threaded
    OpenBLAS makes each product about 25x slower (1.6 ms instead of 0.06 ms
    measured here) when the cores are busy, which they are during extraction.
    """
    saved = {k: os.environ.get(k) for k in _BLAS_ENV}
    os.environ.update({k: "1" for k in _BLAS_ENV})
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - optional
            limiter = contextlib.nullcontext()
        else:
            limiter = threadpool_limits(1, user_api="blas")
        with limiter:
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(func, tasks: list, sizes: list[int], init_args: tuple, workers: int, progress: Progress | None,
         total: int) -> list[np.ndarray]:
    results = []
    done = 0
    with single_threaded_blas():
        if workers == 1:
            _init_worker(*init_args)
            for t, size in zip(tasks, sizes):
                results.append(func(t))
                done += size
                if progress:
                    progress(done, total)
            return results
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
            for r, size in zip(pool.imap(func, tasks), sizes):
                results.append(r)
                done += size
                if progress:
                    progress(done, total)
    return results


def clean_features(root: Path, clips: list[Clip], config: TrainConfig, noise_files: list[dict], *,
                   cache: bool = True, workers: int | None = None, progress: Progress | None = None,
                   stats: FeatureStats | None = None) -> np.ndarray:
    """Features of every clip, un-augmented [shape=(n, frames, n_cepstra), float32], with the disk cache."""
    fc = config.features
    shape = (fc.frames_per_clip, fc.n_cepstra)
    out = np.zeros((len(clips),) + shape, np.float32)
    folder = cache_root() / "features" / config_hash(fc)[:16]
    missing: list[int] = []
    for i, c in enumerate(clips):
        path = folder / c.key()[:2] / f"{c.key()}.npy"
        if cache and path.is_file():
            try:
                arr = np.load(path)
                if arr.shape == shape:
                    out[i] = arr
                    continue
            except (OSError, ValueError):
                pass
        missing.append(i)
    if stats is not None:
        stats.n_clips += len(clips)
        stats.cache_hits += len(clips) - len(missing)
        stats.computed += len(missing)
    if progress:
        progress(len(clips) - len(missing), len(clips))
    if not missing:
        return out
    tasks = [[clips[i] for i in missing[k:k + _CHUNK]] for k in range(0, len(missing), _CHUNK)]
    init = (str(root), config, noise_files, "train")
    hits = len(clips) - len(missing)
    report = (lambda d, t: progress(hits + d, len(clips))) if progress else None
    results = _run(_clean_task, tasks, [len(t) for t in tasks], init, _workers(len(missing), workers), report,
                   len(missing))
    computed = np.concatenate(results)
    for i, feats in zip(missing, computed):
        out[i] = feats
        if cache:
            key = clips[i].key()
            import io

            buf = io.BytesIO()
            np.save(buf, feats)
            atomic_write_bytes(folder / key[:2] / f"{key}.npy", buf.getvalue())
    return out


#: TrainConfig fields that cannot change the audio or features of a clip (left out of the augmentation key)
_TRAINING_ONLY = ("model", "epochs", "batch_size", "learning_rate", "weight_decay", "representative_samples",
                  "label_smoothing", "average_last_epochs", "averaging_lr_fraction",
                  "focal_gamma")


def _augmented_cache_path(clips: list[Clip], config: TrainConfig, noise_files: list[dict], split: str) -> Path:
    """``$KWS_EDGE_CACHE/augmented/<key>.npy``: key = config (minus training-only fields), split, clips, noise."""
    import hashlib
    import json

    from ..config import to_dict

    cfg = {k: v for k, v in to_dict(config).items() if k not in _TRAINING_ONLY}
    h = hashlib.sha256(json.dumps({"config": cfg, "split": split, "noise": sorted(n["sha256"] for n in noise_files)},
                                  sort_keys=True).encode())
    for c in clips:
        h.update(c.key().encode())
    return cache_root() / "augmented" / f"{h.hexdigest()}.npy"


def augmented_features(root: Path, clips: list[Clip], config: TrainConfig, noise_files: list[dict], *,
                       split: str = "train", workers: int | None = None,
                       progress: Progress | None = None, cache: bool = False,
                       stats: FeatureStats | None = None) -> np.ndarray:
    """``config.augment.copies`` augmented copies per clip, clip-major [shape=(n*copies, frames, n_cepstra)].

    The whole set is cached (one ``.npy`` keyed by everything it depends on),
    so a second run, or another worker of a multi-worker run on the same
    machine, does not recompute it.
    """
    copies = config.augment.copies
    fc = config.features
    if copies == 0 or not clips:
        return np.zeros((0, fc.frames_per_clip, fc.n_cepstra), np.float32)
    n = len(clips) * copies
    path = _augmented_cache_path(clips, config, noise_files, split) if cache else None
    if path is not None and path.is_file():
        try:
            arr = np.load(path)
            if arr.shape == (n, fc.frames_per_clip, fc.n_cepstra) and arr.dtype == np.float32:
                if stats is not None:
                    stats.augmented_hits += n
                if progress:
                    progress(n, n)
                return arr
        except (OSError, ValueError):
            pass
    tasks = [(k, clips[k:k + _CHUNK], copies, config.seed) for k in range(0, len(clips), _CHUNK)]
    init = (str(root), config, noise_files, split)
    results = _run(_augment_task, tasks, [len(t[1]) * copies for t in tasks], init,
                   _workers(n, workers), progress, n)
    out = np.concatenate(results).astype(np.float32)
    if stats is not None:
        stats.augmented_computed += n
    if path is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, out)
        atomic_write_bytes(path, buf.getvalue())
    return out
