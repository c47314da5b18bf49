"""Issue 26 for `w2v align` and `w2v segment`: each defect reproduced, and the contracts of alignment
costs, text spelling, segment's drop rules and the CTM/TextGrid writers pinned with exact outputs.

The acoustic model is a stand-in (`Scripted`): for a recording of N samples it returns the emissions
the test scripted for that length, so the whole pipeline runs (audio reading, chunking, alignment,
cutting, writing) on emissions whose right answer is known: a model that hears a text, silence,
noise, or another text. V = vocabulary size, T = frames (20 ms each).
"""

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from w2vcli.checkpoints.resolve import LoadedModel
from w2vcli.cli import app
from w2vcli.data.chunking import ChunkPlan
from w2vcli.data.text import Vocabulary
from w2vcli.decoding.align_text import prepare
from w2vcli.decoding.formats import render
from w2vcli.errors import UsageError, W2VError
from w2vcli.model.config import ModelConfig
from w2vcli.pipelines.align import AlignOptions, align, align_inputs
from w2vcli.pipelines.segment import REPORT, SegmentOptions, segment

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "|"]
LOWER = Vocabulary([*SPECIALS, *"abcdefghijklmnopqrstuvwxyz'"])
UPPER = Vocabulary([*SPECIALS, *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"])  # facebook/wav2vec2-base-960h's
BOTH = Vocabulary([*SPECIALS, *"abcdefghijklmnopqrstuvwxyz'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"])
SOME_CAPITALS = Vocabulary([*SPECIALS, *"abcdefghijklmnopqrstuvwxyz'", "I", "O"])
EXACT = AlignOptions(start_pad=0.0, end_pad=0.0)  # word times straight from the frames
FRAME = 0.02  # seconds per frame
PLAN = ChunkPlan.from_seconds(30.0, 2.5)

TEXT = "What you see is from outside yourself"
BOOK = (
    "the quick brown fox jumps over the lazy dog while seven wise owls watch from a tall oak tree "
    "and a small grey cat sleeps by the warm fire until morning comes again"
)  # 30 words
OTHER = (
    "many people never really learn how money works so they keep paying fees on loans they did not "
    "need and wonder where all their savings went at the end of each year"
)  # 30 other words


# ---- the stand-in model and its recordings ----------------------------------------------------------


def say(vocab, text: str, letter: int = 2, pause: int = 8, lead: int = 10, tail: int = 10) -> list[int]:
    """Frame labels of a model hearing `text` (spelt in the vocabulary's own tokens): each letter on
    `letter` frames then a blank, the word separator and `pause` blanks between words."""
    sep, labels = LOWER.index["|"], [0] * lead
    for k, word in enumerate(text.split()):
        if k:
            labels += [sep] + [0] * pause
        for ch in word:
            labels += [vocab.index[ch]] * letter + [0]
    return labels + [0] * tail


def emissions(labels: list[int], v: int, sure: float = 0.9) -> np.ndarray:
    """Log-probabilities (T, V): `labels[t]` with probability `sure`, the rest shared evenly."""
    p = np.full((len(labels), v), (1 - sure) / (v - 1))
    p[np.arange(len(labels)), labels] = sure
    return np.log(p).astype(np.float32)


def noise_emissions(t: int, v: int, seed: int) -> np.ndarray:
    """A trained model on noise: blank most of the time, a random letter at 0.4 on one frame in ten."""
    rng = np.random.default_rng(seed)
    labels = [int(rng.integers(5, v)) if rng.random() < 0.1 else 0 for _ in range(t)]
    p = np.full((t, v), 0.1 / (v - 1))
    p[:, 0] = 0.9
    for i, lab in enumerate(labels):
        if lab:
            p[i] = 0.6 / (v - 2)
            p[i, lab] = 0.4
    return np.log(p / p.sum(axis=1, keepdims=True)).astype(np.float32)


class Scripted(torch.nn.Module):
    """Stands in for a Wav2Vec2ForCTC: the emissions scripted for an input of that many samples."""

    def __init__(self):
        super().__init__()
        self.by_length: dict[int, np.ndarray] = {}

    def forward(self, x, lengths=None):  # (1, N) -> (1, T, V) log-probabilities, frames, nothing
        lp = torch.from_numpy(self.by_length[x.shape[1]])[None]
        return lp, torch.tensor([lp.shape[1]]), None


def loaded_with(vocab) -> LoadedModel:
    return LoadedModel(Scripted(), ModelConfig(), vocab, path=None)


def record(loaded, path, lp: np.ndarray, sound: str = "speech", seed: int = 0) -> str:
    """Write a recording whose length gives exactly lp's T frames, and script lp for it."""
    n = (lp.shape[0] - 1) * ModelConfig().frame_stride + ModelConfig().receptive_field
    assert PLAN.output_frames(n) == lp.shape[0] and n not in loaded.model.by_length
    rng = np.random.default_rng(seed)
    if sound == "silence":
        wav = np.zeros(n, np.float32)
    elif sound == "noise":
        wav = (0.1 * rng.standard_normal(n)).astype(np.float32)
    else:  # tones in bursts: speech-like level and rhythm
        t = np.arange(n) / 16000
        wav = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > -0.3)).astype(np.float32)
    sf.write(path, wav, 16000, subtype="FLOAT")
    loaded.model.by_length[n] = lp
    return str(path)


