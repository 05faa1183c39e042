"""Measuring the runtime's cost: the library behind ``kws bench`` and ``benchmarks/``.

No TensorFlow: this runs on the device (a Raspberry Pi, a laptop) with the
runtime install only.

What is measured, and how
-------------------------
* **CPU per second of audio** (the real-time factor x 1000): process CPU time
  (``time.process_time``, all threads of this process) spent feeding audio
  through :class:`~kws_edge.detector.KeywordDetector`, divided by the audio's
  duration. Wall clock is not used for cost: on a shared machine wall time
  measures the neighbours too.
* **Per-hop latency**: wall time (``time.perf_counter``) of one
  ``process()`` call given exactly one hop of audio (20 ms at the defaults),
  which is what a microphone callback waits for: new MFCC frame, model
  invocation, smoothing. Reported as median and p99.
* **CPU share at real time**: audio fed at the pace it would arrive from a
  microphone (sleeping between hops); CPU time divided by wall time. This is
  the share of one core the detector takes while listening.
* **The naive path**: every hop, recompute the MFCC of the whole last
  second of audio and invoke the model. Measured in the same run, so the
  ratio naive/streaming is robust to a busy machine.
* **Peak RSS** (``resource.getrusage``), **model bytes** (the file),
  **activation bytes** (manifest value, else :mod:`kws_edge.activations` from the
  interpreter's operator graph; a lower bound on a micro arena).

Budgets are checked with :mod:`kws_edge.budgets` (one :class:`~kws_edge.limits.Limit` per budget);
the benchmark suite's gates are in :mod:`kws_edge.workstation.gates`.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ConfigError

__all__ = [
    "StreamStats",
    "DeviceFigures",
    "bench_audio",
    "measure_detector",
    "measure_feed",
    "measure_naive",
    "measure_interleaved",
    "measure_device",
    "cold_start",
    "peak_rss_bytes",
    "machine_info",
    "benchmark_record",
    "run_bench",
    "MIC_BLOCK_MS",
    "mic_block_samples",
]

#: audio block a microphone source delivers (kws_edge.microphone reads 100 ms blocks); CPU per second of
#: audio is measured with blocks of this size, per-hop latency with blocks of one hop
MIC_BLOCK_MS = 100.0

# ---------------------------------------------------------------- measurement


@dataclass
class StreamStats:
    """Cost of pushing ``audio_s`` seconds of audio through one path."""

    path: str
    audio_s: float
    cpu_s: float
    wall_s: float
    hop_latencies_ms: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    n_evaluations: int = 0
    #: CPU time of this thread per hop: the intrinsic latency, immune to preemption by neighbours
    hop_cpu_ms: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    @property
    def cpu_ms_per_audio_s(self) -> float:
        return 1000.0 * self.cpu_s / self.audio_s

    @property
    def call_cpu_ms_per_audio_s(self) -> float:
        """CPU of this thread inside the ``process()`` calls per second of audio (no wake-ups, no feeding loop)."""
        return float(self.hop_cpu_ms.sum()) / self.audio_s if self.hop_cpu_ms.size else float("nan")

    @property
    def real_time_factor(self) -> float:
        """CPU seconds per second of audio (< 1 keeps up on one core)."""
        return self.cpu_s / self.audio_s

    @property
    def cpu_share(self) -> float:
        """CPU time over wall time of the run (meaningful for a real-time paced run)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")

    def latency_ms(self, q: float) -> float:
        """Percentile ``q`` of the per-hop wall latency."""
        lat = self.hop_latencies_ms
        return float(np.percentile(lat, q)) if lat.size else float("nan")

    def hop_cpu_ms_at(self, q: float) -> float:
        """Percentile ``q`` of the per-hop CPU time (this thread)."""
        lat = self.hop_cpu_ms
        return float(np.percentile(lat, q)) if lat.size else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "audio_s": round(self.audio_s, 3),
            "cpu_s": round(self.cpu_s, 6),
            "wall_s": round(self.wall_s, 6),
            "cpu_ms_per_audio_s": round(self.cpu_ms_per_audio_s, 4),
            "call_cpu_ms_per_audio_s": round(self.call_cpu_ms_per_audio_s, 4),
            "real_time_factor": round(self.real_time_factor, 6),
            "cpu_share": round(self.cpu_share, 6),
            "hop_latency_median_ms": round(self.latency_ms(50), 4),
            "hop_latency_p99_ms": round(self.latency_ms(99), 4),
            "hop_cpu_median_ms": round(self.hop_cpu_ms_at(50), 4),
            "hop_cpu_p99_ms": round(self.hop_cpu_ms_at(99), 4),
            "n_hops_timed": int(self.hop_latencies_ms.size),
            "n_evaluations": self.n_evaluations,
        }


