"""Bundles: the unit of deployment (``model.tflite`` + ``manifest.json``, optionally a streaming model).

The manifest (:mod:`.manifest`) holds everything the runtime needs (labels, the full feature
configuration, normalisation, tensor quantisation, detection defaults) and everything an auditor
asks (hash, size, operators, and the typed :mod:`.provenance`, :mod:`.metrics` and :mod:`.budgets`).
:func:`load_bundle` (:mod:`.io`) checks the format version, the models' SHA-256 and size, the bundle
digest and the internal consistency of the manifest, and raises
:class:`~kws_edge.errors.BundleError` with a message a user can act on; manifests of older formats are
read through :mod:`.upgrade`. :func:`save_bundle` writes a whole bundle atomically.
"""

from __future__ import annotations

from .budgets import Budgets
from .io import SHIPPED_BUNDLES, Bundle, default_bundle_path, load_bundle, save_bundle, sha256_bytes, shipped_bundle_path
from .manifest import FORMAT_VERSION, MANIFEST_NAME, MODEL_NAME, READABLE_FORMATS, Manifest, ModelFile, TensorSpec
from .metrics import Metrics
from .provenance import Provenance

__all__ = [
    "FORMAT_VERSION",
    "READABLE_FORMATS",
    "MANIFEST_NAME",
    "MODEL_NAME",
    "TensorSpec",
    "ModelFile",
    "Manifest",
    "Provenance",
    "Metrics",
    "Budgets",
    "Bundle",
    "load_bundle",
    "save_bundle",
    "default_bundle_path",
    "sha256_bytes",
    "shipped_bundle_path",
    "SHIPPED_BUNDLES",
]
