"""``kws detect``, ``kws classify``, ``kws info``, ``kws listen`` (runtime issue)."""

from __future__ import annotations

from . import cli  # noqa: F401
