"""Streaming vs window model on real speech: per-hop parity, FRR and FA/h on a long stream.

Needs the shared Speech Commands subset and a finished ``kws-train --model tcn``
run named by ``KWS_STREAMING_RUN`` (training one takes ~15 min here):

    kws-train --data ../shared/data/speech_commands_subset --out RUN --config tcn.toml   # [model] architecture="tcn", width=64
    KWS_STREAMING_RUN=RUN pytest -m "slow and realdata" tests/converters/test_streaming_realdata.py

Measured 2026-11-26 (width 64, depth 5, seed 1234; 10 min validation stream, 104 keywords):
argmax agreement int8 streaming vs int8 window 99.0% over 29,951 hops; at threshold 0.8 both FRR 7.7%,
FA/h 132 (window) vs 120 (streaming).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "speech_commands_subset"
RUN = os.environ.get("KWS_STREAMING_RUN")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realdata,
    pytest.mark.skipif(not DATA.is_dir(), reason="shared real data not present"),
    pytest.mark.skipif(not RUN, reason="set KWS_STREAMING_RUN to a finished kws-train --model tcn run"),
]


def test_streaming_matches_window_on_real_speech(tmp_path):
    pytest.importorskip("keras")
    from kws_edge.bundle import load_bundle
    from kws_edge.converters.convert import convert_run
    from kws_edge.detector import KeywordDetector, detect_samples
    from kws_edge.features import mfcc
    from kws_edge.model import KwsModel
    from kws_edge.streaming import StreamingScorer
    from kws_edge.training.config import SILENCE_LABEL, TrainConfig
    from kws_edge.training.dataset import NoiseBank, index_dataset
    from kws_edge.metrics import score_detections
    from kws_edge.training.streaming_eval import StreamConfig, build_stream

    out = tmp_path / "bundle"
    convert_run(RUN, device="x86-64", out_dir=out, measure=False, max_accuracy_drop_points=100.0, streaming=True)
    bundle = load_bundle(out)

    cfg = TrainConfig(data=str(DATA))
    index = index_dataset(DATA, cfg)
    clips = [c for c in index.split("validation") if c.label != SILENCE_LABEL]
    noise = NoiseBank(index.root, index.noise_files, cfg) if index.noise_files else None
    stream_cfg = StreamConfig(minutes=5, seed=0)
    ts = build_stream(index.root, clips, cfg, noise, stream_cfg, split="validation")

    feats = mfcc(ts.samples, bundle.manifest.features)
    scores = StreamingScorer(bundle).score(feats)
    post, counts = scores.posteriors, scores.frame_counts
    model = KwsModel(bundle)
    n = model.window_frames
    ref = np.stack([model.scores_features(feats[c - n:c]) for c in counts])
    assert np.mean(ref.argmax(1) == post.argmax(1)) >= 0.985
    assert np.abs(ref - post).mean() <= 0.01

    det_cfg = dataclasses.replace(bundle.manifest.detector)
    scores = {}
    for name, kw in (("window", {"streaming": False}), ("streaming", {})):
        dets = detect_samples(KeywordDetector(bundle, config=det_cfg, **kw), ts.samples, chunk_samples=1600)
        scores[name] = score_detections(dets, ts.events, bundle.manifest.keywords, ts.duration_s,
                                        stream_cfg.tolerance_ms)
    w, s = scores["window"], scores["streaming"]
    one_keyword = 1.0 / w["n_keywords"]
    assert s["false_reject_rate"] <= w["false_reject_rate"] + one_keyword + 1e-9, (s, w)
    assert s["false_accepts_per_hour"] <= w["false_accepts_per_hour"] * 1.1 + 1e-9, (s, w)