def align_one(loaded, audio, text, options=EXACT):
    (result,) = align(align_inputs([audio], text=text), loaded, options)
    return result


# ---- D0: the vocabulary's case -------------------------------------------------------------------


@pytest.mark.parametrize(
    "vocab, heard",
    [
        (UPPER, TEXT.upper()),  # facebook/wav2vec2-base-960h: capitals only
        (LOWER, TEXT.lower()),
        (BOTH, TEXT),  # both cases of every letter: the text's own case
        (SOME_CAPITALS, TEXT.lower()),  # capitals of I and O only: "What" has neither
    ],
    ids=["upper", "lower", "both", "some-capitals"],
)
def test_d0_text_is_spelt_in_the_case_the_vocabulary_has(tmp_path, vocab, heard):
    loaded = loaded_with(vocab)
    audio = record(loaded, tmp_path / "a.wav", emissions(say(vocab, heard), len(vocab)))
    r = align_one(loaded, audio, TEXT)
    assert [w.spoken for w in prepare(TEXT, vocab)] == heard.split()
    assert [w["word"] for w in r.words] == TEXT.split()  # the user's words in the output
    assert all(w.get("aligned", True) for w in r.words) and min(w["fit"] for w in r.words) == 1.0
    starts, t = [], 10  # the script: 10 blanks, 3 frames a letter, separator + 8 blanks between words
    for word in TEXT.split():
        starts.append(round(t * FRAME, 3))
        t += 3 * len(word) + 9
    assert [w["start"] for w in r.words] == starts


def test_d0_segment_writes_pairs_in_the_vocabularys_case(tmp_path):
    loaded = loaded_with(UPPER)
    heard = " ".join([TEXT.upper()] * 4)
    audio = record(loaded, tmp_path / "book.wav", emissions(say(UPPER, heard, pause=30), len(UPPER), 0.7))
    summary = segment(audio, " ".join([TEXT] * 4), loaded, tmp_path / "out", SegmentOptions(max_seconds=6))
    assert summary["kept"] == summary["segments"] >= 3 and not summary["rejected"]
    texts = [(tmp_path / "out" / f"book-{i:04d}.txt").read_text() for i in range(1, summary["kept"] + 1)]
    assert " ".join(texts).split() == heard.split()


# ---- D7: silence, noise and a wrong text make no training pairs -------------------------------------


def book_run(tmp_path, lp, sound, text=BOOK, name="book", max_seconds=6.0):
    loaded = loaded_with(LOWER)
    audio = record(loaded, tmp_path / f"{name}.wav", lp, sound)
    summary = segment(audio, text, loaded, tmp_path / name, SegmentOptions(max_seconds=max_seconds))
    rows = [json.loads(line) for line in (tmp_path / name / REPORT).read_text().splitlines()]
    return summary, rows


