"""TFLite inference engine: one interpreter, quantisation handled from the model.

Interpreters, in order of preference: ``ai_edge_litert`` (x86-64 and arm64
wheels), ``tflite_runtime`` (the fallback for 32-bit Pi OS), and
``tensorflow.lite`` (workstations with TensorFlow). ``Engine.backend`` says
which one runs. Inputs and outputs are float32 for the caller; int8 tensors
are quantised and dequantised with the scale and zero point read from the
model, never assumed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BackendUnavailableError, BundleError

__all__ = ["Engine", "TensorInfo", "available_backends", "BACKENDS", "KERNELS"]

#: interpreter modules tried in this order; KWS_EDGE_INTERPRETER picks one by name
BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")
_MODULES = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite.python.interpreter",
}


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output as the engine sees it."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in ("int8", "uint8", "int16") and self.scale > 0


def available_backends() -> list[str]:
    """Names of the interpreter packages importable here (without importing TF)."""
    import importlib.util

    found = []
    for name in BACKENDS:
        top = name.split(".")[0]
        if importlib.util.find_spec(top) is not None:
            found.append(name)
    return found


#: int8 kernel sets; KWS_EDGE_KERNELS picks one. "default": whatever the interpreter uses by default
#: (ai_edge_litert: the XNNPACK delegate, fastest here); "builtin": TFLite's own kernels, no delegate,
#: what tflite-runtime 2.11 runs on 32-bit Pi OS. The two round int8 arithmetic differently: scores can
#: differ by a few output steps (1/256), so compare platforms with the same kernel set.
KERNELS = ("default", "builtin")


def _kernel_options(module: Any, backend: str, kernels: str | None) -> dict[str, Any]:
    kernels = kernels or os.environ.get("KWS_EDGE_KERNELS") or "default"
    if kernels not in KERNELS:
        raise BackendUnavailableError(f"unknown kernel set {kernels!r} (KWS_EDGE_KERNELS); choose one of "
                                      f"{', '.join(KERNELS)}")
    if kernels == "default":
        return {}
    resolver = getattr(module, "OpResolverType", None)
    if resolver is None:
        raise BackendUnavailableError(f"{backend} cannot select TFLite's builtin kernels; unset KWS_EDGE_KERNELS")
    return {"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


def _load_interpreter_class(backend: str | None) -> tuple[Any, str]:
    names = [backend] if backend else [os.environ.get("KWS_EDGE_INTERPRETER") or ""]
    if not names[0]:
        names = list(BACKENDS)
    errors = []
    for name in names:
        if name not in _MODULES:
            raise BackendUnavailableError(f"unknown interpreter {name!r}; choose one of {', '.join(BACKENDS)}")
        try:
            module = importlib.import_module(_MODULES[name])
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        version = _version(name)
        return module, f"{name} {version}".strip()
    if len(names) == 1:  # one backend was asked for, by argument or KWS_EDGE_INTERPRETER
        raise BackendUnavailableError(
            f"the {names[0]} interpreter was requested but cannot be imported ({errors[0]}); install it, or "
            "unset KWS_EDGE_INTERPRETER to use the first available one (pip install ai-edge-litert)"
        )
    raise BackendUnavailableError(
        "no TFLite interpreter is installed; pip install ai-edge-litert "
        "(or tflite-runtime on 32-bit Raspberry Pi OS)"
    )


def _version(name: str) -> str:
    top = sys.modules.get(name)  # the package's own __version__: importlib.metadata costs 2.3 MiB of RSS
    if isinstance(getattr(top, "__version__", None), str):
        return top.__version__
    try:
        from importlib.metadata import PackageNotFoundError, version

        dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
                "tensorflow": "tensorflow-cpu"}[name]
        try:
            return version(dist)
        except PackageNotFoundError:
            return version("tensorflow") if name == "tensorflow" else ""
    except Exception:  # pragma: no cover - metadata is best effort
        return ""


#: native log lines that are noise for users (LiteRT prints this once per process on fd 2)
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


def _capture_file() -> Any:
    """An anonymous file to capture fd 2 in: a memfd where there is one (no tempfile import: 0.9 MiB)."""
    if hasattr(os, "memfd_create"):
        try:
            return os.fdopen(os.memfd_create("kws-edge-stderr"), "w+b")
        except OSError:  # pragma: no cover - memfd refused (old kernel, seccomp)
            pass
    import tempfile

    return tempfile.TemporaryFile()


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[list[str]]:
    """Capture what native code writes straight to file descriptor 2; the text is in the list on exit."""
    out: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield out
        return
    with _capture_file() as capture:
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            out.append(capture.read().decode("utf-8", "replace"))


@contextlib.contextmanager
def _quiet_native_log() -> Iterator[None]:
    """Drop the interpreter's INFO banner from file descriptor 2, keep everything else.

    The C++ runtime writes straight to fd 2 (no Python logging, no environment
    switch), which would break the CLI's one-line error contract. Output is
    captured while the interpreter is created and re-emitted minus the banner.
    """
    log: list[str] = []
    try:
        with captured_native_stderr() as log:
            yield
    finally:
        text = "".join(log)
        kept = [line for line in text.splitlines(keepends=True) if line.strip() not in _NATIVE_NOISE]
        if kept and sys.stderr is not None:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def _info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=str(detail["name"]),
        index=int(detail["index"]),
        shape=tuple(int(v) for v in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero_point),
    )


class Engine:
    """A loaded TFLite model with float-in, float-out calls.

    Parameters
    ----------
    model : path to a ``.tflite`` file, or its bytes
    num_threads : interpreter threads (1 suits a streaming detector)
    backend : force one of :data:`BACKENDS`; default: the first importable
    kernels : one of :data:`KERNELS`; default: ``KWS_EDGE_KERNELS`` or "default"
    """

    def __init__(self, model: str | Path | bytes, *, num_threads: int = 1, backend: str | None = None,
                 kernels: str | None = None) -> None:
        module, self.backend = _load_interpreter_class(backend)
        options = _kernel_options(module, self.backend, kernels)
        self.kernels = "builtin" if options else "default"
        if isinstance(model, (bytes, bytearray)):
            content = model
        else:
            try:
                content = Path(model).read_bytes()
            except OSError as exc:
                raise BundleError(f"cannot read model file {model}: {exc.strerror or exc}") from None
        self._content = bytes(content)  # the interpreter keeps a pointer into this buffer
        try:
            with _quiet_native_log():
                self._interp = module.Interpreter(model_content=self._content, num_threads=num_threads, **options)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"the model cannot be loaded by {self.backend}: {exc}") from None
        # The native wrapper's Invoke (ai_edge_litert, tflite_runtime and tf.lite keep it as `_interpreter`):
        # the Python invoke() only adds a check for numpy views of the interpreter's buffers, which the scorers
        # hold on purpose (kws_edge.scoring.bind_tensors); the buffers never move after allocate_tensors().
        native = getattr(self._interp, "_interpreter", None)
        self._invoke = native.Invoke if callable(getattr(native, "Invoke", None)) else self._interp.invoke
        self.inputs = [_info(d) for d in self._interp.get_input_details()]
        self.outputs = [_info(d) for d in self._interp.get_output_details()]
        self._in_dtypes = [np.dtype(t.dtype) for t in self.inputs]
        self.n_invocations = 0

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    @property
    def output(self) -> TensorInfo:
        return self.outputs[0]

    def quantize(self, x: np.ndarray, info: TensorInfo) -> np.ndarray:
        """Float values to the tensor's storage type (identity for float tensors)."""
        dtype = np.dtype(info.dtype)
        if not info.quantized:
            return np.asarray(x, dtype=dtype)
        q = np.rint(np.asarray(x, np.float32) / np.float32(info.scale)) + info.zero_point
        limits = np.iinfo(dtype)
        return np.clip(q, limits.min, limits.max).astype(dtype)

    @staticmethod
    def dequantize(q: np.ndarray, info: TensorInfo) -> np.ndarray:
        if not info.quantized:
            return np.asarray(q, np.float32)
        return (q.astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale)

    def _check_arity(self, inputs: tuple) -> None:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"the model takes {len(self.inputs)} inputs, got {len(inputs)}")

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Set every input (float values), invoke once, return every output as float32."""
        interp = self._interp
        self._check_arity(inputs)
        for info, x in zip(self.inputs, inputs):
            interp.set_tensor(info.index, self.quantize(np.reshape(x, info.shape), info))
        self._invoke()
        self.n_invocations += 1
        return [self.dequantize(interp.get_tensor(o.index), o) for o in self.outputs]

    def run_raw(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Like :meth:`run` but inputs and outputs stay in storage type (int8)."""
        interp = self._interp
        self._check_arity(inputs)
        for info, x in zip(self.inputs, inputs):
            interp.set_tensor(info.index, x)
        self._invoke()
        self.n_invocations += 1
        return [interp.get_tensor(o.index) for o in self.outputs]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Single-input, single-output convenience: float features in, float scores out."""
        return self.run(x)[0].reshape(-1)

    def reset_state(self) -> None:
        """Reset variable tensors (stateful streaming models)."""
        self._interp.reset_all_variables()
