"""Cold start: a fresh interpreter imports kws_edge and loads the bundle into a detector."""

from __future__ import annotations

from bench_support import record_figure
from kws_edge import bench


def test_cold_start(benchmark, bench_bundle_path):
    """Reported, not gated on time (device profiles set no cold-start budget); gated on no TensorFlow."""
    result = benchmark.pedantic(bench.cold_start, args=(bench_bundle_path,), kwargs={"audio_s": 3.0}, rounds=3,
                                iterations=1)
    benchmark.extra_info.update(result)
    # the runtime must never pull in TensorFlow (DESIGN.md)
    assert result["tensorflow_imported"] is False, "importing kws_edge loaded TensorFlow"
    record_figure("cold start", f"{result['wall_s'] * 1000:.0f} ms wall, {result['cpu_s'] * 1000:.0f} ms CPU: import "
                                f"{result['import_s'] * 1000:.0f} ms + load {result['load_s'] * 1000:.0f} ms; "
                                f"child peak RSS {result['peak_rss_bytes'] / 2**20:.1f} MiB after load and 3 s of "
                                f"audio (issue 21's target: 45 MB)")
