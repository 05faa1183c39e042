"""The streamable ``tcn``: window form == streaming form (Keras and TFLite), conversion, bundle.

The kws_streaming test pattern: a toy configuration, seeded weights with
non-trivial batch-norm statistics, the window model on every window of a
random feature sequence against the streaming model fed block by block.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

from kws_edge.bundle import load_bundle  # noqa: E402
from kws_edge.converters.streaming import (  # noqa: E402
    StreamingConversionConfig,
    attach_streaming_model,
    config_from_model,
    convert_streaming,
    streaming_model_file,
)
from kws_edge.engine import Engine  # noqa: E402
from kws_edge.errors import ConfigError, ConversionError  # noqa: E402
from kws_edge.streaming import StreamingScorer  # noqa: E402
from kws_edge.training import streaming_model as sm  # noqa: E402

HERE = Path(__file__).resolve().parents[1]  # tests/
ATOL = 1e-5
TOY = dict(n_frames=16, n_cepstra=4, n_labels=3, filters=6, first_kernel_frames=3,
           block_kernel_frames=(3, 3), block_dilations=(1, 2), dropout=0.0)
#: the same toy with a 2D stem (a 3-frame x 2-cepstra convolution of 5 filters, then stem_mix to 6 channels)
STEM = dict(TOY, stem_channels=5, stem_cepstra=2)


def _toy_window_model(cfg: sm.TcnConfig, seed: int = 0):
    keras.utils.set_random_seed(seed)
    model = sm.build_window_model(cfg)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # non-trivial batch norm, so folding and state handling are exercised
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([g * rng.uniform(0.5, 1.5, g.shape), b + rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.3, m.shape), rng.uniform(0.5, 2.0, v.shape)])
    return model


def _window_reference(model, feats: np.ndarray, cfg: sm.TcnConfig, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Window-model output for the window ending at each streamed row's frame (valid rows only)."""
    ends = np.arange(cfg.context_frames, cfg.context_frames + n_rows)
    valid = ends >= cfg.n_frames - 1
    windows = np.stack([feats[e - cfg.n_frames + 1:e + 1] for e in ends[valid]])
    return model.predict(windows, verbose=0), valid


