"""Imports point one way between the rooms (docs/ARCHITECTURE.md), function-level imports included.

runtime (``kws_edge`` proper, with ``kws_edge.devices``) <- training <- converters <- pipeline; the
workstation tools import only the runtime; the pipeline may use them. The test reads every module's
source (AST), resolves every ``import`` and ``from ... import`` (relative ones too, at any depth in
the code), and fails naming the file, the line and the rule broken. The runtime also never imports the
heavy libraries of the rooms above it, whatever the room.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: where each room's package lives in the repository (pyproject.toml's package-dir)
FOLDERS = {
    "kws_edge": ROOT / "kws_edge",
    "kws_edge.devices": ROOT / "devices",
    "kws_edge.training": ROOT / "training",
    "kws_edge.converters": ROOT / "converters",
    "kws_edge.pipeline": ROOT / "pipeline",
    "kws_edge.workstation": ROOT / "workstation",
}
#: room -> the rooms it may import from
ALLOWED = {
    "runtime": {"runtime"},
    "workstation": {"runtime", "workstation"},
    "training": {"runtime", "training"},
    "converters": {"runtime", "training", "converters"},
    "pipeline": {"runtime", "training", "converters", "pipeline", "workstation"},
}
#: libraries the runtime never imports (they come with the train and workstation extras)
NOT_IN_RUNTIME = {"tensorflow", "keras", "tf_keras", "matplotlib", "filelock", "aiohttp", "mlflow", "scipy"}


def room_of(module: str) -> str | None:
    """The room of a ``kws_edge`` module name, None for anything else."""
    parts = module.split(".")
    if parts[0] != "kws_edge":
        return None
    if len(parts) > 1 and parts[1] in ("training", "converters", "pipeline", "workstation"):
        return parts[1]
    return "runtime"


def modules() -> list[tuple[str, Path, bool]]:
    """``(module name, file, is a package __init__)`` of every module of every room."""
    out = []
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if package == "kws_edge" and rel.parts[0] in ("default_bundle", "micro_bundle"):
                continue
            if rel.parts[0] == "recipes":  # scripts that run the rooms, not part of any (not installed)
                continue
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            out.append((".".join([package, *parts]), path, is_package))
    return out


def imports(module: str, path: Path, is_package: bool) -> list[tuple[str, int]]:
    """Every module ``path`` imports, absolute, with its line; at any depth (function bodies too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from kws_edge import training`` imports the sub-package itself
            found += [(f"{target}.{alias.name}" if room_of(f"{target}.{alias.name}") != room_of(target) else target,
                       node.lineno) for alias in node.names]
    return found


ALL = modules()


def test_every_room_has_modules():
    rooms = {room_of(name) for name, _, _ in ALL}
    assert rooms == set(ALLOWED)
    assert len(ALL) > 60


@pytest.mark.parametrize("module, path, is_package", ALL, ids=[name for name, _, _ in ALL])
def test_imports_point_one_way(module, path, is_package):
    room = room_of(module)
    wrong = []
    for target, line in imports(module, path, is_package):
        target_room = room_of(target)
        if target_room is not None and target_room not in ALLOWED[room]:
            wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({room} may import only "
                         f"{', '.join(sorted(ALLOWED[room]))})")
        if room == "runtime" and target.split(".")[0] in NOT_IN_RUNTIME:
            wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} (not in the runtime)")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from ..training import fit\n    import kws_edge.pipeline.stages\n")
    found = dict(imports("kws_edge.cli.m", source, False))
    assert found == {"kws_edge.training": 2, "kws_edge.pipeline.stages": 3}
    assert {room_of(t) for t in found} == {"training", "pipeline"}  # both against the runtime's rule
