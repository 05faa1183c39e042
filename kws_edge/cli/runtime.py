"""``kws detect``, ``kws classify``, ``kws listen``, ``kws info``: the runtime on the command line.

Results go to stdout (text, or JSON lines with ``--json``); notes (resampling,
cropping, lost audio) and errors go to stderr. A bad file among several does
not lose the results of the good ones: they are printed, then the error
lines, and the exit status is 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..audio import open_wav
from ..bundle import Bundle, default_bundle_path, load_bundle
from ..errors import AudioFormatError, BundleError, KwsError
from . import cli

__all__ = ["detect", "classify", "listen", "info"]

_BUNDLE_HELP = ("bundle directory (model.tflite + manifest.json), or the name of a shipped one: default (a Raspberry "
                "Pi class device) or micro (a Cortex-M class one); default: default")


def _load(bundle_dir: Path | None) -> Bundle:
    if bundle_dir is None:
        default = default_bundle_path()
        if not (default / "manifest.json").exists():
            raise BundleError(
                f"no default bundle is installed (looked in {default}); pass --bundle DIR with a bundle made by "
                "kws-convert, or reinstall kws-edge"
            )
        bundle = load_bundle(default)
    else:
        bundle = load_bundle(bundle_dir)
    for text in bundle.notes:
        _note(text)
    return bundle


def _detector(bundle: Bundle, threshold: float | None, *, interval_ms: float | None = None):
    """A detector with the bundle's settings, or one threshold for every keyword."""
    from ..detector import KeywordDetector

    overrides = {} if threshold is None else {"thresholds": threshold}
    return KeywordDetector.from_bundle(bundle, interval_ms=interval_ms, **overrides)


def _note(text: str) -> None:
    click.echo(f"note: {text}", err=True)


def _finish(errors: list[KwsError]) -> None:
    """Print the error lines collected while processing files; exit with the worst status."""
    if not errors:
        return
    for exc in errors:
        click.echo(f"error: {exc}", err=True)
    click.get_current_context().exit(max(e.exit_code for e in errors))


def _emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj))


_files = click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
_bundle = click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None, help=_BUNDLE_HELP)
_json = click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout")
_threshold = click.option(
    "--threshold", type=click.FloatRange(0.0, 1.0), default=None,
    help="detection threshold for every keyword (default: the bundle's per-keyword thresholds; lower "
         "hears more, with more false accepts)")
_resample = click.option("--resample/--no-resample", default=True, show_default=True,
                         help="resample WAVs at other rates (a note on stderr says so) or refuse them")


@cli.command()
@_files
@_bundle
@_json
@_resample
@_threshold
def detect(files: tuple[Path, ...], bundle_dir: Path | None, as_json: bool, resample: bool,
           threshold: float | None = None) -> None:
    """Keyword detections in WAV files (streamed as a live detector would hear them).

    Each file is run through a fresh detector, then one clip of silence, so a
    keyword at the very end is still heard. T is the end of the audio window
    that triggered (at most the file's length). Text: FILE: LABEL at T s (score S).
    --json: one line per detection {"file", "label", "score", "time_s"}.
    """
    detector = _detector(_load(bundle_dir), threshold)
    errors: list[KwsError] = []
    for path in files:
        try:
            found, duration_s = _detect_file(detector, path, resample)
        except AudioFormatError as exc:
            errors.append(exc)
            continue
        for d in found:
            # a window that reached into the trailing silence is reported at the end of the file
            d = dataclasses.replace(d, time_s=min(d.time_s, duration_s))
            if as_json:
                _emit({"file": str(path), **d.to_dict()})
            else:
                click.echo(f"{path}: {d.label} at {d.time_s:.2f} s (score {d.score:.2f})")
        if not found and not as_json:
            click.echo(f"{path}: no detections")
    _finish(errors)


