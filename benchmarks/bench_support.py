"""State shared by the benchmark modules and their conftest (kept out of ``conftest`` so that a
``tests/conftest.py`` in the same pytest session can never shadow it)."""

from __future__ import annotations

#: the minimum ratio naive / streaming CPU per second of audio (issue 5)
MIN_STREAMING_SPEEDUP = 10.0

#: measured figures for the closing summary, name -> text (not gates)
FIGURES: dict[str, str] = {}


def record_figure(name: str, text: str) -> None:
    """A measured figure for the closing summary and the JSON (not a gate)."""
    FIGURES[name] = text
