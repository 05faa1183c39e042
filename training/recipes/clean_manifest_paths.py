"""Replace the build machine's absolute paths in a bundle manifest by their names (kws_edge.portable).

    python training/recipes/clean_manifest_paths.py kws_edge/default_bundle/manifest.json

Only path strings in ``provenance`` and ``budgets`` change (``/work/x/ship/run`` -> ``run``); every
recorded fact (commits, hashes, metrics) stays as it was. Idempotent; the file is replaced atomically.
Bundles written by kws-convert since then carry no absolute paths in the first place.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kws_edge.atomic import atomic_write_text
from kws_edge.portable import absolute_paths_in, portable_json


def clean_manifest(path: Path) -> int:
    """Rewrite ``path`` without absolute paths; returns how many strings changed."""
    manifest = json.loads(path.read_text(encoding="utf-8"))
    changed = 0
    for section in ("provenance", "budgets"):
        if section in manifest:
            changed += len(absolute_paths_in(manifest[section]))
            manifest[section] = portable_json(manifest[section])
    if changed:
        atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
        if (path.parent / str((manifest.get("model") or {}).get("file", ""))).is_file():
            from kws_edge.digest import stamp_bundle

            stamp_bundle(path.parent)  # the manifest changed: its bundle digest follows
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifests", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.manifests:
        if not path.is_file():
            print(f"error: {path}: no such file", file=sys.stderr)
            return 2
        print(f"{path}: {clean_manifest(path)} absolute paths replaced by their names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
