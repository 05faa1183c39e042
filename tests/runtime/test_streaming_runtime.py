"""Streaming inference in the runtime: parity with the window model, chunking, gate, smoothing.

Runs on ``tests/data/tone_tcn_bundle`` (made by ``support.streaming_bundle``):
an int8 window model and its int8 streaming twin, trained on synthetic tones.
No TensorFlow here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kws_edge.bundle import load_bundle
from kws_edge.detector import KeywordDetector, detect_samples
from kws_edge.errors import AudioFormatError, BundleError, ConfigError
from kws_edge.features import mfcc
from kws_edge.model import KwsModel
from kws_edge.smoothing import DetectorConfig, PosteriorSmoother
from kws_edge.streaming import EnergyGate, StreamingScorer, gate_threshold_c0

from support import tone_bundle as tone

HERE = Path(__file__).resolve().parents[1]  # tests/

BUNDLE = HERE / "data" / "tone_tcn_bundle"
WINDOW_ONLY_BUNDLE = HERE / "data" / "tone_bundle"
#: documented int8 tolerance: streaming int8 vs window int8 probabilities (two separately
#: calibrated int8 graphs of the same float function; 1/256 is one output step)
INT8_MAX_ABS = 0.1
INT8_MEAN_ABS = 0.01
#: detections of the two paths must match in label and lie within this many seconds
TOLERANCE_S = 0.1


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE)


@pytest.fixture(scope="module")
def tone_stream() -> np.ndarray:
    rng = np.random.default_rng(5)
    events = [(("yes", "no", "_unknown_")[i % 3], 1.0 + i * 1.7) for i in range(24)]
    return tone.stream(events, 44.0, rng)


def _rows(scorer: StreamingScorer, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors and frame counts of one score() call."""
    scores = scorer.score(frames)
    return scores.posteriors, scores.frame_counts


def _window_scores(model: KwsModel, feats: np.ndarray, counts: np.ndarray) -> np.ndarray:
    n = model.window_frames
    return np.stack([model.scores_features(feats[c - n:c]) for c in counts])


