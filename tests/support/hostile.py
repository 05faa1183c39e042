"""Helpers of the hostile-input tests (issue 22): run ``kws`` in-process, check the one-line error promise."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from kws_edge.cli import cli, run_cli

import kws_edge.cli.commands  # noqa: F401,E402  (registers the subcommands)


def run_kws(capfd, *argv) -> tuple[int, str, str]:
    """``kws ARGV`` through the console script's own error presentation: (exit status, stdout, stderr)."""
    capfd.readouterr()
    code = run_cli(cli, [str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, match: str | None = None, status: int = 2) -> str:
    """Exit ``status``, exactly one ``error:`` line on stderr (notes allowed before it), no traceback."""
    assert "Traceback" not in err, err
    assert code == status, (code, err)
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("note: ")]
    assert len(lines) == 1, f"expected one error line on stderr, got: {err!r}"
    assert lines[0].startswith("error: "), lines[0]
    if match:
        assert match in lines[0], lines[0]
    return lines[0]


def wav_header(*, rate_hz: int = 16000, channels: int = 1, bits: int = 16, format_tag: int = 1,
               data_bytes: int, riff_bytes: int | None = None) -> bytes:
    """A canonical 44-byte WAV header with every field under the caller's control."""
    block_align = channels * bits // 8
    riff = 36 + data_bytes if riff_bytes is None else riff_bytes
    return (b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, format_tag, channels, rate_hz & 0xFFFFFFFF,
                                    (rate_hz * block_align) & 0xFFFFFFFF, block_align & 0xFFFF, bits)
            + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KB tmpfs to fill up (needs root); skipped with the reason when mounting is not permitted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave_bytes: int) -> None:
    """Fill ``disk`` until about ``leave_bytes`` are free."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    (disk / "filler").write_bytes(bytes(max(0, free - leave_bytes)))