def _run_streaming_tflite(engine, feats: np.ndarray, cfg) -> np.ndarray:
    """Feed normalised frames block by block (with context) through a streaming TFLite model, from zero state.

    Tensors are told apart by rank: frames and probabilities are 3-D, the state 2-D.
    """
    frames_in = next(t for t in engine.inputs if len(t.shape) == 3)
    state_in = next(t for t in engine.inputs if len(t.shape) == 2)
    probs_out = next(t for t in engine.outputs if len(t.shape) == 3)
    state_out = next(t for t in engine.outputs if len(t.shape) == 2)
    state = np.zeros(state_in.shape, np.float32)
    rows = []
    for i in range((len(feats) - cfg.context_frames) // cfg.block_frames):
        block = feats[i * cfg.block_frames:i * cfg.block_frames + cfg.block_frames + cfg.context_frames]
        out = engine.run(*(block if t is frames_in else state for t in engine.inputs))
        rows.append(out[engine.outputs.index(probs_out)][0])
        state = out[engine.outputs.index(state_out)]
    return np.concatenate(rows)


def test_receptive_field_is_one_clip():
    cfg = sm.TcnConfig()
    assert cfg.receptive_field_frames == cfg.n_frames == 49
    assert sm.layout(cfg).state_size == sum(b.frames * b.channels for b in sm.layout(cfg).buffers)


@pytest.mark.parametrize("block_frames, toy", [(1, TOY), (3, TOY), (3, STEM)], ids=["1", "3", "3-stem"])
def test_keras_streaming_equals_window_model(block_frames, toy):
    cfg = sm.TcnConfig(block_frames=block_frames, **toy)
    window = _toy_window_model(cfg)
    stream = sm.to_streaming(window, cfg)
    feats = np.random.default_rng(1).standard_normal((60, cfg.n_cepstra)).astype(np.float32)
    rows = sm.run_streaming_keras(stream, feats, cfg)
    ref, valid = _window_reference(window, feats, cfg, len(rows))
    assert valid.sum() >= 30
    np.testing.assert_allclose(rows[valid], ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("toy", [TOY, STEM], ids=["plain", "stem"])
def test_float_tflite_streaming_equals_window_model(toy):
    cfg = sm.TcnConfig(block_frames=2, **toy)
    window = _toy_window_model(cfg, seed=3)
    conv = convert_streaming(window, np.zeros((1, cfg.n_frames, cfg.n_cepstra), np.float32),
                             StreamingConversionConfig(quantize="float32", block_frames=2))
    engine = Engine(conv.model_bytes)
    feats = np.random.default_rng(4).standard_normal((50, cfg.n_cepstra)).astype(np.float32)
    rows = _run_streaming_tflite(engine, feats, cfg)
    ref, valid = _window_reference(window, feats, cfg, len(rows))
    np.testing.assert_allclose(rows[valid], ref, atol=ATOL, rtol=0)


def test_committed_float_streaming_model_equals_keras_window_model():
    """The float streaming TFLite of the test bundle's model against its Keras window model."""
    window = keras.models.load_model(HERE / "data" / "tone_tcn.keras", compile=False)
    cfg = config_from_model(window)
    engine = Engine((HERE / "data" / "tone_tcn_float_streaming.tflite").read_bytes())
    bundle = load_bundle(HERE / "data" / "tone_tcn_bundle")
    from support import tone_bundle as tone  # noqa: PLC0415 (tests/ is on sys.path under pytest)

    from kws_edge.features import mfcc

    audio = tone.stream([("yes", 1.0), ("no", 2.5), ("_unknown_", 4.0)], 6.0, np.random.default_rng(7))
    feats = bundle.manifest.normalization.apply(mfcc(audio, bundle.manifest.features))
    rows = _run_streaming_tflite(engine, feats, cfg)
    ref, valid = _window_reference(window, feats, cfg, len(rows))
    np.testing.assert_allclose(rows[valid], ref, atol=ATOL, rtol=0)
    assert np.mean(rows[valid].argmax(1) == ref.argmax(1)) == 1.0


@pytest.mark.parametrize("toy", [TOY, STEM], ids=["plain", "stem"])
def test_config_from_model_recovers_the_architecture(toy):
    cfg = sm.TcnConfig(block_frames=4, **toy)
    assert config_from_model(sm.build_window_model(cfg), block_frames=4) == cfg


def test_registry_builder_fits_the_clip():
    from kws_edge.training.config import ModelConfig

    model = sm.keras_builder(ModelConfig("tcn", width=32, depth=5, dropout=0.1), (49, 10), 4, None)
    cfg = config_from_model(model)
    assert cfg.receptive_field_frames == 49 and cfg.filters == 32 and len(cfg.block_dilations) == 5
    assert cfg.stem_channels == 0 and model.output_shape == (None, 4)
    knobs = ModelConfig("tcn", width=32, depth=5, stem_channels=8)
    stem = config_from_model(sm.keras_builder(knobs, (49, 10), 4, None))
    assert (stem.stem_channels, stem.stem_cepstra, stem.filters) == (8, 3, 32)


def test_bad_configurations_are_refused():
    with pytest.raises(ConfigError, match="same length"):
        sm.TcnConfig(block_kernel_frames=(3, 3), block_dilations=(1,))
    with pytest.raises(ConfigError, match="more than the clip"):
        sm.TcnConfig(n_frames=10, block_kernel_frames=(5, 5), block_dilations=(4, 4))
    with pytest.raises(ConfigError, match="stem_cepstra"):
        sm.TcnConfig(n_cepstra=4, stem_channels=4, stem_cepstra=5)
    from kws_edge.training.config import ModelConfig

    with pytest.raises(ConfigError, match="architecture 'tcn' only"):
        ModelConfig("ds_cnn", stem_channels=8)
    with pytest.raises(ConversionError, match="not a streamable 'tcn' model"):
        config_from_model(keras.Sequential([keras.Input((49, 10)), keras.layers.Flatten()]))


@pytest.mark.slow  # a full-int8 conversion with calibration: 10-20 s alone, more on a busy machine
def test_int8_conversion_state_calibration_and_bundle(tmp_path):
    """Full-int8 streaming model: builtin ops, one state scale in and out, written into a bundle."""
    src = load_bundle(HERE / "data" / "tone_tcn_bundle")
    window = _toy_window_model(sm.TcnConfig(filters=8), seed=5)  # clip geometry of the bundle, small and fast
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((40, 49, 10)).astype(np.float32)
    conv = convert_streaming(window, feats, StreamingConversionConfig(n_representative=60, n_streams=2,
                                                                      clips_per_stream=4))
    assert conv.quantize == "int8" and conv.n_calibration == 60
    engine = Engine(conv.model_bytes)
    state_in = next(t for t in engine.inputs if len(t.shape) == 2)
    state_out = next(t for t in engine.outputs if len(t.shape) == 2)
    assert state_in.dtype == "int8" and (state_in.scale, state_in.zero_point) == (state_out.scale,
                                                                                   state_out.zero_point)
    spec = streaming_model_file(conv.model_bytes)
    assert spec.extra_inputs[0].shape == state_in.shape and spec.input.shape[1] == conv.block_frames + 4
    # attach to a copy of the test bundle and run it
    from kws_edge.bundle.provenance import StreamingConversionRecord

    record = StreamingConversionRecord(block_frames=conv.block_frames, state_size=conv.state_size,
                                       n_calibration_pairs=conv.n_calibration)
    out = attach_streaming_model(src.path, conv.model_bytes, out_dir=tmp_path / "b", record=record)
    bundle = load_bundle(out)
    assert bundle.streaming_model_bytes == conv.model_bytes
    assert bundle.manifest.provenance.conversion.streaming == record
    scores = StreamingScorer(bundle).score(rng.standard_normal((80, 10)).astype(np.float32))
    post, counts = scores.posteriors, scores.frame_counts
    assert post.shape == (len(counts), 4) and np.allclose(post.sum(1), 1.0, atol=0.05)
    from kws_edge.converters.analysis import analyze_model

    ops = set(analyze_model(conv.model_bytes).operators)
    assert ops <= {"CONV_2D", "DEPTHWISE_CONV_2D", "CONCATENATION", "STRIDED_SLICE", "RESHAPE", "ADD",
                   "AVERAGE_POOL_2D", "SOFTMAX", "QUANTIZE"}, ops


def test_detector_runs_a_streaming_model_of_any_block_size(tmp_path):
    """One model converted with 1, 5 and 10 frames per call: the detector gives the same rows at the same
    times (float32 models: equal to float rounding), and an interval is rounded up to whole blocks."""
    from kws_edge.detector import KeywordDetector, detect_samples

    src = load_bundle(HERE / "data" / "tone_tcn_bundle")
    window = _toy_window_model(sm.TcnConfig(filters=8), seed=5)  # clip geometry of the bundle, small and fast
    rng = np.random.default_rng(3)
    audio = (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32)
    rows, times = {}, {}
    for block in (1, 5, 10):
        conv = convert_streaming(window, np.zeros((1, 49, 10), np.float32),
                                 StreamingConversionConfig(quantize="float32", block_frames=block))
        bundle = load_bundle(attach_streaming_model(src.path, conv.model_bytes, out_dir=tmp_path / f"b{block}",
                                                    quantization="float32"))
        det = KeywordDetector(bundle, interval_ms=200.0)
        assert det.streaming.block_frames == block
        assert det.streaming.blocks_per_call == {1: 10, 5: 2, 10: 1}[block]
        got_rows, got_times = [], []
        det.on_posteriors(lambda p, t: (got_rows.append(p), got_times.append(t)))
        detect_samples(det, audio, chunk_samples=160, flush=True)
        rows[block], times[block] = np.concatenate(got_rows), np.concatenate(got_times)
        assert len(rows[block]) == det.n_evaluations
    n = min(len(r) for r in rows.values())
    assert n >= 4 * 49 - 49  # one row per hop after the first window, through the flush
    for block in (5, 10):
        np.testing.assert_allclose(rows[block][:n], rows[1][:n], atol=1e-5)
        assert np.array_equal(times[block][:n], times[1][:n])
    assert KeywordDetector(load_bundle(tmp_path / "b10"), interval_ms=300.0).streaming.blocks_per_call == 2
