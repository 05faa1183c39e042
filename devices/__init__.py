"""Device profiles: what a target board has and what a keyword model may use of it.

A profile is a TOML file (``devices/*.toml`` ship with the runtime; a user can
pass the path of their own) that becomes a frozen :class:`DeviceProfile`:
the hardware (CPU, cores, clock, RAM, flash), the **budgets** a model must fit
(model bytes, activation bytes, a compute budget in MACs per second at the
streaming rate, a CPU share of one core for the whole streaming path, a p99
per-hop latency), the **estimates** used to predict latency and CPU share when
the command does not run on the target, and a ``sources`` table that says
where every number comes from (a datasheet, a measurement on this project's
machines with its command, a published benchmark, or a derivation).

No TensorFlow here: ``kws bench`` uses this on the device.
"""

from __future__ import annotations

import math
import platform
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal, Optional

from kws_edge.config import from_dict, load_toml
from kws_edge.errors import ConfigError

__all__ = [
    "Budgets",
    "Estimates",
    "DetectionRule",
    "TflmArena",
    "DeviceProfile",
    "load_profile",
    "list_profiles",
    "profile_names",
    "detect_local_profile",
    "PROFILE_DIR",
]

#: folder holding the profiles shipped with kws-edge
PROFILE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Budgets:
    """What a keyword model may use of the device (all limits are inclusive)."""

    model_bytes: int
    activation_bytes: int
    #: compute budget: MACs per inference x inferences per second at the streaming rate
    macs_per_second: int
    #: share of one core the whole streaming path (MFCC + inference + smoothing) may take, 0..1
    cpu_share: float
    hop_latency_p99_ms: float

    def __post_init__(self) -> None:
        for name in ("model_bytes", "activation_bytes", "macs_per_second"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"budgets.{name}={getattr(self, name)} must be > 0")
        if not 0 < self.cpu_share <= 1:
            raise ConfigError(f"budgets.cpu_share={self.cpu_share} must be in (0, 1]")
        if self.hop_latency_p99_ms <= 0:
            raise ConfigError(f"budgets.hop_latency_p99_ms={self.hop_latency_p99_ms} must be > 0")


@dataclass(frozen=True)
class Estimates:
    """Throughput figures used to estimate latency and CPU share off-target."""

    #: sustained int8 MACs per second of one core with the profile's interpreter (small conv nets)
    int8_macs_per_second: float
    #: CPU milliseconds one core spends on streaming MFCC per second of audio (49-50 frames)
    mfcc_ms_per_audio_second: float
    #: float32 throughput relative to int8 on this CPU (for --quantize float32)
    float32_speed_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.int8_macs_per_second <= 0 or self.mfcc_ms_per_audio_second < 0 or self.float32_speed_ratio <= 0:
            raise ConfigError("estimates must be positive numbers")


@dataclass(frozen=True)
class TflmArena:
    """The tensor arena a TFLite Micro firmware reserves, and the margin kept over the measured arena.

    ``kws-convert`` measures the smallest arena each model needs in the TFLM
    interpreter (an x86-64 build with reference kernels) and checks
    ``measured x (1 + margin_fraction)`` against ``tensor_arena_bytes``.
    """

    #: bytes of the firmware's ``tensor_arena`` array
    tensor_arena_bytes: int
    #: headroom over the measured arena for target differences (CMSIS-NN scratch, 32-bit layout)
    margin_fraction: float

    def __post_init__(self) -> None:
        if self.tensor_arena_bytes <= 0:
            raise ConfigError(f"tflm.tensor_arena_bytes={self.tensor_arena_bytes} must be > 0")
        if not 0 <= self.margin_fraction < 10:
            raise ConfigError(f"tflm.margin_fraction={self.margin_fraction} must be in [0, 10)")

    def needed_bytes(self, measured_arena_bytes: int) -> int:
        """The arena a measured model needs on the target: the measurement plus the margin."""
        return int(math.ceil(measured_arena_bytes * (1.0 + self.margin_fraction)))


