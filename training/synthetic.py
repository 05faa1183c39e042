"""The built-in synthetic dataset: eSpeak NG speech and generated noise, pip only.

eSpeak NG comes from the ``espeakng-loader`` wheel (library + voice data) and
is driven through ctypes (no apt package, no subprocess). A "speaker" is one
base English voice with one of eSpeak's voice variants; every utterance gets
its own pitch, pitch range and speed. The result is written as a Speech
Commands-layout folder (``<word>/<speaker>_nohash_<n>.wav`` plus
``_background_noise_/{white,pink,brown,babble}.wav``), so the same indexer,
speaker-hash split and feature path serve synthetic and real data.

The folder is cached under ``~/.cache/kws-edge/synthetic/<hash>`` (or
``SyntheticConfig.cache_dir``), keyed by the configuration, seed, keywords,
sample rate and :data:`GENERATOR_VERSION`; the same inputs give the same
files. eSpeak NG is GPL-3.0: it is only used to make data, never by the runtime.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import atomic_directory
from ..audio import resample, write_wav
from ..config import to_dict
from ..errors import BackendUnavailableError, DataError
from .config import SyntheticConfig

__all__ = [
    "GENERATOR_VERSION",
    "BASE_VOICES",
    "list_variants",
    "synthesize_word",
    "sample_recording",
    "make_noise",
    "synthetic_dir",
    "generate_synthetic_dataset",
    "generate_word_folder",
]

GENERATOR_VERSION = 2  # 2: eSpeak re-seeded per utterance (bit-reproducible)
BASE_VOICES = ("en-US", "en", "en-GB-scotland", "en-GB-x-rp", "en-GB-x-gbclan", "en-GB-x-gbcwmd", "en-US-nyc",
               "en-029")
_ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 3, 4
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
# variants that do not sound like a person speaking (robots, whispers, effects)
_EXCLUDED_VARIANTS = {"whisper", "whisperf", "croak", "Demonic", "UniRobot", "anikaRobot", "Tweaky", "kaukovalta"}

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Espeak:
    """One eSpeak NG instance per process (the library keeps global state)."""

    _instance: "_Espeak | None" = None

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise BackendUnavailableError(
                "the synthetic dataset needs eSpeak NG: pip install 'kws-edge[tts]' (espeakng-loader)"
            ) from None
        self.data_path = Path(espeakng_loader.get_data_path())
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.sample_rate_hz = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), 0)
        if self.sample_rate_hz <= 0:
            raise BackendUnavailableError(f"eSpeak NG failed to initialise with data at {self.data_path}")
        self._chunks: list[np.ndarray] = []

        def collect(wav, n, events):  # noqa: ARG001 - ctypes signature
            if n > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _CALLBACK(collect)  # keep a reference: the library calls it later
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]

    @classmethod
    def get(cls) -> "_Espeak":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def synth(self, text: str, voice: str, pitch: int, rate_wpm: int, pitch_range: int, seed: int = 0) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise DataError(f"eSpeak NG has no voice {voice!r}; voices are case-sensitive, e.g. en-US+Alicia")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, int(rate_wpm), 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(_ESPEAK_RANGE, int(pitch_range), 0)
        # eSpeak NG draws random numbers while synthesising (pitch jitter, noise sources); without
        # re-seeding right before each utterance the same call gives a different waveform every
        # time (measured: waveform correlation ~0.5 between two identical calls).
        if self._set_seed is not None:
            self._set_seed(int(seed) & 0x7FFFFFFF)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if not self._chunks:
            return np.zeros(0, np.int16)
        return np.concatenate(self._chunks)


def list_variants() -> list[str]:
    """eSpeak NG voice variants usable as speakers (sorted)."""
    folder = _Espeak.get().data_path / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in _EXCLUDED_VARIANTS)


def _trim(x: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    idx = np.flatnonzero(np.abs(x) > threshold * max(float(np.max(np.abs(x))), 1e-9))
    return x[idx[0]:idx[-1] + 1] if idx.size else x[:0]


def synthesize_word(word: str, *, voice: str = "en-US", pitch: int = 50, rate_wpm: int = 160, pitch_range: int = 50,
                    sample_rate_hz: int = 16000, trim: bool = True, seed: int = 0) -> np.ndarray:
    """Speak ``word`` (or any short text): float32 mono at ``sample_rate_hz``, peak-normalised to 0.5.

    ``seed`` is eSpeak's own random seed. eSpeak keeps state across utterances, so the same
    arguments give the same samples only for the same sequence of calls in a fresh process
    (which is how :func:`generate_synthetic_dataset` makes its files).
    """
    engine = _Espeak.get()
    raw = engine.synth(word, voice, pitch, rate_wpm, pitch_range, seed).astype(np.float32) / 32768.0
    audio = resample(raw, engine.sample_rate_hz, sample_rate_hz)
    if trim:
        audio = _trim(audio)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * (0.5 / peak)).astype(np.float32) if peak > 0 else audio.astype(np.float32)


def make_noise(kind: str, n_samples: int, rng: np.random.Generator, *, sample_rate_hz: int = 16000,
               rms_dbfs: float = -20.0, babble_words: tuple[str, ...] = ("seven", "house", "follow", "bird")) -> np.ndarray:
    """Noise of ``kind`` in ("white", "pink", "brown", "babble"), scaled to ``rms_dbfs``."""
    if kind == "white":
        x = rng.standard_normal(n_samples)
    elif kind in ("pink", "brown"):
        spectrum = np.fft.rfft(rng.standard_normal(n_samples))
        f = np.fft.rfftfreq(n_samples, 1.0 / sample_rate_hz)
        f[0] = f[1]
        shape = 1.0 / np.sqrt(f) if kind == "pink" else 1.0 / f
        shape[f < 20.0] = 0.0  # no DC or sub-audio drift
        x = np.fft.irfft(spectrum * shape, n_samples)
    elif kind == "babble":
        x = np.zeros(n_samples)
        voices = [f"{v}+{var}" for v in BASE_VOICES for var in ("m1", "m3", "f2", "f4", "Alicia", "Denis")]
        for _ in range(6):  # six overlapping talkers
            pos = int(rng.integers(0, sample_rate_hz // 2))
            while pos < n_samples:
                w = babble_words[int(rng.integers(len(babble_words)))]
                a = synthesize_word(w, voice=voices[int(rng.integers(len(voices)))],
                                    pitch=int(rng.integers(20, 80)), rate_wpm=int(rng.integers(140, 220)),
                                    sample_rate_hz=sample_rate_hz, seed=int(rng.integers(2**31)))
                end = min(n_samples, pos + len(a))
                x[pos:end] += a[:end - pos]
                pos = end + int(rng.integers(0, sample_rate_hz // 5))
    else:
        raise DataError(f"unknown noise kind {kind!r}; use white, pink, brown or babble")
    rms = float(np.sqrt(np.mean(x ** 2))) or 1.0
    return np.clip(x * (10 ** (rms_dbfs / 20.0) / rms), -1.0, 1.0).astype(np.float32)


def _place(word_audio: np.ndarray, n: int, rng: np.random.Generator, level_dbfs: float) -> np.ndarray:
    """Put a word at a random position in an ``n``-sample clip, peak at ``level_dbfs``."""
    if len(word_audio) > n:
        start = (len(word_audio) - n) // 2
        word_audio = word_audio[start:start + n]
    out = np.zeros(n, np.float32)
    offset = int(rng.integers(0, n - len(word_audio) + 1))
    peak = float(np.max(np.abs(word_audio))) if word_audio.size else 0.0
    if peak > 0:
        out[offset:offset + len(word_audio)] = word_audio * (10 ** (level_dbfs / 20.0) / peak)
    return out


def _speakers(config: SyntheticConfig, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(speaker id, eSpeak voice name) pairs; ids are stable hex like Speech Commands'."""
    combos = [f"{v}+{var}" for v in BASE_VOICES for var in list_variants()] + list(BASE_VOICES)
    pick = rng.choice(len(combos), size=min(config.n_speakers, len(combos)), replace=False)
    return [(hashlib.sha1(combos[i].encode()).hexdigest()[:8], combos[i]) for i in sorted(pick.tolist())]


