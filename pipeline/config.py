"""The pipeline's settings: the ``[pipeline]`` table of a config file whose top level is a ``TrainConfig``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..config import from_dict, load_toml
from ..errors import ConfigError
from ..training.config import TrainConfig

__all__ = ["PipelineConfig", "load_pipeline_config"]


@dataclass(frozen=True)
class PipelineConfig:
    """Pipeline settings; the ``[pipeline]`` table of the config file (the rest is the ``TrainConfig``).

    Attributes
    ----------
    device : device profile the bundle is checked against
    stream_minutes : length of the streaming evaluation recording
    benchmark_seconds : audio streamed through the detector for the benchmark
    sample_words : what the demo recording OUT/sample.wav says
    bundle_name : name in the final manifest (default: the OUT folder's name)
    max_accuracy_drop_points : int8 parity gate of the conversion
    target_false_accepts_per_hour : the detector thresholds of the final bundle are chosen for this FA/h
        on a validation stream (:func:`kws_edge.metrics.select_thresholds`)
    """

    device: str = "raspberry-pi-4b"
    stream_minutes: float = 5.0
    benchmark_seconds: float = 20.0
    sample_words: tuple[str, ...] = ("yes", "up", "no", "down", "yes", "left", "no")
    bundle_name: str = ""
    max_accuracy_drop_points: float = 2.0
    target_false_accepts_per_hour: float = 1.0

    def __post_init__(self) -> None:
        if self.stream_minutes <= 0 or self.benchmark_seconds < 2:
            raise ConfigError("pipeline stream_minutes must be > 0 and benchmark_seconds >= 2")
        if not self.target_false_accepts_per_hour > 0:
            raise ConfigError(f"pipeline target_false_accepts_per_hour={self.target_false_accepts_per_hour} "
                              "must be > 0")


def load_pipeline_config(path: Optional[str | Path], *, data: Optional[str] = None,
                         device: Optional[str] = None) -> tuple[TrainConfig, PipelineConfig]:
    """Read a TOML file whose top level is a ``TrainConfig`` plus an optional ``[pipeline]`` table."""
    raw: dict[str, Any] = dict(load_toml(path)) if path else {}
    pipe_raw = raw.pop("pipeline", {})
    train = from_dict(TrainConfig, raw)
    pipe = from_dict(PipelineConfig, pipe_raw, where="pipeline.")
    if data is not None:
        if data != "synthetic":
            p = Path(data).expanduser()
            if not p.is_dir():
                raise ConfigError(f"--data {data}: no such folder; pass a Speech Commands-layout folder or 'synthetic'")
            data = str(p)  # as given: run files and manifests hold no absolute path of this machine
        train = dataclasses.replace(train, data=data)
    if device is not None:
        pipe = dataclasses.replace(pipe, device=device)
    from ..devices import load_profile

    load_profile(pipe.device)  # an unknown device or a bad profile file is refused now, not after training
    return train, pipe
