"""KeywordDetector behaviour with the tone bundle: fires once, not on negatives, chunking-independent."""

from __future__ import annotations

import numpy as np
import pytest

from support import tone_bundle as tones
from kws_edge.audio import read_wav
from kws_edge.detector import KeywordDetector, detect_samples
from kws_edge.errors import AudioFormatError, ConfigError
from kws_edge.model import KwsModel, fit_clip
from kws_edge.smoothing import Detection, DetectorConfig, PosteriorSmoother


@pytest.fixture(scope="module")
def detector(tone_bundle):
    return KeywordDetector(tone_bundle)


def _stream(seed, events, duration_s):
    return tones.stream(events, duration_s, np.random.default_rng(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_yes_pattern_fires_once(detector, seed):
    audio = _stream(seed, [("yes", 1.5)], 4.0)
    found = detect_samples(detector, audio)
    assert [d.label for d in found] == ["yes"]
    # time_s is the end of the window that triggered it: after the pattern began, within a clip of it
    assert 1.5 < found[0].time_s < 1.5 + 1.0 + 0.3
    assert found[0].score >= detector.config.threshold("yes")


def test_yes_and_no_in_one_stream(detector):
    audio = _stream(3, [("yes", 1.0), ("_unknown_", 2.8), ("no", 4.5), ("yes", 7.0)], 9.0)
    found = detect_samples(detector, audio)
    assert [d.label for d in found] == ["yes", "no", "yes"]
    assert [round(d.time_s) for d in found] == pytest.approx([1.5, 5.0, 7.5], abs=1)


def test_negatives_do_not_fire(detector):
    rng = np.random.default_rng(7)
    events = [("_unknown_", t) for t in np.arange(0.3, 14.5, 0.6)]
    assert detect_samples(detector, tones.stream(events, 15.0, rng)) == []
    assert detect_samples(detector, tones.noise(5 * 16000, rng, level=0.003)) == []
    assert detect_samples(detector, np.zeros(3 * 16000, np.int16)) == []


@pytest.mark.parametrize("chunk", [1, 160, 319, 1037, 1600, 48000])
def test_same_detections_for_any_chunking(detector, chunk):
    audio = _stream(4, [("no", 0.4), ("yes", 1.7)], 3.0)
    reference = detect_samples(detector, audio, chunk_samples=len(audio))
    ref_evals = detector.n_evaluations
    assert [d.label for d in reference] == ["no", "yes"]
    assert detect_samples(detector, audio, chunk_samples=chunk) == reference
    assert detector.n_evaluations == ref_evals


def test_int16_and_float_input_agree(detector):
    audio = _stream(5, [("yes", 0.5)], 2.5)
    as_int16 = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    a = detect_samples(detector, audio)
    b = detect_samples(detector, as_int16)
    assert [d.label for d in a] == [d.label for d in b] == ["yes"]
    assert a[0].time_s == b[0].time_s


def test_reset_restarts_stream_time_and_state(detector):
    audio = _stream(6, [("yes", 0.3)], 2.0)
    first = detect_samples(detector, audio)
    assert detector.time_s == pytest.approx(2.0)
    detector.reset()
    assert detector.time_s == 0 and detector.n_evaluations == 0
    # without reset the stream continues: the same audio again gives a later detection
    again = [d for i in range(0, len(audio), 1600) for d in detector.process(audio[i:i + 1600])]
    more = [d for i in range(0, len(audio), 1600) for d in detector.process(audio[i:i + 1600])]
    assert again == first
    # (the window is already full here, so it fires sooner after the pattern than at stream start)
    assert [d.label for d in more] == ["yes"] and 2.3 < more[0].time_s <= first[0].time_s + 2.0


def test_flush_hears_a_keyword_at_the_very_end(detector, tone_bundle_path):
    clip = read_wav(tone_bundle_path.parent / "tone_yes.wav").samples  # exactly one window long
    assert detect_samples(detector, clip) == []  # one evaluation: min_count=2 is not reached
    found = detect_samples(detector, clip, flush=True)
    assert [d.label for d in found] == ["yes"]


def test_flush_hears_a_keyword_at_the_very_end_of_an_int16_stream(detector, tone_bundle_path):
    """flush() feeds silence of the stream's own type: an int16 stream stays on its int16 path."""
    clip = read_wav(tone_bundle_path.parent / "tone_yes.wav").samples
    clip16 = (np.clip(clip, -1, 1) * 32767).astype(np.int16)
    detector.reset()
    assert [d for i in range(0, len(clip16), 160) for d in detector.process(clip16[i:i + 160])] == []
    assert [d.label for d in detector.flush()] == ["yes"]
    assert detector.n_samples == len(clip16) + detector.features.clip_samples


def test_callbacks_and_posteriors(tone_bundle):
    det = KeywordDetector(tone_bundle)
    seen: list[Detection] = []

    @det.on_detection
    def collect(d):
        seen.append(d)

    returned = detect_samples(det, _stream(8, [("no", 1.0)], 3.0))
    assert seen == returned and [d.label for d in seen] == ["no"]
    assert det.last_posteriors.shape == (4,)
    assert det.n_evaluations == (det.n_samples - 640) // 320 + 1 - 48


def test_overrides_and_stride(tone_bundle_path):
    det = KeywordDetector.from_bundle(tone_bundle_path, thresholds=1.0, stride_hops=2)
    assert det.config.thresholds == {"yes": 1.0, "no": 1.0} and det.config.stride_hops == 2
    detect_samples(det, _stream(9, [], 3.0))
    full = KeywordDetector.from_bundle(tone_bundle_path)
    detect_samples(full, _stream(9, [], 3.0))
    assert det.n_evaluations == (full.n_evaluations + 1) // 2
    # a threshold only a perfect score reaches: the yes pattern (int8 max 0.996) no longer fires
    assert detect_samples(det, _stream(0, [("yes", 1.0)], 3.0)) == []
    with pytest.raises(ConfigError, match="unknown detector setting 'treshold'"):
        KeywordDetector.from_bundle(tone_bundle_path, treshold=0.5)
    with pytest.raises(ConfigError, match="not a keyword"):
        KeywordDetector.from_bundle(tone_bundle_path, thresholds={"maybe": 0.5})
    with pytest.raises(ConfigError, match="min_count"):
        KeywordDetector.from_bundle(tone_bundle_path, min_count=0)


def test_bad_chunks_raise_audio_format_error(detector):
    with pytest.raises(AudioFormatError, match="NaN"):
        detector.process(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AudioFormatError, match="mono"):
        detector.process(np.zeros((10, 2), np.float32))
    with pytest.raises(AudioFormatError, match="divide by 32768"):
        detector.process(np.full(10, 300.0, np.float32))


def test_classify_clips(tone_bundle, tone_bundle_path):
    model = KwsModel(tone_bundle)
    for label in tones.LABELS:
        clip = read_wav(tone_bundle_path.parent / f"tone_{label.strip('_')}.wav").samples
        scores = model.classify(clip)
        assert model.labels[int(np.argmax(scores))] == label
        # shorter and longer clips are padded / centre-cropped
        padded = np.concatenate([np.zeros(8000, np.float32), clip, np.zeros(8000, np.float32)])
        assert model.labels[int(np.argmax(model.classify(padded)))] == label
    assert fit_clip(np.ones(10, np.float32), 4).tolist() == [1, 1, 1, 1]
    assert fit_clip(np.ones(2, np.float32), 4).tolist() == [0, 1, 1, 0]


def test_smoother_rules():
    cfg = DetectorConfig(smoothing_window_ms=0, default_threshold=0.5, min_count=2, suppression_ms=100)
    sm = PosteriorSmoother(("_silence_", "yes"), ("yes",), cfg, hop_s=0.02)
    scores = [0.9, 0.2, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9]
    hits = [sm.update(np.array([1 - p, p]), t * 0.02) for t, p in enumerate(scores)]
    # 3: two consecutive hops reached; 4-9: the same run, not re-armed; 10: dip re-arms; 12: fires;
    # 13: dip re-arms; 14-16: run, but within 100 ms of the hit at 0.24 s; 17 (0.34 s): fires
    assert [i for i, h in enumerate(hits) if h] == [3, 12, 17]
    sm.reset()
    assert sm.update(np.array([0.1, 0.9]), 0.0) is None and sm.update(np.array([0.1, 0.9]), 0.02) is not None
    with pytest.raises(ConfigError, match="not one of the model's labels"):
        PosteriorSmoother(("a",), ("yes",), cfg, hop_s=0.02)


def test_one_event_per_pattern_over_a_minute(detector):
    # regression: the tail of a pattern still in the window one suppression period after the first
    # event used to fire a second event; re-arming (score must drop below threshold) prevents it
    audio = tones.stream([("yes", t) for t in range(1, 60, 5)], 60.0, np.random.default_rng(0))
    found = detect_samples(detector, audio)
    assert [d.label for d in found] == ["yes"] * 12
    assert all(1 + 5 * i < d.time_s < 1 + 5 * i + 1.3 for i, d in enumerate(found))
