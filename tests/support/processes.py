"""Helpers for tests that run ``kws`` in a subprocess or play audio through PulseAudio."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from . import ROOT

__all__ = ["kws_subprocess_env", "write_pcm16"]


def write_pcm16(path: Path, samples: np.ndarray, rate_hz: int = 16000) -> Path:
    """Plain 16-bit mono WAV with the standard library (for playing through paplay)."""
    pcm = np.clip(np.round(np.asarray(samples) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate_hz)
        wf.writeframes(pcm.tobytes())
    return path


def kws_subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env
