"""Live audio from a microphone, through sounddevice/PortAudio.

PortAudio calls :meth:`MicrophoneSource._callback` on its own thread with
each block of samples. The callback does the least it can: copy the block
into a bounded queue. The consumer (a detector loop) takes blocks out by
iterating over the source. If the consumer falls behind and the queue is
full, the new block is dropped **and counted**; PortAudio's own input
overflow flags are counted too. Nothing is dropped silently: read
``source.stats`` (a :class:`CaptureStats`), or pass ``on_overflow`` to be told.

sounddevice is an optional extra, imported only when a source starts::

    pip install "kws-edge[audio]"          # and on Debian/Pi OS: apt-get install libportaudio2

Example
-------
>>> from kws_edge import KeywordDetector
>>> from kws_edge.microphone import MicrophoneSource
>>> det = KeywordDetector.from_bundle()
>>> with MicrophoneSource(sample_rate_hz=det.sample_rate_hz) as mic:
...     for chunk in mic:                       # int16 blocks of 100 ms
...         for d in det.process(chunk):
...             print(d.label, d.time_s)
"""

from __future__ import annotations

import importlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import numpy as np

from .errors import BackendUnavailableError, ConfigError

__all__ = ["CaptureStats", "MicrophoneSource", "list_input_devices", "import_sounddevice", "INSTALL_HINT"]

INSTALL_HINT = 'pip install "kws-edge[audio]" (and on Debian/Raspberry Pi OS: apt-get install libportaudio2)'

Device = Optional[Union[int, str]]


def import_sounddevice() -> Any:
    """Import sounddevice, or raise BackendUnavailableError saying how to install it."""
    try:
        return importlib.import_module("sounddevice")
    except ImportError:
        raise BackendUnavailableError(
            f'the microphone needs the sounddevice package: pip install "kws-edge[audio]"'
        ) from None
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        raise BackendUnavailableError(
            f"the microphone needs the PortAudio library ({exc}): apt-get install libportaudio2"
        ) from None


def list_input_devices() -> list[dict[str, Any]]:
    """Input devices PortAudio sees: ``[{"index", "name", "channels", "default_rate_hz"}]``."""
    sd = import_sounddevice()
    out = []
    for i, dev in enumerate(sd.query_devices()):
        if dev.get("max_input_channels", 0) > 0:
            out.append({"index": i, "name": dev["name"], "channels": int(dev["max_input_channels"]),
                        "default_rate_hz": float(dev["default_samplerate"])})
    return out


@dataclass
class CaptureStats:
    """What a source delivered and what it lost.

    ``dropped_blocks``/``dropped_samples``: blocks that arrived while the
    queue was full (the consumer was too slow). ``input_overflows``: blocks
    PortAudio flagged as input overflow (the driver lost samples before we
    saw them). ``other_status``: any other status flag from PortAudio.
    """

    blocks: int = 0
    samples: int = 0
    dropped_blocks: int = 0
    dropped_samples: int = 0
    input_overflows: int = 0
    other_status: int = 0

    @property
    def lost_audio(self) -> bool:
        return bool(self.dropped_blocks or self.input_overflows)

    def summary(self) -> str:
        text = f"{self.samples} samples in {self.blocks} blocks"
        if self.lost_audio:
            text += (f"; LOST AUDIO: {self.dropped_blocks} blocks ({self.dropped_samples} samples) dropped "
                     f"because the consumer fell behind, {self.input_overflows} PortAudio input overflows")
        return text


