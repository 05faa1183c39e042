"""Detector telemetry: counters, Prometheus over real HTTP, JSONL snapshots, feature drift."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from kws_edge.audio import read_wav, resample
from kws_edge.features import MfccConfig, Normalization, StreamingMfcc, mfcc, n_complete_frames
from kws_edge.telemetry import DetectorTelemetry, JsonlSnapshotter, TelemetryConfig, gaussian_kl, serve_metrics
from kws_edge.workstation.monitor import plot_history, read_snapshots, summarize_snapshots

SR = 16000
LABELS = ("_silence_", "_unknown_", "yes", "no")
KEYWORDS = ("yes", "no")
TONE_BUNDLE = Path(__file__).resolve().parents[1] / "data" / "tone_bundle"
TONE_YES = Path(__file__).resolve().parents[1] / "data" / "tone_yes.wav"
needs_tone_bundle = pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(),
                                       reason="tests/data/tone_bundle is missing (cd tests && python -m support.tone_bundle)")


# ---------------------------------------------------------------- a speech-like channel
def _voiced(rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """A vowel-like sound: a harmonic complex with a gliding f0 shaped by two formant bands."""
    n = int(duration_s * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(90, 250) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    f1, f2 = rng.uniform(300, 900), rng.uniform(900, 2600)
    x = np.zeros(n)
    for h in range(1, 40):
        fh = f0 * h
        gain = np.exp(-((fh - f1) / 200) ** 2) + 0.6 * np.exp(-((fh - f2) / 300) ** 2) + 0.02
        x += np.where(fh < SR / 2 - 200, gain, 0.0) * np.sin(h * phase)
    env = np.sin(np.pi * np.linspace(0, 1, n)) ** 0.5
    return x * env


def _fricative(rng: np.random.Generator, duration_s: float) -> np.ndarray:
    n = int(duration_s * SR)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    centre = rng.uniform(3000, 6500)
    spec *= np.exp(-((freqs - centre) / 1200) ** 2)
    return np.fft.irfft(spec, n) * np.hanning(n)


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Syllables at random levels and pauses over faint background noise (float32)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = 0.003 * rng.standard_normal(n)
    pos = int(rng.uniform(0, 0.3) * SR)
    while pos < n:
        seg = _voiced(rng, rng.uniform(0.12, 0.35)) if rng.random() < 0.7 else _fricative(rng, rng.uniform(0.05, 0.15))
        seg = seg / (np.max(np.abs(seg)) + 1e-9) * rng.uniform(0.05, 0.5)
        end = min(n, pos + seg.size)
        out[pos:end] += seg[: end - pos]
        pos = end + int(rng.uniform(0.02, 0.6) * SR)
    return np.clip(out, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def train_norm() -> Normalization:
    """'Training statistics': MFCC of 1 s clips of the clean channel."""
    audio = speech_like(60, seed=0)
    clips = audio[: 60 * SR].reshape(60, SR)
    return Normalization.fit(np.stack([mfcc(c) for c in clips]))


def _stream_drift(audio: np.ndarray, norm: Normalization, chunk: int = 1600, silent_c0: float | None = None) -> dict:
    tel = DetectorTelemetry(LABELS, KEYWORDS, train_mean=norm.mean, train_std=norm.std, silent_c0=silent_c0)
    sm = StreamingMfcc(MfccConfig())
    for start in range(0, len(audio), chunk):
        part = audio[start:start + chunk]
        tel.observe(part, sm.process(part))
    return tel.drift()


def test_clean_channel_stays_low(train_norm):
    d = _stream_drift(speech_like(40, seed=1), train_norm)
    assert d["score"] is not None and d["flag"] is False, d
    assert d["score"] < 0.5 * d["threshold"]


@pytest.mark.parametrize("change", ["gain -20 dB", "white noise 5 dB SNR", "8 kHz telephone path", "played at 22.05 kHz"])
def test_changed_channel_raises_drift_flag(train_norm, change):
    clean = speech_like(40, seed=1)
    rng = np.random.default_rng(7)
    if change == "gain -20 dB":
        audio = clean * 0.1
    elif change == "white noise 5 dB SNR":
        rms = float(np.sqrt(np.mean(clean ** 2)))
        audio = clean + rng.normal(0, rms * 10 ** (-5 / 20), clean.size).astype(np.float32)
    elif change == "8 kHz telephone path":
        audio = resample(resample(clean, SR, 8000), 8000, SR)
    else:  # a source at 22.05 kHz fed as if it were 16 kHz: everything lower and slower
        audio = resample(clean, SR, 22050)
    d = _stream_drift(np.clip(audio, -1, 1).astype(np.float32), train_norm)
    assert d["flag"] is True, (change, d)
    assert d["score"] > d["threshold"]


def _padded(clips: list[np.ndarray], seed: int) -> np.ndarray:
    """Clips with 0.5-1.5 s of digital silence between them (how recordings are often strung together)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([p for c in clips for p in (c, np.zeros(int(rng.uniform(0.5, 1.5) * SR), np.float32))])