def mic_block_samples(sample_rate_hz: int) -> int:
    """Samples in one microphone block (:data:`MIC_BLOCK_MS`)."""
    return int(round(MIC_BLOCK_MS * sample_rate_hz / 1000.0))


def bench_audio(seconds: float, sample_rate_hz: int = 16000, seed: int = 0) -> np.ndarray:
    """Deterministic test audio (float32): noise with tone bursts, like a quiet room with speech."""
    n = int(round(seconds * sample_rate_hz))
    rng = np.random.default_rng(seed)
    x = 0.01 * rng.standard_normal(n)
    t = np.arange(n) / sample_rate_hz
    burst = (np.sin(2 * np.pi * 0.7 * t) > 0.6).astype(np.float64)
    x += 0.2 * burst * np.sin(2 * np.pi * 440.0 * t)
    return x.astype(np.float32)


def measure_feed(process: Callable[[np.ndarray], Any], audio: np.ndarray, *, sample_rate_hz: int,
                 chunk_samples: int, realtime: bool = False, warmup_s: float = 1.0,
                 path: str = "streaming", on_start: Callable[[], Any] | None = None) -> StreamStats:
    """Feed ``audio`` to ``process`` in chunks of ``chunk_samples`` and time it (any engine).

    The first ``warmup_s`` of audio is fed as fast as possible and not
    counted. With ``realtime`` each later chunk is handed over when it is
    due, as a microphone delivers it (sleeping until then): the process then
    starts every call on cold caches, which is what a device pays. ``cpu_s``
    is the CPU of the whole process over the measured stretch (wake-ups
    included); ``hop_cpu_ms`` the CPU of this thread inside each call.
    ``on_start()`` is called once, after the warm-up.
    """
    chunk = int(chunk_samples)
    if chunk < 1:
        raise ConfigError(f"chunk_samples={chunk} must be >= 1")
    warm = min(len(audio), int(warmup_s * sample_rate_hz))
    for start in range(0, warm, chunk):
        process(audio[start:min(start + chunk, warm)])
    if on_start is not None:
        on_start()
    body = audio[warm:]
    starts = range(0, len(body), chunk)
    lat = np.empty(len(starts))
    cpu = np.empty(len(starts))
    chunk_s = chunk / sample_rate_hz
    thread_time, perf_counter, sleep = time.thread_time, time.perf_counter, time.sleep
    cpu0, wall0 = time.process_time(), perf_counter()
    for i, start in enumerate(starts):
        if realtime:
            delay = wall0 + i * chunk_s - perf_counter()
            if delay > 0:
                sleep(delay)
        block = body[start:start + chunk]  # the feeder's slice, made before the clock starts: not process()'s cost
        c0, t0 = thread_time(), perf_counter()
        process(block)
        lat[i] = perf_counter() - t0
        cpu[i] = thread_time() - c0
    if realtime:  # the last chunk's audio ends one chunk after it was due
        delay = wall0 + len(starts) * chunk_s - perf_counter()
        if delay > 0:
            sleep(delay)
    cpu1, wall1 = time.process_time(), perf_counter()
    return StreamStats(path=path + (" (real time)" if realtime else ""), audio_s=len(body) / sample_rate_hz,
                       cpu_s=cpu1 - cpu0, wall_s=wall1 - wall0, hop_latencies_ms=lat * 1000.0,
                       hop_cpu_ms=cpu * 1000.0)


def measure_detector(detector, audio: np.ndarray, *, chunk_samples: int | None = None,
                     realtime: bool = False, warmup_s: float = 1.0) -> StreamStats:
    """Feed ``audio`` to ``detector`` in chunks (default: one hop) and time it (:func:`measure_feed`).

    The first ``warmup_s`` of audio (filling the window) is processed but not
    counted. With ``realtime`` the chunks are paced by the wall clock as a
    microphone would deliver them.
    """
    cfg = detector.features
    detector.reset()
    n_eval0 = []
    stats = measure_feed(detector.process, audio, sample_rate_hz=cfg.sample_rate_hz,
                         chunk_samples=int(chunk_samples or cfg.hop_samples), realtime=realtime, warmup_s=warmup_s,
                         on_start=lambda: n_eval0.append(detector.n_evaluations))
    stats.n_evaluations = detector.n_evaluations - n_eval0[0]
    return stats


