"""Model analysis from the flatbuffer: a hand-built model whose every figure is computed by hand."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kws_edge.converters.analysis import TFLM_BUILTINS, analyze_model
from kws_edge.errors import BundleError
from support.tflite_builder import hand_built_model

# The hand-built float32 model (support.tflite_builder):
#   input (1,8,6,1) -CONV_2D 4 filters 3x3 VALID-> (1,6,4,4) -DEPTHWISE_CONV_2D 3x3 VALID-> (1,4,2,4)
#   -AVERAGE_POOL_2D 2x2 stride 2-> (1,2,1,4) -RESHAPE-> (1,8) -FULLY_CONNECTED 3-> (1,3) -SOFTMAX-> (1,3)
CONV_MACS = 6 * 4 * 4 * (3 * 3 * 1)         # output elements x kernel h x kernel w x input channels = 864
DEPTHWISE_MACS = 4 * 2 * 4 * (3 * 3)        # output elements x kernel h x kernel w = 288
POOL_MACS = 2 * 1 * 4 * (2 * 2)             # output elements x window = 32
FC_MACS = 3 * 8                             # units x inputs = 24
# constant tensors, float32 unless noted: conv filter 36 + bias 4, depthwise 36 + 4, reshape shape 2 x int32,
# fc weights 24 + bias 3
WEIGHT_BYTES = 4 * (36 + 4 + 36 + 4 + 24 + 3) + 4 * 2
# activations (float32 bytes): input 48*4=192, conv out 96*4=384, dw out 128, pool 32, reshape 32, fc 12, softmax 12.
# Live at CONV_2D: input + conv out = 576; at DEPTHWISE: 384 + 128 = 512; later ones are smaller.
PEAK_BYTES = 192 + 384


def test_hand_built_model_figures_equal_hand_computed_values():
    model = hand_built_model()
    a = analyze_model(model)
    assert a.operators == ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX")
    assert a.macs_by_operator == {"CONV_2D": CONV_MACS, "DEPTHWISE_CONV_2D": DEPTHWISE_MACS,
                                  "AVERAGE_POOL_2D": POOL_MACS, "FULLY_CONNECTED": FC_MACS}
    assert a.macs_per_inference == CONV_MACS + DEPTHWISE_MACS + POOL_MACS + FC_MACS == 1208
    assert a.weight_bytes == WEIGHT_BYTES == 436
    assert a.peak_activation_bytes == PEAK_BYTES == 576
    assert a.peak_operator_index == 0
    assert a.model_bytes == len(model)
    assert a.tflm_unsupported == () and a.tflm_compatible
    assert a.input.shape == (1, 8, 6, 1) and a.input.dtype == "float32"
    assert a.output.shape == (1, 3) and a.output.dtype == "float32"
    assert [c.macs for c in a.per_operator] == [CONV_MACS, DEPTHWISE_MACS, POOL_MACS, 0, FC_MACS, 0]


def test_hand_built_model_is_a_real_model_the_interpreter_runs(rng):
    """The figures above describe a model LiteRT accepts, not a malformed toy."""
    from kws_edge.engine import Engine

    engine = Engine(hand_built_model())
    probs = engine.run(rng.normal(size=(1, 8, 6, 1)).astype(np.float32))[0]
    assert probs.shape == (1, 3)
    assert np.isclose(probs.sum(), 1.0, atol=1e-5)


def test_operator_missing_from_tflite_micro_is_reported():
    assert "GELU" not in TFLM_BUILTINS
    a = analyze_model(hand_built_model(final_op="GELU"))
    assert a.tflm_unsupported == ("GELU",)
    assert not a.tflm_compatible
    assert a.to_dict()["tflm_unsupported"] == ["GELU"]


def test_analysis_reads_a_path_too(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(hand_built_model())
    assert analyze_model(path).macs_per_inference == 1208


@pytest.mark.parametrize("data", [b"", b"not a model at all", b"\x00" * 64])
def test_non_tflite_bytes_raise_bundle_error(data):
    with pytest.raises(BundleError, match="TFLite"):
        analyze_model(data)


def test_analysis_does_not_import_tensorflow():
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "sys.path.insert(0, 'tests')\n"
        "from support.tflite_builder import hand_built_model\n"
        "from kws_edge.converters.analysis import analyze_model\n"
        "print(analyze_model(hand_built_model()).macs_per_inference)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(__import__('pathlib').Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1208"