def _detect_file(detector: Any, path: Path, allow_resample: bool) -> tuple[list[Any], float]:
    """Stream one WAV file through a fresh detector block by block (then one clip of silence)."""
    with open_wav(path, sample_rate_hz=detector.sample_rate_hz, allow_resample=allow_resample) as stream:
        if stream.resampled:
            _note(f"{path}: resampled from {stream.source_rate_hz} Hz to {stream.sample_rate_hz} Hz")
        detector.reset()
        found = []
        for block in stream:
            found.extend(detector.process(block))
        found.extend(detector.flush())
        return found, stream.duration_s


@cli.command()
@_files
@_bundle
@_json
@_resample
def classify(files: tuple[Path, ...], bundle_dir: Path | None, as_json: bool, resample: bool) -> None:
    """One label per WAV clip (centre 1 s; shorter clips are padded with silence).

    Text: FILE: LABEL (score) and every class score.
    --json: one line per file {"file", "label", "score", "scores": {label: p}}.
    """
    from ..model import KwsModel

    model = KwsModel(_load(bundle_dir))
    clip_s = model.features.clip_ms / 1000.0
    errors: list[KwsError] = []
    for path in files:
        try:
            with open_wav(path, sample_rate_hz=model.features.sample_rate_hz, allow_resample=resample) as stream:
                if stream.resampled:
                    _note(f"{path}: resampled from {stream.source_rate_hz} Hz to {stream.sample_rate_hz} Hz")
                wav = stream.read_centre(model.features.clip_samples)  # only the centre is kept in memory
                duration_s = stream.duration_s
        except AudioFormatError as exc:
            errors.append(exc)
            continue
        if duration_s > clip_s + 0.05:
            _note(f"{path} is {duration_s:.2f} s; classified its centre {clip_s:g} s "
                  "(use kws detect for recordings)")
        scores = model.classify(wav.samples)
        best = int(scores.argmax())
        by_label = {label: round(float(p), 4) for label, p in zip(model.labels, scores)}
        if as_json:
            _emit({"file": str(path), "label": model.labels[best], "score": by_label[model.labels[best]],
                   "scores": by_label})
        else:
            others = ", ".join(f"{k} {v:.3f}" for k, v in by_label.items())
            click.echo(f"{path}: {model.labels[best]} ({scores[best]:.3f})  [{others}]")
    _finish(errors)


@contextlib.contextmanager
def _ctrl_c_as_flag() -> Iterator[list[bool]]:
    """While inside, Ctrl-C sets ``flag[0]`` instead of raising KeyboardInterrupt.

    An exception raised asynchronously inside ``queue.Queue.get`` (where the listen loop waits) can leave
    the queue's lock held; the audio thread's next ``put`` then blocks, and stopping the stream waits for
    that thread forever. The likely cause of one ``kws listen`` hang after Ctrl-C in CI (not reproduced
    in 9 runs of the test alone); with a flag the loop ends at the next audio block (100 ms).
    """
    flag = [False]

    def request_stop(signum: int, frame: Any) -> None:
        flag[0] = True

    try:
        previous = signal.signal(signal.SIGINT, request_stop)
    except ValueError:  # not the main thread: leave Ctrl-C as it is
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@cli.command()
@_bundle
@click.option("--device", default=None, help="input device index or name (list them: python -m sounddevice)")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="stop after this much audio (default: until Ctrl-C)")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="serve telemetry as Prometheus metrics on http://127.0.0.1:PORT/metrics (monitor extra)")
@click.option("--telemetry", "telemetry_path", type=click.Path(path_type=Path), default=None,
              help="append a telemetry snapshot (JSON line) to this file every --telemetry-interval seconds")
