"""Run your own model bundle with your own thresholds, and read the detector's telemetry.

A bundle is the directory ``kws-convert`` writes (``model.tflite`` + ``manifest.json``). Loading
it checks the model's SHA-256 and the manifest; the manifest carries the feature settings,
so the audio is processed exactly as in training. Detection settings (thresholds, smoothing,
suppression) default to the manifest's and can be overridden by name.

    python examples/bring_your_own_model.py my_bundle/ recording.wav
    python examples/bring_your_own_model.py my_bundle/ recording.wav --threshold yes=0.9 --threshold no=0.7 \\
        --suppression-ms 1500 --telemetry-jsonl telemetry.jsonl

Without a WAV it listens to the microphone for ``--seconds`` (default 10).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from kws_edge import KeywordDetector, KwsError, read_wav
from kws_edge.errors import ConfigError
from kws_edge.telemetry import DetectorTelemetry, JsonlSnapshotter


def parse_thresholds(items: list[str]) -> dict[str, float]:
    """``["yes=0.9", "no=0.7"]`` -> ``{"yes": 0.9, "no": 0.7}``; one bare number means every keyword."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"--threshold {item!r}: expected KEYWORD=NUMBER, e.g. yes=0.9") from None
        out[name if sep else "*"] = number
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="your bundle directory (model.tflite + manifest.json)")
    ap.add_argument("wav", nargs="?", default=None, help="a recording to run (default: the microphone)")
    ap.add_argument("--threshold", action="append", default=[], metavar="KEYWORD=P",
                    help="detection threshold of a keyword (repeatable); a bare number sets all keywords")
    ap.add_argument("--suppression-ms", type=float, default=None, help="quiet time after a detection")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to listen to the microphone")
    ap.add_argument("--telemetry-jsonl", default=None, help="also append a telemetry snapshot to this file")
    args = ap.parse_args(argv)

    # 1. Settings to override: only what you name changes, the rest comes from the manifest.
    overrides: dict = {}
    thresholds = parse_thresholds(args.threshold)
    if "*" in thresholds:
        overrides["thresholds"] = thresholds.pop("*")  # one number for every keyword
    if thresholds:
        if "thresholds" in overrides:
            raise ConfigError("give either one threshold for all keywords or KEYWORD=P pairs, not both")
        overrides["thresholds"] = thresholds
    if args.suppression_ms is not None:
        overrides["suppression_ms"] = args.suppression_ms

    # 2. Load and verify the bundle; unknown keywords or out-of-range values raise ConfigError.
    detector = KeywordDetector.from_bundle(args.bundle, **overrides)
    manifest = detector.bundle.manifest
    print(f"model: {manifest.name} {manifest.version}, {manifest.model.size_bytes} bytes, "
          f"labels {list(manifest.labels)}")
    defaults = manifest.detector
    for kw in detector.keywords:
        print(f"  threshold {kw}: {detector.config.threshold(kw):.2f} (bundle default {defaults.threshold(kw):.2f})")
    print(f"  suppression: {detector.config.suppression_ms:g} ms (bundle default {defaults.suppression_ms:g} ms)")

    # 3. Telemetry: the detector feeds it once per chunk (counters, input level, score
    #    histograms, drift of the features against the training statistics in the manifest).
    telemetry = DetectorTelemetry.for_manifest(manifest)
    detector.telemetry = telemetry

    # 4. Run.
    if args.wav:
        samples = read_wav(args.wav, sample_rate_hz=detector.sample_rate_hz).samples
        chunks = [samples[i:i + 1600] for i in range(0, len(samples), 1600)]
        chunks.append(np.zeros(detector.sample_rate_hz, np.float32))  # let a word at the very end through
    else:
        from kws_edge.microphone import MicrophoneSource

        def microphone(n_blocks: int):
            with MicrophoneSource(sample_rate_hz=detector.sample_rate_hz, block_samples=1600) as mic:
                for _, block in zip(range(n_blocks), mic):
                    yield block

        chunks = microphone(int(args.seconds * detector.sample_rate_hz / 1600))
    for chunk in chunks:
        for d in detector.process(chunk):
            print(f"{d.label:<4} score {d.score:.2f} at {d.time_s:.2f} s")

    # 5. Read the telemetry (the same numbers kws-edge serves to Prometheus or writes as JSONL).
    snap = telemetry.snapshot()
    drift = snap["drift"]
    print("telemetry:")
    print(f"  audio {snap['stream_time_s']:.1f} s, {snap['evaluations']} model runs, detections {snap['detections']}")
    print(f"  input {snap['input']['rms_dbfs']:.1f} dBFS rms, peak {snap['input']['peak']:.3f}, "
          f"{snap['input']['clipped_samples']} clipped samples")
    score = "not enough audio yet" if drift["score"] is None else f"{drift['score']:.3f}"
    print(f"  feature drift vs training: {score} (flag above {drift['threshold']:g}: {drift['flag']})")
    means = {k: (round(s / max(1, snap['evaluations']), 4)) for k, s in snap["scores"]["sums"].items()}
    print(f"  mean keyword scores: {json.dumps(means)}")
    if args.telemetry_jsonl:
        with JsonlSnapshotter(telemetry, args.telemetry_jsonl) as jsonl:
            pass  # closing writes one snapshot line
        print(f"  snapshot appended to {args.telemetry_jsonl} ({jsonl.n_written} line)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KwsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
