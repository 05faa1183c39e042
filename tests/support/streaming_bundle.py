"""Make ``tests/data/tone_tcn_bundle/``: a window model AND its streaming twin, int8.

A small streamable ``tcn`` (kws_edge.training.streaming_model) is trained in
seconds on the synthetic tone classes of ``support.tone_bundle``
(``yes`` = 1000 Hz + 1500 Hz bursts, ``no`` = a 2500 Hz burst; not speech),
converted to a full-int8 window model (kws_edge.converters.quantize) and to
a full-int8 streaming model with external state
(kws_edge.converters.streaming), and saved as one bundle. The streaming
tests run on it without TensorFlow.

Usage (from ``tests/``, in the dev venv)::

    python -m support.streaming_bundle               # from tests/: seed 0, writes tests/data/tone_tcn_bundle
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from support import tone_bundle as tone

HERE = Path(__file__).resolve().parents[1]  # tests/

OUT_DIR = HERE / "data" / "tone_tcn_bundle"
#: the default tcn architecture (64 channels, as trained on real data), 5 blocks, 5 new frames per streaming call
TEST_TCN = dict(filters=64, first_kernel_frames=5, block_kernel_frames=(3, 3, 3, 3, 3),
                block_dilations=(1, 2, 4, 4, 4), dropout=0.0, block_frames=5)


def build(out_dir: Path, *, seed: int = 0, n_per_class: int = 200, epochs: int = 20) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from kws_edge.bundle import Manifest, Metrics, ModelFile, Provenance, TensorSpec, save_bundle
    from kws_edge.bundle.metrics import SplitMetrics
    from kws_edge.bundle.provenance import ConversionRecord, StreamingConversionRecord
    from kws_edge.metrics import ClipMetrics
    from kws_edge.converters.quantize import convert_keras
    from kws_edge.converters.streaming import StreamingConversionConfig, convert_streaming, streaming_model_file
    from kws_edge.engine import Engine
    from kws_edge.features import MfccConfig, Normalization
    from kws_edge.smoothing import DetectorConfig
    from kws_edge.training.streaming_model import TcnConfig, build_window_model

    features = MfccConfig()
    rng = np.random.default_rng(seed)
    x_train, y_train = tone.dataset(n_per_class, rng)
    x_test, y_test = tone.dataset(max(20, n_per_class // 5), rng)
    norm = Normalization.fit(x_train)
    xn_train, xn_test = norm.apply(x_train), norm.apply(x_test)

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    cfg = TcnConfig(n_frames=features.frames_per_clip, n_cepstra=features.n_cepstra, n_labels=len(tone.LABELS),
                    **TEST_TCN)
    model = build_window_model(cfg)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(xn_train, y_train, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    float_acc = float(np.mean(np.argmax(model.predict(xn_test, verbose=0), axis=1) == y_test))

    window_bytes = convert_keras(model, xn_train[::2], "int8")
    conversion = convert_streaming(model, xn_train, StreamingConversionConfig(seed=seed))
    engine = Engine(window_bytes)
    int8_acc = float(np.mean(np.array([np.argmax(engine.predict(x)) for x in xn_test]) == y_test))

    def spec(info) -> TensorSpec:
        return TensorSpec(shape=info.shape, dtype=info.dtype, scale=info.scale, zero_point=info.zero_point)

    manifest = Manifest(
        name="tone-tcn-test",
        version="1.0.0",
        labels=tone.LABELS,
        keywords=tone.KEYWORDS,
        features=features,
        normalization=norm,
        model=ModelFile(file="model.tflite", sha256="", size_bytes=0, input=spec(engine.input),
                        output=spec(engine.output), quantization="int8"),
        streaming_model=streaming_model_file(conversion.model_bytes),
        detector=DetectorConfig(),
        description=("TEST ONLY: synthetic tone patterns (not speech), streamable tcn with a streaming "
                     "model; made by tests/support/streaming_bundle.py"),
        provenance=Provenance(
            conversion=ConversionRecord(streaming=StreamingConversionRecord(
                block_frames=conversion.block_frames, state_size=conversion.state_size,
                n_calibration_pairs=conversion.n_calibration)),
            extra={"script": "tests/support/streaming_bundle.py", "seed": seed, "n_per_class": n_per_class,
                   "epochs": epochs, "tcn": {k: list(v) if isinstance(v, tuple) else v for k, v in TEST_TCN.items()},
                   "tensorflow": tf.__version__}),
        metrics=Metrics(test=SplitMetrics(
            float_model=ClipMetrics(accuracy=round(float_acc, 4), n_clips=int(len(y_test))),
            converted=ClipMetrics(accuracy=round(int8_acc, 4), n_clips=int(len(y_test))))),
    )
    save_bundle(out_dir, manifest, window_bytes, streaming_model_bytes=conversion.model_bytes, overwrite=True)
    (out_dir.parent / "tone_tcn_float_streaming.tflite").write_bytes(conversion.float_model_bytes)
    model.save(out_dir.parent / "tone_tcn.keras")
    return {"float_accuracy": float_acc, "int8_accuracy": int8_acc, "window_bytes": len(window_bytes),
            "streaming_bytes": len(conversion.model_bytes), "state_size": conversion.state_size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--n-per-class", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args(argv)
    print(build(args.out, seed=args.seed, n_per_class=args.n_per_class, epochs=args.epochs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