def synthetic_dir(config: SyntheticConfig, *, seed: int, keywords: tuple[str, ...], sample_rate_hz: int,
                  words_only: bool = False) -> Path:
    """Cache folder of the synthetic set for these inputs."""
    key = json.dumps({"config": {k: v for k, v in to_dict(config).items() if k != "cache_dir"}, "seed": seed,
                      "keywords": list(keywords), "sample_rate_hz": sample_rate_hz, "words_only": words_only,
                      "version": GENERATOR_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    base = Path(config.cache_dir).expanduser() if config.cache_dir else \
        Path(os.environ.get("KWS_EDGE_CACHE", "~/.cache/kws-edge")).expanduser() / "synthetic"
    return base / digest


def _lock(path: Path):
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - filelock comes with the train extra
        import contextlib
        return contextlib.nullcontext()
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


def generate_synthetic_dataset(config: SyntheticConfig, *, seed: int, keywords: tuple[str, ...] = ("yes", "no"),
                               sample_rate_hz: int = 16000, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write (or reuse from the cache) the synthetic Speech Commands-layout folder; returns its path."""
    return _generate(config, seed=seed, keywords=keywords, sample_rate_hz=sample_rate_hz, progress=progress,
                     words_only=False)


def generate_word_folder(config: SyntheticConfig, *, seed: int, sample_rate_hz: int = 16000,
                         progress: Callable[[int, int], None] | None = None) -> Path:
    """Only the other (non-keyword) words, no noise: synthetic confusable negatives for real data."""
    return _generate(config, seed=seed, keywords=(), sample_rate_hz=sample_rate_hz, progress=progress,
                     words_only=True)


def _generate(config: SyntheticConfig, *, seed: int, keywords: tuple[str, ...], sample_rate_hz: int,
              progress: Callable[[int, int], None] | None, words_only: bool) -> Path:
    out = synthetic_dir(config, seed=seed, keywords=keywords, sample_rate_hz=sample_rate_hz, words_only=words_only)
    done = out / "synthetic.json"
    if done.is_file():
        return out
    with _lock(out):
        if done.is_file():
            return out
        with atomic_directory(out, overwrite=True) as tmp:
            _write_set_in_fresh_process(tmp, config, seed=seed, keywords=keywords, sample_rate_hz=sample_rate_hz,
                                        progress=progress, words_only=words_only)
    return out


def _child(queue, folder: str, config: SyntheticConfig, seed: int, keywords: tuple[str, ...], sample_rate_hz: int,
           words_only: bool) -> None:
    try:
        _write_set(Path(folder), config, seed=seed, keywords=keywords, sample_rate_hz=sample_rate_hz,
                   progress=lambda d, t: queue.put(("progress", d, t)), words_only=words_only)
        queue.put(("done", 0, 0))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        queue.put(("error", f"{type(exc).__name__}: {exc}", exc.__class__.__module__ + "." + type(exc).__name__))


def _write_set_in_fresh_process(folder: Path, config: SyntheticConfig, *, seed: int, keywords: tuple[str, ...],
                                sample_rate_hz: int, progress: Callable[[int, int], None] | None,
                                words_only: bool) -> None:
    """Generate in a newly spawned process.

    eSpeak NG keeps state across utterances (even with its random seed reset
    before each one, the same call twice in one process differs), so a set is
    only reproducible when it is made from a fresh library state: a fresh
    process with the same call sequence gives bit-identical files.
    """
    import multiprocessing
    import queue as queue_mod

    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q, str(folder), config, seed, keywords, sample_rate_hz, words_only),
                       daemon=True)
    proc.start()
    try:
        while True:
            try:
                kind, a, b = q.get(timeout=0.5)
            except queue_mod.Empty:
                if not proc.is_alive():
                    raise DataError(f"synthetic data generation stopped unexpectedly (exit code {proc.exitcode})")
                continue
            if kind == "progress" and progress:
                progress(a, b)
            elif kind == "done":
                break
            elif kind == "error":
                if b.endswith("BackendUnavailableError"):
                    raise BackendUnavailableError(a.split(": ", 1)[-1])
                raise DataError(f"synthetic data generation failed: {a}")
        proc.join(timeout=30)
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)


def _write_set(folder: Path, config: SyntheticConfig, *, seed: int, keywords: tuple[str, ...], sample_rate_hz: int,
               progress: Callable[[int, int], None] | None, words_only: bool) -> None:
    rng = np.random.default_rng(seed)
    speakers = _speakers(config, rng)
    others = [w for w in config.other_words if w not in keywords]
    n_clip = sample_rate_hz  # one-second clips
    jobs = []
    for speaker, voice in speakers:
        words = [] if words_only else [k for k in keywords for _ in range(config.keyword_repeats)]
        n_other = len(others) if words_only else min(config.other_words_per_speaker, len(others))
        words += [others[i] for i in rng.choice(len(others), size=n_other, replace=False)]
        jobs += [(speaker, voice, w) for w in words]
    total = len(jobs) + (0 if words_only else 4)
    counters: dict[tuple[str, str], int] = {}
    lo_p, hi_p = config.pitch_range
    lo_s, hi_s = config.speed_wpm_range
    lo_l, hi_l = config.level_dbfs_range
    for i, (speaker, voice, word) in enumerate(jobs):
        audio = synthesize_word(word, voice=voice, pitch=int(rng.integers(lo_p, hi_p + 1)),
                                rate_wpm=int(rng.integers(lo_s, hi_s + 1)), pitch_range=int(rng.integers(20, 90)),
                                sample_rate_hz=sample_rate_hz, seed=int(rng.integers(2**31)))
        clip = _place(audio, n_clip, rng, float(rng.uniform(lo_l, hi_l)))
        n = counters.get((word, speaker), 0)
        counters[(word, speaker)] = n + 1
        write_wav(folder / word / f"{speaker}_nohash_{n}.wav", clip, sample_rate_hz)
        if progress:
            progress(i + 1, total)
    if not words_only:
        n_noise = int(config.noise_seconds * sample_rate_hz)
        babble = tuple(w for w in others if w not in keywords)[:12]
        for j, kind in enumerate(("white", "pink", "brown", "babble")):
            noise = make_noise(kind, n_noise, rng, sample_rate_hz=sample_rate_hz, babble_words=babble)
            write_wav(folder / "_background_noise_" / f"{kind}_noise.wav", noise, sample_rate_hz)
            if progress:
                progress(len(jobs) + j + 1, total)
    meta = {"generator_version": GENERATOR_VERSION, "seed": seed, "keywords": list(keywords),
            "sample_rate_hz": sample_rate_hz, "config": to_dict(config), "n_clips": len(jobs),
            "speakers": {s: v for s, v in speakers}, "license_note": "generated with eSpeak NG (GPL-3.0) voices"}
    (folder / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def sample_recording(words: list[str], *, seed: int = 0, gap_s: tuple[float, float] = (0.5, 1.5),
                     noise: str | None = "pink", noise_dbfs: float = -45.0, sample_rate_hz: int = 16000,
                     voice: str = "en-US") -> tuple[np.ndarray, list[dict]]:
    """A demo recording: ``words`` spoken in order with gaps over optional noise.

    Returns ``(samples, events)`` where each event is
    ``{"word", "start_s", "end_s"}`` of the spoken word.
    """
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    events = []
    pos = int(rng.uniform(*gap_s) * sample_rate_hz)
    pieces.append(np.zeros(pos, np.float32))
    for w in words:
        a = synthesize_word(w, voice=voice, pitch=int(rng.integers(35, 65)), rate_wpm=int(rng.integers(140, 180)),
                            sample_rate_hz=sample_rate_hz, seed=int(rng.integers(2**31))) * 0.6
        events.append({"word": w, "start_s": pos / sample_rate_hz, "end_s": (pos + len(a)) / sample_rate_hz})
        gap = int(rng.uniform(*gap_s) * sample_rate_hz)
        pieces += [a, np.zeros(gap, np.float32)]
        pos += len(a) + gap
    samples = np.concatenate(pieces)
    if noise:
        samples = samples + make_noise(noise, len(samples), rng, sample_rate_hz=sample_rate_hz, rms_dbfs=noise_dbfs)
    return np.clip(samples, -1.0, 1.0).astype(np.float32), events
