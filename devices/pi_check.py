"""Helpers of ``devices/emulate_pi.sh`` (the emulated Raspberry Pi check).

Standard library only (runs on the host before anything else and inside
old Python 3.9 chroots)::

    python3 devices/pi_check.py audio OUT_DIR WAV...     # test audio: the clips + a stream of them
    python3 devices/pi_check.py cpuinfo pi4|pi5|pi3-armhf > cpuinfo.txt
    python3 devices/pi_check.py compare X86_DIR PI_DIR  # exit 1 on mismatch

``compare`` reads ``classify.jsonl`` and ``detect.jsonl`` from both folders:
classify labels must be equal and every class score within one int8 output
step (1/256; MFCC float differences between machines are ~1e-13, so in
practice scores are identical); detections must be the same events (label,
time within 1 ms, score within 1/256).
"""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path

SCORE_TOL = 1.0 / 256 + 1e-6
TIME_TOL_S = 0.001

_CPUINFO = {
    # Raspberry Pi 4 (BCM2711, Cortex-A72), as its kernel prints it
    "pi4": ("processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
            "CPU revision\t: 3\n\n", "Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 100000000000000\n"
            "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n"),
    # Raspberry Pi 5 (BCM2712, Cortex-A76)
    "pi5": ("processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
            "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
            "CPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n",
            "Revision\t: d04170\nSerial\t\t: 100000000000000\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"),
    # Raspberry Pi 3 B running 32-bit Pi OS (Cortex-A53 in AArch32)
    "pi3-armhf": ("processor\t: {i}\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nBogoMIPS\t: 38.40\n"
                  "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm "
                  "crc32\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xd03\n"
                  "CPU revision\t: 4\n\n", "Hardware\t: BCM2835\nRevision\t: a02082\n"
                  "Serial\t\t: 100000000000000\nModel\t\t: Raspberry Pi 3 Model B Rev 1.2\n"),
}


def cpuinfo(kind: str) -> str:
    per_cpu, tail = _CPUINFO[kind]
    return "".join(per_cpu.format(i=i) for i in range(4)) + tail


def _read_pcm16(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise SystemExit(f"{path}: expected mono 16-bit PCM")
        return w.readframes(w.getnframes()), w.getframerate()


def make_audio(out_dir: Path, wavs: list[Path]) -> list[Path]:
    """Copy the clips and write ``stream.wav``: each clip twice, 0.5 s of silence between."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pieces, rate, written = [], None, []
    for p in wavs:
        data, sr = _read_pcm16(p)
        rate = rate or sr
        if sr != rate:
            raise SystemExit(f"{p}: sample rate {sr} differs from {rate}")
        target = out_dir / p.name
        target.write_bytes(p.read_bytes())
        written.append(target)
        pieces.append(data)
    gap = b"\x00\x00" * (rate // 2)
    stream = gap + gap.join(pieces + pieces) + gap
    with wave.open(str(out_dir / "stream.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(stream)
    return written + [out_dir / "stream.wav"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _scores(rec: dict) -> dict:
    s = rec.get("scores", {})
    return s if isinstance(s, dict) else {str(i): v for i, v in enumerate(s)}


def _key(rec: dict) -> str:
    return Path(str(rec.get("file", ""))).name


def compare(x86_dir: Path, pi_dir: Path) -> list[str]:
    """Differences between the two result sets (empty when they agree)."""
    problems: list[str] = []
    worst = 0.0
    a, b = _jsonl(x86_dir / "classify.jsonl"), _jsonl(pi_dir / "classify.jsonl")
    if len(a) != len(b) or not a:
        problems.append(f"classify: {len(a)} results on x86, {len(b)} on the Pi")
    for ra, rb in zip(sorted(a, key=_key), sorted(b, key=_key)):
        if _key(ra) != _key(rb) or ra.get("label") != rb.get("label"):
            problems.append(f"classify {_key(ra)}: x86 {ra.get('label')} vs Pi {_key(rb)} {rb.get('label')}")
        sa, sb = _scores(ra), _scores(rb)
        if set(sa) != set(sb):
            problems.append(f"classify {_key(ra)}: score keys differ")
            continue
        for k in sa:
            d = abs(float(sa[k]) - float(sb[k]))
            worst = max(worst, d)
            if d > SCORE_TOL:
                problems.append(f"classify {_key(ra)} {k}: {sa[k]} vs {sb[k]}")
    a, b = _jsonl(x86_dir / "detect.jsonl"), _jsonl(pi_dir / "detect.jsonl")
    ev = lambda rs: sorted((_key(r), str(r.get("label")), float(r.get("time_s", -1)), float(r.get("score", -1)))  # noqa: E731
                           for r in rs)
    ea, eb = ev(a), ev(b)
    if len(ea) != len(eb):
        problems.append(f"detect: {len(ea)} detections on x86, {len(eb)} on the Pi: {ea} vs {eb}")
    for da, db in zip(ea, eb):
        if da[:2] != db[:2] or abs(da[2] - db[2]) > TIME_TOL_S or abs(da[3] - db[3]) > SCORE_TOL:
            problems.append(f"detect: x86 {da} vs Pi {db}")
        worst = max(worst, abs(da[3] - db[3]))
    print(f"compared {len(_jsonl(x86_dir / 'classify.jsonl'))} classify results and {len(ea)} detections; "
          f"largest score difference {worst:.2e}", file=sys.stderr)
    return problems


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "audio":
        for p in make_audio(Path(argv[1]), [Path(a) for a in argv[2:]]):
            print(p)
        return 0
    if len(argv) == 2 and argv[0] == "cpuinfo":
        sys.stdout.write(cpuinfo(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        problems = compare(Path(argv[1]), Path(argv[2]))
        for p in problems:
            print("MISMATCH " + p)
        if not problems:
            print("emulated Pi results match x86")
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
