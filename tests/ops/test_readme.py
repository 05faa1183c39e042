"""README.md as a new user reads it: its links lead somewhere in the project, its Python snippet runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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
    import pathlib, kws_edge.bundle.io
    kws_edge.bundle.io.default_bundle_path = lambda: pathlib.Path(os.environ["BUNDLE"])  # where load_bundle looks
runpy.run_path("snippet.py", run_name="__main__")
"""


def _snippet_dir(tmp_path: Path, yes_wav: Path) -> Path:
    import shutil

    (tmp_path / "snippet.py").write_text(readme_snippet(), encoding="utf-8")
    shutil.copy(yes_wav, tmp_path / "yes.wav")
    return tmp_path


def _run_snippet(folder: Path, **env: str):
    import signal
    import subprocess
    import sys

    from support.processes import kws_subprocess_env

    # SIGINT as a terminal gives it: a suite started in the background of a non-interactive shell inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler (Ctrl-C would do nothing)
    return subprocess.Popen([sys.executable, "-c", _RUNNER], cwd=folder, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**kws_subprocess_env(), **env},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


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

    from support import tone_bundle as tones
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


# -- the command lines, as printed ---------------------------------------------------------------------


def readme_commands() -> list[tuple[str, list[str]]]:
    """Every ``kws``, ``kws-train`` and ``kws-convert`` line of the README's shell blocks, as tokens."""
    import shlex

    commands, inside, lang, pending = [], False, "", ""
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside, lang = (False, "") if inside else (True, line[3:].strip())
            continue
        if not inside or lang not in ("", "bash"):
            continue
        line = f"{pending} {line.strip()}" if pending else line
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1]
            continue
        pending = ""
        code = line.split("  #")[0].strip()
        m = re.match(r"(?:TF_CONFIG=\S+\s+)?(kws(?:-train|-convert)?)\s+(.*)", code)
        if m:
            commands.append((m.group(1), shlex.split(m.group(2).replace("[", " ").replace("]", " ")
                                                     .replace("|", " ").replace("...", " "))))
    return commands


def _command(program: str, args: list[str]):
    """The click command a README line runs, and every option it and its subcommands take."""
    import click

    if program == "kws-train":
        from kws_edge.training.cli import train_command as cmd
    elif program == "kws-convert":
        from kws_edge.converters.cli import convert_command as cmd
    else:
        import kws_edge.cli.commands  # noqa: F401  (registers the subcommands)
        from kws_edge.cli import cli

        cmd = cli.get_command(None, args[0])  # the runtime's own commands and those registered from above
        assert cmd is not None, f"kws {args[0]}: no such command"
    commands = [cmd, *(cmd.commands.values() if isinstance(cmd, click.Group) else [])]
    options = {o for c in commands for p in c.params for o in (*p.opts, *p.secondary_opts)}
    return cmd, options


def test_readme_lists_the_command_lines_it_should():
    programs = {(p, a[0] if p == "kws" else "") for p, a in readme_commands()}
    for expected in [("kws", "detect"), ("kws", "info"), ("kws", "pipeline"), ("kws", "registry"), ("kws", "serve"),
                     ("kws-train", ""), ("kws-convert", "")]:
        assert expected in programs, expected


@pytest.mark.parametrize("program, args", readme_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_option_the_readme_prints_exists(program, args):
    cmd, options = _command(program, args)
    for token in args:
        if token.startswith("-"):
            assert token.split("=")[0] in options, f"{program} {args[0]}: the README's {token} is not an option"
    if "--model" in args:  # the architectures the README names are the registry's
        from kws_edge.training.models import ARCHITECTURES

        named = args[args.index("--model") + 1:]
        assert set(ARCHITECTURES) <= set(named), sorted(set(ARCHITECTURES) - set(named))
