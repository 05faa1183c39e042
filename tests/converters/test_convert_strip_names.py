"""``kws-convert --strip-names``: blank tensor names, same model."""

from __future__ import annotations

import numpy as np

from kws_edge.engine import Engine


def test_strip_tensor_names_keeps_the_model(tone_bundle):
    from kws_edge.converters.quantize import strip_tensor_names

    original = tone_bundle.model_bytes
    stripped = strip_tensor_names(original)
    assert len(stripped) < len(original)
    a, b = Engine(original), Engine(stripped)
    assert [(i.shape, i.dtype, i.scale, i.zero_point) for i in a.inputs] == \
        [(i.shape, i.dtype, i.scale, i.zero_point) for i in b.inputs]
    assert all(i.name == "" for i in list(b.inputs) + list(b.outputs))
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.integers(-128, 128, a.input.shape).astype(a.input.dtype)
        np.testing.assert_array_equal(a.run_raw(x)[0], b.run_raw(x)[0])