@click.option("--telemetry-interval", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="seconds between telemetry snapshots")
@_json
@_threshold
@click.option("--interval-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="run features and model once this much audio has arrived (whole model blocks; streaming "
                   "bundles only): longer is less CPU, detections up to that much later; default 200 ms, "
                   "100 ms for the earliest detections")
def listen(bundle_dir: Path | None, device: str | None, seconds: float | None, as_json: bool,
           metrics_port: int | None = None, telemetry_path: Path | None = None,
           telemetry_interval: float = 10.0, threshold: float | None = None,
           interval_ms: float | None = None) -> None:
    """Live detections from the microphone; Ctrl-C ends cleanly.

    Needs the audio extra: pip install "kws-edge[audio]" (and libportaudio2).
    """
    from ..microphone import MicrophoneSource, import_sounddevice

    import_sounddevice()  # fail early, before loading the model, when the extra is missing
    detector = _detector(_load(bundle_dir), threshold, interval_ms=interval_ms)
    rate = detector.sample_rate_hz
    n_detections = 0
    reported_loss = (0, 0)
    mic = MicrophoneSource(sample_rate_hz=rate, block_samples=rate // 10, device=device)
    interrupted = False
    session = None
    if metrics_port is not None or telemetry_path is not None:
        from ..telemetry import TelemetrySession

        session = TelemetrySession(detector, metrics_port=metrics_port, jsonl_path=telemetry_path,
                                   interval_s=telemetry_interval)
        click.echo(session.describe(), err=True)
    try:
        with _ctrl_c_as_flag() as stop_requested, mic:
            click.echo(f"listening on {mic.device_name or 'the default input'} at {rate} Hz "
                       f"for {'%g s' % seconds if seconds else 'ever (Ctrl-C to stop)'}; "
                       f"keywords: {', '.join(detector.keywords)}", err=True)
            for chunk in mic:
                if stop_requested[0]:
                    interrupted = True
                    break
                if seconds is not None:
                    chunk = chunk[: max(0, int(round(seconds * rate)) - detector.n_samples)]
                for d in detector.process(chunk):
                    n_detections += 1
                    if as_json:
                        _emit(d.to_dict())
                    else:
                        click.echo(f"{d.time_s:8.2f} s  {d.label:<10} {d.score:.2f}")
                    sys.stdout.flush()
                loss = (mic.stats.dropped_blocks, mic.stats.input_overflows)
                if session is not None:
                    session.tick(lost_blocks=loss[0] + loss[1])
                if loss != reported_loss:
                    reported_loss = loss
                    click.echo(f"warning: lost audio so far: {loss[0]} blocks dropped (too slow), "
                               f"{loss[1]} input overflows", err=True)
                if seconds is not None and detector.n_samples >= seconds * rate:
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if session is not None:
            session.close()
    click.echo(
        f"{'interrupted; ' if interrupted else ''}listened {detector.time_s:.1f} s: {n_detections} detections; "
        f"capture: {mic.stats.summary()}",
        err=True,
    )


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path), required=False)
@click.option("--bundle", "bundle_opt", type=click.Path(path_type=Path), default=None, help=_BUNDLE_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the whole manifest as JSON")
def info(bundle: Path | None, bundle_opt: Path | None, as_json: bool) -> None:
    """What is in a bundle (default: the shipped one): model, detector, metrics, provenance, budgets.

    BUNDLE or --bundle DIR names the bundle; the model's hash is verified first.
    Sections with short lines; --json prints the whole manifest.
    """
    from ..config import to_dict

    if bundle is not None and bundle_opt is not None and bundle != bundle_opt:
        raise click.UsageError(f"two bundles given ({bundle} and --bundle {bundle_opt}); give one")
    b = _load(bundle if bundle is not None else bundle_opt)
    _detector(b, None)  # what the runtime checks on top of the manifest: the models load and match it
    if as_json:
        click.echo(json.dumps(to_dict(b.manifest), indent=2))
        return
    for line in _info_lines(b):
        click.echo(line)


def _num(n: int | float) -> str:
    return f"{n:,}" if n else "not measured"


def _tflm_arena(manifest: Any, file: str) -> str:
    """``; TFLM arena N bytes (measured, build)`` for a model measured in TFLite Micro, else ""."""
    tflm = manifest.budgets.tflm
    entry = tflm.models.get(file) if tflm is not None else None
    if entry is None or not entry.arena_bytes:
        return ""
    return (f"; TFLM arena {_num(int(entry.arena_bytes))} bytes (measured in {tflm.build.package or 'tflite-micro'} "
            f"{tflm.build.version or '?'})")


def _model_rows(prefix: str, m: Any, weight_scales: str = "", arena: str = "") -> list[tuple[str, str]]:
    ops = list(m.operators)
    counted = ", ".join(f"{op} x{ops.count(op)}" if ops.count(op) > 1 else op for op in dict.fromkeys(ops))
    q = lambda t: f"{list(t.shape)} {t.dtype}" + (f" (scale {t.scale:.6g}, zero point {t.zero_point})"  # noqa: E731
                                                   if t.scale else "")
    return [
        (f"{prefix}file", f"{m.file}, {m.size_bytes:,} bytes, {m.quantization}"
                          + (f" ({weight_scales} weight scales)" if weight_scales and m.quantization == "int8" else "")),
        (f"{prefix}sha256", m.sha256),
        (f"{prefix}input", q(m.input)),
        (f"{prefix}output", q(m.output)),
        *([(f"{prefix}state", f"{len(m.extra_inputs)} state tensors, "
            f"{sum(int(np.prod(t.shape)) for t in m.extra_inputs):,} values")] if m.extra_inputs else []),
        (f"{prefix}operators", f"{len(ops)}: {counted}" if ops else "not recorded"),
        (f"{prefix}activation", (f"{_num(m.peak_activation_bytes)} bytes peak" if m.peak_activation_bytes
                                 else "not measured") + arena),
        (f"{prefix}weights", f"{_num(m.weight_bytes)} bytes" if m.weight_bytes else "not measured"),
        (f"{prefix}MACs", f"{_num(m.macs_per_inference)} per inference" if m.macs_per_inference
         else "not measured"),
    ]


def _flat(value: Any, depth: int = 0) -> str:
    """A one-line summary of a JSON value (scalars and shallow dicts; long lists elided)."""
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            if isinstance(v, list) and len(v) > 4:
                continue  # confusion matrices, file lists
            if isinstance(v, dict) and depth >= 1:
                continue
            parts.append(f"{k}={_flat(v, depth + 1)}" if not isinstance(v, dict) else f"{k}: {_flat(v, depth + 1)}")
        return ", ".join(parts) if depth == 0 else "{" + ", ".join(parts) + "}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v, depth + 1) for v in value) + "]"
    return str(value)


