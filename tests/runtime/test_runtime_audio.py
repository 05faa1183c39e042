"""WAV reading and audio validation at the boundary."""

from __future__ import annotations

import numpy as np
import pytest

from kws_edge.audio import decode_wav, read_wav, to_float32, to_int16, validate_audio, wav_bytes, write_wav
from kws_edge.errors import AudioFormatError


def _tone(n=16000, freq=440.0, rate=16000, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


@pytest.mark.parametrize("subtype, atol", [("PCM_16", 1 / 32768), ("PCM_24", 1e-6), ("PCM_32", 1e-6),
                                           ("FLOAT", 1e-7), ("DOUBLE", 1e-7), ("PCM_U8", 1 / 127)])
def test_reads_every_pcm_and_float_width(tmp_wav, subtype, atol):
    x = _tone()
    wav = read_wav(tmp_wav(x, subtype=subtype))
    assert wav.samples.dtype == np.float32 and not wav.resampled and wav.source_channels == 1
    np.testing.assert_allclose(wav.samples, x, atol=atol)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_are_resampled_and_say_so(tmp_wav, rate):
    wav = read_wav(tmp_wav(_tone(rate, 440.0, rate), rate_hz=rate))
    assert wav.resampled and wav.source_rate_hz == rate and wav.sample_rate_hz == 16000
    assert len(wav.samples) == 16000
    # the tone survives: its spectrum peaks at 440 Hz
    spec = np.abs(np.fft.rfft(wav.samples))
    assert abs(np.argmax(spec) * 16000 / len(wav.samples) - 440) < 2
    with pytest.raises(AudioFormatError, match="8000 Hz|22050 Hz|44100 Hz|48000 Hz"):
        read_wav(tmp_wav(_tone(rate, 440.0, rate), rate_hz=rate), allow_resample=False)


def test_stereo_is_refused_unless_allowed(tmp_wav):
    path = tmp_wav(np.stack([_tone(), _tone(freq=880)], axis=1))
    with pytest.raises(AudioFormatError, match="2 channels; kws-edge needs mono"):
        read_wav(path)
    wav = read_wav(path, allow_stereo=True)
    assert wav.source_channels == 2 and wav.samples.ndim == 1


@pytest.mark.parametrize("data, match", [
    (b"", "is empty"),
    (b"hello, this is text and not audio at all", "not a WAV file"),
    (b"ID3\x04\x00" + bytes(100), "not a WAV file"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(8), "damaged|corrupt|truncated"),
])
def test_unreadable_bytes(data, match):
    with pytest.raises(AudioFormatError, match=match):
        decode_wav(data, name="x.wav")


def test_truncated_and_header_only(tmp_path):
    good = wav_bytes(_tone(), 16000)
    with pytest.raises(AudioFormatError, match="truncated"):
        decode_wav(good[: len(good) // 2], name="t.wav")
    with pytest.raises(AudioFormatError, match="no samples"):
        decode_wav(wav_bytes(np.zeros(0, np.float32), 16000), name="h.wav")
    with pytest.raises(AudioFormatError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(AudioFormatError, match="is a directory"):
        read_wav(tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_wav, bad):
    x = _tone()
    x[100] = bad
    with pytest.raises(AudioFormatError, match="NaN or infinite"):
        read_wav(tmp_wav(x, subtype="FLOAT"))


def test_float_wav_at_int16_scale_is_refused(tmp_wav):
    with pytest.raises(AudioFormatError, match=r"must lie in \[-1, 1\]"):
        read_wav(tmp_wav(_tone() * 20000, subtype="FLOAT"))


def test_write_read_round_trip_and_conversions(tmp_path):
    x = _tone()
    write_wav(tmp_path / "a.wav", x, 16000)
    np.testing.assert_allclose(read_wav(tmp_path / "a.wav").samples, x, atol=1 / 32768)
    q = to_int16(x)
    assert q.dtype == np.int16 and to_int16(q) is q
    np.testing.assert_allclose(to_float32(q), x, atol=1 / 32768)
    assert to_int16(np.array([1.5, -1.5], np.float32)).tolist() == [32767, -32768]


def test_validate_audio():
    assert validate_audio(np.zeros((100, 1), np.int16)).shape == (100,)
    assert validate_audio(np.zeros(5, np.float64)).dtype == np.float32
    with pytest.raises(AudioFormatError, match="mono"):
        validate_audio(np.zeros((100, 2), np.float32))
    with pytest.raises(AudioFormatError, match="int16 or float32"):
        validate_audio(np.zeros(10, np.int64))
    with pytest.raises(AudioFormatError, match="NaN or infinite"):
        validate_audio(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AudioFormatError, match="divide by 32768"):
        validate_audio(np.array([1000.0], np.float32))
