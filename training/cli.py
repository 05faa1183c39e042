"""``kws-train``: filled by the training issue."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    print("kws-train is not built yet (see the training issue)", file=sys.stderr)
    sys.exit(2)
