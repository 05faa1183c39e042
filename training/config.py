"""Training configuration: frozen dataclasses, TOML loading, CLI overrides.

Everything a training run depends on lives in one :class:`TrainConfig`; the
resolved value is written to ``RUN_DIR/config.json`` and ends up in bundle
manifests. TOML files mirror the dataclasses (top-level keys for
:class:`TrainConfig` fields, tables ``[features]``, ``[model]``, ``[augment]``,
``[synthetic]``); unknown keys and wrong types are rejected by
:func:`kws_edge.config.from_dict`.

Example ``recipe.toml``::

    epochs = 20
    [model]
    architecture = "ds_cnn"
    width = 32
    [augment]
    spec_augment = true
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import from_dict, load_toml, to_dict
from ..errors import ConfigError
from ..features import MfccConfig
from ..metrics import SILENCE_LABEL, UNKNOWN_LABEL

__all__ = [
    "LABELS",
    "KEYWORDS",
    "SILENCE_LABEL",
    "UNKNOWN_LABEL",
    "ModelConfig",
    "AugmentConfig",
    "SyntheticConfig",
    "TrainConfig",
    "load_config",
    "apply_overrides",
]

KEYWORDS = ("yes", "no")
LABELS = (SILENCE_LABEL, UNKNOWN_LABEL) + KEYWORDS


@dataclass(frozen=True)
class ModelConfig:
    """Which architecture and its size (see :data:`kws_edge.training.models.ARCHITECTURES`).

    ``width`` is the number of filters (DS-CNN, tiny_conv) or the base
    channel count (tc_resnet); ``depth`` the number of blocks.
    ``stem_channels`` (``tcn`` only; 0 = none) puts a 2D stem ahead of the
    first layer: a 5-frame x 3-cepstra convolution with that many filters
    (see :class:`kws_edge.training.streaming_model.TcnConfig`).
    """

    architecture: str = "ds_cnn"
    width: int = 64
    depth: int = 4
    dropout: float = 0.2
    stem_channels: int = 0

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 0:
            raise ConfigError(f"model width={self.width} must be >= 1 and depth={self.depth} >= 0")
        if self.stem_channels < 0:
            raise ConfigError(f"model stem_channels={self.stem_channels} must be >= 0 (0: no stem)")
        if self.stem_channels and self.architecture != "tcn":
            raise ConfigError(f"model stem_channels applies to architecture 'tcn' only, not "
                              f"{self.architecture!r}; remove it or set architecture = \"tcn\"")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model dropout={self.dropout} must be in [0, 1)")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (audio domain, then optional feature masks).

    Each training clip is kept clean once and augmented ``copies`` times
    (fixed, seeded copies: the augmented set is the same for the same seed).
    ``speed_range`` draws a speed-perturbation factor per copy (tempo and
    pitch together; ``(1.0, 1.0)`` is off).
    """

    copies: int = 5
    speed_range: tuple[float, float] = (1.0, 1.0)
    noise_probability: float = 0.8
    noise_snr_db: tuple[float, float] = (0.0, 30.0)
    time_shift_ms: float = 100.0
    gain_db: tuple[float, float] = (-12.0, 6.0)
    dither_dbfs: float = -80.0
    spec_augment: bool = False
    time_masks: int = 2
    time_mask_max_frames: int = 5
    freq_masks: int = 1
    freq_mask_max_bins: int = 2
    #: > copies: compute this many augmented copies per clip once and train each epoch on the next
    #: ``copies`` of them (rotating), with SpecAugment masks re-drawn per epoch; 0 = fixed copies
    pool_copies: int = 0

    def __post_init__(self) -> None:
        if self.copies < 0:
            raise ConfigError(f"augment copies={self.copies} must be >= 0")
        if self.pool_copies and self.pool_copies < self.copies:
            raise ConfigError(f"augment pool_copies={self.pool_copies} must be 0 or >= copies={self.copies}")
        if not 0.0 <= self.noise_probability <= 1.0:
            raise ConfigError(f"augment noise_probability={self.noise_probability} must be in [0, 1]")
        if not 0.5 <= self.speed_range[0] <= self.speed_range[1] <= 2.0:
            raise ConfigError(f"augment speed_range={self.speed_range} must be (low, high) with "
                              "0.5 <= low <= high <= 2.0")
        for name in ("noise_snr_db", "gain_db"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"augment {name}=({lo}, {hi}) must be (low, high) with low <= high")
        if self.time_shift_ms < 0:
            raise ConfigError(f"augment time_shift_ms={self.time_shift_ms} must be >= 0")