def measure_naive(model, audio: np.ndarray) -> StreamStats:
    """The naive loop: every hop, MFCC of the whole last clip, one model call, smoothing.

    ``model`` is a :class:`~kws_edge.model.KwsModel`. The first clip of audio
    only fills the window (like the streaming warm-up) and is not counted.
    """
    from .features import mfcc
    from .smoothing import PosteriorSmoother

    cfg = model.features
    smoother = PosteriorSmoother(model.labels, model.keywords, model.bundle.manifest.detector,
                                 hop_s=cfg.hop_samples / cfg.sample_rate_hz)
    clip, hop = cfg.clip_samples, cfg.hop_samples
    audio = np.asarray(audio, np.float32)
    ends = range(clip + hop, len(audio) + 1, hop)
    lat = np.empty(len(ends))
    cpu = np.empty(len(ends))
    scores_features = model.scores_features
    thread_time = time.thread_time
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i, end in enumerate(ends):
        c0, t0 = thread_time(), time.perf_counter()
        posteriors = scores_features(mfcc(audio[end - clip:end], cfg))
        smoother.update(posteriors, end / cfg.sample_rate_hz)
        lat[i] = time.perf_counter() - t0
        cpu[i] = thread_time() - c0
    cpu1, wall1 = time.process_time(), time.perf_counter()
    return StreamStats(path="naive", audio_s=len(ends) * hop / cfg.sample_rate_hz, cpu_s=cpu1 - cpu0,
                       wall_s=wall1 - wall0, hop_latencies_ms=lat * 1000.0, n_evaluations=len(ends),
                       hop_cpu_ms=cpu * 1000.0)


def measure_interleaved(runs: dict[str, Callable[[], StreamStats]], rounds: int = 3, *,
                        max_repeats: int = 16) -> dict[str, StreamStats]:
    """Run each measurement ``rounds`` times, interleaved; keep each path's cheapest run.

    Interleaving puts every path under the same load from the neighbours;
    the minimum CPU time is the least disturbed estimate of intrinsic cost
    (a busy neighbour only ever adds to it).

    The paths are balanced: after the first round, a path that costs a
    fraction of the dearest one is run that many more times per round (up to
    ``max_repeats``), so a 15 ms measurement gets as many chances at a quiet
    stretch of the machine as a 300 ms one beside it. Without this, one busy
    second can inflate every sample of the cheap path while the dear path,
    spread over more time, still finds a quiet moment; its ratio then swings
    by 2x on a shared machine.
    """
    best: dict[str, StreamStats] = {}
    repeats = dict.fromkeys(runs, 1)
    for round_index in range(max(1, rounds)):
        for name, fn in runs.items():
            for _ in range(repeats[name]):
                stats = fn()
                if name not in best or stats.cpu_s < best[name].cpu_s:
                    best[name] = stats
        if round_index == 0:
            dearest = max(s.cpu_s for s in best.values())
            repeats = {name: min(max_repeats, max(1, round(dearest / max(s.cpu_s, 1e-9))))
                       for name, s in best.items()}
    return best


_COLD_START_CODE = r"""
import json, sys, time
t0 = time.perf_counter()
import kws_edge
from kws_edge.detector import KeywordDetector
t1 = time.perf_counter()
det = KeywordDetector.from_bundle(sys.argv[1])
t2 = time.perf_counter()
audio_s = float(sys.argv[2])
if audio_s > 0:  # then stream int16 noise in 100 ms blocks, as a microphone would (made block by block:
    import numpy as np  # a whole signal made up front, or numpy.random, would count in the peak itself)
    block = det.sample_rate_hz // 10
    for start in range(0, int(audio_s * det.sample_rate_hz), block):
        det.process(((np.arange(start, start + block) * 7919) % 601 - 300).astype(np.int16))
import resource
peak_kb = None
try:  # this process's own high-water mark; ru_maxrss on Linux also holds what it inherited at fork
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration, ValueError):
    pass
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1,
                  "tensorflow_imported": "tensorflow" in sys.modules,
                  "maxrss_kb": peak_kb if peak_kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "maxrss_source": "VmHWM" if peak_kb is not None else "ru_maxrss"}))
"""


