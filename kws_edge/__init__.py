"""kws-edge: on-device keyword spotting (runtime).

The runtime needs numpy and one TFLite interpreter (and click for the CLI);
it never imports TensorFlow, nor scipy (WAV files are read by kws_edge.audio's own block reader).
The rooms above it import it, never the other way round (docs/ARCHITECTURE.md): training
(``kws_edge.training``) and conversion (``kws_edge.converters``) come with the ``train`` extra, the
pipeline (``kws_edge.pipeline``) on top of them, and the workstation tools (``kws_edge.workstation``:
registry, monitor, web view) with the ``workstation`` extra.
"""

from __future__ import annotations

from .audio import read_wav, validate_audio
from .bundle import Bundle, Manifest, default_bundle_path, load_bundle, save_bundle
from .detector import KeywordDetector, detect_samples
from .engine import Engine
from .errors import (
    AudioFormatError,
    BackendUnavailableError,
    BudgetExceeded,
    BundleError,
    ConfigError,
    DataError,
    KwsError,
)
from .features import MfccConfig, Normalization, StreamingMfcc, mfcc
from .model import KwsModel
from .smoothing import Detection, DetectorConfig

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "AudioFormatError",
    "BackendUnavailableError",
    "BudgetExceeded",
    "Bundle",
    "BundleError",
    "ConfigError",
    "DataError",
    "Detection",
    "DetectorConfig",
    "Engine",
    "KeywordDetector",
    "KwsError",
    "KwsModel",
    "Manifest",
    "MfccConfig",
    "Normalization",
    "StreamingMfcc",
    "default_bundle_path",
    "detect_samples",
    "load_bundle",
    "mfcc",
    "read_wav",
    "save_bundle",
    "validate_audio",
]
