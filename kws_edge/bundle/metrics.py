"""A manifest's ``metrics``: what was measured of a bundle, typed.

Every figure is defined once in :mod:`kws_edge.metrics` (clip metrics, the stream score, the DET
curve); this module says where a manifest keeps each:

* ``test``, ``validation``: clip metrics of the float model and of the bundle's model on a split
  of the training run (:class:`SplitMetrics`); ``headline`` names the split a reader should quote;
* ``parity``, ``streaming_parity``: the float-vs-converted agreement gate of ``kws-convert`` for the
  window model and for the streaming model (:class:`Parity`);
* ``streaming``: the one streaming evaluation at the bundle's detector settings on a report stream,
  and how those settings were tuned (:class:`StreamingMetrics`);
* ``isolated``: single keyword clips between noise, each through a fresh detector (:class:`IsolatedDetection`);
* ``unseen_words``: words held out of training entirely; ``word_false_accepts``: every other word of
  a split ("go" among them), each heard as a keyword how often (:class:`WordFalseAccepts`);
* ``seed_spread``: the recipe's figures over several seeds (:class:`SeedSpread`);
* ``benchmark``: the streaming path's cost on the machine that made the bundle (:class:`Benchmark`).

Adding a figure: give it a typed field here (a dataclass with defaults, so older manifests still
load) and fill it where it is measured. A figure whose shape is not settled yet may go into
``extra`` (any JSON) until it is; ``kws info`` shows it, ``kws registry diff`` compares its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..metrics import ClipMetrics, DetPoint, IsolatedConfig, StreamConfig, StreamScore
from ..smoothing import DetectorConfig

__all__ = ["SplitMetrics", "Parity", "StreamEvaluation", "TunedSetting", "Tuning", "StreamingMetrics",
           "KeywordDetectionRate", "IsolatedDetection", "WordCount", "WordFalseAccepts", "SeedSpread", "Benchmark",
           "Metrics", "stream_evaluation", "tuning_record"]


@dataclass(frozen=True)
class SplitMetrics:
    """The float model (as trained) and the bundle's converted models on one split's clips.

    ``converted`` is the window model (what ``kws classify`` runs); ``streaming`` the streaming model
    (what the detector runs when the bundle has one), each clip fed from its zero state.
    """

    float_model: Optional[ClipMetrics] = None
    converted: Optional[ClipMetrics] = None
    streaming: Optional[ClipMetrics] = None
    note: str = ""


@dataclass(frozen=True)
class Parity:
    """``kws-convert``'s parity gate: float and converted predictions on the same clips."""

    evaluated_on: str = ""
    float_model: str = ""
    converted_model: str = ""
    argmax_agreement: Optional[float] = None
    accuracy_drop_points: Optional[float] = None
    max_accuracy_drop_points: Optional[float] = None
    validation_argmax_agreement: Optional[float] = None


