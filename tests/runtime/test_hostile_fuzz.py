"""Fuzz (issue 22): generated malformed WAV files and manifests through ``kws detect``, ``kws info`` and
``KeywordDetector.from_bundle()``.

The promise: a clean success, or exactly one ``error:`` line and exit status 2; never an exception escaping
the CLI (a traceback), a RuntimeWarning (NaN arithmetic on damaged values), or a case running over
``CASE_LIMIT_S`` (a hang or a memory bomb). Hypothesis generates the cases, derandomized (a fixed seed), so
every run tries the same ones; the counts are printed (``-s``) and every failure is listed.

    python -m pytest -q -s tests/runtime/test_hostile_fuzz.py
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from support.hostile import run_kws  # noqa: E402

#: generated cases per target (about a minute in all on the shared CI machine)
N_WAV_CASES = 1000
N_MANIFEST_CASES = 500
CASE_LIMIT_S = 10


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang(f"over {CASE_LIMIT_S} s")


class Tally:
    def __init__(self, name: str) -> None:
        self.name, self.cases, self.successes, self.failures = name, 0, 0, []

    def check(self, label: str, fn) -> None:
        """Run ``fn() -> (code, err)`` and judge it against the promise."""
        self.cases += 1
        code = None
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(CASE_LIMIT_S)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                code, err = fn()
            problem = _judge(code, err)
            bad_warnings = [w for w in caught if issubclass(w.category, RuntimeWarning)]
            if problem is None and bad_warnings:
                problem = f"RuntimeWarning: {bad_warnings[0].message}"
        except _Hang as exc:
            problem = f"hang: {exc}"
        except BaseException as exc:  # noqa: BLE001 - anything escaping is what the fuzz looks for
            problem = f"traceback: {type(exc).__name__}: {str(exc)[:120]}"
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        if problem is not None:
            self.failures.append(f"{label}: {problem}")
        elif code == 0:
            self.successes += 1

    def report(self) -> str:
        return (f"{self.name}: {self.cases} cases, {len(self.failures)} failed "
                f"({self.successes} clean successes, the rest refused with one line)")


def _judge(code, err: str):
    if "Traceback" in err:
        return "traceback on stderr"
    lines = [ln for ln in err.strip().splitlines() if ln and not ln.startswith("note: ")]
    if code == 0:
        return None if not any(ln.startswith("error") for ln in lines) else f"exit 0 with {lines[0][:100]}"
    if code != 2:
        return f"exit status {code}: {err.strip()[:160]}"
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"exit 2 with {len(lines)} lines: {err.strip()[:160]}"
    return None


# ---------------------------------------------------------------- WAV files
_U32 = st.integers(0, 2**32 - 1)
_U16 = st.integers(0, 2**16 - 1)


@st.composite
def wav_files(draw) -> bytes:
    """Half start from a valid file with one field made hostile (or none), half are hostile throughout."""
    hostile_fields = set(draw(st.sets(st.sampled_from(
        ["rate", "channels", "tag", "bits", "align", "fmt_size", "data_size", "riff", "magic", "extra", "cut"]),
        max_size=1))) if draw(st.booleans()) else None

    def pick(field, valid, hostile):
        if hostile_fields is None or field in hostile_fields:
            return draw(st.one_of(valid, hostile)) if hostile_fields is None else draw(hostile)
        return draw(valid)

    rate = pick("rate", st.sampled_from([8000, 16000, 22050, 44100, 48000]),
                st.one_of(st.sampled_from([0, 1, 2, 3999, 768001, 767999, 2**31 - 1, 2**32 - 1]), _U32))
    channels = pick("channels", st.just(1), st.one_of(st.sampled_from([0, 2, 64, 65, 2**16 - 1]), _U16))
    tag, bits = pick("tag", st.sampled_from([(1, 16), (1, 8), (1, 24), (1, 32), (3, 32), (3, 64), (0xFFFE, 16)]),
                     st.tuples(st.sampled_from([6, 7, 2, 0, 0xFFFF, 1, 3]), st.sampled_from([8, 16, 12, 0])))
    if hostile_fields is None or "bits" in hostile_fields:
        bits = draw(st.sampled_from([bits, 0, 1, 12, 2**16 - 1]))
    align = (channels * bits // 8) & 0xFFFF
    align = pick("align", st.just(align), _U16)
    fmt_size = pick("fmt_size", st.just(40 if tag == 0xFFFE else 16), st.sampled_from([0, 8, 15, 17, 4097,
                                                                                        2**32 - 1]))
    n_frames = draw(st.integers(0, 3000))
    payload_kind = draw(st.sampled_from(["zeros", "random", "random", "nan", "huge"]))
    n_bytes = min(n_frames * max(1, align), 200_000)
    if payload_kind == "zeros":
        payload = bytes(n_bytes)
    elif payload_kind == "random":
        payload = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 256, n_bytes, np.uint8).tobytes()
    elif payload_kind == "nan":
        payload = (np.full(n_bytes // 4 + 1, np.nan, "<f4").tobytes())[:n_bytes]
    else:
        payload = (np.full(n_bytes // 4 + 1, 3e38, "<f4").tobytes())[:n_bytes]
    data_size = pick("data_size", st.just(len(payload)), st.one_of(_U32, st.just(len(payload) * 10)))
    fmt_body = tag.to_bytes(2, "little") + channels.to_bytes(2, "little") \
        + rate.to_bytes(4, "little") + ((rate * align) & 0xFFFFFFFF).to_bytes(4, "little") \
        + align.to_bytes(2, "little") + bits.to_bytes(2, "little")
    if 16 < fmt_size < 100:
        extra = bytearray(fmt_size - 16)
        if tag == 0xFFFE and len(extra) >= 10:
            extra[8:10] = draw(st.sampled_from([b"\x01\x00", b"\x03\x00", b"\x06\x00"]))
        fmt_body += bytes(extra)
    chunks = b"fmt " + fmt_size.to_bytes(4, "little") + fmt_body
    if hostile_fields is None or "extra" in hostile_fields or draw(st.integers(0, 3)) == 0:
        cid = draw(st.sampled_from([b"LIST", b"bext", b"JUNK", b"data", b"fmt ", b"\x00\x00\x00\x00"]))
        size = draw(st.integers(0, 64)) if hostile_fields is not None and "extra" not in hostile_fields \
            else draw(st.one_of(st.integers(0, 64), _U32))
        if hostile_fields is not None and "extra" not in hostile_fields:
            cid = draw(st.sampled_from([b"LIST", b"bext", b"JUNK"]))
        pad = bytes(min(size, 64) + (min(size, 64) & 1))
        chunk = cid + size.to_bytes(4, "little") + pad
        chunks = (chunks + chunk) if draw(st.booleans()) else (chunk + chunks)
    body = b"WAVE" + chunks + b"data" + data_size.to_bytes(4, "little") + payload
    riff = pick("riff", st.just(len(body)), _U32)
    magic = pick("magic", st.just(b"RIFF"), st.sampled_from([b"RIFX", b"RIFf", b"\x00\x00\x00\x00"]))
    data = magic + riff.to_bytes(4, "little") + body
    if hostile_fields is None or "cut" in hostile_fields:
        if draw(st.booleans()):
            data = data[:draw(st.integers(0, len(data)))]
    return data


def test_fuzz_wav_headers_through_kws_detect(capfd, tmp_path, tone_bundle_path):
    tally = Tally("WAV files through kws detect")
    path = tmp_path / "fuzz.wav"

    @settings(max_examples=N_WAV_CASES, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(wav_files())
    def case(data):
        path.write_bytes(data)

        def run():
            code, out, err = run_kws(capfd, "detect", path, "--bundle", tone_bundle_path)
            return code, err

        tally.check(data[:48].hex(), run)

    case()
    print("\n" + tally.report())
    assert tally.cases >= N_WAV_CASES * 0.9
    assert not tally.failures, f"{tally.report()}:\n" + "\n".join(tally.failures[:30])


# ---------------------------------------------------------------- manifests
_FUZZ = "__FUZZ_VALUE__"


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:12]):
            yield from _paths(v, prefix + (i,))


def _json_value_text(draw) -> str:
    kind = draw(st.sampled_from(["special", "number", "int", "string", "nest", "list", "object", "bool"]))
    if kind == "special":
        return draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e308", "1e-300", "-0.0",
                                     "null"]))
    if kind == "number":
        return repr(draw(st.floats(allow_nan=False, allow_infinity=False, width=64)))
    if kind == "int":
        return str(draw(st.one_of(st.integers(-2**70, 2**70), st.sampled_from([0, -1, 2**31, 2**63, 10**50,
                                                                               10**4000]))))
    if kind == "string":
        return json.dumps(draw(st.text(max_size=30)))
    if kind == "nest":
        d = draw(st.sampled_from([2, 10, 33, 500, 5000, 100_000]))
        return "[" * d + "]" * d
    if kind == "list":
        return json.dumps(draw(st.lists(st.one_of(st.integers(-5, 5), st.floats(allow_nan=False)), max_size=70)))
    if kind == "object":
        return json.dumps(draw(st.dictionaries(st.text(max_size=8), st.integers(-3, 3), max_size=4)))
    return draw(st.sampled_from(["true", "false"]))


@st.composite
def manifest_edits(draw, base: dict):
    paths = list(_paths(base))
    target = draw(st.sampled_from(paths[1:]))
    action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
    value = _json_value_text(draw)
    stamp = draw(st.integers(0, 4)) > 0  # most cases carry a valid digest, so the deeper checks are reached
    return target, action, value, stamp


def _apply(base: dict, target, action) -> str:
    doc = json.loads(json.dumps(base))
    parent = doc
    for k in target[:-1]:
        parent = parent[k]
    last = target[-1]
    if action == "delete" and isinstance(parent, dict):
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent["fuzz_extra_key"] = _FUZZ
    else:
        parent[last] = _FUZZ
    return json.dumps(doc, indent=1)


def _stamp(text: str, bundle: Path) -> str:
    try:
        from kws_edge.digest import bundle_digest
    except ImportError:  # kws-edge before the digest: nothing to stamp
        return text
    from kws_edge.bundle import sha256_bytes

    try:
        raw = json.loads(text)
        hashes = {}
        for key in ("model", "streaming_model"):
            spec = raw.get(key)
            if isinstance(spec, dict) and isinstance(spec.get("file"), str) and (bundle / spec["file"]).is_file():
                hashes[spec["file"]] = sha256_bytes((bundle / spec["file"]).read_bytes())
        raw["bundle_sha256"] = bundle_digest(raw, hashes)
        return json.dumps(raw)
    except Exception:  # noqa: BLE001 - unparseable or undigestable: written as it is
        return text


def test_fuzz_manifests_through_kws_info_detect_and_from_bundle(capfd, tmp_path, tone_bundle_path):
    from kws_edge.detector import KeywordDetector
    from kws_edge.errors import KwsError

    base = json.loads((tone_bundle_path / "manifest.json").read_text())
    bundle = tmp_path / "bundle"
    shutil.copytree(tone_bundle_path, bundle)
    wav = tone_bundle_path.parent / "tone_yes.wav"
    tone = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 16000)).astype(np.float32)
    tallies = {name: Tally(name) for name in ("manifests through kws info", "manifests through kws detect",
                                               "manifests through from_bundle()")}

    def from_bundle():
        try:
            det = KeywordDetector.from_bundle(bundle)
        except KwsError:
            return 2, "error: refused\n"
        det.process(tone)
        return 0, ""

    @settings(max_examples=N_MANIFEST_CASES, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(manifest_edits(base))
    def case(edit):
        target, action, value, stamp = edit
        text = _apply(base, target, action).replace(json.dumps(_FUZZ), value)
        if stamp:
            text = _stamp(text, bundle)
        (bundle / "manifest.json").write_text(text)
        label = f"{'/'.join(map(str, target))} {action} {value[:40]}"
        tallies["manifests through kws info"].check(label, lambda: run_kws(capfd, "info", bundle)[::2])
        tallies["manifests through kws detect"].check(label, lambda: run_kws(capfd, "detect", wav, "--bundle",
                                                                             bundle)[::2])
        tallies["manifests through from_bundle()"].check(label, from_bundle)

    case()
    print("\n" + "\n".join(t.report() for t in tallies.values()))
    failures = [f"{t.name}: {f}" for t in tallies.values() for f in t.failures]
    assert all(t.cases >= N_MANIFEST_CASES * 0.9 for t in tallies.values())
    assert not failures, f"{len(failures)} failed:\n" + "\n".join(failures[:30])