def test_streaming_rows_match_window_model(bundle, tone_stream):
    feats = mfcc(tone_stream, bundle.manifest.features)
    runner = StreamingScorer(bundle)
    post, counts = _rows(runner, feats)
    model = KwsModel(bundle)
    # one row per frame from the first complete window on; blocks leave < block_frames waiting
    assert counts[0] == model.window_frames
    assert np.array_equal(counts, np.arange(model.window_frames, counts[-1] + 1))
    assert len(feats) - counts[-1] < runner.block_frames
    ref = _window_scores(model, feats, counts)
    agree = float(np.mean(ref.argmax(1) == post.argmax(1)))
    assert agree >= 0.99, agree
    diff = np.abs(ref - post)
    assert diff.max() <= INT8_MAX_ABS and diff.mean() <= INT8_MEAN_ABS, (diff.max(), diff.mean())
    assert runner.stats.invocations == -(-(counts[-1] - runner.context_frames) // runner.block_frames) or \
        runner.stats.invocations == (len(feats) - runner.context_frames) // runner.block_frames


@pytest.mark.parametrize("frames_per_call", [1, 3, 7, 50])
def test_runner_is_chunking_invariant(bundle, tone_stream, frames_per_call):
    feats = mfcc(tone_stream[: 16000 * 8], bundle.manifest.features)
    runner = StreamingScorer(bundle)
    whole_post, whole_counts = _rows(runner, feats)
    runner.reset()
    parts = [_rows(runner, feats[i:i + frames_per_call]) for i in range(0, len(feats), frames_per_call)]
    post = np.concatenate([p for p, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    assert np.array_equal(counts, whole_counts)
    assert np.array_equal(post, whole_post)


def test_reset_restores_the_zero_state(bundle, tone_stream):
    feats = mfcc(tone_stream[: 16000 * 4], bundle.manifest.features)
    runner = StreamingScorer(bundle)
    first, _ = _rows(runner, feats)
    runner.reset()
    again, _ = _rows(runner, feats)
    assert np.array_equal(first, again)
    assert runner.stats.frames_in == len(feats)


def _events(dets):
    return [(d.label, d.time_s) for d in dets]


def test_detector_uses_streaming_model_and_finds_the_same_keywords(bundle, tone_stream):
    window = KeywordDetector(bundle, streaming=False)
    stream = KeywordDetector(bundle)
    assert window.streaming is None and stream.streaming is not None
    a = detect_samples(window, tone_stream)
    b = detect_samples(stream, tone_stream)
    assert len(a) >= 12  # the tone model finds its keywords
    assert len(a) == len(b)
    for (la, ta), (lb, tb) in zip(_events(a), _events(b)):
        assert la == lb and abs(ta - tb) <= TOLERANCE_S
    # evaluation count: one per hop after the first window (minus frames still waiting for the interval)
    held_back = stream.streaming.block_frames * stream.streaming.blocks_per_call
    assert abs(stream.n_evaluations - window.n_evaluations) < held_back


@pytest.mark.parametrize("chunk", [1, 160, 1279, 1280, 1600, None])
def test_streaming_detector_same_events_for_any_chunking(bundle, tone_stream, chunk):
    audio = tone_stream[: 16000 * 12]
    det = KeywordDetector(bundle)
    ref = _events(detect_samples(det, audio, chunk_samples=len(audio)))
    got = _events(detect_samples(det, audio, chunk_samples=chunk or len(audio)))
    assert ref and got == ref


def test_stride_hops_with_streaming(bundle, tone_stream):
    audio = tone_stream[: 16000 * 12]
    win = KeywordDetector(bundle, streaming=False, config=DetectorConfig(stride_hops=2))
    st = KeywordDetector(bundle, config=DetectorConfig(stride_hops=2))
    a, b = detect_samples(win, audio), detect_samples(st, audio)
    assert [d.label for d in a] == [d.label for d in b]
    assert all(abs(x.time_s - y.time_s) <= TOLERANCE_S for x, y in zip(a, b))
    assert abs(win.n_evaluations - st.n_evaluations) <= st.streaming.block_frames


def test_callbacks_and_posteriors_on_streaming_path(bundle):
    det = KeywordDetector(bundle)
    seen = []
    det.on_detection(seen.append)
    audio = tone.stream([("yes", 1.2)], 3.0, np.random.default_rng(1))
    events = detect_samples(det, audio)
    assert [e.label for e in events] == ["yes"] and seen == events
    assert det.last_posteriors.shape == (4,) and det.n_evaluations > 0


def test_bundle_without_streaming_model(bundle):
    plain = load_bundle(WINDOW_ONLY_BUNDLE)
    assert KeywordDetector(plain).streaming is None  # auto: window path
    with pytest.raises(BundleError, match="no streaming model"):
        KeywordDetector(plain, streaming=True)
    with pytest.raises(BundleError, match="no streaming model"):
        StreamingScorer(plain)


# ----------------------------------------------------------------------------- energy gate

def _gapped_stream(rng: np.random.Generator) -> np.ndarray:
    """Keywords separated by long digital-quiet gaps (quiet noise far below the gate)."""
    parts = []
    for label in ("yes", "no", "yes", "no"):
        sound = tone.stream([(label, 0.5)], 1.5, rng)
        parts.append(sound)
        parts.append((1e-5 * rng.standard_normal(16000 * 3)).astype(np.float32))
    return np.concatenate(parts)


def test_gate_skips_quiet_stretches_and_resumes_exactly(bundle):
    audio = _gapped_stream(np.random.default_rng(2))
    feats = mfcc(audio, bundle.manifest.features)
    plain = StreamingScorer(bundle)
    gated = StreamingScorer(bundle, gate=EnergyGate(level_dbfs=-70.0))
    p_ref, c_ref = _rows(plain, feats)
    parts = [_rows(gated, feats[i:i + 5]) for i in range(0, len(feats), 5)]
    p_g = np.concatenate([p for p, _ in parts])
    c_g = np.concatenate([c for _, c in parts])
    assert np.array_equal(c_g, c_ref)
    st = gated.stats
    assert 0.3 < st.gated_share < 0.8 and st.resyncs >= 3
    silence = bundle.manifest.labels.index("_silence_")
    is_gated = np.all(p_g == np.eye(len(bundle.manifest.labels))[silence], axis=1)
    assert is_gated.sum() == st.gated_frames
    # every row the model computed is exactly the ungated row (the state was rebuilt from history)
    assert np.array_equal(p_g[~is_gated], p_ref[~is_gated])
    # the window model also calls every gated window silence
    assert np.mean(p_ref[is_gated].argmax(1) == silence) >= 0.99
    assert st.invocations < plain.stats.invocations


def test_gated_detector_finds_the_same_keywords(bundle):
    audio = _gapped_stream(np.random.default_rng(3))
    a = detect_samples(KeywordDetector(bundle), audio)
    b = detect_samples(KeywordDetector(bundle, gate=EnergyGate(level_dbfs=-70.0)), audio)
    assert [d.label for d in a] == ["yes", "no", "yes", "no"]
    assert _events(a) == _events(b)


def test_gate_level_is_checked_and_follows_features(bundle):
    with pytest.raises(ConfigError, match="level_dbfs"):
        EnergyGate(level_dbfs=3.0)
    fc = bundle.manifest.features
    assert gate_threshold_c0(-80.0, fc) < gate_threshold_c0(-50.0, fc) < gate_threshold_c0(-20.0, fc)


# ----------------------------------------------------------------------------- smoothing in blocks

def test_update_many_equals_update_row_by_row():
    labels, keywords = ("_silence_", "_unknown_", "yes", "no"), ("yes", "no")
    rng = np.random.default_rng(0)
    for trial in range(60):
        cfg = DetectorConfig(min_count=int(rng.integers(1, 4)),
                             smoothing_window_ms=float(rng.choice([0, 20, 100, 200, 500])),
                             suppression_ms=float(rng.choice([0, 300, 1000])),
                             default_threshold=float(rng.uniform(0.3, 0.9)))
        n = int(rng.integers(50, 300))
        post = rng.dirichlet([1, 1, 0.3, 0.3], n)
        for _ in range(3):
            s = rng.integers(0, n - 20)
            post[s:s + 15] = [0.0, 0.0, 0.95, 0.05]
        times = np.arange(n) * 0.02
        one, many = PosteriorSmoother(labels, keywords, cfg, 0.02), PosteriorSmoother(labels, keywords, cfg, 0.02)
        a = [d for d in (one.update(p, t) for p, t in zip(post, times)) if d is not None]
        b, i = [], 0
        while i < n:
            k = int(rng.integers(1, 30))
            b += many.update_many(post[i:i + k], times[i:i + k])
            i += k
        assert [(d.label, d.time_s) for d in a] == [(d.label, d.time_s) for d in b], trial
        assert all(abs(x.score - y.score) < 1e-9 for x, y in zip(a, b))
        np.testing.assert_allclose(one.last_smoothed, many.last_smoothed, atol=1e-6)


def test_streaming_runtime_never_imports_tensorflow():
    code = textwrap.dedent(f"""
        import sys
        sys.modules["tensorflow"] = None
        import numpy as np
        from kws_edge.bundle import load_bundle
        from kws_edge.detector import KeywordDetector
        det = KeywordDetector(load_bundle({str(BUNDLE)!r}))
        assert det.streaming is not None
        det.process(np.zeros(16000, np.float32))
        assert "tensorflow" not in [m for m in sys.modules if sys.modules[m] is not None]
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_from_bundle_passes_streaming_choice():
    assert KeywordDetector.from_bundle(BUNDLE, streaming=False).streaming is None
    det = KeywordDetector.from_bundle(BUNDLE, gate=EnergyGate(level_dbfs=-65.0), min_count=3)
    assert det.streaming is not None and det.streaming.gate.level_dbfs == -65.0 and det.config.min_count == 3


def test_kws_convert_streaming_refuses_a_window_only_architecture(tmp_path, capsys):
    from kws_edge.converters.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"model": {"architecture": "ds_cnn", "width": 64, "depth": 4}}')
    with pytest.raises(SystemExit) as exit_info:
        main([str(run), "--device", "x86-64", "--out", str(tmp_path / "b"), "--streaming"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = next(x for x in err.splitlines() if "--streaming needs a streamable model" in x)
    assert line.startswith("error:") and "kws-train --model tcn" in line
    assert not (tmp_path / "b").exists()


def test_streaming_quality_not_worse_on_a_long_stream(bundle):
    """FRR and FA/h of the streaming detector vs the window detector, scored by kws_edge.metrics."""
    from kws_edge.metrics import score_detections

    rng = np.random.default_rng(11)
    labels = ("yes", "no", "_unknown_", "_unknown_")
    events, t = [], 0.7
    while t < 170.0:
        events.append((labels[int(rng.integers(len(labels)))], t))
        t += float(rng.uniform(1.2, 2.5))
    audio = tone.stream(events, 172.0, rng, noise_level=0.004)
    truth = [{"label": label, "start_s": start, "end_s": start + 1.0} for label, start in events]
    scores = {}
    for name, det in (("window", KeywordDetector(bundle, streaming=False)), ("streaming", KeywordDetector(bundle))):
        dets = detect_samples(det, audio, chunk_samples=1600)
        scores[name] = score_detections(dets, truth, bundle.manifest.keywords, len(audio) / 16000, 500.0)
    w, s = scores["window"], scores["streaming"]
    assert w["n_keywords"] >= 40
    assert s["false_reject_rate"] <= w["false_reject_rate"] + 1e-9, (s, w)
    assert s["false_accepts_per_hour"] <= w["false_accepts_per_hour"] + 1e-9, (s, w)


# ----------------------------------------------------------------------------- fewer, larger calls

@pytest.mark.parametrize("interval_ms, blocks", [(200.0, 2), (250.0, 3), (100.0, 1), (1.0, 1)])
def test_interval_ms_halves_the_calls_and_keeps_every_detection(bundle, tone_stream, interval_ms, blocks):
    audio = tone_stream[: 16000 * 12]
    ref = KeywordDetector(bundle, interval_ms=100.0)  # one block per call: the earliest detections
    assert ref.streaming.blocks_per_call == 1
    slow = KeywordDetector(bundle, interval_ms=interval_ms)
    assert slow.streaming.blocks_per_call == blocks
    calls = []  # features and model run once per call of the scorer
    inner = slow.scorer.score
    slow.scorer.score = lambda frames: calls.append(len(frames)) or inner(frames)
    a = detect_samples(ref, audio, chunk_samples=1600)
    b = detect_samples(slow, audio, chunk_samples=1600)
    assert a and [d.to_dict() for d in a] == [d.to_dict() for d in b]  # same label, time and score
    # the same rows, except up to (blocks - 1) blocks still held back at the end of the audio
    assert 0 <= ref.n_evaluations - slow.n_evaluations < blocks * slow.streaming.block_frames
    assert len(calls) <= -(-len(audio) // (1600 * blocks)) + 1


def test_default_interval_is_two_blocks_of_the_shipped_model(bundle):
    from kws_edge.detector import DEFAULT_INTERVAL_MS

    shipped = KeywordDetector.from_bundle()
    block_ms = shipped.streaming.block_frames * shipped.features.hop_ms
    assert (DEFAULT_INTERVAL_MS, block_ms) == (200.0, 100.0)
    assert shipped.streaming.blocks_per_call == 2
    assert KeywordDetector(bundle).streaming.blocks_per_call == KeywordDetector(bundle, interval_ms=200.0).streaming.blocks_per_call


def test_interval_ms_needs_a_streaming_model_and_a_positive_value(bundle):
    with pytest.raises(ConfigError, match="interval_ms needs the bundle's streaming model"):
        KeywordDetector(load_bundle(WINDOW_ONLY_BUNDLE), interval_ms=200.0)
    with pytest.raises(ConfigError, match="interval_ms=0"):
        KeywordDetector(bundle, interval_ms=0)
    with pytest.raises(ConfigError, match="blocks_per_call=0"):
        StreamingScorer(bundle, blocks_per_call=0)
    assert KeywordDetector.from_bundle(BUNDLE, interval_ms=300.0).streaming.blocks_per_call == 3
    # a loaded bundle works as well as a path
    loaded = KeywordDetector.from_bundle(bundle, interval_ms=300.0, thresholds=0.5)
    assert loaded.streaming.blocks_per_call == 3 and set(loaded.config.thresholds.values()) == {0.5}


# ----------------------------------------------------------------------------- cheap held chunks (issue 21)

def _posteriors_by_call(det: KeywordDetector, chunks) -> tuple[list, list]:
    events, rows = [], []
    det.reset()
    for c in chunks:
        events += [d.to_dict() for d in det.process(c)]
        rows.append((det.n_evaluations, det.last_posteriors.tolist()))
    return events, rows


def test_int16_float32_and_mixed_chunks_give_the_same_detections(bundle, tone_stream):
    """int16 chunks are held as int16 and converted inside the MFCC: the same numbers as float32 chunks of
    the same samples, and a stream that switches type half-way changes nothing either."""
    audio16 = (np.clip(tone_stream[: 16000 * 12], -1, 1) * 32767).astype(np.int16)
    audio32 = audio16.astype(np.float32) / np.float32(32768)
    det = KeywordDetector(bundle)
    chunk = 480
    as16 = [audio16[i:i + chunk] for i in range(0, len(audio16), chunk)]
    as32 = [audio32[i:i + chunk] for i in range(0, len(audio32), chunk)]
    mixed = [a if (i // 3) % 2 else b for i, (a, b) in enumerate(zip(as16, as32))]
    ref = _posteriors_by_call(det, as32)
    assert len(ref[0]) >= 4
    assert _posteriors_by_call(det, as16) == ref
    assert _posteriors_by_call(det, mixed) == ref


def test_held_chunks_are_copied_so_callers_may_reuse_their_buffer(bundle, tone_stream):
    """A microphone callback refills one buffer: a chunk held until the interval completes must not change."""
    audio = tone_stream[: 16000 * 12]
    det = KeywordDetector(bundle)
    ref = _posteriors_by_call(det, [audio[i:i + 160] for i in range(0, len(audio), 160)])
    buf = np.empty(160, np.float32)

    def reused():
        for i in range(0, len(audio), 160):
            part = audio[i:i + 160]
            if len(part) < len(buf):
                yield part.copy()
                return
            buf[:] = part
            yield buf

    assert _posteriors_by_call(det, reused()) == ref


def test_a_bad_chunk_is_refused_at_once_and_loses_no_held_audio(bundle, tone_stream):
    audio = tone_stream[: 16000 * 6]
    det = KeywordDetector(bundle)
    ref = _posteriors_by_call(det, [audio[i:i + 160] for i in range(0, len(audio), 160)])
    det.reset()
    events, rows = [], []
    for k, i in enumerate(range(0, len(audio), 160)):
        if k == 7:  # mid-interval: chunks are being held
            with pytest.raises(AudioFormatError, match="NaN"):
                det.process(np.array([0.1, np.nan], np.float32))
            with pytest.raises(AudioFormatError, match="float samples up to"):
                det.process(np.full(10, 300.0, np.float32))
        events += [d.to_dict() for d in det.process(audio[i:i + 160])]
        rows.append((det.n_evaluations, det.last_posteriors.tolist()))
    assert (events, rows) == ref


# ----------------------------------------------------------------------------- the public scorer API (issue 19)

@pytest.mark.parametrize("streaming", [True, False])
def test_on_posteriors_reports_every_evaluated_row_with_its_time(bundle, tone_stream, streaming):
    """Every row the smoother sees, in order, with the end of its window; the same for any chunking."""
    audio = tone_stream[: 16000 * 8]
    got = {}
    for chunk in (160, 1600, len(audio)):
        det = KeywordDetector(bundle, streaming=streaming)
        rows, times = [], []
        det.on_posteriors(lambda p, t: (rows.append(np.array(p)), times.append(np.array(t))))
        events = detect_samples(det, audio, chunk_samples=chunk, flush=True)
        post, t = np.concatenate(rows), np.concatenate(times)
        assert len(post) == len(t) == det.n_evaluations
        n = det.features.frames_per_clip  # evaluation e ends at frame n + e (stride 1), as the window path counts
        assert np.array_equal(t, ((n + np.arange(len(t)) - 1) * 320 + 640) / 16000)
        assert np.array_equal(post[-1], det.last_posteriors)
        assert {e.time_s for e in events} <= set(t.tolist())  # a detection carries the time of its row
        got[chunk] = (post, t, [e.to_dict() for e in events])
    ref = got[len(audio)]
    for post, t, events in got.values():
        assert np.array_equal(post, ref[0]) and np.array_equal(t, ref[1]) and events == ref[2]


def test_scorers_are_public_and_interchangeable(bundle, tone_stream):
    """Both scorers keep the Scorer protocol: frames in, rows with their frame counts out; the detector
    runs whichever it was given, and the window model is only loaded when it runs."""
    from kws_edge.scoring import Scorer, Scores, WindowScorer

    feats = mfcc(tone_stream[: 16000 * 4], bundle.manifest.features)
    window = KwsModel(bundle)
    scorers = {"streaming": StreamingScorer(bundle), "window": WindowScorer(window, stride_hops=2)}
    for name, scorer in scorers.items():
        assert isinstance(scorer, Scorer), name
        assert scorer.labels == bundle.manifest.labels and scorer.window_frames == 49
        scores = scorer.score(feats)
        assert isinstance(scores, Scores) and scores.first_frame == 49
        counts = scores.frame_counts
        assert counts[0] == 49 and np.all(np.diff(counts) == scores.step_frames)
        assert scores.step_frames == (2 if name == "window" else 1)
        ends = scores.end_samples(window_samples=640, hop_samples=320)
        assert np.array_equal(ends, (counts - 1) * 320 + 640)
        assert 1 <= scorer.frames_due() <= 10
    # the streaming rows every other hop are the window scorer's evaluations (same windows, int8 tolerance)
    s, w = scorers["streaming"], scorers["window"]
    s.reset(), w.reset()
    every = s.score(feats).every(2, first_window_frames=49)
    rows = w.score(feats)
    n = min(len(every.posteriors), len(rows.posteriors))
    assert np.array_equal(every.frame_counts[:n], rows.frame_counts[:n])
    assert np.abs(every.posteriors[:n] - rows.posteriors[:n]).max() <= INT8_MAX_ABS
    # the detector: the window model's interpreter is built only on demand when the streaming model runs
    det = KeywordDetector(bundle)
    detect_samples(det, tone_stream[: 16000 * 2])
    assert det._model is None and det.backend.startswith(det.scorer.engine.backend.split()[0])
    assert det.model.window_frames == 49 and det._model is not None
    assert isinstance(KeywordDetector(bundle, streaming=False).scorer, WindowScorer)


def test_streaming_io_contract_is_one_definition(bundle):
    """The runtime's contract (also used by kws-convert and the TFLM check): tensors by rank, block and context
    from the model, the state fed back as it is when both state tensors share their quantisation."""
    from kws_edge.engine import Engine
    from kws_edge.streaming import StreamingIO, tensor_roles

    io = StreamingIO(Engine(bundle.streaming_model_bytes))
    assert (io.block_frames, io.context_frames) == (5, 4) and io.same_state_quantization
    assert io.zero_state().shape == io.state_in.shape and np.all(io.zero_state() == io.state_in.zero_point)
    assert tensor_roles([(1, 1232), (1, 9, 10)], [(1, 5, 4), (1, 1232)]) == (1, 0, 0, 1)
    with pytest.raises(BundleError, match="2 inputs"):
        tensor_roles([(1, 9, 10)], [(1, 5, 4), (1, 1232)])
    with pytest.raises(ConfigError, match="ranks"):
        tensor_roles([(1, 9), (1, 1232)], [(1, 5, 4), (1, 1232)], error=ConfigError)


def test_one_frame_quantizer_for_both_models(bundle, tone_stream):
    """FrameQuantizer is the models' input preparation: within one step of normalise-then-quantise, and the
    streaming scorer and the window model prepare the same frames alike when their inputs share a scale."""
    from kws_edge.scoring import FrameQuantizer

    feats = mfcc(tone_stream[: 16000 * 4], bundle.manifest.features)
    model = KwsModel(bundle)
    q = FrameQuantizer(bundle.manifest.normalization, model.input)
    two_steps = model.engine.quantize(bundle.manifest.normalization.apply(feats), model.input)
    assert np.abs(q(feats).astype(int) - two_steps.astype(int)).max() <= 1
    assert np.mean(q(feats) == two_steps) > 0.999
    out = np.empty(feats.shape, q.dtype)
    assert q(feats, out=out) is out and np.array_equal(out, model.prepare(feats))
    scorer = StreamingScorer(bundle)
    assert scorer.quantizer.tensor == scorer.io.frames


def test_telemetry_attached_after_construction_sees_every_chunk(bundle, tone_stream):
    """int16 chunks that complete nothing skip validation and telemetry only while no telemetry is attached."""
    from kws_edge.telemetry import DetectorTelemetry

    audio16 = (np.clip(tone_stream[: 16000 * 3], -1, 1) * 32767).astype(np.int16)
    det = KeywordDetector(bundle)
    det.telemetry = DetectorTelemetry.for_manifest(bundle.manifest)
    for i in range(0, len(audio16), 160):
        det.process(audio16[i:i + 160])
    snap = det.telemetry.snapshot()
    assert snap["samples"] == len(audio16) == det.n_samples and snap["evaluations"] == det.n_evaluations > 0
    det.telemetry = None
    det.reset()
    assert det.process(audio16[:160]) == [] and det.n_samples == 160


def test_energy_gate_needs_the_streaming_model_and_a_silence_label(bundle):
    with pytest.raises(ConfigError, match="energy gate runs the streaming model"):
        KeywordDetector(bundle, streaming=False, gate=EnergyGate())
    with pytest.raises(ConfigError, match="energy gate runs the streaming model"):
        KeywordDetector(load_bundle(WINDOW_ONLY_BUNDLE), gate=EnergyGate())
