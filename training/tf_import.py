"""The one way kws-edge imports TensorFlow and Keras: quietly, or with an install hint.

TensorFlow 2.21 writes lines to stderr that alarm a user and mean nothing here:

* ``I0000 ... port.cc] oneDNN custom operations are on ...`` (and absl's "All log messages before
  absl::InitializeLog() ..." banner) while its libraries load. They come before TensorFlow reads
  ``TF_CPP_MIN_LOG_LEVEL``, so :func:`import_tensorflow` holds file descriptors 1 and 2 in a temporary
  file during the import (oneDNN stays on: turning it off with ``TF_ENABLE_ONEDNN_OPTS=0`` would
  change the numerics every recorded result was measured with).
* ``E0000 ... node_def_util.cc] NodeDef mentions attribute use_unbounded_threadpool which is not in
  the op definition: Op<name=MapDataset ...`` once per ``model.fit``: with op determinism on (training
  is deterministic), tf.data rewrites Keras's parallel map into a sequential ``MapDataset`` and keeps an
  attribute that op does not declare; TensorFlow logs it as an error and runs on. Only
  ``TF_CPP_MIN_LOG_LEVEL=3`` silences it, so the helper raises the level from unset or 2 (what these
  docs used to recommend) to 3. Real TensorFlow failures still raise Python exceptions; any other
  explicit value (0 or 1, for debugging) is left as it is.

Every training and conversion module imports TensorFlow or Keras through :func:`import_tensorflow` /
:func:`import_keras` (the first import is the one that matters; later ones come from ``sys.modules``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from ..errors import BackendUnavailableError

__all__ = ["TF_QUIET_LOG_LEVEL", "quiet_tensorflow_logs", "captured_output", "import_tensorflow", "import_keras"]

#: TF_CPP_MIN_LOG_LEVEL set before TensorFlow loads (3: C++ errors too; they also surface as exceptions)
TF_QUIET_LOG_LEVEL = "3"
_INSTALL_HINT = "pip install 'kws-edge[train]'"


def quiet_tensorflow_logs() -> None:
    """Set TensorFlow's C++ log level before it is imported (unset or 2 -> 3; 0 and 1 are respected)."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") == "2":
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = TF_QUIET_LOG_LEVEL


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Send fd 1 and 2 (Python and C++ writes) to a temporary file; yields a list filled with its text."""
    out: list[str] = []
    py_text = io.StringIO()  # Python-level writes (sys.stdout may not be fd 1, e.g. under pytest)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with contextlib.redirect_stdout(py_text), contextlib.redirect_stderr(py_text):
                yield out
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            out.append(py_text.getvalue() + tmp.read().decode("utf-8", "replace"))


def _import(name: str, needed_for: str) -> Any:
    if name in sys.modules and sys.modules[name] is not None:
        return sys.modules[name]
    quiet_tensorflow_logs()
    try:
        with captured_output() as log:  # the load-time banners
            try:
                module = __import__(name)
            except ImportError:
                module = None
    except BaseException:
        sys.stderr.write("".join(log))  # an unexpected failure: show what TensorFlow said
        raise
    if module is None:
        raise BackendUnavailableError(f"{needed_for} needs TensorFlow; {_INSTALL_HINT}") from None
    return module


def import_tensorflow(needed_for: str = "training") -> Any:
    """``import tensorflow``, quietly; BackendUnavailableError with the install command when it is missing."""
    return _import("tensorflow", needed_for)


def import_keras(needed_for: str = "training") -> Any:
    """``import keras`` (which loads TensorFlow), quietly; BackendUnavailableError when it is missing."""
    _import("tensorflow", needed_for)
    return _import("keras", needed_for)