def _budget_line(r: Any) -> str:
    """``name: value of limit, ok|OVER (basis)`` of one budget (a :class:`~kws_edge.limits.Limit`)."""
    from ..limits import format_value

    basis = f" ({r.basis})" if r.basis else ""
    return (f"{r.name}: {format_value(r.value, r.unit)} of {format_value(r.limit, r.unit)}, "
            f"{'ok' if r.passed else 'OVER'}{basis}")


#: ``kws info`` lines are wrapped to this width; --json has everything at full length
INFO_WIDTH = 100
#: nested tables deeper than this are summarised on one (wrapped) line
_INFO_DEPTH = 3


def _wrap(head: str, text: str, indent: int) -> list[str]:
    """``head  text`` wrapped to INFO_WIDTH, continuation lines indented under the text."""
    import textwrap

    pad = " " * indent
    return textwrap.wrap(text, width=INFO_WIDTH, initial_indent=pad + head, subsequent_indent=pad + "    ",
                         break_on_hyphens=False, break_long_words=False) or [pad + head.rstrip()]


def _tree(data: dict[str, Any], indent: int = 2, depth: int = 0) -> list[str]:
    """A JSON table as indented ``key: value`` lines; long lists (matrices, file lists) are left to --json."""
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict) and value and depth < _INFO_DEPTH:
            lines.append(" " * indent + f"{key}:")
            lines += _tree(value, indent + 2, depth + 1)
        elif (isinstance(value, list) and value and len(value) <= 8 and all(isinstance(v, dict) for v in value)
              and depth <= _INFO_DEPTH):
            lines.append(" " * indent + f"{key}:")
            for v in value:
                lines += _wrap("- ", _flat(v), indent + 2)
        elif isinstance(value, list) and (len(value) > 8 or any(isinstance(v, (list, dict)) for v in value)):
            lines.append(" " * indent + f"{key}: {len(value)} items (--json)")
        else:
            lines += _wrap(f"{key}: ", _flat(value) if isinstance(value, (dict, list)) else _flat(value), indent)
    return lines


