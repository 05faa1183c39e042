"""Streaming evaluation: a long test recording through the real ``KeywordDetector``.

The recording (:func:`build_stream`) strings together one-second clips of a
split (keywords and other words, at random gains, with random gaps) over a
background bed of that split's portion of the noise recordings (or generated
pink noise), whose level changes every ``noise_segment_s`` seconds. The ground
truth is the list of placed clips with their times.

Scoring (:func:`score_detections`), the tolerance window: a detection of
keyword K at time t (the end of the detector's one-second window) is a *hit*
for a K clip placed at [start, start + 1 s] when
``start <= t <= start + 1 s + tolerance_ms`` (default 500 ms: the smoothing
window and ``min_count`` delay a detection past the end of the word). Each
clip is hit at most once; a second detection inside the same window is a
*duplicate* (counted, but neither a hit nor a false accept). Every other
detection, including the wrong keyword on a keyword clip, is a *false accept*.
FRR = missed keyword clips / keyword clips; FA/h = false accepts per hour of
stream.

Every placed clip also records its signal-to-noise ratio (``snr_db``: the RMS
of the clip as placed against the RMS of the noise bed under it, the
definition ``augment.noise_snr_db`` uses in training; None over a silent
bed), and the score breaks the FRR down by SNR band (``by_snr``, bands
:data:`SNR_BANDS_DB`): the stream mixes quiet words into loud noise, and
whether the misses are the model's or the noise's is the first question.

The DET curve replays the detector's own per-hop posteriors through its own
:class:`~kws_edge.smoothing.PosteriorSmoother` for each threshold, which is
exactly what the detector would do with that threshold.
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
from ..errors import ConfigError
from ..smoothing import Detection, DetectorConfig, PosteriorSmoother
from .config import UNKNOWN_LABEL, TrainConfig
from .dataset import Clip, NoiseBank, load_clip_audio, scale_to_dbfs

__all__ = ["StreamConfig", "TestStream", "build_stream", "run_detector", "score_detections", "det_curve",
           "select_thresholds", "choose_setting", "evaluate_stream", "SNR_BANDS_DB", "IsolatedConfig",
           "isolated_detection"]

#: SNR bands (dB, lower edge inclusive) of the FRR breakdown; an event over a silent bed counts as +inf
SNR_BANDS_DB = ((-np.inf, 0.0), (0.0, 10.0), (10.0, 20.0), (20.0, np.inf))


@dataclass(frozen=True)
class StreamConfig:
    """How the test recording is built and scored."""

    minutes: float = 10.0
    keyword_share: float = 0.4
    gap_s: tuple[float, float] = (0.3, 2.0)
    clip_gain_db: tuple[float, float] = (-15.0, 3.0)
    noise_dbfs: tuple[float, float] = (-65.0, -35.0)
    noise_segment_s: float = 20.0
    tolerance_ms: float = 500.0
    seed: int = 0


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


def score_detections(detections: list[Detection], events: list[dict], keywords: tuple[str, ...], duration_s: float,
                     tolerance_ms: float = 500.0) -> dict[str, Any]:
    """Hits, misses, false accepts (see the module docstring for the tolerance window)."""
    tol = tolerance_ms / 1000.0
    kw_events = [e for e in events if e["label"] in keywords]
    matched = [False] * len(kw_events)
    per_kw = {k: {"n": sum(e["label"] == k for e in kw_events), "hits": 0, "false_accepts": 0} for k in keywords}
    duplicates = 0
    false_accepts = []
    for d in sorted(detections, key=lambda d: d.time_s):
        candidates = [i for i, e in enumerate(kw_events)
                      if e["label"] == d.label and e["start_s"] <= d.time_s <= e["end_s"] + tol]
        free = [i for i in candidates if not matched[i]]
        if free:
            matched[free[0]] = True
            per_kw[d.label]["hits"] += 1
        elif candidates:
            duplicates += 1
        else:
            per_kw[d.label]["false_accepts"] += 1
            false_accepts.append(d.to_dict())
    hours = duration_s / 3600.0
    n_kw = len(kw_events)
    by_snr = []
    snrs = [(i, np.inf if e["snr_db"] is None else e["snr_db"]) for i, e in enumerate(kw_events) if "snr_db" in e]
    for lo, hi in SNR_BANDS_DB:
        band = [matched[i] for i, snr in snrs if lo <= snr and (snr < hi or hi == np.inf)]
        if band:
            by_snr.append({"snr_db": [None if np.isinf(lo) else lo, None if np.isinf(hi) else hi],
                           "n": len(band), "hits": int(sum(band)), "false_reject_rate": 1 - sum(band) / len(band)})
    for k, v in per_kw.items():
        v["false_reject_rate"] = (1 - v["hits"] / v["n"]) if v["n"] else None
        v["false_accepts_per_hour"] = v["false_accepts"] / hours if hours else None
    return {
        "duration_s": duration_s,
        "n_keywords": n_kw,
        "hits": int(sum(matched)),
        "false_reject_rate": (1 - sum(matched) / n_kw) if n_kw else None,
        "false_accepts": len(false_accepts),
        "false_accepts_per_hour": len(false_accepts) / hours if hours else None,
        "duplicates": duplicates,
        "tolerance_ms": tolerance_ms,
        "per_keyword": per_kw,
        "by_snr": by_snr,
        "false_accept_events": false_accepts[:50],
    }


def _replay(posteriors: np.ndarray, times: np.ndarray, labels, keywords, config: DetectorConfig,
            hop_s: float) -> list[Detection]:
    sm = PosteriorSmoother(tuple(labels), tuple(keywords), config, hop_s=hop_s)
    out = []
    for p, t in zip(posteriors, times):
        hit = sm.update(p, float(t))
        if hit is not None:
            out.append(hit)
    return out


DEFAULT_THRESHOLDS = tuple(float(t) for t in np.round(np.concatenate(
    [np.arange(0.1, 0.9, 0.05), np.arange(0.9, 0.99, 0.01), [0.99, 0.995]]), 3))


def det_curve(posteriors: np.ndarray, times: np.ndarray, bundle: Bundle, stream: TestStream,
              base: DetectorConfig, *, tolerance_ms: float = 500.0,
              thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS) -> list[dict[str, Any]]:
    """One point per threshold (the same for every keyword): FRR and FA/h, overall and per keyword."""
    m = bundle.manifest
    hop_s = m.features.hop_samples * base.stride_hops / m.features.sample_rate_hz
    points = []
    for t in thresholds:
        cfg = dataclasses.replace(base, thresholds={k: float(t) for k in m.keywords})
        dets = _replay(posteriors, times, m.labels, m.keywords, cfg, hop_s)
        s = score_detections(dets, stream.events, m.keywords, stream.duration_s, tolerance_ms)
        points.append({"threshold": float(t), "false_reject_rate": s["false_reject_rate"],
                       "false_accepts_per_hour": s["false_accepts_per_hour"],
                       "per_keyword": {k: {"false_reject_rate": v["false_reject_rate"],
                                           "false_accepts_per_hour": v["false_accepts_per_hour"]}
                                       for k, v in s["per_keyword"].items()}})
    return points


def select_thresholds(points: list[dict[str, Any]], keywords: tuple[str, ...], target_fa_per_hour: float,
                      ) -> dict[str, float]:
    """Per keyword, the lowest threshold whose own FA/h is within its share of the target.

    ``points`` come from :func:`det_curve` on a *validation* stream; each
    keyword gets ``target_fa_per_hour / len(keywords)``. If no threshold
    meets it, the highest threshold is returned for that keyword.
    """
    share = target_fa_per_hour / max(1, len(keywords))
    out = {}
    for k in keywords:
        ok = [p["threshold"] for p in points if p["per_keyword"][k]["false_accepts_per_hour"] <= share]
        out[k] = float(min(ok)) if ok else float(max(p["threshold"] for p in points))
    return out


def choose_setting(scores: list[dict[str, Any]], target_fa_per_hour: float, target_frr: float) -> int:
    """Index of the detector setting to ship among ``scores`` (each with ``false_reject_rate`` and
    ``false_accepts_per_hour``, measured on a *tuning* stream).

    The lowest FRR among the settings within the FA/h target; if none is, the setting nearest to both
    targets, each figure counted in multiples of its target (``FA/h / target_fa_per_hour + FRR /
    target_frr``), so a setting never buys its last false accepts with most of the keywords.
    """
    if not scores:
        raise ConfigError("no detector settings to choose from")
    if target_fa_per_hour <= 0 or target_frr <= 0:
        raise ConfigError(f"targets must be > 0 (FA/h {target_fa_per_hour}, FRR {target_frr})")
    within = [i for i, s in enumerate(scores) if s["false_accepts_per_hour"] <= target_fa_per_hour]
    if within:
        return min(within, key=lambda i: scores[i]["false_reject_rate"])
    return min(range(len(scores)), key=lambda i: (scores[i]["false_accepts_per_hour"] / target_fa_per_hour
                                                  + scores[i]["false_reject_rate"] / target_frr))


def evaluate_stream(bundle: Bundle, stream: TestStream, *, config: DetectorConfig | None = None,
                    tolerance_ms: float = 500.0, target_fa_per_hour: float | None = None,
                    det: bool = True) -> dict[str, Any]:
    """Run, score, and (optionally) sweep thresholds; JSON-ready result."""
    base = config or bundle.manifest.detector
    detections, posteriors, times = run_detector(bundle, stream, base)
    result = score_detections(detections, stream.events, bundle.manifest.keywords, stream.duration_s, tolerance_ms)
    result["detector"] = to_dict(base)
    if det:
        result["det_curve"] = det_curve(posteriors, times, bundle, stream, base, tolerance_ms=tolerance_ms)
    if target_fa_per_hour is not None and det:
        chosen = select_thresholds(result["det_curve"], bundle.manifest.keywords, target_fa_per_hour)
        cfg = dataclasses.replace(base, thresholds=chosen)
        m = bundle.manifest
        hop_s = m.features.hop_samples * base.stride_hops / m.features.sample_rate_hz
        dets = _replay(posteriors, times, m.labels, m.keywords, cfg, hop_s)
        s = score_detections(dets, stream.events, m.keywords, stream.duration_s, tolerance_ms)
        result["selected"] = {"target_false_accepts_per_hour": target_fa_per_hour, "thresholds": chosen,
                              "false_reject_rate": s["false_reject_rate"],
                              "false_accepts_per_hour": s["false_accepts_per_hour"]}
    return result


@dataclass(frozen=True)
class IsolatedConfig:
    """Isolated keywords: each keyword clip alone, ``pad_s`` of noise before and after it.

    The noise (the split's portion of the noise recordings, else generated pink noise) is scaled so
    that the clip's RMS over it is a random ``snr_db``; the clip keeps its own level.
    """

    pad_s: float = 1.0
    snr_db: tuple[float, float] = (10.0, 30.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.pad_s <= 10.0:
            raise ConfigError(f"pad_s={self.pad_s} must be in [0, 10]")
        if not self.snr_db[0] <= self.snr_db[1]:
            raise ConfigError(f"snr_db={self.snr_db} must be (low, high) with low <= high")


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
