"""`w2v listen` and `w2v transcribe --vad`: the segmenter on made-up probabilities, Silero VAD on the
shipped speech, the stream loop in-process, raw PCM sources, CLI errors, and one real pipe at real-time
pace. The model is a tiny random CTC model, so texts are nonsense but deterministic: what is checked is
that the stream hears the same audio, cut in the same places, as `w2v transcribe` would."""

import json
import os
import subprocess
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from w2vcli.serving.vad import FRAME, Segmenter, VadOptions

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parents[1]
SR = 16000
# The three shortest held-out sentences (1.35, 1.54 and 1.67 s).
CLIPS = ["t0010-espeak-en-gb-m1", "t0011-espeak-en-gb-x-rp-f4", "t0007-flite-awb"]


def _has_silero() -> bool:
    try:
        distribution("silero-vad")
        return True
    except PackageNotFoundError:
        return False


needs_vad = pytest.mark.skipif(not _has_silero(), reason="silero-vad (the listen extra) is not installed")


def speech_span(clip: np.ndarray) -> tuple[int, int]:
    """[first, last) sample of the clip's 10 ms frames within 40 dB of its loudest."""
    n = len(clip) // 160
    rms = np.sqrt(np.mean(clip[: n * 160].reshape(n, 160) ** 2, axis=1) + 1e-12)
    on = np.flatnonzero(rms >= rms.max() / 100)
    return int(on[0]) * 160, (int(on[-1]) + 1) * 160


def track(names=CLIPS, lead=0.4, gap=0.9, tail=0.8):
    """Utterances between silences (with a whisper of noise); returns (wav, true speech spans)."""
    rng = np.random.default_rng(0)
    parts, spans, at = [np.zeros(int(lead * SR), np.float32)], [], int(lead * SR)
    for k, name in enumerate(names):
        clip = sf.read(ROOT / "examples/mini/test" / f"{name}.flac", dtype="float32")[0]
        a, b = speech_span(clip)
        spans.append((at + a, at + b))
        pause = np.zeros(int((tail if k == len(names) - 1 else gap) * SR), np.float32)
        parts += [clip, pause]
        at += len(clip) + len(pause)
    wav = np.concatenate(parts)
    return (wav + 1e-4 * rng.standard_normal(len(wav))).astype(np.float32), spans


def assert_cuts_in_silence(segments, spans):
    """Each true span lies inside exactly one segment, and no segment boundary falls inside a span."""
    for a, b in spans:
        holding = [(s, e) for s, e in segments if s <= a and b <= e]
        touching = [(s, e) for s, e in segments if s < b and e > a]
        assert len(holding) == 1 and touching == holding, (a / SR, b / SR, segments)


# --- the segmenter, on made-up probabilities: exact frame arithmetic ---------------------------------


def run_segmenter(probs, options):
    seg, out = Segmenter(options), []
    for t, p in enumerate(probs):
        out += seg.push(np.full(FRAME, t, np.float32), p)  # frame t holds the number t
    return out + seg.flush()


def frames_of_utterance(u):
    return [int(v) for v in u.audio[::FRAME]]


