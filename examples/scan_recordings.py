"""Scan a folder of recordings and write every "yes"/"no" heard, with its time, to a CSV file.

    python examples/scan_recordings.py recordings/ --out detections.csv
    python examples/scan_recordings.py recordings/ --threshold 0.9 --bundle path/to/bundle

Every ``*.wav`` under the folder (sub-folders too, in sorted order) is streamed through the
detector exactly as live audio would be, so the CSV shows what a device would have done.
Columns: ``file`` (relative to the folder), ``label``, ``score``, ``time_s`` (seconds from
the start of the file to the end of the one-second window that fired; the word was spoken
within the second before). Other sample rates are resampled. A file that cannot be read is
reported on stderr and skipped; the exit status is then 1 (2 for bad arguments).
The CSV is written atomically: an interrupted scan never leaves half a file behind.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from kws_edge import KeywordDetector, KwsError, detect_samples, read_wav
from kws_edge.atomic import atomic_write_text
from kws_edge.errors import ConfigError

COLUMNS = ["file", "label", "score", "time_s"]


def scan(folder: Path, detector: KeywordDetector) -> tuple[list[dict], list[str], int, float]:
    """Detections of every WAV under ``folder``: (rows, error lines, files read, seconds of audio)."""
    rows: list[dict] = []
    errors: list[str] = []
    n_read, total_s = 0, 0.0
    for path in sorted(folder.rglob("*.wav")):
        try:
            audio = read_wav(path, sample_rate_hz=detector.sample_rate_hz)
        except KwsError as exc:  # corrupt, empty, stereo, ...: say so and go on with the rest
            errors.append(str(exc))
            continue
        n_read += 1
        total_s += audio.duration_s
        # detect_samples resets the detector, so every file starts from a clean state;
        # flush=True lets a word at the very end of a file through the window.
        for d in detect_samples(detector, audio.samples, flush=True):
            rows.append({"file": path.relative_to(folder).as_posix(), "label": d.label,
                         "score": f"{d.score:.3f}", "time_s": f"{d.time_s:.2f}"})
    return rows, errors, n_read, total_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="folder with WAV recordings")
    ap.add_argument("--out", type=Path, default=Path("detections.csv"), help="CSV to write (default: %(default)s)")
    ap.add_argument("--bundle", default=None, help="model bundle directory (default: the packaged model)")
    ap.add_argument("--threshold", type=float, default=None, help="detection threshold for every keyword (0-1)")
    args = ap.parse_args(argv)

    if not args.folder.is_dir():
        raise ConfigError(f"{args.folder} is not a folder; pass the folder that holds the recordings")
    overrides = {} if args.threshold is None else {"thresholds": args.threshold}
    detector = KeywordDetector.from_bundle(args.bundle, **overrides)

    rows, errors, n_read, total_s = scan(args.folder, detector)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out, buf.getvalue())

    for line in errors:
        print(f"skipped: {line}", file=sys.stderr)
    print(f"{len(rows)} detection(s) in {n_read} file(s), {total_s:.1f} s of audio; "
          f"{len(errors)} file(s) skipped -> {args.out}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KwsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
