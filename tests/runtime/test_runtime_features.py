"""MFCC: streaming equals batch for any chunking; batch equals python_speech_features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kws_edge.config import from_dict, to_dict
from kws_edge.errors import ConfigError
from kws_edge.features import MfccConfig, Normalization, StreamingMfcc, mfcc, n_complete_frames

ATOL = 1e-5


def _stream(audio: np.ndarray, sizes, config: MfccConfig = MfccConfig()) -> np.ndarray:
    s = StreamingMfcc(config)
    out, pos = [], 0
    for size in sizes:
        out.append(s.process(audio[pos:pos + size]))
        pos += size
    assert pos >= len(audio)
    return np.concatenate(out)


def _random_sizes(rng, n_total: int, low: int, high: int) -> list[int]:
    sizes = []
    while sum(sizes) < n_total:
        sizes.append(int(rng.integers(low, high)))
    return sizes


def _audio(rng, n: int) -> np.ndarray:
    # noise with a slow envelope and a tone, so frames differ in level and spectrum
    t = np.arange(n) / 16000
    env = 0.05 + 0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t))
    x = env * (0.3 * rng.standard_normal(n) + np.sin(2 * np.pi * 700 * t))
    return np.clip(x, -1, 1).astype(np.float32)


@pytest.mark.parametrize("chunking", ["one_sample", "hop_misaligned", "random_small", "random_large",
                                      "hop_aligned", "one_big"])
def test_streaming_equals_batch_for_any_chunking(rng, chunking):
    cfg = MfccConfig()
    n = 16000 + 1234 if chunking == "one_sample" else 3 * 16000 + 777
    audio = _audio(rng, n)
    sizes = {
        "one_sample": [1] * n,
        "hop_misaligned": [cfg.hop_samples + 1] * (n // (cfg.hop_samples + 1) + 1),
        "random_small": _random_sizes(rng, n, 1, 50),
        "random_large": _random_sizes(rng, n, 100, 5000),
        "hop_aligned": [cfg.hop_samples] * (n // cfg.hop_samples + 1),
        "one_big": [n],
    }[chunking]
    batch = mfcc(audio, cfg)
    streamed = _stream(audio, sizes, cfg)
    assert batch.shape == (n_complete_frames(n, cfg), cfg.n_cepstra)
    assert streamed.shape == batch.shape
    np.testing.assert_allclose(streamed, batch, atol=ATOL, rtol=0)


def test_streaming_int16_chunks_equal_batch_int16(rng):
    audio = (_audio(rng, 20000) * 32767).astype(np.int16)
    np.testing.assert_allclose(_stream(audio, _random_sizes(rng, len(audio), 1, 900)), mfcc(audio), atol=ATOL)
    # int16 and the same values as float give the same features
    np.testing.assert_allclose(mfcc(audio), mfcc(audio.astype(np.float32) / 32768), atol=ATOL)


def test_streaming_with_other_config_and_reset(rng):
    cfg = MfccConfig(window_ms=25.0, hop_ms=10.0, n_cepstra=13, n_mel_filters=26, fft_size_samples=512,
                     window_function="hann", append_energy=False, cepstral_lifter=0, preemphasis=0.0)
    audio = _audio(rng, 9000)
    s = StreamingMfcc(cfg)
    first = np.concatenate([s.process(audio[i:i + 333]) for i in range(0, len(audio), 333)])
    s.reset()
    assert s.n_samples_seen == 0 and s.n_frames_emitted == 0
    second = np.concatenate([s.process(audio[i:i + 1000]) for i in range(0, len(audio), 1000)])
    np.testing.assert_allclose(first, mfcc(audio, cfg), atol=ATOL)
    np.testing.assert_array_equal(first, second)


def test_streaming_short_and_empty_chunks():
    s = StreamingMfcc()
    assert s.process(np.zeros(0, np.float32)).shape == (0, 10)
    assert s.process(np.zeros(100, np.float32)).shape == (0, 10)
    assert s.process(np.zeros(540, np.float32)).shape == (1, 10)  # 640 samples: the first frame
    assert mfcc(np.zeros(639, np.float32)).shape == (0, 10)


def test_mfcc_matches_python_speech_features(rng):
    from python_speech_features import mfcc as psf_mfcc

    cfg = MfccConfig()
    audio = _audio(rng, 16000 + 100)  # 49 complete frames and a partial one
    ours = mfcc(audio, cfg)
    ref = psf_mfcc(audio.astype(np.float64), samplerate=cfg.sample_rate_hz, winlen=cfg.window_ms / 1000,
                   winstep=cfg.hop_ms / 1000, numcep=cfg.n_cepstra, nfilt=cfg.n_mel_filters,
                   nfft=cfg.fft_size_samples, lowfreq=cfg.low_freq_hz, highfreq=cfg.high_freq_hz,
                   preemph=cfg.preemphasis, ceplifter=cfg.cepstral_lifter, appendEnergy=cfg.append_energy,
                   winfunc=np.hamming)
    # psf pads a last partial frame with zeros; we emit complete frames only
    assert len(ref) == len(ours) + 1
    np.testing.assert_allclose(ours, ref[: len(ours)], rtol=1e-4, atol=1e-4)


def test_silence_is_finite_and_floored():
    feats = mfcc(np.zeros(16000, np.int16))
    assert feats.shape == (49, 10)
    assert np.all(np.isfinite(feats))
    assert feats[:, 0].min() == pytest.approx(np.log(MfccConfig().energy_floor), rel=1e-5)


def test_mfcc_config_json_round_trip_and_units():
    cfg = MfccConfig(n_cepstra=13, window_function="hann", clip_ms=800.0)
    back = from_dict(MfccConfig, json.loads(json.dumps(to_dict(cfg))))
    assert back == cfg
    assert (cfg.window_samples, cfg.hop_samples, cfg.clip_samples) == (640, 320, 12800)
    assert MfccConfig().frames_per_clip == 49


@pytest.mark.parametrize("kwargs, match", [
    ({"hop_ms": 50.0}, "must not exceed"),
    ({"fft_size_samples": 512}, "fft_size_samples"),
    ({"n_cepstra": 41}, "n_cepstra"),
    ({"high_freq_hz": 9000.0}, "band edges"),
    ({"preemphasis": 1.0}, "preemphasis"),
    ({"window_function": "blackman"}, "window_function"),
    ({"energy_floor": 0.0}, "energy_floor"),
])
def test_mfcc_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MfccConfig(**kwargs)
    with pytest.raises(ConfigError, match=match):
        from_dict(MfccConfig, {**to_dict(MfccConfig()), **kwargs})


def test_normalization_fit_apply_and_checks(rng):
    feats = rng.normal(3.0, 2.0, size=(500, 49, 10)).astype(np.float32)
    norm = Normalization.fit(feats)
    out = norm.apply(feats).reshape(-1, 10)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-3)
    with pytest.raises(ConfigError, match="differ in length"):
        Normalization(mean=(0.0,), std=(1.0, 1.0))
    with pytest.raises(ConfigError, match="> 0"):
        Normalization(mean=(0.0,), std=(0.0,))


def test_multichannel_input_is_refused_not_interleaved():
    from kws_edge.errors import AudioFormatError

    with pytest.raises(AudioFormatError, match="mono"):
        StreamingMfcc().process(np.zeros((1000, 2), np.float32))
    with pytest.raises(AudioFormatError, match="mono"):
        mfcc(np.zeros((1000, 2), np.float32))
    assert StreamingMfcc().process(np.zeros((1000, 1), np.float32)).shape == (2, 10)


@pytest.mark.parametrize("n_filters, fft_size, rate, low, high", [(40, 1024, 16000, 20.0, 7600.0),
                                                                  (26, 512, 8000, 0.0, 4000.0),
                                                                  (64, 2048, 16000, 60.0, 8000.0)])
def test_mel_filterbank_equals_python_speech_features(n_filters, fft_size, rate, low, high):
    """Our filterbank (no scipy) is psf's get_filterbanks value for value."""
    from python_speech_features.base import get_filterbanks

    from kws_edge.features import mel_filterbank

    ours = mel_filterbank(n_filters, fft_size, rate, low, high)
    ref = get_filterbanks(n_filters, fft_size, rate, low, high)
    assert ours.shape == ref.shape
    assert np.array_equal(ours, ref)


def test_features_need_no_scipy_or_psf():
    """The device path (features and the streaming detector) imports neither scipy nor python_speech_features."""
    import subprocess
    import sys
    import textwrap

    from support.processes import kws_subprocess_env

    code = textwrap.dedent("""
        import sys, importlib.abc

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("scipy", "python_speech_features"):
                    raise ImportError(f"{name} is blocked in this test")
                return None

        sys.meta_path.insert(0, Block())
        import numpy as np
        from kws_edge import KeywordDetector
        from kws_edge.audio import resample
        from kws_edge.features import mfcc
        det = KeywordDetector.from_bundle()
        x = (0.1 * np.random.default_rng(0).standard_normal(3 * 16000)).astype(np.float32)
        for s in range(0, len(x), 160):
            det.process(x[s:s + 160])
        assert mfcc(x).shape == (149, 10)
        assert resample(x[:8000], 8000, 16000).shape == (16000,)
        print("ok", sorted(m for m in sys.modules if m.split(".")[0] in ("scipy", "python_speech_features")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=kws_subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "ok []" in proc.stdout
