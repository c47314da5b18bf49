"""Multi-channel audio and resampling (decode to 16 kHz mono), and the exact text of the CTM and
TextGrid writers for a known alignment."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from w2vcli.data.audio import CLIPPING, BadAudio, decode_checked, load_audio
from w2vcli.decoding.formats import Transcription, render, to_ctm, to_textgrid

# --- channels and rates ----------------------------------------------------------------------------


def channels(n_frames: int, n_channels: int, seed: int = 0) -> np.ndarray:
    """Different content per channel, so a first-channel-only or summed read shows.  # (N, C)"""
    g = np.random.default_rng(seed)
    return g.uniform(-0.4, 0.4, (n_frames, n_channels)).astype(np.float32)


@pytest.mark.parametrize("n_channels", [2, 3])
def test_channels_are_averaged_not_picked_or_summed(tmp_path, n_channels):
    x = channels(4000, n_channels)
    path = tmp_path / "multi.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    expected = x.mean(axis=1)  # (N,)
    wav, info = decode_checked(path)
    assert info.channels == n_channels and info.sample_rate == 16000
    assert wav.shape == (4000,) and wav.dtype == np.float32
    np.testing.assert_allclose(wav, expected, atol=1e-7)
    np.testing.assert_allclose(load_audio(path), expected, atol=1e-7)


def tone(freq: float, sr: int, seconds: float, n_channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)  # (N,)
    return np.stack([x] * n_channels, axis=1) if n_channels > 1 else x


def peak_hz(wav: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spectrum) * sr / len(wav))


@pytest.mark.parametrize(("sr", "n_channels"), [(8000, 2), (44100, 1), (48000, 2)])
def test_resampled_to_16k_keeps_length_in_seconds_and_pitch(tmp_path, sr, n_channels):
    path = tmp_path / "in.wav"
    sf.write(path, tone(440.0, sr, 1.0, n_channels), sr, subtype="FLOAT")
    wav, info = decode_checked(path)
    assert info.sample_rate == sr and len(wav) == 16000  # one second in, one second out
    assert abs(peak_hz(wav, 16000) - 440.0) <= 1.0
    assert abs(float(np.abs(wav[2000:-2000]).max()) - 0.5) < 0.01  # level kept
    whole = load_audio(path)
    assert len(whole) == 16000
    np.testing.assert_allclose(wav[100:-100], whole[100:-100], atol=2e-3)  # streamed == whole-file


def test_clipping_threshold_counts_samples_over_all_channels(tmp_path):
    x = np.stack([tone(200.0, 16000, 1.25), tone(300.0, 16000, 1.25)], axis=1)  # (20000, 2)
    x[5000:5032, 0] = 1.0  # one flat top: 32 equal samples at full scale = 30 clipped samples
    path = tmp_path / "stereo.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    decode_checked(path)  # 30 of 40,000 samples: under the 0.1% limit
    x[9000:9032, 1] = -1.0
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(BadAudio) as e:  # 60 of 40,000 samples: over it
        decode_checked(path)
    assert e.value.reason == CLIPPING and "(0.15% of samples)" in str(e.value)


def test_float_source_over_full_scale_is_scaled_down_not_clipped(tmp_path):
    x = 3.0 * tone(440.0, 16000, 0.5)  # peak 1.5
    path = tmp_path / "hot.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    wav, _ = decode_checked(path)
    np.testing.assert_allclose(wav, x * (0.99 / np.abs(x).max()), atol=1e-6)


# --- CTM and TextGrid ------------------------------------------------------------------------------

WORDS = [
    {"word": "hello", "start": 0.12, "end": 0.5, "score": 0.87654},
    {"word": "big", "start": 0.5, "end": 0.8},
    {"word": 'say "hi"', "start": 1.1, "end": 1.46, "score": 0.1},
]


def result(**kw) -> Transcription:
    base = {
        "audio": "data/my talk.v2.wav",
        "index": 0,
        "text": "hello big say hi",
        "duration": 2.0,
        "words": WORDS,
    }
    return Transcription(**(base | kw))


def test_ctm_exact_lines():
    assert to_ctm(result()) == (
        "my_talk.v2 1 0.120 0.380 hello 0.877\n"
        "my_talk.v2 1 0.500 0.300 big 1.000\n"
        'my_talk.v2 1 1.100 0.360 say "hi" 0.100\n'
    )
    by_id = to_ctm(
        result(id="spk1 utt 7", words=[{"word": "x", "start": 12.3456, "end": 13.0, "score": 0.99949}])
    )
    assert by_id == "spk1_utt_7 1 12.346 0.654 x 0.999\n"  # the id names the utterance when there is one
    assert render(result(words=[]), "ctm") == ""


TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 2
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 2
        intervals: size = 6
        intervals [1]:
            xmin = 0
            xmax = 0.12
            text = ""
        intervals [2]:
            xmin = 0.12
            xmax = 0.5
            text = "hello"
        intervals [3]:
            xmin = 0.5
            xmax = 0.8
            text = "big"
        intervals [4]:
            xmin = 0.8
            xmax = 1.1
            text = ""
        intervals [5]:
            xmin = 1.1
            xmax = 1.46
            text = "say ""hi"""
        intervals [6]:
            xmin = 1.46
            xmax = 2
            text = ""
    item [2]:
        class = "IntervalTier"
        name = "chars"
        xmin = 0
        xmax = 2
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.12
            text = ""
        intervals [2]:
            xmin = 0.12
            xmax = 0.2
            text = "h"
        intervals [3]:
            xmin = 0.2
            xmax = 0.26
            text = "e"
        intervals [4]:
            xmin = 0.26
            xmax = 2
            text = ""
'''


def test_textgrid_exact_text_with_gaps_quotes_and_a_chars_tier():
    chars = [{"char": "h", "start": 0.12, "end": 0.2}, {"char": "e", "start": 0.2, "end": 0.26}]
    assert to_textgrid(result(chars=chars)) == TEXTGRID
    assert render(result(chars=chars), "textgrid") == TEXTGRID


def test_textgrid_covers_the_last_word_past_the_duration_and_keeps_times_of_long_recordings():
    late = to_textgrid(result(duration=1.3))  # the audio length is shorter than the last word's end
    assert "\nxmax = 1.46\n" in late and late.endswith('xmax = 1.46\n            text = "say ""hi"""\n')
    words = [
        {"word": "a", "start": 10000.02, "end": 10000.04},
        {"word": "b", "start": 10000.04, "end": 10000.08},
    ]
    grid = to_textgrid(result(duration=10000.5, words=words))  # 2 h 47 min in: still to the millisecond
    times = [line.split("= ")[1] for line in grid.splitlines() if line.strip().startswith(("xmin", "xmax"))]
    assert times[4:] == [
        "0",
        "10000.02",
        "10000.02",
        "10000.04",
        "10000.04",
        "10000.08",
        "10000.08",
        "10000.5",
    ]