def cold_start(bundle_path: str | Path, *, python: str | None = None, repeats: int = 1,
               audio_s: float = 0.0) -> dict[str, Any]:
    """Import kws_edge and load a bundle into a detector in a fresh interpreter; best of ``repeats``.

    Returns wall seconds (import, load, total as seen by the parent), the
    child's CPU seconds, whether TensorFlow got imported (it must not), and
    the child's own peak RSS (``VmHWM`` of /proc/self/status where there is one: on Linux the
    child's ``ru_maxrss`` starts at the peak of the process that started it). With ``audio_s`` the
    child then streams that much int16 noise through the detector in 100 ms blocks before its peak
    RSS is read (what a device holds while it listens).
    """
    best: dict[str, Any] | None = None
    for _ in range(max(1, repeats)):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([python or sys.executable, "-c", _COLD_START_CODE, str(bundle_path), str(float(audio_s))],
                              capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"cold start subprocess failed: {tail}")
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        result = {
            "wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "import_s": child["import_s"],
            "load_s": child["load_s"],
            "tensorflow_imported": child["tensorflow_imported"],
            "peak_rss_bytes": int(child["maxrss_kb"]) * (1 if sys.platform == "darwin" else 1024),
            "peak_rss_source": child.get("maxrss_source", "ru_maxrss"),
        }
        if best is None or result["cpu_s"] < best["cpu_s"]:
            best = result
    assert best is not None
    return best


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


# ---------------------------------------------------------------- kws bench


def machine_info() -> dict[str, Any]:
    from .engine import available_backends

    info = {"machine": platform.machine(), "python": platform.python_version(), "system": platform.system(),
            "cpu_count": os.cpu_count(), "interpreters": available_backends()}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        for line in text.splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu part")):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        model = Path("/proc/device-tree/model")
        if model.exists():
            info["board"] = model.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        pass
    return info


def _load_profile(device: str | None):
    """``(profile or None, how it was chosen)`` from :mod:`kws_edge.devices`."""
    try:
        from kws_edge import devices
    except ImportError:  # pragma: no cover - devices ship with the package
        return None, "no device profiles installed (kws_edge.devices missing)"
    if device:
        return devices.load_profile(device), f"--device {device}"
    try:
        profile = devices.detect_local_profile()
    except ConfigError as exc:  # e.g. TOML profiles on Python < 3.11 without tomllib
        return None, f"device profiles unavailable here ({exc})"
    if profile is None:
        return None, "no shipped profile matches this machine; pass --device"
    return profile, "auto-detected"


def _is_local(profile: Any) -> bool:
    """Whether ``profile`` is the profile of the machine this runs on."""
    try:
        from kws_edge import devices

        local = devices.detect_local_profile()
    except Exception:  # pragma: no cover - detection is best effort
        return False
    return local is not None and local.name == profile.name


def device_budget_report(profile: Any, bundle: Any, figures: "DeviceFigures", *, measured_on_target: bool,
                         streaming: bool | None = None, measured_how: str = "") -> Any:
    """Check the model the detector runs against every budget of ``profile`` (a ``Budgets``).

    The model is the bundle's streaming model when the detector runs it (``streaming``: None = when
    the bundle has one), else the window model. Measured CPU share and latency count only when
    ``measured_on_target``; otherwise :func:`kws_edge.budgets.check_budgets` estimates them from the
    profile and says so.
    """
    from .activations import interpreter_peak_activation_bytes
    from .budgets import check_budgets

    manifest = bundle.manifest
    m, hops_per_inference = manifest.running_model(streaming)
    fc = manifest.features
    model_bytes = bundle.streaming_model_bytes if m is manifest.streaming_model else bundle.model_bytes
    return check_budgets(
        profile,
        model_bytes=int(m.size_bytes),
        activation_bytes=int(m.peak_activation_bytes or interpreter_peak_activation_bytes(model_bytes)),
        macs_per_inference=int(m.macs_per_inference),
        inferences_per_second=fc.hops_per_second / hops_per_inference,
        hops_per_second=fc.hops_per_second,
        quantization=m.quantization if m.quantization in ("int8", "float32") else "int8",
        measured=figures.measured(),
        measured_on_target=measured_on_target,
        measured_how=measured_how,
    )


