"""The manifest of a bundle: its format, the model files, and what the runtime and an auditor need.

Format history: 1, the first; 2 adds ``bundle_sha256`` (:mod:`kws_edge.digest`); 3 types
``provenance``, ``metrics`` and ``budgets`` (before, free JSON whose keys every reader guessed).
Formats 1 and 2 still load (:mod:`.upgrade` reads them into format 3 in memory);
``python -m kws_edge.digest BUNDLE`` rewrites one as format 3 and re-stamps it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from ..config import from_dict, to_dict
from ..errors import BundleError
from ..features import MfccConfig, Normalization
from ..smoothing import DetectorConfig
from .budgets import Budgets
from .metrics import Metrics
from .provenance import Provenance

__all__ = ["FORMAT_VERSION", "READABLE_FORMATS", "MANIFEST_NAME", "MODEL_NAME", "TensorSpec", "ModelFile",
           "Manifest"]

FORMAT_VERSION = 3
#: formats 1 (no bundle digest) and 2 (untyped provenance, metrics, budgets) still load (see .upgrade)
READABLE_FORMATS = (1, 2, 3)
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.tflite"


@dataclass(frozen=True)
class TensorSpec:
    """Shape, storage type and quantisation of a model input or output."""

    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0


@dataclass(frozen=True)
class ModelFile:
    """A model file inside the bundle and what the converter measured of it."""

    file: str
    sha256: str
    size_bytes: int
    input: TensorSpec
    output: TensorSpec
    quantization: str = "int8"
    peak_activation_bytes: int = 0
    weight_bytes: int = 0
    macs_per_inference: int = 0
    operators: tuple[str, ...] = ()
    extra_inputs: tuple[TensorSpec, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs and an auditor asks, as JSON (format :data:`FORMAT_VERSION`).

    ``provenance``, ``metrics`` and ``budgets`` are typed (:mod:`.provenance`, :mod:`.metrics`,
    :mod:`.budgets`); manifests of formats 1 and 2 held them as free JSON and are read through
    :func:`kws_edge.bundle.upgrade.upgrade_manifest`.
    """

    name: str
    version: str
    labels: tuple[str, ...]
    keywords: tuple[str, ...]
    features: MfccConfig
    normalization: Normalization
    model: ModelFile
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    format_version: int = FORMAT_VERSION
    description: str = ""
    streaming_model: Optional[ModelFile] = None
    provenance: Provenance = field(default_factory=Provenance)
    metrics: Metrics = field(default_factory=Metrics)
    budgets: Budgets = field(default_factory=Budgets)
    attribution: str = ""
    created_utc: str = ""
    bundle_sha256: str = ""

    def to_json(self) -> str:
        return json.dumps(to_dict(self), indent=2) + "\n"

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> "Manifest":
        return from_dict(cls, data)

    def running_model(self, streaming: Optional[bool] = None) -> tuple[ModelFile, int]:
        """The model the detector runs and how many feature hops one invocation covers.

        The streaming model (one invocation per block of new frames, its probabilities' second
        dimension) when the bundle has one and ``streaming`` is not False; else the window model (one
        invocation every ``detector.stride_hops`` hops). Budgets are checked on this model.
        """
        if streaming is not False and self.streaming_model is not None:
            shape = self.streaming_model.output.shape
            return self.streaming_model, int(shape[1]) if len(shape) >= 3 else 1
        return self.model, int(self.detector.stride_hops)

    def check(self) -> None:
        """Internal consistency; raises BundleError."""
        if len(set(self.labels)) != len(self.labels):
            raise BundleError(f"manifest labels {list(self.labels)} contain duplicates")
        missing = [k for k in self.keywords if k not in self.labels]
        if missing:
            raise BundleError(f"manifest keyword {missing[0]!r} is not among its labels {list(self.labels)}")
        if len(self.normalization.mean) != self.features.n_cepstra:
            raise BundleError(
                f"manifest normalization has {len(self.normalization.mean)} values but features have "
                f"{self.features.n_cepstra} cepstra; the bundle was assembled from different runs"
            )
        out = self.model.output.shape
        if out and out[-1] != len(self.labels):
            raise BundleError(f"model output has {out[-1]} classes but the manifest lists {len(self.labels)} labels")
        shape = self.model.input.shape
        want = (1, self.features.frames_per_clip, self.features.n_cepstra)
        if tuple(shape[:3]) != want:
            raise BundleError(
                f"model input shape {list(shape)} does not match the feature configuration "
                f"{list(want)} (frames x cepstra); re-convert the model"
            )