def _pruned(value: Any) -> Any:
    """A JSON value without the fields nobody filled (None, "", empty tables and lists); False and 0 stay."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _info_lines(b: Bundle) -> list[str]:
    """``kws info``: the bundle's head as aligned rows, then the typed metrics, provenance and budgets as sections."""
    from ..config import to_dict

    m = b.manifest
    rows = _info_rows(b)
    width = max(len(k) for k, _ in rows)
    lines = [line for key, value in rows for line in _wrap(f"{key:<{width}}  ", value, 0)]
    for section in ("metrics", "provenance", "budgets"):
        data = _pruned(to_dict(getattr(m, section)))
        if section == "metrics" and list(data) == ["headline"]:
            data = {}
        lines.append("")
        if not data:
            lines.append(f"{section}: none recorded")
            continue
        lines.append(f"{section}:")
        if section == "budgets":
            data.pop("results", None)
            head = {k: data.pop(k) for k in ("device", "within_budget") if k in data}
            lines += _tree({**head, **data})
            for r in m.budgets.results:
                lines += _wrap("budget ", _budget_line(r), 2)
        else:
            lines += _tree(data)
    return lines


def _info_rows(b: Bundle) -> list[tuple[str, str]]:
    m = b.manifest
    f = m.features
    d = m.detector
    rows = [
        ("bundle", str(b.path)),
        ("name", m.name),
        ("version", m.version),
        ("format", str(m.format_version)),
    ]
    if m.description:
        rows.append(("description", m.description))
    if m.created_utc:
        rows.append(("created", m.created_utc))
    rows += [
        ("labels", ", ".join(m.labels)),
        ("keywords", ", ".join(m.keywords)),
        ("features", f"MFCC {f.n_cepstra} cepstra ({'c0 = log energy, ' if f.append_energy else ''}"
                     f"{f.n_mel_filters} mel filters {f.low_freq_hz:g}-{f.high_freq_hz:g} Hz), "
                     f"{f.sample_rate_hz} Hz, {f.window_ms:g} ms {f.window_function} window every "
                     f"{f.hop_ms:g} ms, FFT {f.fft_size_samples}, pre-emphasis {f.preemphasis:g}, "
                     f"lifter {f.cepstral_lifter}"),
        ("clip", f"{f.clip_ms:g} ms = {f.frames_per_clip} frames"),
    ]
    conversion = m.provenance.conversion
    scales = str(conversion.weight_scales or "") if conversion is not None else ""
    rows += _model_rows("model ", m.model, scales, _tflm_arena(m, m.model.file))
    if m.streaming_model is not None:
        rows += _model_rows("streaming ", m.streaming_model, scales, _tflm_arena(m, m.streaming_model.file))
    thresholds = ", ".join(f"{k} {d.threshold(k):g}" for k in m.keywords)
    rows.append(("detector", f"threshold {thresholds}; smoothing {d.smoothing_window_ms:g} ms; "
                             f"min count {d.min_count}; suppression {d.suppression_ms:g} ms; "
                             f"model every {d.stride_hops} hop(s)"))
    if m.attribution:
        rows.append(("attribution", m.attribution))
    return rows
