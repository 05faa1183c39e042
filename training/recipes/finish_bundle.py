"""Finish a shipped bundle: validation figures, words heard as keywords, detector defaults, streams.

The last step of ``make_bundle.sh`` (after ``kws-train`` and ``kws-convert``).
It trains nothing; it measures the converted bundle with the project's own
pieces and writes the final bundle with everything in its manifest:

* clip metrics of the float Keras model and of the int8 bundle (through the
  runtime's ``KwsModel``) on the run's speaker-disjoint validation split;
* the keyword false-accept rate on the words held out of training entirely
  (``exclude_words`` of the recipe), every clip of them in the data folder;
* every other word of the validation speakers ("go" among them), each heard as a keyword how often;
* detector defaults chosen on validation recordings only: for each smoothing setting, per keyword the
  threshold with the fewest false accepts on a *tuning* stream among those that still detect at least
  ``--isolated-target`` of the validation keyword clips said once (``isolated_detection``, noise seed 0;
  ``kws_edge.metrics.threshold_for_isolated_target``); of the settings, the fewest tuning FA/h, then the
  lowest FRR (``choose_isolated_setting``); then FRR and FA/h of those defaults on a separate *report*
  stream (other seed: other order, gains, gaps and noise) of the same speakers, and the isolated-keyword
  figure with another noise seed;
* with ``--spread-run``, the float validation figures of the recipe's other seeds (``seed_spread``);
* the attribution of the CC BY 4.0 data.

Usage::

    python training/recipes/finish_bundle.py --run RUN --bundle CONVERTED --data DATA [DATA ...] --out OUT
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ATTRIBUTION = "Speech Commands dataset by Google, CC BY 4.0 (Warden 2018, arXiv:1804.03209)"
#: (smoothing_window_ms, min_count) settings tried on the tuning stream
SMOOTHING_GRID = ((200.0, 2), (400.0, 4), (600.0, 8))
#: thresholds tried per setting
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)
#: noise seeds of the isolated-keyword recordings: one chooses the defaults, the other reports them
ISOLATED_TUNING_SEED, ISOLATED_REPORT_SEED = 0, 1


def _clip_metrics_bundle(bundle, x: np.ndarray, y: np.ndarray, labels, keywords) -> dict:
    from kws_edge.model import KwsModel
    from kws_edge.metrics import clip_metrics

    model = KwsModel(bundle)
    pred = np.array([int(np.argmax(model.scores_features(f))) for f in x], np.int64)
    return clip_metrics(y, pred, labels, keywords)


def _float_metrics(run_dir: Path, x: np.ndarray, y: np.ndarray, labels, keywords) -> dict:
    import keras

    from kws_edge.metrics import clip_metrics
    from kws_edge.training.rundir import open_run

    run = open_run(run_dir)
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    probs = model.predict(run.normalization().apply(x), batch_size=256, verbose=0)
    return clip_metrics(y, probs.argmax(axis=1), labels, keywords)


def _heard_as_keyword(model, files: list[Path]) -> int:
    """How many of ``files`` the bundle's window model (argmax, ``KwsModel.classify``) hears as a keyword."""
    from kws_edge.audio import read_wav

    kw = {model.labels.index(k) for k in model.keywords}
    return sum(int(int(np.argmax(model.classify(read_wav(f, sample_rate_hz=model.features.sample_rate_hz).samples)))
                   in kw) for f in files)


def _word_counts(model, files_by_word: dict[str, list[Path]], method: str) -> dict:
    """A ``WordFalseAccepts`` record (as JSON) of each word's clips heard as a keyword."""
    per_word = {}
    for w, files in files_by_word.items():
        n_fa = _heard_as_keyword(model, files)
        per_word[w] = {"n": len(files), "false_accepts": n_fa, "false_accept_rate": n_fa / len(files) if files else None}
    n = sum(r["n"] for r in per_word.values())
    fa = sum(r["false_accepts"] for r in per_word.values())
    return {"words": list(files_by_word), "n_clips": n, "false_accepts": fa,
            "keyword_false_accept_rate": fa / n if n else None, "per_word": per_word, "method": method}


