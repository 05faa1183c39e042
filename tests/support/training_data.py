"""Helpers for the training tests: tiny datasets made on the spot (never the shared real data)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kws_edge.audio import write_wav
from kws_edge.training.config import SyntheticConfig, TrainConfig

SR = 16000
WORDS = {"yes": 440.0, "no": 660.0, "up": 880.0, "down": 1100.0}


def tone(freq_hz: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq_hz * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def make_folder(root: Path, *, n_speakers: int = 30, noise: bool = True, short_every: int = 5) -> Path:
    """A Speech Commands-layout folder of tones: one folder per word, hex speakers, optional noise."""
    i = 0
    for s in range(n_speakers):
        speaker = f"{s * 7919:08x}"
        for word, f in WORDS.items():
            seconds = 0.6 if i % short_every == 0 else 1.0
            write_wav(root / word / f"{speaker}_nohash_0.wav", tone(f * (1 + 0.01 * s), seconds, i), SR)
            i += 1
    if noise:
        rng = np.random.default_rng(0)
        write_wav(root / "_background_noise_" / "white.wav", 0.1 * rng.standard_normal(20 * SR).astype(np.float32), SR)
    return root


TINY_SYNTHETIC = SyntheticConfig(n_speakers=24, keyword_repeats=2, other_words_per_speaker=3, noise_seconds=6.0,
                                 other_words=("go", "yeah", "so", "left", "up", "down", "cat", "nine"))


def tiny_config(cache_dir: Path, **kw) -> TrainConfig:
    """Synthetic data, tiny_conv, 2 epochs, 1 augmented copy: a training run of a few seconds."""
    from kws_edge.training.models import preset

    base = TrainConfig(data="synthetic", synthetic=dataclasses.replace(TINY_SYNTHETIC, cache_dir=str(cache_dir)),
                       model=preset("tiny_conv"), epochs=2, batch_size=32, validation_percentage=20.0,
                       testing_percentage=20.0, representative_samples=50,
                       augment=dataclasses.replace(TrainConfig().augment, copies=1))
    return dataclasses.replace(base, **kw)
