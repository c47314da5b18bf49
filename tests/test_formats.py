"""Transcription results and their writers: subtitle clocks, cue grouping, TSV rows, the JSON object,
TextGrid intervals that all have a length."""

import json

from w2vcli.decoding.formats import FORMATS, Transcription, cues, render

WORDS = [
    {"word": "hello", "start": 0.1, "end": 0.5},
    {"word": "world", "start": 0.52, "end": 0.9},
    {"word": "again", "start": 3.0, "end": 3.4},  # after a pause: a new cue
]
RESULT = Transcription("a.wav", 0, text="hello world again", duration=3661.5, elapsed=1.5, words=WORDS)


def test_cues_break_on_pauses_length_and_characters():
    assert cues(WORDS) == [(0.1, 0.9, "hello world"), (3.0, 3.4, "again")]
    many = [{"word": "w", "start": i * 0.5, "end": i * 0.5 + 0.4} for i in range(30)]
    got = cues(many)
    assert all(e - s <= 6.0 for s, e, _ in got) and len(got) == 3
    long = [{"word": "x" * 30, "start": i, "end": i + 0.5} for i in range(3)]
    assert len(cues(long)) == 3  # 42 characters at most per cue


def test_srt_and_vtt():
    srt = render(RESULT, "srt")
    assert srt.startswith(
        "1\n00:00:00,100 --> 00:00:00,900\nhello world\n\n2\n00:00:03,000 --> 00:00:03,400\nagain\n"
    )
    vtt = render(RESULT, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.100 --> 00:00:00.900\nhello world\n")
    no_words = Transcription("a.wav", 0, text="hi", duration=3661.5)
    assert "01:01:01,500" in render(no_words, "srt")  # hours, minutes, seconds, milliseconds
    assert render(Transcription("a", 0, text="", duration=1.0), "srt") == ""


def test_tsv_txt_json():
    assert render(RESULT, "tsv").splitlines() == [
        "start\tend\ttext",
        "0.100\t0.500\thello",
        "0.520\t0.900\tworld",
        "3.000\t3.400\tagain",
    ]
    assert render(Transcription("a", 0, text="hi", duration=2.0), "tsv").splitlines()[1] == "0.000\t2.000\thi"
    assert render(RESULT, "txt") == "hello world again\n"
    for fmt in ("json", "jsonl"):
        d = json.loads(render(RESULT, fmt))
        # word times stay out of JSON unless asked for (subtitles and TSV use them anyway)
        assert d == {
            "audio": "a.wav",
            "text": "hello world again",
            "duration": 3661.5,
            "elapsed": 1.5,
            "rtf": 0.0004,
        }
    assert "\n" not in render(RESULT, "jsonl").rstrip("\n")
    assert set(FORMATS) == {"txt", "json", "jsonl", "tsv", "srt", "vtt", "ctm", "textgrid"}


def test_json_object_with_timestamps_ids_and_errors():
    shown = Transcription(
        "a.wav", 3, id="u1", text="hi", duration=2.0, elapsed=0.5, words=WORDS, show_words=True
    )
    assert list(shown.to_dict()) == ["audio", "id", "text", "duration", "elapsed", "rtf", "words"]
    assert shown.to_dict()["rtf"] == 0.25 and shown.to_dict()["words"] == WORDS
    chars = Transcription("a.wav", 0, text="", duration=0.0, elapsed=0.0, chars=[])
    assert chars.to_dict()["chars"] == [] and chars.to_dict()["rtf"] is None  # no audio: no ratio
    failed = Transcription("b.wav", 1, id="u2", error="b.wav: not an audio file")
    assert failed.to_dict() == {
        "audio": "b.wav",
        "id": "u2",
        "text": None,
        "error": "b.wav: not an audio file",
    }


def test_d10_textgrid_gives_zero_length_words_a_share():
    words = [{"word": "a", "start": 0.1, "end": 0.5, "score": 0.9},
             {"word": "b", "start": 0.5, "end": 0.5, "score": 0.0, "aligned": False},
             {"word": "c", "start": 0.5, "end": 0.5, "score": 0.0, "aligned": False}]  # fmt: skip
    grid = render(Transcription("x.wav", 0, text="a b c", duration=0.5, words=words), "textgrid")
    times = [
        float(line.split("=")[1]) for line in grid.splitlines() if line.strip().startswith(("xmin", "xmax"))
    ]
    spans = list(zip(times[4::2], times[5::2]))  # after the file's and the tier's own bounds
    assert spans == [(0.0, 0.1), (0.1, 0.5), (0.5, 0.500001), (0.500001, 0.500002)]
    assert all(b > a for a, b in spans) and times[1] == times[3] == 0.500002