@dataclass
class DeviceFigures:
    """What ``kws bench`` and ``kws-convert`` measure of a detector on this machine (:func:`measure_device`)."""

    unpaced: StreamStats
    #: microphone blocks at microphone pace (None with ``realtime=False``)
    paced: StreamStats | None
    #: one hop per call, as fast as possible (the per-hop latency)
    hops: StreamStats

    @property
    def stats(self) -> StreamStats:
        """The figure a device pays: paced when measured, else unpaced."""
        return self.paced if self.paced is not None else self.unpaced

    @property
    def cpu_share(self) -> float:
        """CPU seconds per second of audio (paced: the share of one core while listening).

        Cache and wake-up costs included; it equals CPU/wall when the device keeps up, and stays honest
        when it does not (then CPU/wall would understate the need).
        """
        return self.stats.real_time_factor

    @property
    def hop_latency_p99_ms(self) -> float:
        return self.hops.latency_ms(99)

    def measured(self) -> dict[str, float]:
        """The budgets these figures measure (``kws_edge.budgets.MEASURABLE``)."""
        return {"cpu_share": self.cpu_share, "hop_latency_p99_ms": self.hop_latency_p99_ms}


#: how :func:`measure_device` measures, in the words a budget's basis uses
MEASURE_HOW = ("int16 blocks of 100 ms through KeywordDetector at microphone pace (CPU share) and one hop per call "
               "(latency p99), as kws bench measures")


def measure_device(detector: Any, *, seconds: float, realtime: bool = True, seed: int = 0) -> DeviceFigures:
    """CPU share and per-hop latency of ``detector`` on this machine, the one way ``kws bench`` and
    ``kws-convert`` both measure them.

    Int16 blocks of 100 ms (what :mod:`kws_edge.microphone` delivers) of :func:`bench_audio`, as fast as
    possible (warm caches: the benchmarks' tight-loop figure) and, with ``realtime``, paced like a
    microphone (sleeping until each block is due: what a device pays); per-hop latency with one hop per
    call, as fast as possible, over at most 5 s of audio. One clip of warm-up each.
    """
    from .audio import to_int16

    fc = detector.model.features
    warmup_s = fc.clip_ms / 1000.0
    audio = to_int16(bench_audio(seconds + warmup_s, fc.sample_rate_hz, seed))
    block = mic_block_samples(fc.sample_rate_hz)
    unpaced = measure_detector(detector, audio, chunk_samples=block, warmup_s=warmup_s)
    paced = measure_detector(detector, audio, chunk_samples=block, realtime=True, warmup_s=warmup_s) \
        if realtime else None
    hops = measure_detector(detector, audio[:int((min(seconds, 5.0) + warmup_s) * fc.sample_rate_hz)],
                            chunk_samples=fc.hop_samples, warmup_s=warmup_s)
    return DeviceFigures(unpaced=unpaced, paced=paced, hops=hops)


def benchmark_record(result: dict[str, Any]) -> Any:
    """A manifest's :class:`~kws_edge.bundle.metrics.Benchmark` from the pipeline's ``benchmark.json``."""
    from .bundle.metrics import Benchmark

    hop = result.get("hop") or {}
    cold = result.get("cold_start") or {}
    return Benchmark(machine=dict(result.get("machine") or {}), audio_s=float(hop.get("audio_s", 0.0)),
                     cpu_ms_per_audio_s=hop.get("cpu_ms_per_audio_s"), real_time_factor=hop.get("real_time_factor"),
                     hop_latency_median_ms=hop.get("hop_latency_median_ms"),
                     hop_latency_p99_ms=hop.get("hop_latency_p99_ms"),
                     chunk_100ms_cpu_ms_per_audio_s=(result.get("chunk_100ms") or {}).get("cpu_ms_per_audio_s"),
                     cold_start_s=cold.get("wall_s"), cold_start_rss_bytes=cold.get("peak_rss_bytes"))