class MicrophoneSource:
    """Mono blocks from an input device, through a bounded queue.

    Parameters
    ----------
    sample_rate_hz : capture rate (the model's rate; PortAudio/PulseAudio resample if needed)
    block_samples : samples per block delivered to the consumer (1600 = 100 ms at 16 kHz)
    dtype : ``"int16"`` or ``"float32"``
    device : PortAudio device index or (part of a) name; default: the system's default input
    queue_blocks : queue capacity in blocks; when full, new blocks are dropped and counted
    timeout_s : :meth:`read` raises if no block arrives for this long (a stalled device)
    on_overflow : called (from the audio thread, keep it cheap) with the stats whenever audio is lost
    """

    def __init__(
        self,
        *,
        sample_rate_hz: int = 16000,
        block_samples: int = 1600,
        dtype: Literal["int16", "float32"] = "int16",
        device: Device = None,
        queue_blocks: int = 50,
        timeout_s: float = 5.0,
        on_overflow: Callable[[CaptureStats], Any] | None = None,
    ) -> None:
        if dtype not in ("int16", "float32"):
            raise ConfigError(f"dtype={dtype!r} must be 'int16' or 'float32'")
        if sample_rate_hz <= 0 or block_samples <= 0 or queue_blocks <= 0:
            raise ConfigError(
                f"sample_rate_hz={sample_rate_hz}, block_samples={block_samples} and "
                f"queue_blocks={queue_blocks} must all be > 0"
            )
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s={timeout_s} must be > 0")
        self.sample_rate_hz = int(sample_rate_hz)
        self.block_samples = int(block_samples)
        self.dtype = dtype
        self.device = device
        self.timeout_s = float(timeout_s)
        self.on_overflow = on_overflow
        self.stats = CaptureStats()
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=int(queue_blocks))
        self._lock = threading.Lock()
        self._stream: Any = None
        self.device_name = ""

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> "MicrophoneSource":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._stream is not None

    def start(self) -> None:
        """Open and start the input stream (idempotent)."""
        if self._stream is not None:
            return
        sd = import_sounddevice()
        device = self._resolve_device(sd)
        try:
            stream = sd.InputStream(
                samplerate=self.sample_rate_hz, blocksize=self.block_samples, channels=1,
                dtype=self.dtype, device=device, callback=self._callback,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            where = f"device {device!r}" if device is not None else "the default input device"
            raise BackendUnavailableError(
                f"cannot capture {self.sample_rate_hz} Hz mono audio from {where}: {exc}; "
                "check the microphone (python -m sounddevice lists devices) or pass --device"
            ) from None
        self._stream = stream
        try:
            info = sd.query_devices(stream.device)
            self.device_name = str(info.get("name", ""))
        except Exception:  # pragma: no cover - name is cosmetic
            self.device_name = str(stream.device)

    def _resolve_device(self, sd: Any) -> Device:
        device = self.device
        if isinstance(device, str) and device.strip().lstrip("-").isdigit():
            device = int(device)
        if device is None:
            return None
        try:
            info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            names = ", ".join(f"{d['index']}: {d['name']}" for d in list_input_devices()) or "none"
            raise ConfigError(f"no input device {device!r} ({exc}); input devices: {names}") from None
        if info.get("max_input_channels", 0) < 1:
            raise ConfigError(f"device {device!r} ({info.get('name')}) has no input channels")
        return device

    def stop(self) -> None:
        """Stop and close the stream; blocks still queued can be read afterwards."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
            finally:
                stream.close()

    # -- audio thread ----------------------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        lost = False
        with self._lock:
            if status:
                if getattr(status, "input_overflow", False):
                    self.stats.input_overflows += 1
                    lost = True
                else:
                    self.stats.other_status += 1
            block = np.array(indata[:, 0] if indata.ndim == 2 else indata, copy=True)
            try:
                self._queue.put_nowait(block)
                self.stats.blocks += 1
                self.stats.samples += int(frames)
            except queue.Full:
                self.stats.dropped_blocks += 1
                self.stats.dropped_samples += int(frames)
                lost = True
        if lost and self.on_overflow is not None:
            self.on_overflow(self.stats)

    # -- consumer --------------------------------------------------------------------------------

    def read(self, timeout_s: float | None = None) -> np.ndarray:
        """The next block [shape=(block_samples,), dtype=int16 or float32]; waits for it.

        Raises BackendUnavailableError when nothing arrives within the timeout
        (a stalled or unplugged device), and StopIteration once the source is
        stopped and the queue is empty.
        """
        wait = self.timeout_s if timeout_s is None else timeout_s
        try:
            return self._queue.get(timeout=wait if self._stream is not None else 0.0)
        except queue.Empty:
            if self._stream is None:
                raise StopIteration from None
            raise BackendUnavailableError(
                f"no audio from {self.device_name or 'the input device'} for {wait:g} s; "
                "is the microphone connected and not used by another program?"
            ) from None

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._stream is None:
            self.start()
        while True:
            try:
                yield self.read()
            except StopIteration:
                return
