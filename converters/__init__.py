"""Conversion of trained runs into deployable bundles (``kws-convert``); needs the ``train`` extra.

Modules: :mod:`.quantize` (Keras -> TFLite, TensorFlow imported lazily),
:mod:`.analysis` (costs read from the flatbuffer; no TensorFlow),
:mod:`.convert` (:func:`convert_run`, the whole pipeline), :mod:`.tflm` (arena and parity
measured in the real TFLite Micro interpreter, optional ``tflite-micro`` package), :mod:`.cli`.
Importing this package does not import TensorFlow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["convert_run", "ConversionReport", "analyze_model", "ModelAnalysis", "convert_keras"]

_LAZY = {
    "convert_run": ".convert",
    "ConversionReport": ".convert",
    "analyze_model": ".analysis",
    "ModelAnalysis": ".analysis",
    "convert_keras": ".quantize",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