def _unseen_words(bundle, folders: list[Path], words: tuple[str, ...]) -> dict:
    """Keyword false-accept rate on every clip of the held-out words (never trained on) in any data folder."""
    from kws_edge.model import KwsModel

    files = {w: sorted(f for root in folders for f in (root / w).glob("*.wav")) for w in words}
    return _word_counts(KwsModel(bundle), files,
                        "every clip of words held out of training (all splits), argmax of the int8 bundle")


def _words_heard_as_keywords(bundle, folders: list[Path], config, split: str = "validation") -> dict:
    """Per other word: how many of the split's clips of that word (every one, not the run's subsample)
    are heard as a keyword. Splits by the speaker hash (``which_set``), as the run's index does where a
    folder has no list files (the shared data has none)."""
    from kws_edge.model import KwsModel
    from kws_edge.training.dataset import which_set

    model = KwsModel(bundle)
    files: dict[str, list[Path]] = {}
    for root in folders:
        for word_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            if word_dir.name in model.keywords or word_dir.name in config.exclude_words:
                continue
            files.setdefault(word_dir.name, []).extend(
                f for f in sorted(word_dir.glob("*.wav"))
                if which_set(f.name, config.validation_percentage, config.testing_percentage) == split)
    return _word_counts(model, dict(sorted(files.items())),
                        f"every {split}-speaker clip of each other word in the data folders (speaker hash), "
                        "argmax of the bundle's window model")