@dataclass(frozen=True)
class SyntheticConfig:
    """The built-in synthetic dataset (eSpeak NG speech + generated noise).

    ``n_speakers`` voice/variant pairs each say every keyword
    ``keyword_repeats`` times and ``other_words_per_speaker`` other words,
    with a random pitch and speed per utterance.
    """

    n_speakers: int = 90
    keyword_repeats: int = 2
    other_words_per_speaker: int = 6
    other_words: tuple[str, ...] = (
        "go", "yet", "yeah", "so", "oh", "new", "yell", "less", "guess", "note", "nose", "snow",
        "toe", "low", "left", "right", "up", "down", "stop", "on", "off", "bed", "cat", "happy",
        "dog", "house", "seven", "nine", "wow", "bird", "tree", "four", "learn", "follow", "zero",
        "one", "two", "three", "five", "six", "eight", "visual", "forward", "sheila", "marvin",
    )
    noise_seconds: float = 30.0
    pitch_range: tuple[int, int] = (20, 80)
    speed_wpm_range: tuple[int, int] = (110, 210)
    level_dbfs_range: tuple[float, float] = (-30.0, -3.0)
    cache_dir: str = ""

    def __post_init__(self) -> None:
        if self.n_speakers < 3:
            raise ConfigError(f"synthetic n_speakers={self.n_speakers} must be >= 3 (one per split at least)")
        if self.keyword_repeats < 1:
            raise ConfigError(f"synthetic keyword_repeats={self.keyword_repeats} must be >= 1")
        if self.noise_seconds < 5:
            raise ConfigError(f"synthetic noise_seconds={self.noise_seconds} must be >= 5")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training recipe.

    ``data`` is a Speech Commands-layout folder, a list of them (one dataset: one speaker-hash split
    across all, see :func:`kws_edge.training.dataset.index_dataset`), or ``"synthetic"``; a list of
    one folder is stored as that folder.
    ``silence_percentage`` / ``unknown_percentage`` size the silence and
    unknown classes of every split as a percentage of that split's keyword
    clips (the TensorFlow speech_commands convention; unknown is capped by
    what the folder holds). ``synthetic_negatives`` adds that many synthetic
    clips of confusable words to the unknown class of a real dataset (training
    split only). ``exclude_words`` are word folders left out of every split, so
    a model can be measured on words it never heard (held-out words).
    ``label_smoothing`` spreads that share of every target over all labels
    (cross-entropy against ``(1 - s) * one_hot + s / n_labels``).
    ``average_last_epochs`` > 0 replaces the final weights by their mean over
    every training step of the last that many epochs (all of them if there are
    fewer; tail averaging, as in
    stochastic weight averaging) and then re-estimates the BatchNorm statistics
    for the averaged weights on the last epoch's training data; 0 is off.
    The default (5 of 8 epochs) is what meets the issue-3 real-data bar.
    With ``averaging_lr_fraction`` > 0 the cosine learning-rate decay ends where
    the averaging window starts and the rate then stays at that fraction of
    ``learning_rate`` (stochastic weight averaging, Izmailov et al. 2018); with
    0 the cosine decay spans every epoch.
    ``focal_gamma`` > 0 trains with the focal loss (cross-entropy scaled by
    ``(1 - p_true) ** gamma``, Lin et al. 2017), which weights the clips near a
    class boundary more than the easy ones; 0 is plain cross-entropy.
    ``distill_from`` names finished runs (teachers) whose mean prediction the
    model also learns from, with ``distill_weight`` the share of that soft term
    and ``distill_temperature`` its temperature (knowledge distillation; see
    :mod:`kws_edge.training.distill`); empty is off.
    """

    data: str | tuple[str, ...] = "synthetic"
    labels: tuple[str, ...] = LABELS
    keywords: tuple[str, ...] = KEYWORDS
    features: MfccConfig = field(default_factory=MfccConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 0.003
    weight_decay: float = 0.0
    negative_class_weight: float = 1.0
    label_smoothing: float = 0.0
    average_last_epochs: int = 5  # the issue-3 real-data bar (training/RESULTS_DEFAULT_RECIPE.md)
    averaging_lr_fraction: float = 0.0
    focal_gamma: float = 0.0
    seed: int = 1234
    silence_percentage: float = 15.0
    unknown_percentage: float = 150.0
    validation_percentage: float = 10.0
    testing_percentage: float = 10.0
    silence_levels_dbfs: tuple[float, float] = (-70.0, -15.0)
    silence_zero_share: float = 0.1
    synthetic_negatives: int = 0
    representative_samples: int = 500
    exclude_words: tuple[str, ...] = ()
    distill_from: tuple[str, ...] = ()
    distill_weight: float = 0.5
    distill_temperature: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.data, (tuple, list)):
            if not self.data:
                raise ConfigError("data is an empty list; give a dataset folder, a list of them, or \"synthetic\"")
            if "synthetic" in self.data and len(self.data) > 1:
                raise ConfigError("data: 'synthetic' cannot be combined with other folders; to mix synthetic "
                                  "confusable words into real data set synthetic_negatives")
            if len(set(self.data)) != len(self.data):
                raise ConfigError(f"data lists a folder twice: {list(self.data)}")
            # one folder is stored as that folder: the same recipe gives the same config hash either way
            object.__setattr__(self, "data", self.data[0] if len(self.data) == 1 else tuple(self.data))
        if tuple(self.labels[:2]) != (SILENCE_LABEL, UNKNOWN_LABEL):
            raise ConfigError(f"labels must start with {SILENCE_LABEL!r}, {UNKNOWN_LABEL!r}; got {list(self.labels)}")
        if tuple(self.labels[2:]) != tuple(self.keywords):
            raise ConfigError(f"labels {list(self.labels)} must be the two special labels followed by the keywords "
                              f"{list(self.keywords)}")
        if not self.keywords:
            raise ConfigError("at least one keyword is needed")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs={self.epochs} and batch_size={self.batch_size} must be >= 1")
        if not self.negative_class_weight > 0:
            raise ConfigError(f"negative_class_weight={self.negative_class_weight} must be > 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        if not 0.0 <= self.focal_gamma <= 5.0:
            raise ConfigError(f"focal_gamma={self.focal_gamma} must be in [0, 5] (0 = plain cross-entropy)")
        if not 0.0 <= self.averaging_lr_fraction <= 1.0:
            raise ConfigError(f"averaging_lr_fraction={self.averaging_lr_fraction} must be in [0, 1] (0 = off)")
        if self.average_last_epochs < 0:
            raise ConfigError(f"average_last_epochs={self.average_last_epochs} must be >= 0 (0 = off)")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay} must be >= 0")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate={self.learning_rate} must be > 0")
        if self.silence_percentage < 0 or self.unknown_percentage < 0:
            raise ConfigError("silence_percentage and unknown_percentage must be >= 0")
        if not (0 < self.validation_percentage < 50 and 0 < self.testing_percentage < 50):
            raise ConfigError(
                f"validation_percentage={self.validation_percentage} and testing_percentage="
                f"{self.testing_percentage} must each be in (0, 50)"
            )
        if not 0.0 <= self.silence_zero_share <= 1.0:
            raise ConfigError(f"silence_zero_share={self.silence_zero_share} must be in [0, 1]")
        if self.synthetic_negatives < 0 or self.representative_samples < 1:
            raise ConfigError("synthetic_negatives must be >= 0 and representative_samples >= 1")
        if not 0.0 < self.distill_weight <= 1.0:
            raise ConfigError(f"distill_weight={self.distill_weight} must be in (0, 1] (the share of the teachers' term)")
        if not 0.0 < self.distill_temperature <= 20.0:
            raise ConfigError(f"distill_temperature={self.distill_temperature} must be in (0, 20]")
        if self.distill_from and (self.label_smoothing or self.focal_gamma or self.negative_class_weight != 1.0):
            raise ConfigError("distill_from replaces the loss: set label_smoothing = 0, focal_gamma = 0 and "
                              "negative_class_weight = 1 with it")
        clash = [w for w in self.exclude_words if w in self.keywords]
        if clash:
            raise ConfigError(f"exclude_words contains the keyword {clash[0]!r}; only other words can be held out")

    @property
    def is_synthetic(self) -> bool:
        return self.data == "synthetic"

    @property
    def data_folders(self) -> tuple[str, ...]:
        """The dataset folders as given (one or more; ``("synthetic",)`` for the synthetic set)."""
        return (self.data,) if isinstance(self.data, str) else tuple(self.data)


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Load a TOML recipe (or the defaults) and apply ``overrides`` (``None`` values ignored)."""
    base = TrainConfig() if path is None else from_dict(TrainConfig, load_toml(path))
    return apply_overrides(base, **overrides)


def apply_overrides(config: TrainConfig, **overrides: Any) -> TrainConfig:
    """Replace top-level fields; ``model`` may be an architecture name (str).

    Values of ``None`` are ignored, so click options can be passed straight in.
    """
    values = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(values.get("model"), str) and values["model"] != config.model.architecture:
        from .models import preset  # no TensorFlow import here

        values["model"] = preset(values["model"])
    elif isinstance(values.get("model"), str):
        values["model"] = config.model
    merged = to_dict(config)
    for key, value in values.items():
        merged[key] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return from_dict(TrainConfig, merged)
