"""Hostile WAV files (issue 22, cases 1-3 and the lesser audio items): one error line, exit 2; long files streamed.

Also the promise that reading in blocks changed nothing for normal files: the block reader returns what
scipy.io.wavfile returns, and the block resampler what resampling the whole signal returns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

from support.hostile import assert_one_error_line, run_kws, wav_header, write
from support.processes import kws_subprocess_env
import kws_edge.audio as audio_mod
from kws_edge.audio import decode_wav, read_wav, resample, wav_bytes
from kws_edge.errors import AudioFormatError


def _tone(n=16000, rate=16000, freq=440.0, amp=0.3):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


# ---------------------------------------------------------------- case 1: data chunk claims more than is there
def test_case01_data_chunk_longer_than_file_is_refused(capfd, tmp_path, tone_bundle_path):
    pcm = (np.asarray(_tone(8000)) * 32767).astype("<i2").tobytes()
    claimed = 10 * len(pcm)
    data = wav_header(data_bytes=claimed, riff_bytes=36 + len(pcm)) + pcm  # RIFF size is right, data size is not
    path = write(tmp_path / "short.wav", data)
    for command in ("detect", "classify"):
        code, out, err = run_kws(capfd, command, path, "--bundle", tone_bundle_path)
        assert_one_error_line(code, err, "truncated")
        assert out == ""
    with pytest.raises(AudioFormatError, match=f"declares {claimed:,} bytes"):
        decode_wav(data, name="short.wav")


# ---------------------------------------------------------------- cases 2 and 3: absurd sample rates
@pytest.mark.parametrize("rate_hz", [0, 1, 3999, 768_001, 0xFFFFFFFF])
def test_case02_03_sample_rate_outside_limits(capfd, tmp_path, tone_bundle_path, rate_hz):
    pcm = bytes(200_000)  # 200 KB of samples: at 1 Hz that is 27 hours, 5.96 GiB once resampled
    path = write(tmp_path / f"rate{rate_hz}.wav", wav_header(rate_hz=rate_hz, data_bytes=len(pcm)) + pcm)
    for command in ("detect", "classify"):
        t0 = time.perf_counter()
        code, out, err = run_kws(capfd, command, path, "--bundle", tone_bundle_path)
        assert_one_error_line(code, err, "sample rate")
        assert time.perf_counter() - t0 < 5, "refused from the header, before any resampling"


def test_rate_that_resamples_only_with_a_huge_filter_is_refused(tmp_path):
    path = write(tmp_path / "odd.wav", wav_header(rate_hz=767_999, data_bytes=2000) + bytes(2000))
    with pytest.raises(AudioFormatError, match="bounded filter"):
        read_wav(path)


@pytest.mark.parametrize("fields, match", [
    ({"channels": 0}, "channels"),
    ({"channels": 65}, "channels"),
    ({"format_tag": 6, "bits": 8}, "A-law"),
    ({"bits": 12}, "12-bit"),
])
def test_damaged_fmt_fields(tmp_path, fields, match):
    with pytest.raises(AudioFormatError, match=match):
        decode_wav(wav_header(data_bytes=400, **fields) + bytes(400), name="x.wav")


# ---------------------------------------------------------------- lesser: a FIFO with no writer
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_without_writer_is_refused_not_waited_on_forever(tmp_path, tone_bundle_path):
    fifo = tmp_path / "in.wav"
    os.mkfifo(fifo)
    code = ("import sys, kws_edge.audio as a; a.FIFO_WAIT_S = 0.3; from kws_edge.cli import main; "
            f"main(['detect', {str(fifo)!r}, '--bundle', {str(tone_bundle_path)!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=kws_subprocess_env())
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "FIFO" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_with_a_writer_is_read(capfd, tmp_path, tone_bundle_path):
    fifo = tmp_path / "in.wav"
    os.mkfifo(fifo)
    data = (tone_bundle_path.parent / "tone_yes.wav").read_bytes()

    def writer():
        with open(fifo, "wb") as fh:
            for i in range(0, len(data), 4096):  # short writes: the reader must assemble them
                fh.write(data[i:i + 4096])
                fh.flush()

    t = threading.Thread(target=writer)
    t.start()
    code, out, err = run_kws(capfd, "detect", fifo, "--bundle", tone_bundle_path)
    t.join(10)
    assert code == 0 and "yes at" in out, (out, err)


# ---------------------------------------------------------------- lesser: kws detect streams long files
def _detect_peak_bytes(capfd, path, bundle) -> int:
    tracemalloc.start()
    try:
        code, out, err = run_kws(capfd, "detect", path, "--bundle", bundle)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0, err
    return peak


def test_detect_streams_a_long_file_in_bounded_memory(capfd, tmp_path, tone_bundle_path):
    peaks = {}
    for seconds in (30, 150):
        path = tmp_path / f"long{seconds}.wav"
        path.write_bytes(wav_bytes(np.tile(_tone(16000, amp=0.05), seconds), 16000))
        peaks[seconds] = _detect_peak_bytes(capfd, path, tone_bundle_path)
    # whole-file reading: the peak grows with the file (150 s = 9.6 MB as float32 alone); in blocks it does not
    assert peaks[150] < 1.2 * peaks[30] + 2**20, {k: f"{v / 2**20:.1f} MiB" for k, v in peaks.items()}


def test_streamed_detection_equals_whole_file_detection(tone_bundle_path):
    from kws_edge.cli.runtime import _detect_file
    from kws_edge.detector import KeywordDetector, detect_samples

    det = KeywordDetector.from_bundle(tone_bundle_path)
    data = tone_bundle_path.parent
    for name in ("tone_yes.wav", "tone_no.wav", "tone_stream.wav"):
        path = data / name
        if not path.exists():
            continue
        whole = detect_samples(det, read_wav(path).samples, flush=True)
        streamed, _ = _detect_file(det, path, True)
        assert streamed == whole


# ---------------------------------------------------------------- the block reader changed nothing
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"])
@pytest.mark.parametrize("channels", [1, 2])
def test_block_reader_equals_scipy(tmp_wav, monkeypatch, subtype, channels):
    from scipy.io import wavfile

    monkeypatch.setattr(audio_mod, "BLOCK_BYTES", 1000)  # many blocks, some not a whole number of frames
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.9, 0.9, (5000, channels)).astype(np.float32)
    path = tmp_wav(x if channels > 1 else x[:, 0], subtype=subtype)
    _, ref = wavfile.read(path)
    ref = audio_mod.to_float32(ref)
    if ref.ndim == 2:
        ref = ref.mean(axis=1).astype(np.float32)
    got = read_wav(path, allow_stereo=True).samples
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("rate_hz", [8000, 11025, 22050, 44100, 48000])
def test_block_resampler_equals_whole_signal_resampling(rate_hz):
    from kws_edge.audio import BlockResampler

    x = np.random.default_rng(1).uniform(-0.5, 0.5, rate_hz + 17).astype(np.float32)
    whole = resample(x, rate_hz, 16000)
    for block in (331, 4410, rate_hz, len(x)):
        r = BlockResampler(rate_hz, 16000)
        parts = [r.process(x[i:i + block]) for i in range(0, len(x), block)] + [r.flush()]
        got = np.concatenate(parts)
        assert len(got) == len(whole)
        np.testing.assert_allclose(got, whole, atol=1e-6)


def test_read_centre_equals_centre_of_whole(tmp_wav, monkeypatch):
    from kws_edge.audio import open_wav
    from kws_edge.model import fit_clip

    monkeypatch.setattr(audio_mod, "BLOCK_BYTES", 2000)
    x = np.random.default_rng(2).uniform(-0.5, 0.5, 40_000).astype(np.float32)
    for rate in (16000, 44100):
        path = tmp_wav(x, rate_hz=rate)
        whole = read_wav(path).samples
        with open_wav(path) as stream:
            centre = stream.read_centre(16000).samples
        np.testing.assert_allclose(fit_clip(centre, 16000), fit_clip(whole, 16000), atol=1e-6)