def test_digital_silence_between_clips_is_not_drift(train_norm):
    from kws_edge.telemetry import silent_c0_for

    clips = [speech_like(1.0, seed=100 + i) for i in range(40)]
    padded = _padded(clips, seed=3)
    counted = _stream_drift(padded, train_norm)  # every frame counted: the padding alone reads as drift
    assert counted["flag"] is True, counted
    d = _stream_drift(padded, train_norm, silent_c0=silent_c0_for(MfccConfig()))
    assert d["flag"] is False and d["score"] < 0.5 * d["threshold"], d
    assert d["silent_frames"] > 0.3 * (d["frames"] + d["silent_frames"])  # the padding, set aside
    # a real change of channel is still seen through the padding
    quiet = _stream_drift(_padded([c * 0.1 for c in clips], seed=3), train_norm, silent_c0=silent_c0_for(MfccConfig()))
    assert quiet["flag"] is True, quiet


def test_quiet_but_not_silent_frames_still_count():
    from kws_edge.telemetry import silent_c0_for

    cfg = MfccConfig()
    c0 = silent_c0_for(cfg)
    faint = np.random.default_rng(0).normal(0, 10 ** (-90 / 20), SR).astype(np.float32)  # -90 dBFS noise
    assert (mfcc(faint, cfg)[:, 0] > c0).all()
    assert (mfcc(np.zeros(SR, np.float32), cfg)[:, 0] <= c0).all()


def test_drift_needs_enough_frames(train_norm):
    d = _stream_drift(speech_like(2, seed=1), train_norm)  # ~99 frames < drift_min_frames
    assert d["score"] is None and d["flag"] is False


def test_gaussian_kl_properties():
    assert np.allclose(gaussian_kl([0, 1], [1, 2], [0, 1], [1, 2]), 0)
    assert np.isclose(gaussian_kl([1.0], [1.0], [0.0], [1.0])[0], 0.5)  # 1 std shift -> 0.5 nats


def test_streaming_stats_are_chunking_independent(train_norm):
    audio = speech_like(12, seed=3)
    a = _stream_drift(audio, train_norm, chunk=1600)
    b = _stream_drift(audio, train_norm, chunk=337)
    assert a["frames"] == b["frames"] == n_complete_frames(audio.size, MfccConfig())
    assert np.isclose(a["score"], b["score"], rtol=1e-2)  # recent stats decay once per chunk


