"""The live view behind ``kws serve`` (the ``workstation`` extra: aiohttp).

:mod:`.live` (no web library) turns a detector and an audio source
into JSON events; :mod:`.server` serves them to a self-contained page
over Server-Sent Events. The runtime never imports this package; importing
:mod:`.server` without aiohttp raises
:class:`~kws_edge.errors.BackendUnavailableError` naming the extra to install.
"""

from .live import DetectorPump, FileSource, LiveState, level_dbfs

__all__ = ["DetectorPump", "FileSource", "LiveState", "level_dbfs"]