def speech(text=BOOK, sure=0.6):
    """A weak model (60% on the letter it hears) on clear speech of `text`, pauses of 0.6 s."""
    return emissions(say(LOWER, text, pause=30), len(LOWER), sure)


def test_d7_speech_with_its_text_is_kept(tmp_path):
    summary, rows = book_run(tmp_path, speech(), "speech")
    assert summary["kept"] == summary["segments"] >= 4 and summary["rejected"] == ""
    assert min(r["fit"] for r in rows) > 0.9


def test_d7_digital_silence_is_rejected_whole(tmp_path):
    lp = emissions([0] * 1000, len(LOWER), 0.99)  # the model hears blank throughout
    summary, rows = book_run(tmp_path, lp, "silence")
    assert summary["kept"] == 0 and summary["rejected"].startswith("file rejected")
    assert {r["reason"].split(" (")[0] for r in rows} <= {"silent", "file rejected", "too short"}
    assert not list((tmp_path / "book").glob("*.flac"))


def test_d7_silence_is_refused_even_when_the_model_hallucinates_the_text(tmp_path):
    summary, rows = book_run(tmp_path, speech(sure=0.9), "silence")  # emissions say the text, audio is 0
    assert summary["kept"] == 0 and {r["reason"] for r in rows if r["reason"] != "too short"} >= {
        "silent (below -60 dBFS)"
    }


def test_d7_white_noise_is_rejected_whole(tmp_path):
    summary, rows = book_run(tmp_path, noise_emissions(1000, len(LOWER), seed=1), "noise")
    assert summary["kept"] == 0 and summary["rejected"].startswith("file rejected")
    assert max(r["fit"] for r in rows) < 0.05


def test_d7_a_wholly_wrong_text_is_rejected_whole(tmp_path):
    summary, rows = book_run(tmp_path, speech(OTHER), "speech")  # the audio says OTHER
    assert summary["kept"] == 0 and summary["rejected"].startswith("file rejected")
    assert np.median([r["fit"] for r in rows]) < 0.12 and "file rejected" in summary["dropped"]


def test_d7_one_misread_passage_is_dropped_and_the_file_kept(tmp_path):
    said = BOOK.split()
    said[10:16] = OTHER.split()[:6]  # "seven wise owls watch from a" misread
    summary, rows = book_run(tmp_path, speech(" ".join(said)), "speech")
    assert summary["rejected"] == "" and summary["kept"] >= 3
    dropped = [r for r in rows if not r["kept"]]
    assert dropped and any("owls" in r["original"] for r in dropped)
    assert all(
        r["reason"].startswith(("does not match the audio", "untranscribed", "low confidence"))
        for r in dropped
    )


# ---- D9: segment writes the spoken form it aligned ------------------------------------------------


def test_d9_pairs_hold_the_spoken_form_and_the_report_the_original(tmp_path):
    text = "it cost $1,234 and 12% more than the 3rd one did last year so we said no to it again"
    spoken = " ".join(w.spoken for w in prepare(text, LOWER))
    assert "one thousand two hundred and thirty four dollars" in spoken and "twelve percent" in spoken
    summary, rows = book_run(tmp_path, speech(spoken), "speech", text=text, max_seconds=10.0)
    assert summary["kept"] == len(rows) >= 2
    assert " ".join(r["text"] for r in rows) == spoken and " ".join(r["original"] for r in rows) == text
    pairs = [(tmp_path / "book" / f"{r['id']}.txt").read_text().strip() for r in rows]
    assert pairs == [r["text"] for r in rows]


# ---- D13 and the ledger: outputs checked first; segment's own earlier output replaced ---------------


