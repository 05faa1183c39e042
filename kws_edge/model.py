"""A bundle's model, ready to score feature windows or whole clips.

``KwsModel`` joins the three things that must never drift apart: the feature
configuration, the normalisation statistics and the interpreter with its
tensor quantisation, all taken from one verified bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import validate_audio
from .bundle import Bundle, load_bundle
from .engine import Engine
from .errors import BundleError
from .features import mfcc
from .scoring import FrameQuantizer

__all__ = ["KwsModel", "fit_clip"]


def fit_clip(samples: np.ndarray, n_samples: int) -> np.ndarray:
    """Centre-crop or zero-pad (centred) audio to exactly ``n_samples``."""
    samples = np.asarray(samples, np.float32)
    if len(samples) == n_samples:
        return samples
    if len(samples) > n_samples:
        start = (len(samples) - n_samples) // 2
        return samples[start:start + n_samples]
    out = np.zeros(n_samples, np.float32)
    start = (n_samples - len(samples)) // 2
    out[start:start + len(samples)] = samples
    return out


class KwsModel:
    """The window model of a bundle behind a float-features interface."""

    def __init__(self, bundle: Bundle, *, num_threads: int = 1, backend: str | None = None) -> None:
        self.bundle = bundle
        m = bundle.manifest
        self.labels = m.labels
        self.keywords = m.keywords
        self.features = m.features
        self.normalization = m.normalization
        self.engine = Engine(bundle.model_bytes, num_threads=num_threads, backend=backend)
        self._check_engine()
        self.input = self.engine.input
        self.output = self.engine.output
        self.window_frames = self.features.frames_per_clip
        self.quantizer = FrameQuantizer(self.normalization, self.input)

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs) -> "KwsModel":
        return cls(load_bundle(path), **kwargs)

    def _check_engine(self) -> None:
        e = self.engine
        if len(e.inputs) != 1 or len(e.outputs) != 1:
            raise BundleError(
                f"the window model must have one input and one output, has {len(e.inputs)} and {len(e.outputs)}"
            )
        n_in = int(np.prod(e.input.shape))
        want = self.features.frames_per_clip * self.features.n_cepstra
        if n_in != want:
            raise BundleError(f"model input has {n_in} values but the features give {want}; re-convert the model")
        if int(np.prod(e.output.shape)) != len(self.labels):
            raise BundleError(
                f"model output has {int(np.prod(e.output.shape))} values but the manifest lists "
                f"{len(self.labels)} labels"
            )
        spec = self.bundle.manifest.model
        for what, recorded, actual in (("input", spec.input, e.input), ("output", spec.output, e.output)):
            same_q = recorded.scale == 0 or (
                abs(recorded.scale - actual.scale) <= 1e-5 * actual.scale and recorded.zero_point == actual.zero_point
            )
            if recorded.dtype != actual.dtype or not same_q:
                raise BundleError(
                    f"the manifest says the model {what} is {recorded.dtype} (scale {recorded.scale:g}, zero point "
                    f"{recorded.zero_point}) but the model file has {actual.dtype} (scale {actual.scale:g}, zero "
                    f"point {actual.zero_point}); the manifest belongs to another model: re-run kws-convert"
                )

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """Normalise and quantise feature frames to the input's storage type (:class:`~kws_edge.scoring.FrameQuantizer`)."""
        return self.quantizer(frames)

    def scores_prepared(self, window: np.ndarray) -> np.ndarray:
        """Class probabilities for one prepared window [shape=(frames, n_cepstra)]."""
        raw = self.engine.run_raw(window.reshape(self.input.shape))[0]
        return self.engine.dequantize(raw, self.output).reshape(-1)

    def scores_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities for one window of raw MFCC frames."""
        return self.scores_prepared(self.prepare(features))

    def classify(self, samples: np.ndarray) -> np.ndarray:
        """Class probabilities for a clip (centre-cropped or padded to the clip length)."""
        audio = fit_clip(validate_audio(samples), self.features.clip_samples)
        return self.scores_features(mfcc(audio, self.features))
