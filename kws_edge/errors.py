"""One exception family for the whole SDK.

Library code raises these; the CLI turns them into one line on stderr and a
non-zero exit status. Every message says what is wrong and what to do.
"""

from __future__ import annotations

__all__ = [
    "KwsError",
    "ConfigError",
    "AudioFormatError",
    "BundleError",
    "BackendUnavailableError",
    "BudgetExceeded",
    "DataError",
    "RunError",
    "ConversionError",
    "RegistryError",
]


class KwsError(Exception):
    """Base class of every error kws-edge raises on purpose."""

    #: exit status the CLI uses for this kind of error (2 = bad input)
    exit_code = 2


class ConfigError(KwsError, ValueError):
    """A configuration value, file or option is invalid."""


class AudioFormatError(KwsError, ValueError):
    """Audio is unreadable, empty, or in a format the SDK does not accept."""


class BundleError(KwsError):
    """A model bundle is missing, tampered with, or inconsistent."""


class BackendUnavailableError(KwsError, ImportError):
    """An optional dependency (interpreter, TensorFlow, sounddevice) is missing."""


class BudgetExceeded(KwsError):
    """A model does not fit a device profile's budgets."""

    exit_code = 1


class DataError(KwsError, ValueError):
    """A dataset folder is missing, empty or laid out wrongly."""


class RunError(KwsError):
    """A training run directory is missing, incomplete or already finished."""


class ConversionError(KwsError):
    """Conversion to TFLite failed or its result is not acceptable."""

    exit_code = 1


class RegistryError(KwsError):
    """The local model registry is inconsistent or an entry is missing."""