def test_d13_own_earlier_output_is_replaced_and_stale_pairs_removed(tmp_path):
    loaded = loaded_with(LOWER)
    audio = record(loaded, tmp_path / "book.wav", speech())
    first = segment(audio, BOOK, loaded, tmp_path / "out", SegmentOptions(max_seconds=6))
    again = segment(audio, BOOK, loaded, tmp_path / "out", SegmentOptions(max_seconds=12))
    assert first["kept"] > again["kept"] >= 1
    flacs = sorted(p.name for p in (tmp_path / "out").glob("*.flac"))
    assert flacs == [f"book-{i:04d}.flac" for i in range(1, again["kept"] + 1)]  # no pair of the first run
    rows = (tmp_path / "out" / REPORT).read_text().splitlines()
    assert len(rows) == again["segments"]
    (tmp_path / "out" / "notes.md").write_text("mine")
    with pytest.raises(UsageError, match="notes.md, which w2v segment did not write"):
        segment(audio, BOOK, loaded, tmp_path / "out")


def test_d13_two_recordings_share_a_folder_and_its_report(tmp_path):
    loaded = loaded_with(LOWER)
    a = record(loaded, tmp_path / "a.wav", speech())
    b = record(loaded, tmp_path / "b.wav", speech(BOOK + " again"))
    sa = segment(a, BOOK, loaded, tmp_path / "out", SegmentOptions(max_seconds=6))
    sb = segment(b, BOOK + " again", loaded, tmp_path / "out", SegmentOptions(max_seconds=6))
    ids = [json.loads(line)["id"] for line in (tmp_path / "out" / REPORT).read_text().splitlines()]
    assert len(ids) == sa["segments"] + sb["segments"] and ids[0] == "a-0001" and ids[-1].startswith("b-")


def cli(*args):
    """(exit code, output) of `w2v ARGS` in this process; a W2VError ends as `w2v`'s main() ends it."""
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    if isinstance(r.exception, W2VError):
        return r.exception.exit_code, r.output + str(r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["segment", "{a}", "--text", "transcrpt.txt", "-o", "{tmp}/new"], "--text transcrpt.txt: no such file"),
        (["segment", "{a}", "--text", "the cat", "-o", "{tmp}/file.txt"], "is a file; give a folder"),
        (["segment", "{a}", "--text", "the cat", "-o", "{tmp}/theirs"], "which w2v segment did not write"),
        (["segment", "{tmp}/missing.wav", "--text", "the cat", "-o", "{tmp}/new"], "no such audio file"),
        (["align", "{a}", "--text", "texts/a", "-f", "ctm"], "--text texts/a: no such file"),
        (["align", "{a}", "--text", "the cat", "-f", "ctm", "-f", "textgrid"], "would run together"),
    ],
    ids=["segment-text-typo", "segment-out-file", "segment-out-theirs", "segment-no-audio", "align-text-typo",
         "align-two-formats-on-stdout"],
)  # fmt: skip
def test_d8_d13_d22_usage_errors_come_before_any_model_is_loaded(tmp_path, args, message):
    (tmp_path / "a.wav").write_bytes(b"")  # never read: every check here comes first
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "book.txt").write_text("a user's file")
    fill = {"a": tmp_path / "a.wav", "tmp": tmp_path}
    code, out = cli(*[a.format(**fill) for a in args], "-m", tmp_path / "no-such-model")
    assert code == 2 and message in out and "Traceback" not in out
    assert "no-such-model" not in out  # the model was never looked for
    assert (tmp_path / "theirs" / "book.txt").read_text() == "a user's file"


def test_d8_text_that_names_a_file(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "t.txt").write_text("the cat\n")
    a = str(tmp_path / "a.wav")
    assert align_inputs([a], text=str(tmp_path / "t.txt"))[0].text == "the cat\n"
    assert align_inputs([a], text="the cat sat.")[0].text == "the cat sat."
    assert align_inputs([a], text="hello")[0].text == "hello"
    for typo in ("transcrpt.txt", "texts/a", "notes.lab", "C:\\texts\\a"):
        with pytest.raises(UsageError, match="no such file"):
            align_inputs([a], text=typo)


# ---- D10, D22: TextGrid intervals all have a length; emoji are not words ------------------------------


def test_d22_emoji_and_shortcodes_are_unaligned_not_words(tmp_path):
    text = "great 🎉 news :tada: today👍🏽"
    assert [w.spoken for w in prepare(text, LOWER)] == ["great", "", "news", "", "today"]
    loaded = loaded_with(LOWER)
    audio = record(loaded, tmp_path / "a.wav", emissions(say(LOWER, "great news today"), len(LOWER)))
    r = align_one(loaded, audio, text)
    assert [w.get("aligned", True) for w in r.words] == [True, False, True, False, True]


