"""Before/after in one process: the detector of two source trees, paced and tight, interleaved.

Figures measured in separate runs on a shared machine swing by 2x with what
else runs; a before/after ratio is only worth quoting from one run. This loads
the ``kws_edge`` package of each tree under its own name (a copy in a temporary
folder), builds a detector of the same bundle from each, and feeds the same
int16 audio to them in turn through this tree's ``bench.measure_feed`` (same
feeding loop, same clock), ``--rounds`` times, keeping each path's cheapest run.

Usage (from a checkout; OLD is another checkout, e.g. ``git worktree add /tmp/base 7b95117``)::

    python benchmarks/ab_trees.py /tmp/base [NEW_TREE] [--chunks 10 100] [--rounds 4] [--seconds 3]

Two bundles with the same code: ``python benchmarks/ab_trees.py . . --old-bundle kws_edge/micro_bundle``.

CPU ms per second of audio, whole process / inside ``process()``, as in
``benchmarks/test_bench_paced.py``.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _load(tree: Path, name: str, folder: Path):
    """Import ``tree/kws_edge`` as package ``name`` (its imports are relative, so a renamed copy works)."""
    shutil.copytree(tree / "kws_edge", folder / name, ignore=shutil.ignore_patterns("__pycache__", "web"))
    return importlib.import_module(f"{name}.detector")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path, help="source tree of the 'before' (a checkout with kws_edge/)")
    ap.add_argument("new", type=Path, nargs="?", default=HERE.parent, help="source tree of the 'after' (default: this one)")
    ap.add_argument("--bundle", type=Path, default=None, help="bundle directory (default: the new tree's default bundle)")
    ap.add_argument("--old-bundle", type=Path, default=None,
                    help="another bundle for the 'before' (default: --bundle); with OLD = NEW this compares two bundles")
    ap.add_argument("--chunks", type=int, nargs="+", default=[10, 100], help="chunk sizes in ms")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0, help="paced audio per run (wall time)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.new))
    from kws_edge import bench
    from kws_edge.audio import to_int16

    bundle = args.bundle or args.new / "kws_edge" / "default_bundle"
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        bundles = {"before": args.old_bundle or bundle, "after": bundle}
        detectors = {label: _load(tree, f"kws_edge_ab_{label}", Path(tmp)).KeywordDetector.from_bundle(str(bundles[label]))
                     for label, tree in (("before", args.old), ("after", args.new))}
        paced_audio = to_int16(bench.bench_audio(args.seconds + 1.0, 16000, seed=21))
        tight_audio = to_int16(bench.bench_audio(6.0, 16000, seed=22))

        def run(det, audio, chunk_ms, realtime):
            def measure():
                det.reset()
                return bench.measure_feed(det.process, audio, sample_rate_hz=16000, chunk_samples=chunk_ms * 16,
                                          realtime=realtime)
            return measure

        runs = {}
        for c in args.chunks:
            for label, det in detectors.items():
                runs[f"{label} tight {c} ms"] = run(det, tight_audio, c, False)
        best = bench.measure_interleaved(runs, rounds=args.rounds)
        paced = {f"{label} paced {c} ms": run(det, paced_audio, c, True)
                 for c in args.chunks for label, det in detectors.items()}
        best.update(bench.measure_interleaved(paced, rounds=args.rounds, max_repeats=1))
    print(f"bundle {bundle}; before {args.old}, after {args.new}; CPU ms per s of audio, whole / inside process()")
    if 100 in args.chunks:  # at 100 ms chunks and the default 200 ms interval, every other call runs the model
        for label in ("before", "after"):
            calls = np.sort(best[f"{label} paced 100 ms"].hop_cpu_ms) * 1000.0
            half = len(calls) // 2
            print(f"{label}: paced 100 ms calls, median CPU of the dearer half (features, model, smoother) "
                  f"{np.median(calls[half:]):.0f} us, of the cheaper half (held) {np.median(calls[:half]):.0f} us")
    for mode in ("paced", "tight"):
        for c in args.chunks:
            b, a = best[f"before {mode} {c} ms"], best[f"after {mode} {c} ms"]
            print(f"{mode} {c:4d} ms  before {b.cpu_ms_per_audio_s:6.2f} / {b.call_cpu_ms_per_audio_s:6.2f}   "
                  f"after {a.cpu_ms_per_audio_s:6.2f} / {a.call_cpu_ms_per_audio_s:6.2f}   "
                  f"after/before {a.cpu_s / b.cpu_s:.2f} / {a.call_cpu_ms_per_audio_s / b.call_cpu_ms_per_audio_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
