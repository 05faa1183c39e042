"""The run report: self-contained HTML rendered in headless Chromium (every image loads, key numbers shown)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from kws_edge.atomic import atomic_write_json
from kws_edge.bundle import load_bundle, save_bundle

HERE = Path(__file__).resolve().parents[1]  # tests/
TONE_BUNDLE = HERE / "data" / "tone_bundle"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
pytestmark = pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(), reason="tests/data/tone_bundle is missing")

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def _clip_metrics(acc: float) -> dict:
    return {"n_clips": 400, "labels": LABELS, "accuracy": acc,
            "recall": {"_silence_": 0.99, "_unknown_": 0.93, "yes": 0.9, "no": 0.88},
            "keyword_false_accept_rate": 0.0312,
            "confusion_matrix": [[99, 1, 0, 0], [3, 93, 2, 2], [0, 8, 90, 2], [0, 10, 2, 88]]}


def make_pipeline_folder(out: Path) -> Path:
    """A pipeline output folder with known numbers, made of real parts (plots, bundle) but no training."""
    pytest.importorskip("matplotlib")
    from kws_edge.bundle import Budgets, Metrics, Provenance
    from kws_edge.bundle.metrics import Parity, SplitMetrics, StreamEvaluation, StreamingMetrics
    from kws_edge.bundle.provenance import RunRecord
    from kws_edge.config import from_dict, to_dict
    from kws_edge.limits import Limit
    from kws_edge.metrics import ClipMetrics, DetPoint, StreamConfig, StreamScore
    from kws_edge.training.config import TrainConfig
    from kws_edge.training.plots import plot_confusion_matrix, plot_det_curve, plot_training_curves

    run = out / "run"
    (run / "plots").mkdir(parents=True)
    cfg = TrainConfig()
    atomic_write_json(run / "config.json", to_dict(cfg))
    atomic_write_json(run / "run.json", {"format_version": 1, "status": "complete", "kws_edge_version": "0.1.0",
                                         "git_commit": "0123abc", "started_utc": "2026-11-26T10:00:00Z",
                                         "finished_utc": "2026-11-26T10:05:00Z", "seed": cfg.seed,
                                         "config_sha256": "c" * 64, "data_sha256": "d" * 64})
    atomic_write_json(run / "data_manifest.json", {"root": "/data", "content_sha256": "d" * 64, "files": [],
                                                   "counts": {"train": {"_silence_": 80, "_unknown_": 700, "yes": 321,
                                                                        "no": 330},
                                                              "validation": {"_silence_": 9, "_unknown_": 80,
                                                                             "yes": 40, "no": 41},
                                                              "test": {"_silence_": 10, "_unknown_": 90, "yes": 44,
                                                                       "no": 45}}})
    history = {"loss": [1.2, 0.6, 0.4], "accuracy": [0.5, 0.8, 0.9], "val_loss": [1.0, 0.7, 0.5],
               "val_accuracy": [0.6, 0.82, 0.9]}
    atomic_write_json(run / "history.json", history)
    atomic_write_json(run / "metrics.json", {"validation": _clip_metrics(0.9), "test": _clip_metrics(0.9123)})
    atomic_write_json(run / "training_summary.json", {"model": {"parameters": 23756}, "n_train_samples": 4293})
    plot_training_curves(history, run / "plots" / "training_curves.png")
    plot_confusion_matrix(_clip_metrics(0.9), run / "plots" / "confusion_matrix.png")
    plot_confusion_matrix(_clip_metrics(0.9123), run / "plots" / "confusion_matrix_test.png")

    points = [{"threshold": t, "false_reject_rate": 0.02 + t / 10, "false_accepts": int(10 * (1 - t)),
               "false_accepts_per_hour": 12 * (1 - t)} for t in (0.5, 0.6, 0.7, 0.8, 0.875, 0.9)]
    selected = {"threshold": 0.875, "false_reject_rate": 0.0417, "false_accepts_per_hour": 1.5, "false_accepts": 1}
    (out / "evaluation").mkdir()
    plot_det_curve(points, out / "evaluation" / "det_curve.png", selected=selected)

    budgets = Budgets(device="raspberry-pi-4b", results=(
        Limit("flash", 48123, 1000000, "bytes", basis="static"),
        Limit("ram", 22400, 500000, "bytes", basis="static")))
    atomic_write_json(out / "budgets.json", to_dict(budgets))
    tone = load_bundle(TONE_BUNDLE)
    metrics = Metrics(test=SplitMetrics(float_model=from_dict(ClipMetrics, _clip_metrics(0.9123)),
                                        converted=from_dict(ClipMetrics, _clip_metrics(0.9087))),
                      parity=Parity(argmax_agreement=0.9921))
    manifest = dataclasses.replace(tone.manifest, name="demo", version="1.2.3", metrics=metrics, budgets=budgets,
                                   provenance=Provenance(run=RunRecord(data_sha256="d" * 64, seed=cfg.seed),
                                                         config=to_dict(cfg)))
    save_bundle(out / "convert" / "bundle", manifest, tone.model_bytes)
    detector = dataclasses.replace(manifest.detector, thresholds={"yes": 0.875, "no": 0.875})
    report = StreamEvaluation(
        split="test", stream=StreamConfig(minutes=40.0), detector=detector,
        score=StreamScore(duration_s=2400.0, n_keywords=120, hits=115, false_reject_rate=0.0417, false_accepts=1,
                          false_accepts_per_hour=1.5),
        det_curve=tuple(from_dict(DetPoint, {k: v for k, v in p.items() if k != "false_accepts"}) for p in points),
        command="kws evaluate --bundle out/bundle --data synthetic --split test --stream-minutes 40 --seed 0")
    final = dataclasses.replace(manifest, detector=detector,
                                metrics=dataclasses.replace(metrics, streaming=StreamingMetrics(report=report)))
    save_bundle(out / "bundle", final, tone.model_bytes)
    atomic_write_json(out / "benchmark.json", {
        "machine": {"platform": "Linux-test", "cpus": 2, "python": "3.11"},
        "hop": {"cpu_ms_per_audio_s": 4.321, "real_time_factor": 0.004321, "hop_latency_median_ms": 0.0789,
                "hop_latency_p99_ms": 0.2345},
        "chunk_100ms": {"cpu_ms_per_audio_s": 3.9},
        "cold_start": {"wall_s": 0.61, "peak_rss_bytes": 61234567, "tensorflow_imported": False}})
    atomic_write_json(out / "sample.json", {"words": [{"word": "yes", "start_s": 0.5, "end_s": 1.0}],
                                            "detections": [{"label": "yes", "score": 0.97, "time_s": 1.3}],
                                            "command": "kws detect sample.wav --bundle bundle"})
    atomic_write_json(out / "pipeline.json", {"format_version": 1, "code_version": "0.1.0+src.test",
                                              "updated_utc": "2026-11-26T10:06:00Z",
                                              "pipeline": {"device": "raspberry-pi-4b"},
                                              "stages": {s: {"status": "done", "key": "k" * 64, "seconds": 1.0}
                                                         for s in ("data", "train", "convert", "budget", "evaluate",
                                                                   "benchmark", "bundle")},
                                              "last_run": {"reused": ["data"]}})
    return out


KEY_NUMBERS = ["91.23%", "90.87%", "4.2%", "1.50", "raspberry-pi-4b", "4.321", "0.875", "48,123", "23756", "dddddddd"]


def test_report_files_and_markdown(tmp_path):
    from kws_edge.pipeline.report import write_report

    out = make_pipeline_folder(tmp_path / "out")
    paths = write_report(out)
    html = paths["html"].read_text()
    md = paths["markdown"].read_text()
    for number in KEY_NUMBERS:
        assert number in html, number
        assert number in md, number
    # self-contained: every image is a data URI; the Markdown's images sit beside it
    srcs = re.findall(r'<img [^>]*src="([^"]{0,40})', html)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (paths["markdown"].parent / name).is_file()
    assert "http://" not in html and "https://" not in html


def test_report_for_a_pipeline_that_stopped_early(tmp_path):
    from kws_edge.pipeline.report import write_report

    out = make_pipeline_folder(tmp_path / "out")
    shutil.rmtree(out / "evaluation")
    (out / "benchmark.json").unlink()
    html = write_report(out)["html"].read_text()
    assert "DET curve: not available" in html and "91.23%" in html


CHECKER = """
<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images).map(i => ({alt: i.alt, w: i.naturalWidth, h: i.naturalHeight,
                                                       complete: i.complete}));
  const pre = document.createElement('pre');
  pre.id = 'kws-check';
  pre.textContent = JSON.stringify({imgs: imgs, text: document.body.innerText});
  document.body.appendChild(pre);
});
</script>
"""


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    from kws_edge.pipeline.report import write_report

    out = make_pipeline_folder(tmp_path / "out")
    html_path = write_report(out)["html"]
    # the page itself has no script; a copy gets a checker that reports what the browser rendered
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text().replace("</body>", CHECKER + "</body>"))
    profile = tempfile.mkdtemp(prefix="kws-chromium-")
    try:
        proc = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                               "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    m = re.search(r'<pre id="kws-check">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"chromium rendered no check (exit {proc.returncode}): {proc.stderr[-500:]}"
    import html as html_mod

    check = json.loads(html_mod.unescape(m.group(1)))
    assert len(check["imgs"]) == 4
    for img in check["imgs"]:
        assert img["complete"] and img["w"] > 100 and img["h"] > 100, img
    for number in KEY_NUMBERS:
        assert number in check["text"], number


def test_det_curve_threshold_labels_never_overlap(tmp_path):
    """Crowded DET points (0.3-0.7 on one spot, 0.9-0.98 close together) keep only labels that do not overlap."""
    pytest.importorskip("matplotlib")
    from kws_edge.training.plots import _figure, place_threshold_labels, plot_det_curve

    thresholds = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98]
    fa_per_hour = [400, 210, 120, 119, 118, 118, 117, 60, 30, 9.0, 8.6, 8.3, 8.1, 8.0]
    frr = [0.01, 0.02, 0.05, 0.05, 0.051, 0.052, 0.053, 0.1, 0.15, 0.3, 0.31, 0.315, 0.32, 0.33]
    points = [{"threshold": t, "false_accepts_per_hour": f, "false_reject_rate": r}
              for t, f, r in zip(thresholds, fa_per_hour, frr)]
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    try:
        ax.plot(fa_per_hour, [100 * r for r in frr], "o-")
        ax.set_xscale("symlog", linthresh=1.0)
        kept = place_threshold_labels(ax, points)
        texts = [t.get_text() for t in ax.texts]
    finally:
        plt.close(fig)
    labelled = [t for t, _ in kept]
    assert labelled[0] == 0.1 and labelled[-1] == 0.98  # both ends of the curve
    assert texts and sorted(float(t) for t in texts) == labelled  # skipped labels are not drawn
    boxes = [b for _, b in kept]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (labelled[i], labelled[j])
    crowded = {0.3, 0.4, 0.5, 0.6, 0.7}
    assert 1 <= len(crowded & set(labelled)) < len(crowded)
    assert 0.85 in labelled and 0.2 in labelled  # points with room keep their labels
    assert plot_det_curve(points, tmp_path / "det.png") == labelled  # the report's plot places the same labels
