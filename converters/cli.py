"""``kws-convert``: filled by the conversion issue."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    print("kws-convert is not built yet (see the conversion issue)", file=sys.stderr)
    sys.exit(2)
