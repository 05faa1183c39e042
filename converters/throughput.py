"""Measure int8 interpreter throughput (MACs per second) on this machine, for device profile estimates.

``python -m kws_edge.converters.throughput [--architecture ds_cnn] [--width 64] [--depth 4]``
builds an architecture from :mod:`kws_edge.training.models` (untrained weights
are fine for timing), converts it to int8, counts its MACs with
:func:`kws_edge.converters.analysis.analyze_model`, times ``invoke`` with
:class:`kws_edge.Engine` (1 thread; best and median of ``--repeats`` rounds)
and prints one line per figure. Needs the ``train`` extra; the number goes into a
profile's ``estimates.int8_macs_per_second`` with the command as its source.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

__all__ = ["measure_int8_throughput", "main"]


def measure_int8_throughput(architecture: str = "ds_cnn", width: int = 64, depth: int = 4, *,
                            calls: int = 300, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    from kws_edge.engine import Engine
    from kws_edge.features import MfccConfig
    from kws_edge.training.config import ModelConfig
    from kws_edge.training.models import build_inference_model

    from .analysis import analyze_model
    from .quantize import convert_keras

    fc = MfccConfig()
    shape = (fc.frames_per_clip, fc.n_cepstra)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(50,) + shape).astype(np.float32)
    model = build_inference_model(ModelConfig(architecture=architecture, width=width, depth=depth), shape, 4)
    model_bytes = convert_keras(model, x, "int8", clone=False)
    analysis = analyze_model(model_bytes)
    engine = Engine(model_bytes, num_threads=1)
    q = engine.quantize(x[0].reshape(engine.input.shape), engine.input)
    for _ in range(50):
        engine.run_raw(q)
    rounds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            engine.run_raw(q)
        rounds.append((time.perf_counter() - t0) / calls)
    best, median = min(rounds), float(np.median(rounds))
    return {"macs_per_inference": analysis.macs_per_inference, "model_bytes": analysis.model_bytes,
            "peak_activation_bytes": analysis.peak_activation_bytes, "invoke_us_best": best * 1e6,
            "invoke_us_median": median * 1e6, "int8_macs_per_second_best": analysis.macs_per_inference / best,
            "int8_macs_per_second_median": analysis.macs_per_inference / median,
            "load_average_1min": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="python -m kws_edge.converters.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--architecture", default="ds_cnn")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = measure_int8_throughput(args.architecture, args.width, args.depth, repeats=args.repeats)
    for key, value in result.items():
        print(f"{key}: {value:,.2f}" if isinstance(value, float) else f"{key}: {value:,}")


if __name__ == "__main__":
    main()