def _seed_spread(runs: list[Path]):
    """The float validation figures of the recipe's runs at several seeds (their run directories)."""
    from kws_edge.bundle.metrics import SeedSpread
    from kws_edge.training.rundir import open_run

    rows = []
    for path in runs:
        run = open_run(path)
        v = run.metrics()["validation"]
        rows.append((int(run.config().seed), v))
    figures = {"accuracy": tuple(v["accuracy"] for _, v in rows),
               "yes_recall": tuple(v["recall"]["yes"] for _, v in rows),
               "no_recall": tuple(v["recall"]["no"] for _, v in rows),
               "keyword_false_accept_rate": tuple(v["keyword_false_accept_rate"] for _, v in rows)}
    return SeedSpread(seeds=tuple(s for s, _ in rows), figures=figures,
                      method="the same recipe at each seed: float model, its run's validation split")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--bundle", required=True, type=Path, help="bundle written by kws-convert")
    ap.add_argument("--data", required=True, type=Path, nargs="+", help="the run's dataset folder(s)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--tune-minutes", type=float, default=45.0)
    ap.add_argument("--report-minutes", type=float, default=35.0)
    ap.add_argument("--isolated-target", type=_positive, default=0.97,
                    help="share of the validation keyword clips, said once, each keyword's default must detect")
    ap.add_argument("--spread-run", type=Path, action="append", default=[],
                    help="a run of the same recipe at another seed (repeat; the shipped run is included)")
    ap.add_argument("--name", default="yes-no-default")
    ap.add_argument("--description", default="")
    ap.add_argument("--recipe", default="training/recipes/yes_no_default.toml (training/recipes/make_bundle.sh default)")
    args = ap.parse_args(argv)

    from kws_edge.bundle import load_bundle, save_bundle
    from kws_edge.bundle.metrics import (IsolatedDetection, SplitMetrics, StreamEvaluation, StreamingMetrics,
                                         TunedSetting, Tuning, WordFalseAccepts)
    from kws_edge.config import from_dict, to_dict
    from kws_edge.metrics import (ClipMetrics, DetPoint, IsolatedConfig, StreamScore, choose_isolated_setting,
                                  det_curve, score_detections, threshold_for_isolated_target)
    from kws_edge.training.config import SILENCE_LABEL
    from kws_edge.training.dataset import NoiseBank, index_dataset
    from kws_edge.training.rundir import open_run
    from kws_edge.training.streaming_eval import StreamConfig, build_stream, isolated_detection, run_detector

    run = open_run(args.run)
    data = tuple(str(d) for d in args.data)
    config = dataclasses.replace(run.config(), data=data[0] if len(data) == 1 else data)
    bundle = load_bundle(args.bundle)
    m = bundle.manifest
    labels, keywords = tuple(m.labels), tuple(m.keywords)

    val = np.load(args.run / "arrays" / "validation.npz")
    xv, yv = val["x"], val["y"]
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    validation = {"float": _float_metrics(args.run, xv, yv, labels, keywords),
                  "int8": _clip_metrics_bundle(bundle, xv, yv, labels, keywords)}
    log("validation int8", json.dumps({k: validation["int8"][k] for k in ("accuracy", "recall",
                                                                          "keyword_false_accept_rate")}))
    unseen = _unseen_words(bundle, list(args.data), tuple(config.exclude_words)) if config.exclude_words else None
    if unseen:
        log("unseen words", unseen["keyword_false_accept_rate"])
    heard = _words_heard_as_keywords(bundle, list(args.data), config)
    log("heard as a keyword", {w: round(r["false_accept_rate"], 4) for w, r in heard["per_word"].items() if r["n"]})

    index = index_dataset(args.data if len(args.data) > 1 else args.data[0], config)
    noise = NoiseBank(index.root, index.noise_files, config) if index.noise_files else None
    words = [c for c in index.split("validation") if c.label != SILENCE_LABEL]
    kw_clips = [c for c in words if c.label in keywords]
    tune_cfg = StreamConfig(minutes=args.tune_minutes, seed=101)
    report_cfg = StreamConfig(minutes=args.report_minutes, seed=202)
    tune = build_stream(index.root, words, config, noise, tune_cfg, split="validation")
    _, posts, times = run_detector(bundle, tune, m.detector)

    def isolated(detector, seed: int) -> dict:
        return isolated_detection(bundle, index.root, kw_clips, config, noise, IsolatedConfig(seed=seed),
                                  detector_config=detector, split="validation")

    # Detector defaults chosen on validation recordings only (module docstring): per smoothing setting and
    # keyword, the threshold with the fewest tuning-stream false accepts among those that detect at least the
    # isolated-keyword target; of the settings, the fewest tuning FA/h, then the lowest FRR.
    candidates = []
    for window_ms, min_count in SMOOTHING_GRID:
        base = dataclasses.replace(m.detector, smoothing_window_ms=window_ms, min_count=min_count)
        points = {p["threshold"]: p for p in det_curve(posts, times, bundle, tune, base,
                                                        tolerance_ms=tune_cfg.tolerance_ms, thresholds=THRESHOLDS)}
        rates = {t: isolated(dataclasses.replace(base, thresholds={k: t for k in keywords}),
                             ISOLATED_TUNING_SEED)["per_keyword"] for t in THRESHOLDS}
        chosen = {k: threshold_for_isolated_target({t: rates[t][k]["detection_rate"] for t in THRESHOLDS}, points, k,
                                                   args.isolated_target) for k in keywords}
        cfg = dataclasses.replace(base, thresholds=chosen)
        s = score_detections(*_replayed(posts, times, bundle, cfg, tune), keywords, tune.duration_s,
                             tune_cfg.tolerance_ms)
        iso = isolated(cfg, ISOLATED_TUNING_SEED)["per_keyword"]
        candidates.append({"detector": cfg, "false_reject_rate": s["false_reject_rate"],
                           "false_accepts_per_hour": s["false_accepts_per_hour"],
                           "isolated": {k: iso[k]["detection_rate"] for k in keywords}})
        log("tuning", window_ms, min_count, chosen, s["false_reject_rate"], s["false_accepts_per_hour"],
            candidates[-1]["isolated"])
    best = candidates[choose_isolated_setting(candidates, args.isolated_target)]
    detector = best["detector"]
    log("detector", to_dict(detector))
    report = build_stream(index.root, words, config, noise, report_cfg, split="validation")
    dets, rposts, rtimes = run_detector(bundle, report, detector)
    scored = score_detections(dets, report.events, keywords, report.duration_s, report_cfg.tolerance_ms)
    log("report stream", scored["false_reject_rate"], scored["false_accepts_per_hour"])
    report_det = det_curve(rposts, rtimes, bundle, report, detector, tolerance_ms=report_cfg.tolerance_ms,
                           thresholds=THRESHOLDS)
    iso_report = isolated(detector, ISOLATED_REPORT_SEED)
    log("isolated keywords (report seed)", iso_report["detection_rate"],
        {k: v["detection_rate"] for k, v in iso_report["per_keyword"].items()})

    # The run's test split is tiny on the shared data (its official-test speakers were removed), so the
    # headline float/int8 figures are the validation split's; the converter's test-split figures stay.
    test = m.metrics.test
    metrics = dataclasses.replace(
        m.metrics, headline="validation",
        test=dataclasses.replace(test, note="kws-convert's parity check on the run's test split (few clips here)")
        if test is not None else None,
        validation=SplitMetrics(float_model=from_dict(ClipMetrics, validation["float"]),
                                converted=from_dict(ClipMetrics, validation["int8"]),
                                note="validation split of the run (speaker-disjoint, never trained on)"),
        unseen_words=from_dict(WordFalseAccepts, unseen) if unseen else None,
        word_false_accepts=from_dict(WordFalseAccepts, heard),
        isolated=from_dict(IsolatedDetection, {**iso_report, "split": "validation"}),
        seed_spread=_seed_spread(args.spread_run) if args.spread_run else None,
        streaming=StreamingMetrics(
            report=StreamEvaluation(split="validation", stream=report_cfg, detector=detector,
                                    score=from_dict(StreamScore, scored),
                                    det_curve=tuple(from_dict(DetPoint, p) for p in report_det)),
            tuning=Tuning(
                method=("detector defaults chosen on validation recordings: a tuning stream and the validation "
                        f"keyword clips said once (noise seed {ISOLATED_TUNING_SEED}); FRR and FA/h of those "
                        "defaults measured on a separate report stream of validation speakers (other seed: order, "
                        f"gains, gaps, noise bed); isolated keywords reported with noise seed {ISOLATED_REPORT_SEED}"),
                split="validation", stream=tune_cfg,
                rule=(f"per keyword, the threshold with the fewest tuning FA/h among those detecting >= "
                      f"{args.isolated_target:g} of the isolated keyword clips (threshold_for_isolated_target); "
                      "of the smoothing settings, the fewest tuning FA/h, then the lowest FRR "
                      "(choose_isolated_setting)"),
                candidates=tuple(TunedSetting(detector=c["detector"], false_reject_rate=c["false_reject_rate"],
                                              false_accepts_per_hour=c["false_accepts_per_hour"])
                                 for c in candidates),
                chosen=TunedSetting(detector=detector, false_reject_rate=best["false_reject_rate"],
                                    false_accepts_per_hour=best["false_accepts_per_hour"]))))
    provenance = dataclasses.replace(m.provenance, recipe=args.recipe)
    manifest = dataclasses.replace(m, name=args.name, detector=detector, metrics=metrics, provenance=provenance,
                                   attribution=ATTRIBUTION,
                                   description=args.description or (
                                       "yes/no keyword spotter trained on real speech (Speech Commands) and "
                                       f"synthetic confusable words; {m.model.quantization}"))
    save_bundle(args.out, manifest, bundle.model_bytes, streaming_model_bytes=bundle.streaming_model_bytes,
                overwrite=True)
    summary = {"validation_int8": {k: validation["int8"][k] for k in ("accuracy", "recall",
                                                                       "keyword_false_accept_rate")},
               "validation_float_accuracy": validation["float"]["accuracy"],
               "unseen_keyword_false_accept_rate": unseen["keyword_false_accept_rate"] if unseen else None,
               "heard_as_keyword": {w: r["false_accept_rate"] for w, r in heard["per_word"].items() if r["n"]},
               "detector": to_dict(detector),
               "isolated_keywords": {k: v["detection_rate"] for k, v in iso_report["per_keyword"].items()},
               "stream": {"minutes": scored["duration_s"] / 60, "false_reject_rate": scored["false_reject_rate"],
                          "false_accepts": scored["false_accepts"],
                          "false_accepts_per_hour": scored["false_accepts_per_hour"]},
               "model_bytes": m.model.size_bytes, "peak_activation_bytes": m.model.peak_activation_bytes}
    print(json.dumps(summary, indent=2))
    return 0


def _replayed(posts, times, bundle, detector, stream):
    from kws_edge.metrics import evaluation_hop_s, replay_detections

    m = bundle.manifest
    return replay_detections(posts, times, m.labels, m.keywords, detector, evaluation_hop_s(bundle, detector)), \
        stream.events


if __name__ == "__main__":
    sys.exit(main())