@dataclass(frozen=True)
class StreamEvaluation:
    """One detector setting on one test stream: ``kws_edge.training.streaming_eval.evaluate_stream``.

    ``command`` is the ``kws evaluate`` line that measures the same bundle on the same stream.
    """

    split: str = ""
    data: str = ""
    data_sha256: str = ""
    stream: StreamConfig = field(default_factory=StreamConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    score: StreamScore = field(default_factory=StreamScore)
    det_curve: tuple[DetPoint, ...] = ()
    command: str = ""


@dataclass(frozen=True)
class TunedSetting:
    """A detector setting tried while tuning, and its FRR and FA/h on the tuning stream."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    false_reject_rate: Optional[float] = None
    false_accepts_per_hour: Optional[float] = None


@dataclass(frozen=True)
class Tuning:
    """How the shipped detector settings were chosen, on a stream other than the report's."""

    method: str = ""
    split: str = ""
    stream: StreamConfig = field(default_factory=StreamConfig)
    target_false_accepts_per_hour: Optional[float] = None
    target_false_reject_rate: Optional[float] = None
    rule: str = ""
    candidates: tuple[TunedSetting, ...] = ()
    chosen: Optional[TunedSetting] = None


@dataclass(frozen=True)
class StreamingMetrics:
    """The headline streaming figures: ``report`` at the bundle's own detector settings, and their ``tuning``."""

    report: Optional[StreamEvaluation] = None
    tuning: Optional[Tuning] = None


@dataclass(frozen=True)
class KeywordDetectionRate:
    n: int = 0
    detected: int = 0
    #: clips on which another keyword was reported
    wrong: int = 0
    detection_rate: Optional[float] = None


@dataclass(frozen=True)
class MissedClip:
    path: str = ""
    label: str = ""
    snr_db: Optional[float] = None
    heard: tuple[str, ...] = ()


@dataclass(frozen=True)
class IsolatedDetection:
    """Every keyword clip alone between noise, ``process()`` then ``flush()`` at the detector defaults."""

    split: str = ""
    n_clips: int = 0
    detection_rate: Optional[float] = None
    per_keyword: dict[str, KeywordDetectionRate] = field(default_factory=dict)
    missed: tuple[MissedClip, ...] = ()
    config: IsolatedConfig = field(default_factory=IsolatedConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    method: str = ""


@dataclass(frozen=True)
class WordCount:
    n: int = 0
    false_accepts: int = 0
    false_accept_rate: Optional[float] = None


@dataclass(frozen=True)
class WordFalseAccepts:
    """Clips of non-keywords heard as a keyword (the argmax of the bundle's model), per word."""

    words: tuple[str, ...] = ()
    n_clips: int = 0
    false_accepts: int = 0
    keyword_false_accept_rate: Optional[float] = None
    per_word: dict[str, WordCount] = field(default_factory=dict)
    method: str = ""


@dataclass(frozen=True)
class SeedSpread:
    """The recipe trained at several seeds: each figure's value per seed (in ``seeds`` order)."""

    seeds: tuple[int, ...] = ()
    figures: dict[str, tuple[float, ...]] = field(default_factory=dict)
    method: str = ""

    def mean(self, figure: str) -> float:
        values = self.figures[figure]
        return sum(values) / len(values)

    def range(self, figure: str) -> tuple[float, float]:
        values = self.figures[figure]
        return min(values), max(values)


@dataclass(frozen=True)
class Benchmark:
    """The streaming path's cost where the bundle was made (``kws_edge.bench``; compare ratios, not machines)."""

    machine: dict[str, Any] = field(default_factory=dict)
    audio_s: float = 0.0
    cpu_ms_per_audio_s: Optional[float] = None
    real_time_factor: Optional[float] = None
    hop_latency_median_ms: Optional[float] = None
    hop_latency_p99_ms: Optional[float] = None
    chunk_100ms_cpu_ms_per_audio_s: Optional[float] = None
    cold_start_s: Optional[float] = None
    cold_start_rss_bytes: Optional[int] = None


@dataclass(frozen=True)
class Metrics:
    """Everything measured of a bundle; see the module docstring for each field and how to add one."""

    headline: str = "test"
    test: Optional[SplitMetrics] = None
    validation: Optional[SplitMetrics] = None
    parity: Optional[Parity] = None
    streaming_parity: Optional[Parity] = None
    streaming: Optional[StreamingMetrics] = None
    isolated: Optional[IsolatedDetection] = None
    unseen_words: Optional[WordFalseAccepts] = None
    word_false_accepts: Optional[WordFalseAccepts] = None
    seed_spread: Optional[SeedSpread] = None
    benchmark: Optional[Benchmark] = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headline_split(self) -> Optional[SplitMetrics]:
        """The split a reader should quote (``headline``), else whichever there is."""
        return getattr(self, self.headline, None) or self.test or self.validation

    @property
    def converted(self) -> Optional[ClipMetrics]:
        """The bundle's model on the headline split."""
        split = self.headline_split
        return split.converted if split is not None else None

    @property
    def float_model(self) -> Optional[ClipMetrics]:
        split = self.headline_split
        return split.float_model if split is not None else None


def stream_evaluation(result: dict[str, Any], *, command: str = "") -> StreamEvaluation:
    """The record of a ``kws evaluate`` result (``kws_edge.pipeline.evaluate.evaluate``)."""
    from ..config import from_dict

    s = dict(result["streaming"])
    score = {k: v for k, v in s.items() if k not in ("detector", "det_curve", "selected")}
    return StreamEvaluation(
        split=str(result.get("split", "")), data=str(result.get("data", "")),
        data_sha256=str(result.get("data_sha256", "")),
        stream=from_dict(StreamConfig, result.get("stream_config", {})),
        detector=from_dict(DetectorConfig, s.get("detector", {})),
        score=from_dict(StreamScore, score),
        det_curve=tuple(from_dict(DetPoint, p) for p in s.get("det_curve", [])),
        command=command)


def tuning_record(result: dict[str, Any], *, target_false_accepts_per_hour: float) -> Tuning:
    """Per-keyword thresholds chosen for a FA/h target on a ``kws evaluate`` result's stream (``selected``)."""
    from ..config import from_dict

    s = result["streaming"]
    base = from_dict(DetectorConfig, s["detector"])
    selected = s["selected"]
    chosen = TunedSetting(detector=from_dict(DetectorConfig, {**s["detector"], "thresholds": selected["thresholds"]}),
                          false_reject_rate=selected["false_reject_rate"],
                          false_accepts_per_hour=selected["false_accepts_per_hour"])
    return Tuning(
        method="per keyword, the lowest threshold of the DET curve within its share of the FA/h target "
               "(kws_edge.metrics.select_thresholds)",
        split=str(result.get("split", "")), stream=from_dict(StreamConfig, result.get("stream_config", {})),
        target_false_accepts_per_hour=target_false_accepts_per_hour,
        rule="select_thresholds on the tuning stream's DET curve",
        candidates=(TunedSetting(detector=base, false_reject_rate=s["false_reject_rate"],
                                 false_accepts_per_hour=s["false_accepts_per_hour"]),),
        chosen=chosen)