@pytest.mark.parametrize(
    "probs, expected",
    [
        ([0] * 10 + [0.9] * 20 + [0] * 30, [(4, 36)]),  # speech 10-29, 6 frames (0.2 s) of pad each side
        ([0] * 10 + [0.9] * 10 + [0.4] * 5 + [0.9] * 10 + [0] * 40, [(4, 41)]),  # a dip to 0.4: hysteresis
        ([0] * 10 + [0.9] * 10 + [0] * 10 + [0.9] * 10 + [0] * 40, [(4, 26), (26, 46)]),  # pads never overlap
        ([0] * 10 + [0.9] * 4 + [0] * 40, []),  # 4 frames (0.13 s): shorter than min_speech, dropped
        ([0] * 10 + [0.9] * 20, [(4, 30)]),  # input ends mid-speech: flushed as it stands
    ],
)
def test_segmenter_frames(probs, expected):
    options = VadOptions(min_silence=0.3, pad=0.2, min_speech=0.25)  # 9 frames of silence end speech
    got = run_segmenter(probs, options)
    assert [(u.start // FRAME, u.end // FRAME) for u in got] == expected
    for u in got:  # each utterance is the stream's own frames, contiguous, at their absolute place
        assert frames_of_utterance(u) == list(range(u.start // FRAME, u.end // FRAME))


def test_long_utterance_is_cut_at_its_quietest_frame_and_nothing_is_lost():
    probs = [0.9] * 160 + [0.0] * 40
    level = np.where(np.arange(200) >= 160, 0.0, 1.0).astype(np.float32)
    level[75] = 0.001  # the quietest frame of 50-98, searched when the utterance reaches 100 frames
    seg, out = Segmenter(VadOptions(max_seconds=100 * FRAME / SR, pad=0.0)), []
    for t, p in enumerate(probs):
        out += seg.push(np.full(FRAME, level[t], np.float32), p)
    out += seg.flush()
    assert [(u.start // FRAME, u.end // FRAME) for u in out] == [(0, 75), (75, 160)]
    np.testing.assert_array_equal(np.concatenate([u.audio for u in out]), np.repeat(level[:160], FRAME))


# --- Silero VAD and `w2v transcribe --vad` on real speech --------------------------------------------


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from test_transcribe import make_hf_model

    d = tmp_path_factory.mktemp("hf")
    make_hf_model(d, "layer")
    return d


@pytest.fixture(scope="module")
def loaded(hf_dir):
    from w2vcli.checkpoints.resolve import load_model

    return load_model(str(hf_dir), device="cpu", engine="torch")


@needs_vad
def test_silero_cuts_speech_in_the_silences_between_utterances():
    from w2vcli.serving.vad import SileroVad, segment

    wav, spans = track()
    blocks = [wav[i : i + 3000] for i in range(0, len(wav), 3000)]  # any block size
    utts = list(segment(blocks, SileroVad()))
    assert_cuts_in_silence([(u.start, u.end) for u in utts], spans)
    assert all(u.start % FRAME == 0 for u in utts)


@needs_vad
def test_transcribe_vad_keeps_every_word_and_cuts_in_pauses(loaded, tmp_path):
    from w2vcli.pipelines.transcribe import TranscribeOptions, beam_options, expand, transcribe
    from w2vcli.pipelines.transcribe import transcribe_waveforms as run

    wav, spans = track(CLIPS + CLIPS[:1])
    path = tmp_path / "long.wav"
    sf.write(path, wav, SR, subtype="FLOAT")
    options = TranscribeOptions(vad=True, timestamps="word")
    (result,) = transcribe(expand([str(path)]), loaded, options)
    assert result.error is None and result.duration == round(len(wav) / SR, 3)
    segs = [(round(s["start"] * SR), round(s["end"] * SR)) for s in result.segments]
    assert_cuts_in_silence(segs, spans)
    alone = [next(run([wav[s:e]], ["x"], loaded, options, beam_options(options))) for s, e in segs]
    assert result.text == " ".join(r.text for r in alone if r.text)  # every word of every segment
    assert [w["word"] for w in result.words] == [w["word"] for r in alone for w in r.words]
    for w in result.words:  # word times are absolute, inside their segment
        assert any(s["start"] <= w["start"] <= w["end"] <= s["end"] for s in result.segments)
    assert json.loads(json.dumps(result.to_dict()))["segments"] == result.segments


# --- the stream loop, in-process ---------------------------------------------------------------------


def paced(listener, wav, block=FRAME):
    """Blocks as a live source gives them: the next only once the loop has taken the last one."""
    for i in range(0, len(wav), block):
        deadline = time.monotonic() + 10
        while not listener.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.001)
        yield wav[i : i + block]


@needs_vad
def test_stream_gives_partials_then_one_final_per_utterance_equal_to_transcribe(loaded, tmp_path):
    from w2vcli.pipelines.transcribe import TranscribeOptions, expand, transcribe
    from w2vcli.serving.listen import Heard, Listener, ListenOptions, Partial

    wav, spans = track()
    listener = Listener(loaded, ListenOptions(step=0.3))
    listener.start(paced(listener, wav))
    events = list(listener.events())
    finals = [e for e in events if isinstance(e, Heard)]
    assert len(finals) == len(spans)
    assert_cuts_in_silence([(round(h.start * SR), round(h.end * SR)) for h in finals], spans)
    for k, h in enumerate(finals):
        before = events[: events.index(h)]
        partials = [e for e in before if isinstance(e, Partial) and e.start == h.start]
        speech = (spans[k][1] - spans[k][0]) / SR
        assert len(partials) >= int(speech / 0.3) - 2  # one per 0.3 s of speech, give or take the edges
        path = tmp_path / f"u{k}.wav"
        sf.write(path, wav[round(h.start * SR) : round(h.end * SR)], SR, subtype="FLOAT")
        (offline,) = transcribe(expand([str(path)]), loaded, TranscribeOptions())
        assert h.text == offline.text and h.index == k
        assert [w["word"] for w in h.words] == [w["word"] for w in offline.words]
        assert all(h.start <= w["start"] <= w["end"] <= h.end for w in h.words)


@needs_vad
def test_stop_flushes_the_utterance_being_spoken(loaded):
    from w2vcli.serving.listen import Heard, Listener, ListenOptions

    wav, spans = track(CLIPS[:1])
    cut = spans[0][0] + (spans[0][1] - spans[0][0]) // 2  # mid-word: the speaker is interrupted
    listener = Listener(loaded, ListenOptions(step=0.3))
    fed = threading.Event()

    def live():  # a microphone: audio, then nothing, never an end of file
        yield from paced(listener, wav[:cut])
        fed.set()
        while not listener.stopping.is_set():
            time.sleep(0.01)

    listener.start(live())
    threading.Thread(target=lambda: fed.wait(30) and listener.stop(), daemon=True).start()
    finals = [e for e in listener.events() if isinstance(e, Heard)]
    listener.join()
    assert len(finals) == 1 and finals[0].start * SR <= spans[0][0] and finals[0].end * SR >= cut - FRAME


def test_raw_pcm_formats_rates_channels_and_ragged_reads():
    import io

    from w2vcli.serving.sources import PcmFormat, raw_blocks

    rng = np.random.default_rng(1)
    x = (0.5 * np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440)).astype(np.float32)  # 1 s at 8 kHz

    class Ragged(io.BytesIO):  # a pipe hands over whatever it holds: odd sizes, split samples
        def read1(self, n=-1):
            return super().read(int(rng.integers(1, max(2, n))))

    stereo = np.stack([x, x], axis=1)
    got = np.concatenate(
        list(raw_blocks(Ragged(stereo.astype("<f4").tobytes()), PcmFormat(8000, 2, "f32le")))
    )
    assert abs(len(got) - 16000) <= 16 and abs(np.abs(got).max() - 0.5) < 0.02  # resampled, mixed
    s16 = (x * 32767).astype("<i2")
    got = np.concatenate(list(raw_blocks(Ragged(s16.tobytes() + b"\x01"), PcmFormat(16000, 1, "s16le"))))
    np.testing.assert_allclose(got, s16 / 32768.0, atol=1e-6)  # a trailing half sample is dropped


def test_final_lines_in_each_format_and_the_partial_line():
    import io

    from w2vcli.cli.listen import PartialLine, Renderer
    from w2vcli.serving.listen import Heard

    words = [{"word": "hello", "start": 1.0, "end": 1.4}, {"word": "there", "start": 1.5, "end": 1.9}]
    heard = [Heard(0.8, 2.1, "hello there", words, 0), Heard(5.0, 6.0, "again", [], 1)]
    jsonl = Renderer("jsonl")
    assert [json.loads(jsonl(h)) for h in heard][0] == {
        "start": 0.8,
        "end": 2.1,
        "text": "hello there",
        "words": words,
    }
    srt = Renderer("srt")
    assert "".join(srt(h) for h in heard) == (
        "1\n00:00:01,000 --> 00:00:01,900\nhello there\n\n2\n00:00:05,000 --> 00:00:06,000\nagain\n\n"
    )
    vtt = Renderer("vtt")
    assert "".join(vtt(h) for h in heard).count("WEBVTT") == 1  # one header, then cues as they come
    assert Renderer("text")(heard[1]) == "again\n"

    class Tty(io.StringIO):
        def isatty(self):
            return True

    plain, tty = io.StringIO(), Tty()
    for stream in (plain, tty):
        line = PartialLine(stream)
        line.show("hel")
        line.show("hello")
        line.clear()
    assert plain.getvalue() == "partial: hel\npartial: hello\n"
    assert "\n" not in tty.getvalue() and tty.getvalue().endswith(
        "\r\x1b[2K"
    )  # rewritten in place, then wiped


# --- the command line: every user error is one line, no traceback --------------------------------------


def w2v_main(args, monkeypatch, capsys):
    from w2vcli.cli import main

    monkeypatch.setattr(sys, "argv", ["w2v", *args])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    return e.value.code, err


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["listen"], 2, "give a SOURCE"),
        (["listen", "-", "-f", "xml"], 2, "--format xml: expected one of jsonl, text, srt, vtt"),
        (["listen", "-", "--sample-format", "u8"], 2, "--sample-format u8: expected one of s16le, f32le"),
        (["listen", "-", "--rate", "50"], 2, "--rate 50"),
        (["listen", "nowhere.raw"], 2, "nowhere.raw: no such file or FIFO"),
    ],
)
def test_cli_usage_errors(args, code, message, monkeypatch, capsys):
    got, err = w2v_main(args, monkeypatch, capsys)
    assert got == code and message in err and "Traceback" not in err and err.count("\n") == 1


@needs_vad
def test_mic_without_sounddevice_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # the package is not installed
    got, err = w2v_main(["listen", "--mic"], monkeypatch, capsys)
    assert got == 1 and "--mic needs sounddevice: pip install 'w2vcli[listen]'" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_mic_without_portaudio_is_one_line(monkeypatch):
    import builtins

    from w2vcli.errors import W2VError
    from w2vcli.serving.sources import import_sounddevice

    real = builtins.__import__

    def no_portaudio(name, *args, **kwargs):  # what sounddevice raises when libportaudio is absent
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(W2VError, match="--mic needs the PortAudio library"):
        import_sounddevice()


def test_missing_vad_extra_is_one_line(monkeypatch):
    import importlib.metadata

    from w2vcli.errors import W2VError
    from w2vcli.serving.vad import silero_path

    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(W2VError, match=r"pip install 'w2vcli\[listen\]'"):
        silero_path()


# --- one real pipe: `w2v listen -` fed s16le PCM at real-time pace ------------------------------------


@needs_vad
def test_pipe_at_real_time_pace_one_final_line_per_utterance(hf_dir, loaded, tmp_path):
    from w2vcli.pipelines.transcribe import TranscribeOptions, expand, transcribe

    wav, spans = track()  # 7.4 s: three sentences between silences
    pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2")
    heard_wav = pcm.astype(np.float32) / 32768.0  # what the listener hears
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "w2vcli", "listen", "-", "--model", str(hf_dir), "--engine", "torch"]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    lines, ready = [], threading.Event()

    def read_stderr():
        for raw in proc.stderr:
            lines.append(raw.decode())
            if raw.startswith(b"listening to"):
                ready.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        assert ready.wait(60), "".join(lines)
        piece = SR // 10  # 100 ms at a time, on the clock
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), piece)):
            time.sleep(max(0.0, t0 + k * 0.1 - time.monotonic()))
            proc.stdin.write(pcm[i : i + piece].tobytes())
            proc.stdin.flush()
        proc.stdin.close()
        out = proc.stdout.read().decode()
        assert proc.wait(30) == 0, "".join(lines)
    finally:
        proc.kill()
    finals = [json.loads(line) for line in out.splitlines()]
    assert len(finals) == len(spans), out
    assert_cuts_in_silence([(round(f["start"] * SR), round(f["end"] * SR)) for f in finals], spans)
    assert any(line.startswith("partial: ") for line in lines)  # stderr is a pipe: plain lines
    for k, f in enumerate(finals):
        path = tmp_path / f"u{k}.wav"
        sf.write(path, heard_wav[round(f["start"] * SR) : round(f["end"] * SR)], SR, subtype="FLOAT")
        (offline,) = transcribe(expand([str(path)]), loaded, TranscribeOptions())
        assert f["text"] == offline.text and [w["word"] for w in f["words"]] == [
            w["word"] for w in offline.words
        ]
