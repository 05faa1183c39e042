"""A manifest's ``provenance``: where a bundle comes from, typed.

The training run (its ``run.json``: :class:`RunRecord`, with the teachers it was distilled from),
the resolved training configuration (``config``, the ``TrainConfig`` of ``kws_edge.training`` as
JSON: the runtime does not import training, so it stays a JSON object here), the conversion
(:class:`ConversionRecord`, with the streaming model's figures when there is one) and the recipe.
No field holds an absolute path of the build machine (``kws_edge.portable``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["TeacherRecord", "RunRecord", "StreamingConversionRecord", "ConversionRecord", "Provenance"]


@dataclass(frozen=True)
class TeacherRecord:
    """A finished run a student was distilled from (``run.json``'s ``distilled_from``)."""

    path: str = ""
    architecture: str = ""
    width: int = 0
    seed: int = 0
    config_sha256: str = ""
    data_sha256: str = ""
    git_commit: str = ""
    validation_accuracy: Optional[float] = None


@dataclass(frozen=True)
class RunRecord:
    """A training run's ``run.json`` (docs/ARCHITECTURE.md)."""

    format_version: int = 1
    status: str = ""
    kws_edge_version: str = ""
    git_commit: str = ""
    started_utc: str = ""
    finished_utc: str = ""
    seed: int = 0
    config_sha256: str = ""
    data_sha256: str = ""
    distilled_from: tuple[TeacherRecord, ...] = ()


@dataclass(frozen=True)
class StreamingConversionRecord:
    """How the streaming (stateful) model was made from the window model."""

    #: new feature frames per streaming call
    block_frames: int = 0
    #: int8 values of the state tensor passed in and out
    state_size: int = 0
    #: (frames, state) pairs int8 was calibrated on
    n_calibration_pairs: int = 0


@dataclass(frozen=True)
class ConversionRecord:
    """``kws-convert``: the code and settings that turned the run into this bundle's models."""

    kws_edge_version: str = ""
    git_commit: str = ""
    tensorflow_version: str = ""
    quantize: str = ""
    #: "per-channel" or "per-tensor" (int8), None for float models
    weight_scales: Optional[str] = None
    representative_clips: int = 0
    representative_seed: int = 0
    representative_source: str = ""
    streaming: Optional[StreamingConversionRecord] = None


@dataclass(frozen=True)
class Provenance:
    """Where a bundle comes from; see the module docstring.

    ``extra`` keeps facts of bundles not made from a training run (the test bundles record the
    script that made them) or of older manifests whose shape has no field here.
    """

    #: the run directory's name (never its path on the build machine)
    run_dir: str = ""
    run: Optional[RunRecord] = None
    #: the resolved TrainConfig as JSON (``kws_edge.training.config.TrainConfig``)
    config: dict[str, Any] = field(default_factory=dict)
    conversion: Optional[ConversionRecord] = None
    #: the recipe and command that made the bundle, when one did
    recipe: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> Optional[int]:
        return self.run.seed if self.run is not None else None

    @property
    def data_sha256(self) -> str:
        return self.run.data_sha256 if self.run is not None else ""

    @property
    def config_sha256(self) -> str:
        return self.run.config_sha256 if self.run is not None else ""

    @property
    def git_commit(self) -> str:
        """The training run's commit, else the conversion's."""
        if self.run is not None and self.run.git_commit:
            return self.run.git_commit
        return self.conversion.git_commit if self.conversion is not None else ""
