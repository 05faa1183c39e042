"""The built-in synthetic dataset (eSpeak NG through espeakng-loader, generated noise)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from support.training_data import TINY_SYNTHETIC  # noqa: E402

from kws_edge.audio import read_wav  # noqa: E402
from kws_edge.errors import BackendUnavailableError, DataError  # noqa: E402
from kws_edge.training import synthetic  # noqa: E402
from kws_edge.training.config import TrainConfig  # noqa: E402
from kws_edge.training.dataset import index_dataset  # noqa: E402

SMALL = dataclasses.replace(TINY_SYNTHETIC, n_speakers=6, other_words_per_speaker=2, noise_seconds=5.0)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.wav")}


def test_generation_is_deterministic_cached_and_in_speech_commands_layout(tmp_path):
    a = synthetic.generate_synthetic_dataset(dataclasses.replace(SMALL, cache_dir=str(tmp_path / "a")), seed=5)
    b = synthetic.generate_synthetic_dataset(dataclasses.replace(SMALL, cache_dir=str(tmp_path / "b")), seed=5)
    fa, fb = _files(a), _files(b)
    assert fa == fb and len(fa) == 6 * (2 * 2 + 2) + 4
    assert {p.split("/")[0] for p in fa} >= {"yes", "no", "_background_noise_"}
    assert sorted(p for p in fa if p.startswith("_background_noise_")) == [
        f"_background_noise_/{k}_noise.wav" for k in ("babble", "brown", "pink", "white")]
    for name in fa:
        if not name.startswith("_"):
            speaker, rest = name.split("/")[1].split("_nohash_")
            assert len(speaker) == 8 and int(speaker, 16) >= 0
    # cached: a second call returns at once, without touching the files
    mtimes = {p: p.stat().st_mtime_ns for p in a.rglob("*.wav")}
    assert synthetic.generate_synthetic_dataset(dataclasses.replace(SMALL, cache_dir=str(tmp_path / "a")), seed=5) == a
    assert mtimes == {p: p.stat().st_mtime_ns for p in a.rglob("*.wav")}
    c = synthetic.generate_synthetic_dataset(dataclasses.replace(SMALL, cache_dir=str(tmp_path / "a")), seed=6)
    assert c != a and _files(c) != fa
    yes = read_wav(next((a / "yes").glob("*.wav")))
    assert yes.duration_s == pytest.approx(1.0) and np.abs(yes.samples).max() > 0.01


def test_a_bigger_set_indexes_into_three_speaker_disjoint_splits(tmp_path):
    cfg = TrainConfig(synthetic=dataclasses.replace(TINY_SYNTHETIC, cache_dir=str(tmp_path)),
                      validation_percentage=20, testing_percentage=20)
    root = synthetic.generate_synthetic_dataset(cfg.synthetic, seed=cfg.seed)
    idx = index_dataset(root, cfg)
    counts = idx.counts()
    assert all(counts[s]["yes"] and counts[s]["no"] and counts[s]["_unknown_"] for s in counts)
    speakers = {}
    for c in idx.clips:
        if not c.is_silence:
            speakers.setdefault(c.speaker, set()).add(c.split)
    assert all(len(v) == 1 for v in speakers.values())


def test_words_voices_and_noise():
    a = synthetic.synthesize_word("yes", voice="en-US", pitch=40)
    b = synthetic.synthesize_word("yes", voice="en-GB-x-rp+Denis", pitch=70)
    assert 0.15 < len(a) / 16000 < 1.0 and np.abs(a).max() == pytest.approx(0.5, abs=1e-3)
    assert len(a) != len(b) or not np.allclose(a, b)
    with pytest.raises(DataError, match="no voice 'xx-nope'"):
        synthetic.synthesize_word("yes", voice="xx-nope")
    rng = np.random.default_rng(0)
    for kind in ("white", "pink", "brown"):
        x = synthetic.make_noise(kind, 32000, rng, rms_dbfs=-20.0)
        assert 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2))) == pytest.approx(-20.0, abs=0.2)
    spec = lambda x: np.abs(np.fft.rfft(x)) ** 2  # noqa: E731
    pink = spec(synthetic.make_noise("pink", 32000, rng))
    white = spec(synthetic.make_noise("white", 32000, rng))
    ratio = lambda s: s[100:400].mean() / s[8000:12000].mean()  # noqa: E731  (50-200 Hz vs 4-6 kHz)
    assert ratio(pink) > 10 * ratio(white)
    with pytest.raises(DataError, match="unknown noise kind"):
        synthetic.make_noise("purple", 100, rng)


def test_sample_recording_events():
    samples, events = synthetic.sample_recording(["yes", "go", "no"], seed=1)
    assert [e["word"] for e in events] == ["yes", "go", "no"]
    assert all(0 <= e["start_s"] < e["end_s"] <= len(samples) / 16000 for e in events)
    e = events[0]
    inside = samples[int(e["start_s"] * 16000):int(e["end_s"] * 16000)]
    assert np.abs(inside).max() > 0.2 and np.abs(samples[:int(e["start_s"] * 16000) - 10]).max() < 0.05


def test_missing_espeak_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(synthetic._Espeak, "_instance", None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(BackendUnavailableError, match="pip install 'kws-edge\\[tts\\]'"):
        synthetic.synthesize_word("yes")
