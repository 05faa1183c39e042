"""Frozen-dataclass configuration that round-trips through JSON and TOML.

Every configuration in kws-edge is a small frozen dataclass. ``to_dict`` turns
one into plain JSON types; ``from_dict`` builds one back and rejects unknown
keys and wrong types with a :class:`~kws_edge.errors.ConfigError` that names
the key, so a typo in a config file is one clear line, not a silent default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10 on older Pi OS: the tomli backport, same API
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

__all__ = ["to_dict", "from_dict", "load_toml", "config_hash", "flatten"]

T = TypeVar("T")
#: integers in configurations and manifests stay within int64 (a JSON number may have thousands of digits)
MAX_CONFIG_INT = 2**63 - 1
_UnionType = getattr(types, "UnionType", None)  # Python >= 3.10


def to_dict(config: Any) -> dict[str, Any]:
    """Return a dataclass as a dict of JSON types (tuples become lists)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{type(config).__name__} is not a dataclass")
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flatten(value: Any, *, index_lists: bool = False, prefix: str = "") -> dict[str, Any]:
    """A JSON value as ``{"a.b.c": leaf}`` (nested objects joined with dots).

    Lists are leaves (kept whole) unless ``index_lists``, which gives each item its index as a key
    (``"a.0"``, ``"a.1"``). An empty object or list at the top gives ``{}``.
    """
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(flatten(v, index_lists=index_lists, prefix=f"{prefix}{k}."))
    elif isinstance(value, (list, tuple)) and index_lists:
        for i, v in enumerate(value):
            out.update(flatten(v, index_lists=index_lists, prefix=f"{prefix}{i}."))
    elif prefix:
        out[prefix[:-1]] = list(value) if isinstance(value, tuple) else value
    return out


def config_hash(config: Any) -> str:
    """SHA-256 of a dataclass's (or a JSON object's) canonical JSON form (sorted keys)."""
    import hashlib

    text = json.dumps(config if isinstance(config, dict) else to_dict(config), sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def from_dict(cls: type[T], data: Any, *, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, strictly.

    Unknown keys and values of the wrong type raise ``ConfigError``; missing
    keys take the dataclass default; keys of fields the class computes itself
    (``field(init=False)``) are accepted and recomputed. ``where`` prefixes key names in messages
    (for example ``"train."``).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__} must be a table/object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    # fields the class computes itself (init=False) are written for readers and recomputed here
    derived = {f.name for f in dataclasses.fields(cls) if not f.init}
    unknown = sorted(set(data) - set(fields) - derived)
    if unknown:
        raise ConfigError(
            f"unknown key {where + unknown[0]!r} in {cls.__name__}; "
            f"known keys: {', '.join(sorted(fields))}"
        )
    kwargs = {name: _coerce(hints[name], data[name], f"{where}{name}") for name in data if name in fields}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__name__}: {exc}") from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or (_UnionType is not None and origin is _UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {short_repr(value)}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=f"{key}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {short_repr(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{key} must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table/object, got {short_repr(value)}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(kt, k, key): _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {short_repr(value)}")
        return [_coerce(args[0] if args else Any, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}, got {short_repr(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {short_repr(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {short_repr(value)}")
        if not -MAX_CONFIG_INT <= value <= MAX_CONFIG_INT:
            raise ConfigError(f"{key} = {short_repr(value)} is out of range (at most {MAX_CONFIG_INT:.3g} in size)")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {short_repr(value)}")
        if isinstance(value, int) and not -MAX_CONFIG_INT <= value <= MAX_CONFIG_INT:
            raise ConfigError(f"{key} = {short_repr(value)} is out of range (at most {MAX_CONFIG_INT:.3g} in size)")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {short_repr(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {short_repr(value)}")
        return value
    return value


def short_repr(value: Any) -> str:
    """``repr(value)``, cut to a readable length (a hostile file may hold megabytes in one value)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
    return text if len(text) <= 80 else text[:77] + "..."


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing file or bad syntax raises ``ConfigError``."""
    path = Path(path)
    if tomllib is None:  # pragma: no cover
        raise ConfigError("reading TOML on Python < 3.11 needs the tomli package: pip install tomli")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
                          "save it as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests tables or arrays too deeply") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