def test_input_level_and_clipping():
    tel = DetectorTelemetry(LABELS, KEYWORDS)
    x = np.full(1000, 0.5, np.float32)
    x[:10] = 1.0
    x[10:15] = -1.0
    tel.observe(x, np.zeros((0, 10)))
    s = tel.snapshot()
    assert s["input"]["clipped_samples"] == 15
    assert s["input"]["peak"] == 1.0
    ms = (15 * 1.0 + 985 * 0.25) / 1000
    assert abs(s["input"]["rms_dbfs"] - 10 * np.log10(ms)) < 0.01
    tel.record_overflow(2)
    assert tel.snapshot()["overflows"] == 2
    assert s["drift"]["score"] is None  # no training statistics given


def test_score_histogram_counts_every_evaluation():
    tel = DetectorTelemetry(LABELS, KEYWORDS, config=TelemetryConfig(score_bins=10))
    post = np.array([[0.9, 0.05, 0.05, 0.0], [0.0, 0.0, 0.99, 0.01], [0.0, 0.0, 1.0, 0.0]])
    tel.observe(np.zeros(160, np.float32), np.zeros((0, 10)), post)
    s = tel.snapshot()
    assert s["evaluations"] == 3
    assert s["scores"]["counts"]["yes"] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert s["scores"]["counts"]["no"] == [3] + [0] * 9
    assert s["scores"]["sums"]["yes"] == pytest.approx(2.04)


