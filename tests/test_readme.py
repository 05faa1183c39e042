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


# -- the Python snippet, run verbatim ------------------------------------------------------------------

DATA = ROOT / "tests" / "data"
REAL_YES = ROOT.parent / "shared" / "data" / "speech_commands_subset" / "yes"
if not REAL_YES.is_dir():
    REAL_YES = Path("/work/shared/data/speech_commands_subset/yes")


def readme_snippet() -> str:
    """The one Python block of the README's "Python API" section, exactly as printed."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section should hold one Python block"
    return blocks[0]


#: runs snippet.py from the current folder; NO_AUDIO hides sounddevice (as without the audio extra),
#: BUNDLE (the tone test bundle) stands in for the shipped one where the shipped model cannot hear the clip
_RUNNER = """
import os, runpy, sys
if os.environ.get("NO_AUDIO"):
    sys.modules["sounddevice"] = None
if os.environ.get("BUNDLE"):
    import pathlib, kws_edge.bundle
    kws_edge.bundle.default_bundle_path = lambda: pathlib.Path(os.environ["BUNDLE"])
runpy.run_path("snippet.py", run_name="__main__")
"""


def _snippet_dir(tmp_path: Path, yes_wav: Path) -> Path:
    import shutil

    (tmp_path / "snippet.py").write_text(readme_snippet(), encoding="utf-8")
    shutil.copy(yes_wav, tmp_path / "yes.wav")
    return tmp_path


def _run_snippet(folder: Path, **env: str):
    import os
    import subprocess
    import sys

    from conftest import kws_subprocess_env

    return subprocess.Popen([sys.executable, "-c", _RUNNER], cwd=folder, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**kws_subprocess_env(), **env})


def test_snippet_hears_a_1_s_clip_and_says_in_one_line_that_the_microphone_needs_the_extra(tmp_path):
    from kws_edge import read_wav

    clip = DATA / "tone_yes.wav"
    assert read_wav(clip).duration_s == 1.0
    proc = _run_snippet(_snippet_dir(tmp_path, clip), NO_AUDIO="1", BUNDLE=str(DATA / "tone_bundle"))
    out, err = proc.communicate(timeout=120)
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].split()[0] == "yes", out  # the detection comes from det.flush()
    assert float(lines[0].split()[2]) <= 1.5
    assert err.strip() == 'error: the microphone needs the sounddevice package: pip install "kws-edge[audio]"'
    assert proc.returncode == 1


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_YES.is_dir(), reason="no Speech Commands subset here")
def test_snippet_with_the_shipped_model_on_a_real_1_s_yes(tmp_path):
    clip = sorted(REAL_YES.glob("*.wav"))[0]
    proc = _run_snippet(_snippet_dir(tmp_path, clip), NO_AUDIO="1")
    out, err = proc.communicate(timeout=120)
    assert out.split()[:1] == ["yes"], (out, err)
    assert "Traceback" not in err and proc.returncode == 1


@pytest.mark.mic
def test_snippet_hears_the_virtual_microphone_and_ends_cleanly_on_ctrl_c(virtual_mic, tmp_path):
    import signal
    import subprocess
    import time

    import numpy as np

    import make_tone_bundle as tones
    from kws_edge.audio import write_wav

    folder = _snippet_dir(tmp_path, DATA / "tone_yes.wav")
    speech = tmp_path / "spoken.wav"
    write_wav(speech, tones.stream([("yes", 0.5)], 2.5, np.random.default_rng(5)), 16000)
    proc = _run_snippet(folder, BUNDLE=str(DATA / "tone_bundle"))
    try:
        first = proc.stdout.readline()
        assert first.split()[:1] == ["yes"], first  # the file, after flush()
        time.sleep(1.0)  # the microphone is open by now
        subprocess.run(["paplay", f"--device={virtual_mic}", str(speech)], check=True, timeout=30)
        second = proc.stdout.readline()  # blocks until the microphone's detection
        assert second.split()[:1] == ["yes"] and float(second.split()[2]) > float(first.split()[2]), second
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in err, err
