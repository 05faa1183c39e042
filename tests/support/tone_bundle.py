"""Make the small test bundle ``tests/data/tone_bundle/`` and a few test WAVs.

The bundle is a tiny int8 convolutional model trained, in seconds, on
synthetic signals that stand in for the four classes of the yes/no model:

* ``yes``       = pattern A: a 1000 Hz burst, a short gap, a 1500 Hz burst
* ``no``        = pattern B: one longer 2500 Hz burst
* ``_silence_`` = low background noise only
* ``_unknown_`` = other tones, tone pairs and noise bursts

The tests use it to check detection behaviour without depending on the real
default bundle. Signal generators are importable without TensorFlow
(``clip``, ``pattern``, ``stream``); training imports TensorFlow lazily.

Usage (from ``tests/``, in the dev venv)::

    python -m support.tone_bundle               # from tests/: seed 0, writes tests/data/
    python -m support.tone_bundle --seed 3 --out /tmp/tb

Deterministic for a seed (same data, same weights, same model bytes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 16000
LABELS = ("_silence_", "_unknown_", "yes", "no")
KEYWORDS = ("yes", "no")
HERE = Path(__file__).resolve().parents[1]  # tests/
DATA_DIR = HERE / "data"

# keyword frequencies; unknown tones stay away from them
YES_FREQS_HZ = (1000.0, 1500.0)
NO_FREQ_HZ = 2500.0
_KEEP_OUT_HZ = 250.0


def tone(freq_hz: float, duration_s: float, amplitude: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A sine burst with 10 ms raised-cosine fades, float32."""
    n = int(round(duration_s * sample_rate_hz))
    t = np.arange(n) / sample_rate_hz
    out = amplitude * np.sin(2 * np.pi * freq_hz * t)
    fade = min(n // 2, int(0.010 * sample_rate_hz))
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    return out.astype(np.float32)


def pattern(label: str, rng: np.random.Generator, amplitude: float | None = None) -> np.ndarray:
    """The foreground signal of one class (empty for ``_silence_``)."""
    amp = float(rng.uniform(0.15, 0.6)) if amplitude is None else amplitude
    jitter = lambda f: f * float(rng.uniform(0.97, 1.03))  # noqa: E731
    if label == "yes":
        a = tone(jitter(YES_FREQS_HZ[0]), rng.uniform(0.10, 0.14), amp)
        gap = np.zeros(int(rng.uniform(0.04, 0.08) * SAMPLE_RATE_HZ), np.float32)
        b = tone(jitter(YES_FREQS_HZ[1]), rng.uniform(0.10, 0.14), amp)
        return np.concatenate([a, gap, b])
    if label == "no":
        return tone(jitter(NO_FREQ_HZ), rng.uniform(0.22, 0.30), amp)
    if label == "_unknown_":
        kind = int(rng.integers(3))
        if kind == 0:  # one tone elsewhere
            return tone(_other_freq(rng), rng.uniform(0.1, 0.4), amp)
        if kind == 1:  # two tones elsewhere
            a = tone(_other_freq(rng), rng.uniform(0.08, 0.2), amp)
            b = tone(_other_freq(rng), rng.uniform(0.08, 0.2), amp)
            return np.concatenate([a, np.zeros(int(0.05 * SAMPLE_RATE_HZ), np.float32), b])
        n = int(rng.uniform(0.1, 0.3) * SAMPLE_RATE_HZ)  # a noise burst
        return (amp * 0.5 * rng.standard_normal(n)).clip(-1, 1).astype(np.float32)
    if label == "_silence_":
        return np.zeros(0, np.float32)
    raise ValueError(f"unknown label {label!r}")


def _other_freq(rng: np.random.Generator) -> float:
    banned = YES_FREQS_HZ + (NO_FREQ_HZ,)
    while True:
        f = float(rng.uniform(250.0, 6000.0))
        if all(abs(f - b) > _KEEP_OUT_HZ + 0.05 * b for b in banned):
            return f


def noise(n_samples: int, rng: np.random.Generator, level: float | None = None) -> np.ndarray:
    lvl = float(10 ** rng.uniform(-3.5, -2.3)) if level is None else level
    return (lvl * rng.standard_normal(n_samples)).astype(np.float32)


def clip(label: str, rng: np.random.Generator, n_samples: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """One training clip: background noise plus the class pattern at a random place."""
    out = noise(n_samples, rng)
    fg = pattern(label, rng)
    if fg.size:
        lo, hi = int(0.05 * n_samples), n_samples - fg.size - int(0.05 * n_samples)
        start = int(rng.integers(lo, max(lo + 1, hi)))
        out[start:start + fg.size] += fg
    return np.clip(out, -1, 1).astype(np.float32)


def stream(events: list[tuple[str, float]], duration_s: float, rng: np.random.Generator,
           noise_level: float = 0.002) -> np.ndarray:
    """A long signal: noise with class patterns starting at the given times (s)."""
    n = int(round(duration_s * SAMPLE_RATE_HZ))
    out = noise(n, rng, level=noise_level)
    for label, start_s in events:
        fg = pattern(label, rng, amplitude=0.4)
        start = int(round(start_s * SAMPLE_RATE_HZ))
        out[start:start + fg.size] += fg[: max(0, n - start)]
    return np.clip(out, -1, 1).astype(np.float32)


def dataset(n_per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from kws_edge.features import mfcc

    xs, ys = [], []
    for i, label in enumerate(LABELS):
        for _ in range(n_per_class):
            xs.append(mfcc(clip(label, rng)))
            ys.append(i)
    return np.stack(xs).astype(np.float32), np.asarray(ys, np.int64)


def _build(tf, n_frames: int, n_cepstra: int, batch_size: int | None):
    k = tf.keras
    inp = k.Input(shape=(n_frames, n_cepstra), batch_size=batch_size)
    x = k.layers.Reshape((n_frames, n_cepstra, 1))(inp)
    x = k.layers.Conv2D(8, (5, 3), strides=(2, 1), padding="same", activation="relu")(x)
    x = k.layers.Conv2D(12, (5, 3), strides=(2, 2), padding="same", activation="relu")(x)
    x = k.layers.MaxPooling2D((13, 5))(x)
    x = k.layers.Flatten()(x)
    out = k.layers.Dense(len(LABELS), activation="softmax")(x)
    return k.Model(inp, out)


def build_bundle(out_dir: Path, *, seed: int = 0, n_per_class: int = 300, epochs: int = 25) -> dict:
    """Train, convert to full-int8 TFLite and save a bundle; returns a summary."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from kws_edge.bundle import Manifest, Metrics, ModelFile, Provenance, TensorSpec, save_bundle
    from kws_edge.bundle.metrics import SplitMetrics
    from kws_edge.metrics import ClipMetrics
    from kws_edge.engine import Engine
    from kws_edge.features import MfccConfig, Normalization
    from kws_edge.smoothing import DetectorConfig

    features = MfccConfig()
    rng = np.random.default_rng(seed)
    x_train, y_train = dataset(n_per_class, rng)
    x_test, y_test = dataset(max(20, n_per_class // 5), rng)
    norm = Normalization.fit(x_train)
    xn_train, xn_test = norm.apply(x_train), norm.apply(x_test)

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    n_frames, n_cep = features.frames_per_clip, features.n_cepstra
    model = _build(tf, n_frames, n_cep, None)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(xn_train, y_train, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    float_acc = float(np.mean(np.argmax(model.predict(xn_test, verbose=0), axis=1) == y_test))

    single = _build(tf, n_frames, n_cep, 1)
    single.set_weights(model.get_weights())
    conv = tf.lite.TFLiteConverter.from_keras_model(single)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([xn_train[i:i + 1]] for i in range(0, len(xn_train), 4))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    model_bytes = conv.convert()

    engine = Engine(model_bytes)
    int8_pred = np.array([np.argmax(engine.predict(x)) for x in xn_test])
    int8_acc = float(np.mean(int8_pred == y_test))
    operators = _operators(model_bytes)

    def spec(info) -> TensorSpec:
        return TensorSpec(shape=info.shape, dtype=info.dtype, scale=info.scale, zero_point=info.zero_point)

    manifest = Manifest(
        name="tone-test",
        version="1.0.0",
        labels=LABELS,
        keywords=KEYWORDS,
        features=features,
        normalization=norm,
        model=ModelFile(file="model.tflite", sha256="", size_bytes=0, input=spec(engine.input),
                        output=spec(engine.output), quantization="int8", operators=tuple(operators)),
        detector=DetectorConfig(),
        description=("TEST ONLY: synthetic tone patterns (yes = 1000 Hz + 1500 Hz bursts, no = 2500 Hz "
                     "burst), not speech; made by tests/support/tone_bundle.py"),
        provenance=Provenance(extra={"script": "tests/support/tone_bundle.py", "seed": seed, "n_per_class": n_per_class,
                                     "epochs": epochs, "tensorflow": tf.__version__}),
        metrics=Metrics(test=SplitMetrics(
            float_model=ClipMetrics(accuracy=round(float_acc, 4), n_clips=int(len(y_test))),
            converted=ClipMetrics(accuracy=round(int8_acc, 4), n_clips=int(len(y_test))))),
    )
    save_bundle(out_dir, manifest, model_bytes, overwrite=True)
    return {"float_accuracy": float_acc, "int8_accuracy": int8_acc, "model_bytes": len(model_bytes),
            "operators": operators}


def _operators(model_bytes: bytes) -> list[str]:
    """Operator names in graph order, without the delegates the interpreter applies."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=model_bytes,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    return [d["op_name"] for d in interp._get_ops_details()]


def write_wavs(out_dir: Path, *, seed: int = 0) -> list[Path]:
    """Write one clean 1 s clip per class, as 16 kHz mono 16-bit WAVs."""
    from kws_edge.audio import write_wav

    rng = np.random.default_rng(seed + 1000)
    paths = []
    for label in LABELS:
        n = SAMPLE_RATE_HZ
        x = noise(n, rng, level=0.002)
        fg = pattern(label, rng, amplitude=0.4)
        start = (n - fg.size) // 2
        x[start:start + fg.size] += fg
        path = out_dir / f"tone_{label.strip('_')}.wav"
        write_wav(path, x, SAMPLE_RATE_HZ)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DATA_DIR, help="folder for tone_bundle/ and the WAVs")
    ap.add_argument("--n-per-class", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=25)
    args = ap.parse_args(argv)
    summary = build_bundle(args.out / "tone_bundle", seed=args.seed, n_per_class=args.n_per_class,
                           epochs=args.epochs)
    wavs = write_wavs(args.out, seed=args.seed)
    print(f"bundle {args.out / 'tone_bundle'}: {summary}")
    print("wavs:", ", ".join(p.name for p in wavs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
