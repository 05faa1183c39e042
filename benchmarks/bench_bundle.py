"""Which bundle the benchmarks measure, and a fallback bundle when none exists.

Order of preference:

1. ``$KWS_BENCH_BUNDLE`` (a bundle directory) when set;
2. the package's default bundle (``kws_edge.default_bundle_path()``);
3. the test bundle ``tests/data/tone_bundle``;
4. a benchmark bundle built here: the DS-CNN architecture of the product
   (conv 10x4 stride 2, four depthwise-separable blocks of 64 channels,
   average pooling, dense, softmax), batch 1, full int8, fitted for a few
   epochs on synthetic tones and noise. Its *cost* is the product's; its
   accuracy is meaningless. It needs TensorFlow (the ``train`` extra) and is
   cached in ``$KWS_BENCH_CACHE`` (default ``/var/tmp/kws-bench-bundle``),
   keyed by the feature configuration, so it is built once per machine.

Every benchmark output names the bundle it measured and why it was chosen.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TEST_BUNDLE = REPO / "tests" / "data" / "tone_bundle"
RECIPE_VERSION = 1


def _is_bundle(path: Path) -> bool:
    return (path / "manifest.json").is_file() and (path / "model.tflite").is_file()


def resolve_bench_bundle(build: bool = True) -> tuple[Path, str]:
    """Return ``(bundle_dir, note)`` for the benchmarks; builds the fallback if needed."""
    env = os.environ.get("KWS_BENCH_BUNDLE")
    if env:
        return Path(env), f"$KWS_BENCH_BUNDLE={env}"
    from kws_edge import default_bundle_path

    default = default_bundle_path()
    if _is_bundle(default):
        return default, "the package's default bundle"
    if _is_bundle(TEST_BUNDLE):
        return TEST_BUNDLE, "FALLBACK: no default bundle in the package; using the test bundle tests/data/tone_bundle"
    cache = Path(os.environ.get("KWS_BENCH_CACHE", "/var/tmp/kws-bench-bundle"))
    if not _is_bundle(cache) or _recipe_stamp(cache) != _wanted_stamp():
        if not build:
            raise FileNotFoundError("no bundle to benchmark")
        build_bench_bundle(cache)
    return cache, (f"FALLBACK: no default bundle and no tests/data/tone_bundle; using a DS-CNN benchmark "
                   f"bundle (synthetic weights, product architecture) built at {cache}")


def _wanted_stamp() -> dict:
    from kws_edge.config import config_hash
    from kws_edge.features import MfccConfig

    return {"recipe": RECIPE_VERSION, "features": config_hash(MfccConfig())}


def _recipe_stamp(path: Path) -> dict | None:
    try:
        return json.loads((path / "bench_recipe.json").read_text())
    except (OSError, ValueError):
        return None


def synthetic_clips(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1 s clips: 0 = quiet noise, 1 = broadband noise, 2 = low tone (yes), 3 = high tone (no)."""
    rng = np.random.default_rng(seed)
    sr, n = 16000, 16000
    t = np.arange(n) / sr
    xs, ys = [], []
    for label in range(4):
        for _ in range(n_per_class):
            noise = rng.normal(0, 1, n)
            if label == 0:
                x = 0.003 * noise
            elif label == 1:
                x = 0.1 * noise
            else:
                f = rng.uniform(300, 600) if label == 2 else rng.uniform(1500, 2500)
                env = np.zeros(n)
                start = rng.integers(0, n // 2)
                env[start:start + n // 3] = 1.0
                x = 0.3 * env * np.sin(2 * np.pi * f * t) + 0.005 * noise
            xs.append(x.astype(np.float32))
            ys.append(label)
    return np.stack(xs), np.asarray(ys)


def build_bench_bundle(out: Path, seed: int = 1234) -> Path:
    """Train and convert the benchmark DS-CNN into a bundle at ``out`` (needs TensorFlow)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import contextlib
    import io

    import tensorflow as tf

    from kws_edge.bundle import Manifest, ModelFile, TensorSpec, save_bundle
    from kws_edge.features import MfccConfig, Normalization, mfcc
    from kws_edge.smoothing import DetectorConfig

    tf.keras.utils.set_random_seed(seed)
    cfg = MfccConfig()
    clips, y = synthetic_clips(60, seed)
    feats = np.stack([mfcc(c, cfg) for c in clips])
    norm = Normalization.fit(feats)
    x = norm.apply(feats)[..., None]
    frames, ncep = cfg.frames_per_clip, cfg.n_cepstra
    keras = tf.keras

    def ds_cnn(batch_size=None):
        inp = keras.Input(shape=(frames, ncep), batch_size=batch_size)
        h = keras.layers.Reshape((frames, ncep, 1))(inp)
        h = keras.layers.Conv2D(64, (10, 4), strides=(2, 2), padding="same", activation="relu")(h)
        for _ in range(4):
            h = keras.layers.DepthwiseConv2D((3, 3), padding="same", activation="relu")(h)
            h = keras.layers.Conv2D(64, (1, 1), activation="relu")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        out = keras.layers.Dense(4, activation="softmax")(h)
        return keras.Model(inp, out)

    m = ds_cnn()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x[..., 0], y, epochs=6, batch_size=32, verbose=0, shuffle=True)
    mi = ds_cnn(batch_size=1)
    mi.set_weights(m.get_weights())
    conv = tf.lite.TFLiteConverter.from_keras_model(mi)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rep = x[::3, ..., 0].astype(np.float32)
    conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        model_bytes = conv.convert()

    from kws_edge.activations import interpreter_peak_activation_bytes
    from kws_edge.engine import Engine

    eng = Engine(model_bytes)
    spec = lambda t: TensorSpec(shape=t.shape, dtype=t.dtype, scale=t.scale, zero_point=t.zero_point)  # noqa: E731
    manifest = Manifest(
        name="bench-ds-cnn",
        version="0.0.0",
        description="Benchmark-only bundle: product DS-CNN architecture fitted on synthetic tones; "
                    "its cost is representative, its accuracy is not.",
        labels=("_silence_", "_unknown_", "yes", "no"),
        keywords=("yes", "no"),
        features=cfg,
        normalization=norm,
        model=ModelFile(file="model.tflite", sha256="", size_bytes=0, input=spec(eng.input), output=spec(eng.output),
                        peak_activation_bytes=interpreter_peak_activation_bytes(model_bytes)),
        detector=DetectorConfig(),
        provenance={"recipe": "benchmarks/bench_bundle.py", "seed": seed},
    )
    save_bundle(out, manifest, model_bytes, overwrite=True,
                extra_files={"bench_recipe.json": json.dumps(_wanted_stamp()).encode()})
    return out


if __name__ == "__main__":  # python benchmarks/bench_bundle.py [OUT]
    import sys

    if len(sys.argv) > 1:
        print(build_bench_bundle(Path(sys.argv[1])))
    else:
        print(*resolve_bench_bundle(), sep="\n")