def run_bench(bundle_path: str | Path | None = None, *, device: str | None = None, seconds: float = 10.0,
              realtime: bool = True, num_threads: int = 1, seed: int = 0) -> dict[str, Any]:
    """Everything ``kws bench`` reports, as a JSON-ready dict.

    Raises KwsError subclasses for a bad bundle, device or option. The
    result's ``within_budget`` is False when any budget of the profile fails,
    None when no profile applies. CPU share and latency are compared as
    measured only when the profile is this machine's (auto-detected, or
    ``--device`` naming the detected board); for another board they are
    estimated from its profile, and the report says so.
    """
    from .activations import interpreter_peak_activation_bytes
    from .bundle import default_bundle_path, load_bundle
    from .config import to_dict
    from .detector import KeywordDetector
    from .errors import BundleError

    if not seconds > 0:
        raise ConfigError(f"--seconds {seconds} must be > 0")
    if bundle_path is None:
        path = default_bundle_path()
        if not (path / "manifest.json").exists():
            raise BundleError(f"no default bundle is installed (looked in {path}); pass --bundle DIR")
    else:
        path = Path(bundle_path)
    bundle = load_bundle(path)
    profile, how = _load_profile(device)
    det = KeywordDetector(bundle, num_threads=num_threads)
    figures = measure_device(det, seconds=seconds, realtime=realtime, seed=seed)
    stats, unpaced, paced, hops = figures.stats, figures.unpaced, figures.paced, figures.hops
    streaming = det.streaming is not None
    m, _ = bundle.manifest.running_model(streaming)
    running_bytes = bundle.streaming_model_bytes if streaming else bundle.model_bytes
    activation = int(m.peak_activation_bytes) or interpreter_peak_activation_bytes(running_bytes)
    cpu_share = figures.cpu_share
    report: dict[str, Any] = {
        "bundle": str(path),
        "bundle_name": f"{bundle.manifest.name} {bundle.manifest.version}",
        "backend": det.backend,
        "machine": machine_info(),
        "seconds": seconds,
        "realtime_paced": realtime,
        "num_threads": num_threads,
        "cpu_share": round(cpu_share, 6),
        "wall_s": round(stats.wall_s, 4),
        "kept_up_with_real_time": bool(stats.wall_s <= stats.audio_s * 1.05) if realtime else None,
        "real_time_factor": round(stats.real_time_factor, 6),
        "cpu_ms_per_audio_s": round(stats.cpu_ms_per_audio_s, 4),
        "block_ms": MIC_BLOCK_MS,
        "block_dtype": "int16",
        # both feedings, whole process and inside process() only (CPU ms per second of audio)
        "paced_cpu_ms_per_audio_s": round(paced.cpu_ms_per_audio_s, 4) if paced else None,
        "paced_call_cpu_ms_per_audio_s": round(paced.call_cpu_ms_per_audio_s, 4) if paced else None,
        "unpaced_cpu_ms_per_audio_s": round(unpaced.cpu_ms_per_audio_s, 4),
        "unpaced_call_cpu_ms_per_audio_s": round(unpaced.call_cpu_ms_per_audio_s, 4),
        "hop_latency_median_ms": round(hops.latency_ms(50), 4),
        "hop_latency_p99_ms": round(hops.latency_ms(99), 4),
        "hop_cpu_p99_ms": round(hops.hop_cpu_ms_at(99), 4),
        "n_hops_timed": int(hops.hop_latencies_ms.size),
        "n_evaluations": stats.n_evaluations,
        "peak_rss_bytes": peak_rss_bytes(),
        "model": m.file,
        "model_bytes": int(m.size_bytes),
        "activation_bytes": activation,
        "activation_bytes_source": "manifest" if m.peak_activation_bytes else "estimated from the operator graph",
        "macs_per_inference": int(m.macs_per_inference),
    }
    if profile is None:
        report.update(device=None, device_note=how, measured_on_target=None, budgets=[], within_budget=None)
        return report
    on_target = how == "auto-detected" or _is_local(profile)
    budgets = device_budget_report(profile, bundle, figures, measured_on_target=on_target, streaming=streaming,
                                   measured_how="")
    if not on_target:
        how += " (not this machine: CPU share and latency are the profile's estimates, not this run's)"
    report.update(device=profile.name, device_note=how, measured_on_target=on_target,
                  budgets=[to_dict(r) for r in budgets.results], within_budget=budgets.within_budget)
    report["_budget_table"] = budgets.table()
    return report
