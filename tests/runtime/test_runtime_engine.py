"""The TFLite engine: real interpreter, quantisation from the model's tensor parameters, backends."""

from __future__ import annotations

import numpy as np
import pytest

from kws_edge.engine import BACKENDS, Engine, available_backends
from kws_edge.errors import BackendUnavailableError, BundleError


@pytest.fixture(scope="module")
def engine(tone_bundle):
    return Engine(tone_bundle.model_bytes)


def test_tensor_params_come_from_the_model(engine, tone_bundle):
    spec = tone_bundle.manifest.model
    assert engine.backend.startswith("ai_edge_litert")
    assert engine.input.dtype == "int8" and engine.output.dtype == "int8"
    assert engine.input.shape == tuple(spec.input.shape) == (1, 49, 10)
    assert engine.input.scale == pytest.approx(spec.input.scale) and engine.input.zero_point == spec.input.zero_point
    assert engine.output.scale == pytest.approx(1 / 256) and engine.output.zero_point == -128


def test_quantize_and_dequantize_follow_scale_and_zero_point(engine):
    info = engine.input
    s, zp = info.scale, info.zero_point
    x = np.array([0.0, s, -s, 2.5 * s, 1e6, -1e6], np.float32)
    q = engine.quantize(x, info)
    assert q.dtype == np.int8
    assert q.tolist() == [zp, zp + 1, zp - 1, zp + 2, 127, -128]  # rint: 2.5 -> 2, saturation at the ends
    back = engine.dequantize(q[:4], info)
    np.testing.assert_allclose(back, [0.0, s, -s, 2 * s], rtol=1e-6, atol=1e-9)
    # every representable value round-trips exactly
    allq = np.arange(-128, 128).astype(np.int8)
    assert np.array_equal(engine.quantize(engine.dequantize(allq, info), info), allq)


def test_run_equals_run_raw_with_manual_quantisation(engine, rng):
    x = rng.normal(size=(1, 49, 10)).astype(np.float32)
    scores = engine.run(x)[0]
    raw = engine.run_raw(engine.quantize(x, engine.input))[0]
    assert raw.dtype == np.int8
    np.testing.assert_array_equal(scores, (raw.astype(np.float32) - engine.output.zero_point) * engine.output.scale)
    assert scores.shape == (1, 4)
    assert scores.sum() == pytest.approx(1.0, abs=0.02)  # softmax, int8 steps of 1/256
    assert engine.predict(x).shape == (4,)
    with pytest.raises(ValueError, match="takes 1 inputs"):
        engine.run(x, x)


def test_forcing_a_missing_backend_raises(tone_bundle, monkeypatch):
    missing = [b for b in BACKENDS if b not in available_backends()]
    assert "tflite_runtime" in missing  # not installed in the dev venv
    with pytest.raises(BackendUnavailableError, match="tflite_runtime"):
        Engine(tone_bundle.model_bytes, backend="tflite_runtime")
    with pytest.raises(BackendUnavailableError, match="unknown interpreter 'onnx'"):
        Engine(tone_bundle.model_bytes, backend="onnx")
    monkeypatch.setenv("KWS_EDGE_INTERPRETER", "tflite_runtime")
    with pytest.raises(BackendUnavailableError, match="pip install ai-edge-litert"):
        Engine(tone_bundle.model_bytes)
    # a missing backend is an ImportError too, for callers that probe
    assert issubclass(BackendUnavailableError, ImportError)


def test_unloadable_models_are_bundle_errors(tmp_path):
    with pytest.raises(BundleError, match="cannot be loaded"):
        Engine(b"\x00" * 64)
    with pytest.raises(BundleError, match="cannot read model file"):
        Engine(tmp_path / "missing.tflite")


def test_engine_from_path_and_threads(tone_bundle_path, rng):
    x = rng.normal(size=(1, 49, 10)).astype(np.float32)
    one = Engine(tone_bundle_path / "model.tflite", num_threads=1).run(x)[0]
    two = Engine(tone_bundle_path / "model.tflite", num_threads=2).run(x)[0]
    np.testing.assert_array_equal(one, two)


def test_builtin_kernels_by_argument_or_environment(tone_bundle, monkeypatch, rng):
    x = rng.normal(size=(8, 1, 49, 10)).astype(np.float32)
    default = Engine(tone_bundle.model_bytes)
    builtin = Engine(tone_bundle.model_bytes, kernels="builtin")
    assert (default.kernels, builtin.kernels) == ("default", "builtin")
    a = np.stack([default.run(v)[0] for v in x])
    b = np.stack([builtin.run(v)[0] for v in x])
    # XNNPACK and TFLite's own int8 kernels round differently: a few output steps (1/256) apart at most
    np.testing.assert_allclose(a, b, atol=8 / 256)
    monkeypatch.setenv("KWS_EDGE_KERNELS", "builtin")
    assert Engine(tone_bundle.model_bytes).kernels == "builtin"
    monkeypatch.setenv("KWS_EDGE_KERNELS", "fastest")
    with pytest.raises(BackendUnavailableError, match="unknown kernel set 'fastest'"):
        Engine(tone_bundle.model_bytes)
