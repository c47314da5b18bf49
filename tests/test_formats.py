"""Transcript writers: subtitle clocks, cue grouping, TSV rows, JSON without private keys."""

import json

from w2vcli.decoding.formats import FORMATS, cues, render

WORDS = [
    {"word": "hello", "start": 0.1, "end": 0.5},
    {"word": "world", "start": 0.52, "end": 0.9},
    {"word": "again", "start": 3.0, "end": 3.4},  # after a pause: a new cue
]
RESULT = {"audio": "a.wav", "text": "hello world again", "duration": 3661.5, "_index": 0, "_words": WORDS}


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
    no_words = {"audio": "a.wav", "text": "hi", "duration": 3661.5}
    assert "01:01:01,500" in render(no_words, "srt")  # hours, minutes, seconds, milliseconds
    assert render({"audio": "a", "text": "", "duration": 1.0}, "srt") == ""


def test_tsv_txt_json():
    assert render(RESULT, "tsv").splitlines() == [
        "start\tend\ttext",
        "0.100\t0.500\thello",
        "0.520\t0.900\tworld",
        "3.000\t3.400\tagain",
    ]
    assert render({"text": "hi", "duration": 2.0}, "tsv").splitlines()[1] == "0.000\t2.000\thi"
    assert render(RESULT, "txt") == "hello world again\n"
    for fmt in ("json", "jsonl"):
        d = json.loads(render(RESULT, fmt))
        assert d == {"audio": "a.wav", "text": "hello world again", "duration": 3661.5}
    assert "\n" not in render(RESULT, "jsonl").rstrip("\n")
    assert set(FORMATS) == {"txt", "json", "jsonl", "tsv", "srt", "vtt"}
