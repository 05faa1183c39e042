"""The one streaming evaluation: a long test recording through the real ``KeywordDetector``, scored.

The recording (:func:`build_stream`) strings together one-second clips of a
split (keywords and other words, at random gains, with random gaps) over a
background bed of that split's portion of the noise recordings (or generated
pink noise), whose level changes every ``noise_segment_s`` seconds. The ground
truth is the list of placed clips with their times. Every placed clip also
records its signal-to-noise ratio (``snr_db``: the RMS of the clip as placed
against the RMS of the noise bed under it, the definition
``augment.noise_snr_db`` uses in training; None over a silent bed): the stream
mixes quiet words into loud noise, and whether the misses are the model's or
the noise's is the first question.

:func:`evaluate_stream` runs a bundle's detector over it (:func:`run_detector`)
and scores the detections with :mod:`kws_edge.metrics` (the tolerance window,
FRR, FA/h, the FRR by SNR band, the DET curve replayed through the detector's
own smoother, per-keyword thresholds for a target FA/h). ``kws evaluate``, the
pipeline's evaluate stage and the shipped bundles' recipes all measure with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..config import to_dict
from ..detector import KeywordDetector
from ..metrics import (DEFAULT_TOLERANCE_MS, UNKNOWN_LABEL, IsolatedConfig, StreamConfig, det_curve,
                       evaluation_hop_s, replay_detections, score_detections, select_thresholds)
from ..smoothing import Detection, DetectorConfig
from .config import TrainConfig
from .dataset import Clip, NoiseBank, load_clip_audio, scale_to_dbfs

__all__ = ["StreamConfig", "TestStream", "build_stream", "run_detector", "evaluate_stream", "IsolatedConfig",
           "isolated_detection"]


@dataclass
class TestStream:
    samples: np.ndarray
    sample_rate_hz: int
    events: list[dict]  # {"label", "word", "start_s", "end_s"} for every placed clip

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


def _noise_bed(n: int, sr: int, noise: list[np.ndarray], cfg: StreamConfig, rng: np.random.Generator) -> np.ndarray:
    bed = np.zeros(n, np.float32)
    seg = max(1, int(cfg.noise_segment_s * sr))
    for start in range(0, n, seg):
        length = min(seg, n - start)
        if noise:
            src = noise[int(rng.integers(len(noise)))]
            if len(src) < length:
                src = np.tile(src, length // max(1, len(src)) + 1)
            off = int(rng.integers(0, len(src) - length + 1))
            piece = src[off:off + length]
        else:
            from .synthetic import make_noise

            piece = make_noise("pink", length, rng, sample_rate_hz=sr)
        bed[start:start + length] = scale_to_dbfs(piece, float(rng.uniform(*cfg.noise_dbfs)))
    # short fades hide the level steps, which a real room does not have
    return bed


def build_stream(root: Path, clips: list[Clip], train_config: TrainConfig, noise: NoiseBank | None,
                 config: StreamConfig = StreamConfig(), *, split: str = "test") -> TestStream:
    """The test recording from ``clips`` (keyword and unknown clips of one split)."""
    rng = np.random.default_rng(config.seed)
    sr = train_config.features.sample_rate_hz
    clip_n = train_config.features.clip_samples
    keywords = [c for c in clips if c.label in train_config.keywords]
    others = [c for c in clips if c.label == UNKNOWN_LABEL]
    if not keywords:
        from ..errors import DataError

        raise DataError(f"the {split} split has no keyword clips to build a test stream from")
    total = int(config.minutes * 60 * sr)
    placements = []
    pos = int(rng.uniform(*config.gap_s) * sr)
    kw_order = rng.permutation(len(keywords)).tolist()
    ot_order = rng.permutation(len(others)).tolist() if others else []
    while pos + clip_n < total:
        use_kw = not others or rng.random() < config.keyword_share
        if use_kw:
            if not kw_order:
                kw_order = rng.permutation(len(keywords)).tolist()
            clip = keywords[kw_order.pop()]
        else:
            if not ot_order:
                ot_order = rng.permutation(len(others)).tolist()
            clip = others[ot_order.pop()]
        placements.append((pos, clip, float(rng.uniform(*config.clip_gain_db))))
        pos += clip_n + int(rng.uniform(*config.gap_s) * sr)
    bed = _noise_bed(total, sr, noise.split_audio(split) if noise else [], config, rng)
    out = bed.astype(np.float64)
    events = []
    for start, clip, gain_db in placements:
        audio = load_clip_audio(root, clip, train_config, noise) * (10 ** (gain_db / 20.0))
        noise_ms = float(np.mean(np.square(out[start:start + clip_n])))  # the bed alone: clips never overlap
        out[start:start + clip_n] += audio
        speech_ms = float(np.mean(np.square(audio, dtype=np.float64)))
        snr_db = 10.0 * np.log10(speech_ms / noise_ms) if noise_ms > 0 and speech_ms > 0 else None
        events.append({"label": clip.label, "word": clip.word, "path": clip.path,
                       "start_s": start / sr, "end_s": (start + clip_n) / sr,
                       "snr_db": None if snr_db is None else round(float(snr_db), 2)})
    return TestStream(samples=np.clip(out, -1.0, 1.0).astype(np.float32), sample_rate_hz=sr, events=events)


def run_detector(bundle: Bundle, stream: TestStream, config: DetectorConfig | None = None, *,
                 num_threads: int = 1) -> tuple[list[Detection], np.ndarray, np.ndarray]:
    """Feed the stream hop by hop through a real ``KeywordDetector`` (window or streaming model).

    Returns ``(detections, posteriors [n_evals, n_labels], times_s [n_evals])``: every evaluated
    posterior row with the end of its window, as ``KeywordDetector.on_posteriors`` reports them.
    """
    det = KeywordDetector(bundle, config=config, num_threads=num_threads)
    rows: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    det.on_posteriors(lambda posteriors, times_s: (rows.append(posteriors), ends.append(times_s)))
    hop = det.features.hop_samples
    detections: list[Detection] = []
    samples = stream.samples
    for start in range(0, len(samples), hop):
        detections += det.process(samples[start:start + hop])
    n_labels = len(det.labels)
    posts = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, n_labels), np.float32)
    times = np.concatenate(ends) if ends else np.zeros(0, np.float64)
    return detections, posts.reshape(-1, n_labels), times.astype(np.float64)


def evaluate_stream(bundle: Bundle, stream: TestStream, *, config: DetectorConfig | None = None,
                    tolerance_ms: float = DEFAULT_TOLERANCE_MS, target_fa_per_hour: float | None = None,
                    det: bool = True) -> dict[str, Any]:
    """Run, score, and (optionally) sweep thresholds; JSON-ready result.

    The result is :func:`kws_edge.metrics.score_detections` of the detector at ``config`` (default: the
    bundle's), plus ``detector`` (those settings), ``det_curve`` (with ``det``) and, with
    ``target_fa_per_hour``, ``selected``: per-keyword thresholds for that target
    (:func:`~kws_edge.metrics.select_thresholds`) and their FRR and FA/h on this same stream.
    """
    base = config or bundle.manifest.detector
    detections, posteriors, times = run_detector(bundle, stream, base)
    m = bundle.manifest
    result = score_detections(detections, stream.events, m.keywords, stream.duration_s, tolerance_ms)
    result["detector"] = to_dict(base)
    if det:
        result["det_curve"] = det_curve(posteriors, times, bundle, stream, base, tolerance_ms=tolerance_ms)
    if target_fa_per_hour is not None and det:
        chosen = select_thresholds(result["det_curve"], m.keywords, target_fa_per_hour)
        cfg = dataclasses.replace(base, thresholds=chosen)
        dets = replay_detections(posteriors, times, m.labels, m.keywords, cfg, evaluation_hop_s(bundle, cfg))
        s = score_detections(dets, stream.events, m.keywords, stream.duration_s, tolerance_ms)
        result["selected"] = {"target_false_accepts_per_hour": target_fa_per_hour, "thresholds": chosen,
                              "false_reject_rate": s["false_reject_rate"],
                              "false_accepts_per_hour": s["false_accepts_per_hour"]}
    return result


def isolated_detection(bundle: Bundle, root: Path, clips: list[Clip], train_config: TrainConfig,
                       noise: NoiseBank | None, config: IsolatedConfig = IsolatedConfig(), *,
                       detector_config: DetectorConfig | None = None, split: str = "validation") -> dict[str, Any]:
    """What a user who says a keyword once gets: every keyword clip of ``clips`` as its own recording.

    Each recording goes through a fresh ``KeywordDetector`` (``reset``) as ``process(recording)``
    then ``flush()`` (the end of input), at the bundle's detector defaults or ``detector_config``.
    A clip is *detected* when the detector reports its keyword at least once; reporting another
    keyword counts as ``wrong`` (and the clip is then detected only if its own keyword came too).
    """
    rng = np.random.default_rng(config.seed)
    sr = train_config.features.sample_rate_hz
    det = KeywordDetector(bundle, config=detector_config)
    pad_n = int(round(config.pad_s * sr))
    beds = noise.split_audio(split) if noise else []
    keywords = tuple(bundle.manifest.keywords)
    per_kw = {k: {"n": 0, "detected": 0, "wrong": 0} for k in keywords}
    missed = []
    for clip in (c for c in clips if c.label in keywords):
        audio = load_clip_audio(root, clip, train_config, noise).astype(np.float64)
        n = audio.size + 2 * pad_n
        if beds:
            src = beds[int(rng.integers(len(beds)))]
            if len(src) < n:
                src = np.tile(src, n // max(1, len(src)) + 1)
            off = int(rng.integers(0, len(src) - n + 1))
            bed = src[off:off + n].astype(np.float64)
        else:
            from .synthetic import make_noise

            bed = make_noise("pink", n, rng, sample_rate_hz=sr).astype(np.float64)
        snr = float(rng.uniform(*config.snr_db))
        speech_rms = float(np.sqrt(np.mean(np.square(audio))))
        bed_rms = float(np.sqrt(np.mean(np.square(bed))))
        if speech_rms > 0 and bed_rms > 0:
            bed *= speech_rms / 10 ** (snr / 20.0) / bed_rms
        bed[pad_n:pad_n + audio.size] += audio
        det.reset()
        found = det.process(np.clip(bed, -1.0, 1.0).astype(np.float32)) + det.flush()
        labels = {d.label for d in found}
        row = per_kw[clip.label]
        row["n"] += 1
        row["detected"] += int(clip.label in labels)
        row["wrong"] += int(bool(labels - {clip.label}))
        if clip.label not in labels:
            missed.append({"path": clip.path, "label": clip.label, "snr_db": round(snr, 2),
                           "heard": sorted(labels)})
    for row in per_kw.values():
        row["detection_rate"] = row["detected"] / row["n"] if row["n"] else None
    n = sum(r["n"] for r in per_kw.values())
    return {"n_clips": n, "detection_rate": sum(r["detected"] for r in per_kw.values()) / n if n else None,
            "per_keyword": per_kw, "missed": missed[:100], "config": to_dict(config),
            "detector": to_dict(detector_config or bundle.manifest.detector),
            "method": "each keyword clip alone between pad_s of noise at a random SNR; fresh detector, "
                      "process(recording) then flush(); detected = its keyword reported at least once"}