def test_messages_inside_align_name_align(tmp_path):
    loaded = loaded_with(LOWER)
    path = tmp_path / "tiny.wav"
    sf.write(path, np.zeros(200, np.float32), 16000, subtype="FLOAT")
    r = align_one(loaded, str(path), "the cat")
    assert "too short to align" in r.error and "transcribe" not in r.error


# ---- contracts: alignment costs, word times, text spelling, drop rules, CTM and TextGrid --------------

A, B, C, SEP = LOWER.index["a"], LOWER.index["b"], LOWER.index["c"], LOWER.index["|"]


def test_contract_word_times_score_and_fit_of_a_known_alignment(tmp_path):
    labels = [0, A, A, 0, B, SEP, 0, 0, C, 0, A, 0]  # "ab ca"
    lp = emissions(labels, len(LOWER), 0.9)
    lp[8] = np.log(np.r_[0.6, np.full(len(LOWER) - 1, 0.4 / (len(LOWER) - 1))])  # "c" unheard: blank 0.6
    loaded = loaded_with(LOWER)
    r = align_one(loaded, record(loaded, tmp_path / "k.wav", lp), "ab ca")
    c = 0.4 / (len(LOWER) - 1)
    conf = [w.pop("confidence") for w in r.words]
    assert r.words[0] == {"word": "ab", "start": 0.02, "end": 0.1, "score": 0.9, "fit": 1.0}
    want = round(float(np.exp((np.log(c) + np.log(0.9)) / 2)), 3), round(float(np.sqrt(c / 0.6)), 3)
    assert r.words[1] == {"word": "ca", "start": 0.16, "end": 0.22, "score": want[0], "fit": want[1]}
    assert 0 < conf[1] < conf[0] < 1  # a letter the model does not hear makes its word less sure
    for w, p in zip(r.words, conf):
        w["confidence"] = p
    ctm = render(r, "ctm")  # the calibrated confidence is CTM's confidence column
    assert ctm == f"k 1 0.020 0.080 ab {conf[0]:.3f}\nk 1 0.160 0.060 ca {conf[1]:.3f}\n"
    grid = render(r, "textgrid").splitlines()
    assert grid[:8] == ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", "xmax = 0.245",
                        "tiers? <exists>", "size = 1", "item []:"]  # fmt: skip
    texts = [line.split("=", 1)[1].strip() for line in grid if line.strip().startswith("text =")]
    assert texts == ['""', '"ab"', '""', '"ca"', '""']
    assert "            xmin = 0.16" in grid and "            xmax = 0.22" in grid


def test_cli_segment_reports_a_rejected_file_with_exit_1(tmp_path, monkeypatch):
    import w2vcli.checkpoints.resolve as resolve

    loaded = loaded_with(LOWER)
    audio = record(loaded, tmp_path / "quiet.wav", emissions([0] * 1000, len(LOWER), 0.99), "silence")
    monkeypatch.setattr(resolve, "load_model", lambda *a, **k: loaded)
    code, out = cli("segment", audio, "--text", BOOK, "-o", tmp_path / "out", "--max-seconds", "6")
    assert code == 1 and "file rejected" in out and "Traceback" not in out
    assert (tmp_path / "out" / REPORT).is_file() and not list((tmp_path / "out").glob("*.flac"))
    assert os.path.basename(audio) in out


def test_align_refuses_audio_piped_on_stdin(tmp_path):
    """`cat a.wav | w2v align -` is refused in one line, before any model loads, as in transcribe."""
    buf = tmp_path / "a.wav"
    sf.write(buf, np.zeros(1600, dtype=np.float32), 16000)
    r = CliRunner().invoke(
        app, ["align", "-", "--text", "hello", "-m", "no/such/model"], input=buf.read_bytes()
    )
    assert isinstance(r.exception, UsageError)  # the command line turns it into one line, exit 2
    assert "stdin holds WAV audio, not a list of paths" in str(r.exception)
