"""Bundles: the unit of deployment (``model.tflite`` + ``manifest.json``).

The manifest holds everything the runtime needs (labels, the full feature
configuration, normalisation, tensor quantisation, detection defaults) and
everything an auditor asks (hash, size, operators, provenance, metrics,
budgets). :func:`load_bundle` checks the format version, the model's SHA-256
and size, and the internal consistency of the manifest, and raises
:class:`~kws_edge.errors.BundleError` with a message a user can act on.
:func:`save_bundle` writes a whole bundle atomically.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_directory
from ..config import short_repr, to_dict
from ..digest import sha256
from ..errors import BundleError, ConfigError
from ..portable import portable_json
from .manifest import FORMAT_VERSION, MANIFEST_NAME, READABLE_FORMATS, Manifest, ModelFile
from .upgrade import upgrade_manifest

__all__ = ["Bundle", "load_bundle", "save_bundle", "default_bundle_path", "shipped_bundle_path", "SHIPPED_BUNDLES",
           "sha256_bytes", "read_manifest_json",
           "MAX_MANIFEST_BYTES", "MAX_MANIFEST_DEPTH"]

#: a manifest is a few tens of KB; one larger than this, or nested deeper, is damaged or hostile
MAX_MANIFEST_BYTES = 4 * 2**20
MAX_MANIFEST_DEPTH = 32


def sha256_bytes(data: bytes) -> str:
    return sha256(data).hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    manifest: Manifest
    model_bytes: bytes
    streaming_model_bytes: bytes | None = None
    #: things a user should know that do not stop the bundle from loading (e.g. a format-1 bundle has no digest)
    notes: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    def file(self, name: str) -> Path:
        return self.path / name


#: the bundles shipped inside the package, by name (``load_bundle("micro")``, ``kws detect --bundle micro``):
#: ``default`` for a Raspberry Pi class device, ``micro`` for a Cortex-M class one (training/recipes/make_bundle.sh)
SHIPPED_BUNDLES = ("default", "micro")


def shipped_bundle_path(name: str = "default") -> Path:
    """The directory of a bundle shipped inside the package (``SHIPPED_BUNDLES``)."""
    if name not in SHIPPED_BUNDLES:
        raise BundleError(f"no shipped bundle is called {short_repr(name)}; the shipped ones are "
                          f"{', '.join(SHIPPED_BUNDLES)}")
    return Path(__file__).resolve().parent.parent / f"{name}_bundle"


def default_bundle_path() -> Path:
    """The bundle shipped inside the package for a Raspberry Pi class device."""
    return shipped_bundle_path("default")


def _read_model(path: Path, spec: ModelFile) -> bytes:
    model_path = path / spec.file
    if Path(spec.file).name != spec.file:
        raise BundleError(f"model file name {spec.file!r} in {path / MANIFEST_NAME} must be a plain file name")
    try:
        data = model_path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"bundle {path} has no {spec.file}; copy the whole bundle directory again") from None
    except OSError as exc:
        raise BundleError(f"cannot read {model_path}: {exc.strerror or exc}") from None
    if len(data) != spec.size_bytes:
        raise BundleError(
            f"{model_path} is {len(data)} bytes but the manifest says {spec.size_bytes}: the file is "
            "truncated or was replaced; copy the bundle again"
        )
    digest = sha256_bytes(data)
    if digest != spec.sha256:
        raise BundleError(
            f"{model_path} does not match the SHA-256 in its manifest (tampered or corrupted); "
            "copy the bundle again or re-run kws-convert"
        )
    return data


def load_bundle(path: str | Path | None = None) -> Bundle:
    """Load and verify a bundle directory (default: the default bundle in the package).

    A name of ``SHIPPED_BUNDLES`` (``"micro"``) that is not a directory here means that shipped bundle.
    """
    path = Path(path) if path is not None else default_bundle_path()
    if str(path) in SHIPPED_BUNDLES and not path.exists():
        path = shipped_bundle_path(str(path))
    if not path.exists():
        raise BundleError(f"bundle {path} does not exist; pass --bundle with a directory made by kws-convert")
    if not path.is_dir():
        raise BundleError(f"bundle {path} is not a directory; a bundle is a directory with model.tflite and manifest.json")
    manifest_path = path / MANIFEST_NAME
    raw = read_manifest_json(path, manifest_path)
    version = raw.get("format_version")
    if version not in READABLE_FORMATS or isinstance(version, bool):
        hint = "upgrade kws-edge" if isinstance(version, int) and version > FORMAT_VERSION else "re-run kws-convert"
        raise BundleError(f"{manifest_path} has format_version {short_repr(version)}; this kws-edge reads "
                          f"{', '.join(map(str, READABLE_FORMATS))} ({hint})")
    try:
        manifest = Manifest.from_json_dict(upgrade_manifest(raw))
    except ConfigError as exc:
        raise BundleError(f"{manifest_path} is invalid: {exc}") from None
    manifest.check()
    model = _read_model(path, manifest.model)
    streaming = _read_model(path, manifest.streaming_model) if manifest.streaming_model else None
    notes = _check_digest(raw, manifest, manifest_path, model, streaming)
    return Bundle(path=path, manifest=manifest, model_bytes=model, streaming_model_bytes=streaming, notes=notes)


def read_manifest_json(path: Path, manifest_path: Path) -> dict[str, Any]:
    """The manifest as a JSON object, refusing oversize, over-nested and non-JSON files with one message."""
    try:
        with manifest_path.open("rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise BundleError(f"bundle {path} has no {MANIFEST_NAME}; it is not a kws-edge bundle") from None
    except OSError as exc:
        raise BundleError(f"cannot read {manifest_path}: {exc.strerror or exc}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{manifest_path} is larger than {MAX_MANIFEST_BYTES // 2**20} MiB; a manifest is a few "
                          "KB: copy the bundle again")
    if _nesting_depth(data) > MAX_MANIFEST_DEPTH:
        raise BundleError(f"{manifest_path} nests objects or lists deeper than {MAX_MANIFEST_DEPTH} levels; it is "
                          "damaged: copy the bundle again")
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BundleError(f"{manifest_path} is not UTF-8 text ({exc.reason}); copy the bundle again") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and int() of a 5000-digit number
        raise BundleError(f"{manifest_path} is not valid JSON ({str(exc)[:120]}); copy the bundle again") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{manifest_path} must hold a JSON object")
    return raw


def _nesting_depth(data: bytes) -> int:
    """Deepest ``[``/``{`` nesting of JSON bytes outside strings (a bound checked before parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_MANIFEST_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _check_digest(raw: dict[str, Any], manifest: Manifest, manifest_path: Path, model: bytes,
                  streaming: bytes | None) -> tuple[str, ...]:
    from ..digest import bundle_digest

    version = raw.get("format_version")
    if not manifest.bundle_sha256:
        if version >= 2:
            raise BundleError(f"{manifest_path} has no bundle_sha256 (format {version} requires "
                              "one); the manifest was edited: copy the bundle again or re-stamp it")
        return (f"{manifest_path.parent} is a format-1 bundle: its manifest is not covered by a digest (only the "
                "model files are); re-stamp it with: python -m kws_edge.digest " + str(manifest_path.parent),)
    hashes = {manifest.model.file: sha256_bytes(model)}
    if manifest.streaming_model is not None and streaming is not None:
        hashes[manifest.streaming_model.file] = sha256_bytes(streaming)
    if bundle_digest(raw, hashes) != manifest.bundle_sha256:
        raise BundleError(f"{manifest_path} does not match its bundle_sha256 (the manifest or a model was edited "
                          "or damaged); copy the bundle again or re-run kws-convert")
    return ()


def save_bundle(
    path: str | Path,
    manifest: Manifest,
    model_bytes: bytes,
    *,
    streaming_model_bytes: bytes | None = None,
    extra_files: dict[str, bytes] | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Write a bundle atomically; fills in the model files' SHA-256 and size.

    Returns the manifest as written.
    """
    model = dataclasses.replace(manifest.model, sha256=sha256_bytes(model_bytes), size_bytes=len(model_bytes))
    streaming = manifest.streaming_model
    if streaming_model_bytes is not None:
        if streaming is None:
            raise BundleError("streaming model bytes given but the manifest has no streaming_model entry")
        streaming = dataclasses.replace(streaming, sha256=sha256_bytes(streaming_model_bytes),
                                        size_bytes=len(streaming_model_bytes))
    # no string of a manifest carries the build machine's absolute paths (kws_edge.portable)
    manifest = dataclasses.replace(manifest, model=model, streaming_model=streaming, format_version=FORMAT_VERSION,
                                   bundle_sha256="")
    manifest = Manifest.from_json_dict(portable_json(to_dict(manifest)))
    manifest.check()
    from ..digest import bundle_digest

    hashes = {model.file: model.sha256, **({streaming.file: streaming.sha256} if streaming is not None else {})}
    manifest = dataclasses.replace(manifest, bundle_sha256=bundle_digest(to_dict(manifest), hashes))
    with atomic_directory(path, overwrite=overwrite) as tmp:
        (tmp / model.file).write_bytes(model_bytes)
        if streaming is not None and streaming_model_bytes is not None:
            (tmp / streaming.file).write_bytes(streaming_model_bytes)
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return manifest
