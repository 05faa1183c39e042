"""The bundle digest: one SHA-256 over a manifest's content and every model file it names.

The model files' own hashes sit inside the manifest, so they were always checked; the manifest itself was
not: swapping two labels, a threshold or the normalisation went unnoticed. ``bundle_sha256`` covers the
canonical JSON of the whole manifest (every key except ``bundle_sha256`` itself, sorted, compact) and, per
model file, its name and SHA-256. It detects damage and careless edits; it is not a signature (anyone who
can edit the manifest can re-stamp it).

Re-stamp a bundle after editing its manifest; this also upgrades a format-1 or format-2 manifest in
place to the current format (typed provenance, metrics and budgets, :mod:`kws_edge.bundle.upgrade`)::

    python -m kws_edge.digest kws_edge/default_bundle [MORE_BUNDLE_DIRS...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import BundleError, KwsError

try:  # CPython's own SHA-256 (3.12+: _sha2, up to 3.11: _sha256): hashlib's OpenSSL costs 3.6 MiB of RSS
    from _sha2 import sha256
except ImportError:  # pragma: no cover - depends on the Python version
    try:
        from _sha256 import sha256
    except ImportError:  # an interpreter without the built-in modules
        from hashlib import sha256

__all__ = ["DIGEST_KEY", "bundle_digest", "stamp_bundle", "main"]

DIGEST_KEY = "bundle_sha256"
_DOMAIN = b"kws-edge bundle digest 1\n"


def _model_files(manifest: dict[str, Any]) -> list[str]:
    names = []
    for key in ("model", "streaming_model"):
        spec = manifest.get(key)
        if isinstance(spec, dict) and isinstance(spec.get("file"), str):
            names.append(spec["file"])
    return names


def bundle_digest(manifest: dict[str, Any], model_sha256: dict[str, str]) -> str:
    """SHA-256 (hex) of ``manifest`` without its digest key, plus ``name sha256`` of each model file."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        raise BundleError(f"the manifest cannot be digested ({exc})") from None
    h = sha256(_DOMAIN + text.encode("ascii"))
    for name in sorted(model_sha256):
        h.update(f"\n{name} {model_sha256[name]}".encode())
    return h.hexdigest()


def stamp_bundle(path: str | Path) -> str:
    """Recompute ``bundle_sha256`` of the bundle at ``path`` from its files; write the manifest atomically.

    Model hashes and sizes in the manifest are refreshed from the files too, and an older manifest is
    upgraded to the current format (every key it held keeps its value, in its typed place). The stamped
    bundle is then loaded (fully verified); returns the new digest.
    """
    from .bundle import MANIFEST_NAME, Manifest, load_bundle, sha256_bytes
    from .bundle.io import read_manifest_json
    from .bundle.upgrade import upgrade_manifest
    from .config import to_dict
    from .errors import ConfigError

    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    raw = upgrade_manifest(read_manifest_json(path, manifest_path))
    hashes = {}
    for key in ("model", "streaming_model"):
        spec = raw.get(key)
        if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
            continue
        try:
            data = (path / Path(spec["file"]).name).read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read {path / spec['file']}: {exc.strerror or exc}") from None
        spec["sha256"], spec["size_bytes"] = sha256_bytes(data), len(data)
        hashes[spec["file"]] = spec["sha256"]
    raw.pop(DIGEST_KEY, None)
    try:
        manifest = to_dict(Manifest.from_json_dict(raw))  # the current format, every section typed
    except ConfigError as exc:
        raise BundleError(f"{manifest_path} is invalid: {exc}") from None
    manifest[DIGEST_KEY] = bundle_digest(manifest, hashes)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    load_bundle(path)
    return manifest[DIGEST_KEY]


def main(argv: list[str] | None = None) -> int:
    """``python -m kws_edge.digest BUNDLE_DIR...``: re-stamp each bundle, print its digest."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0] + "\nusage: python -m kws_edge.digest BUNDLE_DIR [BUNDLE_DIR...]")
        return 0 if args else 2
    for arg in args:
        try:
            print(f"{arg}: {stamp_bundle(arg)}")
        except KwsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
