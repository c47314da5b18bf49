"""Audio decoding, the checks prep relies on, quiet-point splitting and atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from w2vcli.data import audio
from w2vcli.data.audio import BadAudio, decode_checked, is_silent, load_audio, split_points, write_audio


def tone(seconds=1.0, sr=16000, freq=440.0, amp=0.3, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)  # (N,)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


FORMATS = [
    ("wav", "PCM_U8"), ("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "PCM_32"), ("wav", "FLOAT"),
    ("wav", "DOUBLE"), ("flac", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS"),
]  # fmt: skip
if "MP3" in sf.available_formats():
    FORMATS.append(("mp3", "MPEG_LAYER_III"))


@pytest.mark.parametrize("ext,subtype", FORMATS)
def test_every_format_and_depth_decodes_to_16k_mono(tmp_path, ext, subtype):
    path = tmp_path / f"x.{ext}"
    sf.write(path, tone(2.0, sr=44100, channels=2), 44100, subtype=subtype)
    wav, info = decode_checked(path)
    assert info.sample_rate == 44100 and info.channels == 2 and info.subtype == subtype
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 32000) < 1200  # mp3 adds encoder delay/padding
    assert 0.2 < np.abs(wav).max() < 0.4


def test_streamed_decode_matches_whole_file_resampling(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, tone(5.0, sr=48000, channels=2), 48000, subtype="PCM_24")
    wav, _ = decode_checked(path)
    ref = load_audio(path)
    assert len(wav) == len(ref) == 80000
    assert np.abs(wav[1000:-1000] - ref[1000:-1000]).max() < 1e-3


def test_empty_file(tmp_path):
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(BadAudio) as e:
        decode_checked(tmp_path / "e.wav")
    assert e.value.reason == audio.EMPTY


def test_text_file_named_wav(tmp_path):
    (tmp_path / "t.wav").write_text("this is not audio\n")
    with pytest.raises(BadAudio) as e:
        decode_checked(tmp_path / "t.wav")
    assert e.value.reason == audio.NOT_AUDIO and "text" in str(e.value)


def test_truncated_wav(tmp_path):
    path = tmp_path / "t.wav"
    sf.write(path, tone(2.0), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadAudio) as e:
        decode_checked(path)
    assert e.value.reason == audio.TRUNCATED


def test_corrupt_flac(tmp_path):
    path = tmp_path / "c.flac"
    sf.write(path, tone(2.0), 16000)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(BadAudio) as e:
        decode_checked(path)
    assert e.value.reason == audio.CORRUPT


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_samples(tmp_path, bad):
    x = tone(1.0)
    x[5000] = bad
    sf.write(tmp_path / "n.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(BadAudio) as e:
        decode_checked(tmp_path / "n.wav")
    assert e.value.reason == audio.NONFINITE


def test_clipping_rejected_unless_allowed(tmp_path):
    x = np.clip(tone(1.0, amp=3.0), -1.0, 1.0)  # flat tops on every half wave
    sf.write(tmp_path / "c.wav", x, 16000)
    with pytest.raises(BadAudio) as e:
        decode_checked(tmp_path / "c.wav")
    assert e.value.reason == audio.CLIPPING
    wav, _ = decode_checked(tmp_path / "c.wav", allow_clipping=True)
    assert len(wav) == 16000


def test_loud_but_unclipped_speech_like_signal_passes(tmp_path):
    x = tone(1.0, freq=97.0, amp=0.995)  # peaks reach full scale once per cycle, no flat runs
    sf.write(tmp_path / "l.wav", x, 16000, subtype="FLOAT")
    decode_checked(tmp_path / "l.wav")


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    path = tmp_path / "p.wav"
    sf.write(path, tone(), 16000)

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(audio.sf, "SoundFile", denied)
    monkeypatch.setattr(audio, "open", denied, raising=False)
    with pytest.raises(BadAudio) as e:
        decode_checked(path)
    assert e.value.reason == audio.UNREADABLE


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_real_permissions(tmp_path):
    path = tmp_path / "p.wav"
    sf.write(path, tone(), 16000)
    path.chmod(0)
    with pytest.raises(BadAudio) as e:
        decode_checked(path)
    assert e.value.reason == audio.UNREADABLE


def test_silence():
    assert is_silent(np.zeros(16000, np.float32))
    assert is_silent(np.full(16000, 1e-4, np.float32))  # dither at -80 dBFS
    assert not is_silent(tone())


def test_split_points_cut_in_pauses_and_respect_the_limit():
    sr = 16000
    rng = np.random.default_rng(0)
    pieces, pauses, t = [], [], 0.0
    for _ in range(14):  # 4-6 s "speech" then a 0.4 s pause
        speech = rng.uniform(4, 6)
        pieces += [0.3 * rng.standard_normal(int(speech * sr)), np.zeros(int(0.4 * sr))]
        pauses.append((t + speech, t + speech + 0.4))
        t += speech + 0.4
    wav = np.concatenate(pieces).astype(np.float32)
    ranges = split_points(wav, sr, 20.0)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(wav)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(0 < (e - s) / sr <= 20.0 for s, e in ranges)
    assert min((e - s) / sr for s, e in ranges) >= 10.0  # no tiny tail
    for _, cut in ranges[:-1]:
        assert any(a <= cut / sr <= b for a, b in pauses)


def test_split_points_short_input_untouched():
    assert split_points(np.zeros(100, np.float32), 16000, 1.0) == [(0, 100)]


def test_write_audio_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "sub" / "x.flac"
    write_audio(out, tone(1.0))
    info = sf.info(out)
    assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.flac"]

    def broken(path, *a, **k):
        open(path, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(audio.sf, "write", broken)
    with pytest.raises(OSError):
        write_audio(out, tone(2.0))
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.flac"]
    assert sf.info(out).frames == 16000  # the old file is intact