# ---------------------------------------------------------------- through the real detector
@needs_tone_bundle
def test_detector_feeds_telemetry_and_prometheus_scrape_over_http():
    from prometheus_client.parser import text_string_to_metric_families

    from kws_edge.bundle import load_bundle
    from kws_edge.detector import KeywordDetector

    bundle = load_bundle(TONE_BUNDLE)
    tel = DetectorTelemetry.for_manifest(bundle.manifest)
    det = KeywordDetector(bundle, telemetry=tel)
    wav = read_wav(TONE_YES).samples
    audio = np.concatenate([np.zeros(SR // 2, np.float32), wav, np.zeros(SR, np.float32)])
    events = []
    for start in range(0, audio.size, 1000):
        events += det.process(audio[start:start + 1000])
    snap = tel.snapshot()
    assert snap["samples"] == audio.size
    assert snap["hops"] == n_complete_frames(audio.size, bundle.manifest.features)
    assert snap["evaluations"] == det.n_evaluations
    assert snap["detections"].get("yes", 0) == sum(e.label == "yes" for e in events)
    assert sum(snap["scores"]["counts"]["yes"]) == det.n_evaluations

    server = serve_metrics(tel, 0)
    try:
        assert server.host == "127.0.0.1"
        with urllib.request.urlopen(server.url, timeout=10) as resp:
            assert resp.status == 200
            text = resp.read().decode()
    finally:
        server.close()
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("kws_hops_total", ())] == snap["hops"]
    assert samples[("kws_evaluations_total", ())] == det.n_evaluations
    assert samples[("kws_detections_total", (("label", "yes"),))] == snap["detections"]["yes"]
    assert samples[("kws_keyword_score_count", (("keyword", "yes"),))] == det.n_evaluations
    assert samples[("kws_keyword_score_bucket", (("keyword", "yes"), ("le", "+Inf")))] == det.n_evaluations
    assert ("kws_feature_drift_score", ()) in samples
    assert samples[("kws_audio_samples_total", ())] == audio.size


def test_metrics_port_in_use_is_one_clear_error():
    from kws_edge.errors import ConfigError

    tel = DetectorTelemetry(LABELS, KEYWORDS)
    first = serve_metrics(tel, 0)
    try:
        with pytest.raises(ConfigError, match="choose another port"):
            serve_metrics(tel, first.port)
    finally:
        first.close()


# ---------------------------------------------------------------- JSONL
def _fed_telemetry(norm: Normalization, seconds: float, seed: int) -> DetectorTelemetry:
    tel = DetectorTelemetry(LABELS, KEYWORDS, train_mean=norm.mean, train_std=norm.std)
    sm = StreamingMfcc(MfccConfig())
    audio = speech_like(seconds, seed)
    for start in range(0, audio.size, 1600):
        part = audio[start:start + 1600]
        tel.observe(part, sm.process(part))
    return tel


def test_jsonl_with_truncated_last_line_is_read_up_to_it(tmp_path, train_norm):
    path = tmp_path / "telemetry.jsonl"
    tel = _fed_telemetry(train_norm, 6, seed=4)
    with JsonlSnapshotter(tel, path, interval_s=60) as snap:
        snap.write()
        snap.write()
    # close() wrote a final third snapshot; now simulate a writer killed mid-line
    full = path.read_bytes()
    assert full.count(b"\n") == 3
    last_line = full.split(b"\n")[-2]
    path.write_bytes(full + last_line[: len(last_line) // 2])
    got = read_snapshots(path)
    assert len(got.snapshots) == 3
    assert got.truncated_tail is True and got.bad_lines == []
    summary = summarize_snapshots(got.snapshots)
    assert summary["samples"] == 6 * SR
    assert summary["drift_last"] is not None


def test_jsonl_bad_middle_line_is_reported_and_restart_segments_add_up(tmp_path, train_norm):
    path = tmp_path / "t.jsonl"
    a = _fed_telemetry(train_norm, 6, seed=5).snapshot()
    b = _fed_telemetry(train_norm, 7, seed=6).snapshot()  # a restarted detector: counters start again
    b["started_utc"] = "2099-01-01T00:00:00.000000Z"
    a["detections"] = {"yes": 2, "no": 1}
    b["detections"] = {"yes": 1, "no": 0}
    path.write_text(json.dumps(a) + "\n{not json\n" + json.dumps(b) + "\n")
    got = read_snapshots(path)
    assert got.bad_lines == [2] and not got.truncated_tail
    s = summarize_snapshots(got.snapshots)
    assert s["n_segments"] == 2
    assert s["samples"] == 13 * SR
    assert s["detections"] == {"yes": 3, "no": 1}
    assert s["detections_per_hour"]["yes"] == pytest.approx(3 / (13 / 3600))


def test_snapshotter_interval_and_history_plot(tmp_path, train_norm):
    tel = _fed_telemetry(train_norm, 6, seed=8)
    path = tmp_path / "t.jsonl"
    snap = JsonlSnapshotter(tel, path, interval_s=5)
    t0 = snap._next - 5
    assert snap.maybe_write(t0 + 1) is False
    assert snap.maybe_write(t0 + 5) is True
    assert snap.maybe_write(t0 + 6) is False
    snap.close()
    snaps = read_snapshots(path).snapshots
    assert len(snaps) == 2
    png = plot_history(snaps, tmp_path / "history.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


REAL_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "speech_commands_subset"
if not REAL_DATA.is_dir():
    REAL_DATA = Path("/work/shared/data/speech_commands_subset")


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="no Speech Commands subset here")
def test_real_clips_with_digital_silence_between_them_are_not_drift():
    """Issue 23: `kws monitor` said DRIFT on clean Speech Commands clips padded with digital zeros."""
    from kws_edge import KeywordDetector, load_bundle

    bundle = load_bundle()
    words = ["yes", "no", "up", "down", "left", "right", "stop", "bed", "cat", "happy"]
    files = [f for w in words for f in sorted((REAL_DATA / w).glob("*.wav"))[:12]]
    np.random.default_rng(0).shuffle(files)
    clips = [read_wav(f).samples.astype(np.float32) / (32768.0 if read_wav(f).samples.dtype == np.int16 else 1.0)
             for f in files]
    for audio in (np.concatenate(clips), _padded(clips, seed=0)):
        tel = DetectorTelemetry.for_manifest(bundle.manifest)
        det = KeywordDetector(bundle, telemetry=tel)
        for start in range(0, audio.size, 1600):
            det.process(audio[start:start + 1600])
        d = tel.drift()
        assert d["score"] is not None and d["flag"] is False, d
    assert d["silent_frames"] > 0  # the padded stream's zeros were set aside