@dataclass(frozen=True)
class DetectionRule:
    """How :func:`detect_local_profile` recognises the board."""

    #: regular expressions matched against /proc/device-tree/model (case-insensitive)
    device_tree_model: tuple[str, ...] = ()
    #: values of platform.machine() that identify the profile when no device-tree model matches
    machine: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceProfile:
    """A target board and its budgets; load with :func:`load_profile`."""

    name: str
    description: str
    cpu: str
    cores: int
    clock_mhz: int
    ram_bytes: int
    flash_bytes: int
    budgets: Budgets
    estimates: Estimates
    #: interpreter class on the target: LiteRT on Linux boards, TFLite Micro on microcontrollers
    runtime: Literal["litert", "tflite-micro"] = "litert"
    #: the firmware's tensor arena (TFLite Micro profiles only; optional)
    tflm: Optional[TflmArena] = None
    aliases: tuple[str, ...] = ()
    detection: DetectionRule = field(default_factory=DetectionRule)
    #: where each number comes from, keyed by field path ("ram_bytes", "budgets.cpu_share", ...)
    sources: dict[str, str] = field(default_factory=dict)
    #: file the profile was read from (not part of the TOML)
    path: Optional[str] = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.name):
            raise ConfigError(f"profile name {self.name!r} must be lower-case letters, digits and dashes")
        if self.cores < 1 or self.clock_mhz <= 0 or self.ram_bytes <= 0 or self.flash_bytes < 0:
            raise ConfigError(f"profile {self.name}: cores, clock_mhz and ram_bytes must be > 0, flash_bytes >= 0")
        if self.tflm is not None and self.runtime != "tflite-micro":
            raise ConfigError(f"profile {self.name}: a [tflm] table needs runtime = \"tflite-micro\"")
        tflm_keys = tuple(f"tflm.{f.name}" for f in fields(TflmArena)) if self.tflm is not None else ()
        missing = [key for key in self.numbers() + tflm_keys if key not in self.sources]
        if missing:
            raise ConfigError(
                f"profile {self.name}: no source for {', '.join(missing)}; add a line to its [sources] table "
                "(datasheet, measurement with its command, published benchmark, or derivation)"
            )

    @staticmethod
    def numbers() -> tuple[str, ...]:
        """Field paths of every number a profile must source."""
        top = ("cores", "clock_mhz", "ram_bytes", "flash_bytes")
        return top + tuple(f"budgets.{f.name}" for f in fields(Budgets)) + tuple(
            f"estimates.{f.name}" for f in fields(Estimates)
        )

    def source(self, key: str) -> str:
        return self.sources.get(key, "")


def _profile_files() -> list[Path]:
    return sorted(PROFILE_DIR.glob("*.toml"))


def _read(path: Path) -> DeviceProfile:
    data = load_toml(path)
    if "path" in data:
        raise ConfigError(f"{path}: 'path' is not a profile key")
    try:
        profile = from_dict(DeviceProfile, data)
    except ConfigError as exc:
        raise ConfigError(f"device profile {path}: {exc}") from None
    return replace(profile, path=str(path))


def list_profiles() -> list[DeviceProfile]:
    """Every profile shipped with kws-edge, sorted by name."""
    return sorted((_read(p) for p in _profile_files()), key=lambda p: p.name)


def profile_names() -> list[str]:
    """Names (and aliases) accepted by :func:`load_profile`."""
    names = []
    for p in list_profiles():
        names.append(p.name)
        names.extend(p.aliases)
    return sorted(names)


def load_profile(name_or_path: str | Path | DeviceProfile) -> DeviceProfile:
    """A shipped profile by name or alias, or a user's profile TOML by path.

    Raises ``ConfigError`` listing the known names when the name is unknown.
    """
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    text = str(name_or_path)
    looks_like_path = text.endswith(".toml") or "/" in text or "\\" in text
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"device profile file {path} does not exist")
        return _read(path)
    for profile in list_profiles():
        if text == profile.name or text in profile.aliases:
            return profile
    known = ", ".join(p.name + (f" ({', '.join(p.aliases)})" if p.aliases else "") for p in list_profiles())
    raise ConfigError(f"unknown device {text!r}; known devices: {known}; or pass the path of your own profile .toml")


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_bytes().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def detect_local_profile(
    *,
    device_tree_model_path: str | Path = "/proc/device-tree/model",
    cpuinfo_path: str | Path = "/proc/cpuinfo",
    machine: str | None = None,
) -> DeviceProfile | None:
    """The shipped profile of the machine this runs on, or None when unknown.

    Raspberry Pi boards are recognised from ``/proc/device-tree/model`` (or the
    ``Model`` line of ``/proc/cpuinfo`` on older kernels); other machines by
    ``platform.machine()``.
    """
    model = _read_text(device_tree_model_path)
    if not model:
        match = re.search(r"^Model\s*:\s*(.+)$", _read_text(cpuinfo_path), re.MULTILINE)
        model = match.group(1).strip() if match else ""
    profiles = list_profiles()
    if model:
        for profile in profiles:
            if any(re.search(rx, model, re.IGNORECASE) for rx in profile.detection.device_tree_model):
                return profile
    machine = (machine if machine is not None else platform.machine()).lower()
    for profile in profiles:
        if machine in (m.lower() for m in profile.detection.machine):
            return profile
    return None
