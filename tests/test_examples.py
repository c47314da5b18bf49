"""The bundled example corpus (examples/mini) and the script that makes it (examples/make_data.py)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "examples" / "mini"
SPLITS = ("unlabelled", "labelled", "dev", "test")
# Intended seconds per split (make_data.py asks for 225, 600, 36 and 90, and stops at the first file past it).
RANGES = {"unlabelled": (200, 260), "labelled": (590, 630), "dev": (30, 50), "test": (85, 110)}


def _load_make_data():
    spec = importlib.util.spec_from_file_location("make_data", ROOT / "examples" / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_data"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


make_data = _load_make_data()


def _metadata() -> list[dict[str, str]]:
    lines = (MINI / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def test_every_labelled_file_has_a_transcript_and_unlabelled_none():
    for split in SPLITS:
        flacs = sorted((MINI / split).glob("*.flac"))
        assert flacs, split
        for flac in flacs:
            txt = flac.with_suffix(".txt")
            if split == "unlabelled":
                assert not txt.exists(), txt
            else:
                assert txt.read_text(encoding="utf-8").strip(), txt
    # nothing else lies in the split folders (no stray .txt without audio)
    for split in SPLITS:
        for f in (MINI / split).iterdir():
            assert f.suffix in (".flac", ".txt") and f.with_suffix(".flac").exists(), f


def test_audio_is_16k_mono_and_durations_fit_each_split():
    for split in SPLITS:
        total = 0.0
        for flac in (MINI / split).glob("*.flac"):
            info = sf.info(flac)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), flac
            assert 0.5 < info.duration < 30.0, flac
            total += info.duration
        low, high = RANGES[split]
        assert low <= total <= high, (split, total)


def test_audio_decodes_to_speech_not_silence():
    x, _ = sf.read(next((MINI / "test").glob("*.flac")), dtype="float32")
    peak = abs(x).max()
    assert 0.03 < peak < 0.3  # levels -26..-14 dBFS
    assert (abs(x) > peak / 10).mean() > 0.05


def test_metadata_matches_files_and_no_sentence_is_shared_between_splits():
    rows = _metadata()
    on_disk = {str(p.relative_to(MINI)) for s in SPLITS for p in (MINI / s).glob("*.flac")}
    assert {r["path"] for r in rows} == on_disk
    sentences: dict[str, str] = {}
    for r in rows:
        if r["split"] != "unlabelled":
            assert (MINI / r["path"]).with_suffix(".txt").read_text(encoding="utf-8").strip() == r["text"]
        for s in make_data.SPLIT_RE.split(r["text"]):
            key = make_data.sentence_key(s)
            assert sentences.setdefault(key, r["split"]) == r["split"], s
    voices = {split: {r["voice"] for r in rows if r["split"] == split} for split in SPLITS}
    assert voices["test"] == voices["labelled"] == set(make_data.MINI_VOICES)


def test_corpus_is_small():
    size = sum(f.stat().st_size for f in MINI.rglob("*") if f.is_file())
    files = sum(1 for f in MINI.rglob("*") if f.is_file())
    assert size < 14 * 2**20 and files <= 500, (size, files)  # issue 16: under 15 MB


@pytest.mark.parametrize(
    "sentence, ok",
    [
        ("You are not paid enough to worry.", True),
        ("Eat right, stay fit, and die anyway.", True),
        ("It isn't necessary to have relatives in Kansas City in order to be unhappy.", True),
        ("Too short.", False),
        ("Billy: Well, this generation dropped it.", False),  # speaker label
        ("There are 10 kinds of people in the world.", False),  # digits
        ('He said "no" to the offer.', False),  # quotes
        ("The IBM machine was very large indeed.", False),  # acronym, spelt out when spoken
        ("Mr Smith went to see the doctor today.", False),  # abbreviation
        ("We have a saying -- never give up now.", False),
        ("this one starts with a small letter.", False),
        ("No ending punctuation in this one here", False),
        (" ".join(["word"] * 21) + ".", False),
    ],
)
def test_sentence_filter(sentence, ok):
    assert (make_data.clean_sentence(sentence) is not None) is ok


def test_fortune_entries_drop_attributions_and_overstrike(tmp_path):
    text = "First line of it\n  and the rest.\n\t\t-- Somebody Famous\n%\nB\x08Bold text is here now.\n%\n"
    assert make_data.fortune_entries(text) == ["First line of it and the rest.", "Bold text is here now."]


def test_load_sentences_dedupes_and_is_sorted(tmp_path):
    (tmp_path / "wisdom").write_text(
        "Every cloud has a silver lining. Nothing ventured, nothing gained!\n%\n"
        "every cloud has a silver lining.\n%\nAll 4 of them went home.\n%\n"
    )
    (tmp_path / "ethnic").write_text("This file is not on the list at all.\n%\n")
    got = make_data.load_sentences(tmp_path)
    assert got == ["Every cloud has a silver lining.", "Nothing ventured, nothing gained!"]


def test_lm_text_keeps_only_sentences_never_spoken_outside_the_labelled_split(tmp_path):
    fortunes, out = tmp_path / "fortunes", tmp_path / "set"
    fortunes.mkdir()
    out.mkdir()
    sentences = [
        "Every cloud has a silver lining.",
        "Nothing ventured, nothing gained!",
        "Look before you leap.",
        "Haste makes waste.",
        "Time is money for us.",
    ]
    (fortunes / "wisdom").write_text("".join(f"{x}\n%\n" for x in sentences))
    (out / "metadata.tsv").write_text(
        "path\ttext\tsplit\tvoice\trate\tpitch\tseconds\n"
        "u/0.flac\tEvery cloud has a silver lining. Haste makes waste.\tunlabelled\tespeak:en-us\t1\t1\t3.0\n"
        "l/0.flac\tTime is money for us.\tlabelled\tespeak:en-us\t1\t1\t1.0\n"
        "t/0.flac\tLook before you leap.\ttest\tespeak:en-us\t1\t1\t1.0\n"
    )
    assert make_data.lm_sentences(out, fortunes) == [
        "Nothing ventured, nothing gained!",
        "Time is money for us.",
    ]


def test_plan_is_deterministic_and_voices_take_turns():
    import random

    sentences = [f"Sentence number {w} is here." for w in ("one", "two", "three", "four", "five")]
    voices = make_data.parse_voices("espeak:en-us+m3,flite:slt")

    def plan(split):
        return make_data.plan_items(split, sentences, 0, voices, random.Random(7), (2, 3), None)

    assert plan("labelled") == plan("labelled")
    assert [i.voice for i in plan("labelled")] == ["espeak:en-us+m3", "flite:slt"] * 2 + ["espeak:en-us+m3"]
    unlabelled = plan("unlabelled")
    assert " ".join(i.text for i in unlabelled) == " ".join(sentences) and len(unlabelled) < len(sentences)
    assert all(0.85 <= i.rate <= 1.2 and 0.88 <= i.pitch <= 1.12 for i in unlabelled)


@pytest.mark.parametrize("spec", ["espeak", "festival:kal", "flite:nosuchvoice", ""])
def test_bad_voices_are_refused(spec):
    with pytest.raises(SystemExit):
        make_data.parse_voices(spec)


def test_synth_commands():
    item = make_data.Item(
        "x/y", "dev", "Hello there my friend.", "espeak:en-gb+f4", 1.2, 0.9, -20.0, 0.1, None, 1
    )
    cmd, stdin = make_data.synth_command(item, "o.wav")
    assert cmd[:7] == ["espeak-ng", "-v", "en-gb+f4", "-s", "210", "-p", "45"] and stdin == item.text
    cmd, stdin = make_data.synth_command(item.__class__(**{**item.__dict__, "voice": "flite:slt"}), "o.wav")
    assert "duration_stretch=0.833" in cmd and "int_f0_target_mean=144.0" in cmd and stdin is None


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_build_tiny_corpus_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.setattr(make_data, "CHUNK", 2)  # synthesise two files at a time, not eight
    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    (fortunes / "wisdom").write_text(
        "".join(
            f"The {c} {a} sat on the mat.\n%\n"
            for c in ("red", "blue", "green")
            for a in ("cat", "dog", "owl")
        )
    )
    preset = make_data.Preset({"test": 1.0, "labelled": 1.0, "unlabelled": 3.0}, (2, 2), ("espeak:en-us+m3",))
    outs = []
    for name in ("a", "b"):
        rows = make_data.build(tmp_path / name, preset, seed=3, workers=1, noise_db=-60.0, fortunes=fortunes)
        outs.append({p.name: p.read_bytes() for p in (tmp_path / name).rglob("*") if p.is_file()})
    assert outs[0] == outs[1]
    splits = [it.split for it, _ in rows]
    assert splits == ["test", "labelled", "unlabelled"]  # each split stops at the first file past its target
    flac = tmp_path / "a" / f"{rows[0][0].path}.flac"
    info = sf.info(flac)
    assert (info.samplerate, info.channels) == (16000, 1) and info.duration > 1.0
    assert flac.with_suffix(".txt").read_text().strip() == rows[0][0].text
    assert not (tmp_path / "a" / f"{rows[2][0].path}.txt").exists()
    with pytest.raises(SystemExit, match="not empty"):
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "keep.wav").write_bytes(b"")
        make_data.build(tmp_path / "c", preset, fortunes=fortunes)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_command_line_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(make_data, "CHUNK", 1)
    tiny = make_data.Preset({"test": 0.5, "unlabelled": 0.5}, (1, 1), make_data.MINI_VOICES)
    monkeypatch.setitem(make_data.PRESETS, "large", tiny)
    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    (fortunes / "wisdom").write_text("A stitch in time saves nine.\n%\nLook before you leap, my friend.\n%\n")
    argv = ["--large", "--out", str(tmp_path / "out"), "--fortunes", str(fortunes), "--workers", "1"]
    make_data.main([*argv, "--voices", "espeak:en-gb+f4", "--noise-dbfs", "-40", "--seed", "5"])
    assert "wrote" in capsys.readouterr().err
    rows = (tmp_path / "out" / "metadata.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[3] for r in rows] == ["espeak:en-gb+f4"] * 2
    x, _ = sf.read(tmp_path / "out" / rows[0].split("\t")[0])
    assert abs(x[:400]).max() > 0.001  # the leading silence carries the added noise
    with pytest.raises(SystemExit):
        make_data.main([*argv, "--voices", "festival:kal"])


def _study():
    spec = importlib.util.spec_from_file_location("study", ROOT / "examples" / "study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    return study


def test_study_preset_speaks_test_unseen_with_other_voices_of_the_same_engines():
    study = make_data.PRESETS["study"]
    seen, unseen = set(study.voices_of("labelled")), set(study.voices_of("test-unseen"))
    assert study.voices_of("dev") == study.voices_of("test-seen") == study.voices
    assert len(unseen) == len(seen) == 8 and not seen & unseen
    engines = [sorted(v.partition(":")[0] for v in vs) for vs in (seen, unseen)]
    assert engines[0] == engines[1]
    assert "unlabelled" not in study.seconds


def test_study_split_writes_the_arms_manifests_with_one_minute_of_every_voice(tmp_path):
    import json

    study = _study()
    prep = tmp_path / "prep"
    prep.mkdir()
    rows = []
    for split, n, seconds in (
        ("labelled", 40, 4.0),
        ("dev", 5, 3.0),
        ("test-seen", 6, 3.0),
        ("test-unseen", 7, 3.0),
    ):
        for i in range(n):
            rows.append(
                {
                    "id": f"{split}/x{i:04d}-v{i % 8}",
                    "audio": f"audio/{split}/{i}.flac",
                    "duration": seconds,
                    "text": "a",
                }
            )
    (prep / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    (prep / "vocab.json").write_text("{}")
    counts = study.split(prep, tmp_path / "data")
    assert counts == {"l10": 40, "l1": 15, "test-seen": 6, "test-unseen": 7}
    l1 = [json.loads(line) for line in (tmp_path / "data" / "l1" / "train.jsonl").read_text().splitlines()]
    assert [r["id"] for r in l1] == [f"labelled/x{i:04d}-v{i % 8}" for i in range(15)]  # 60 s, in file order
    assert {r["id"][-2:] for r in l1} == {f"v{i}" for i in range(8)}
    assert l1[0]["audio"] == str((prep / "audio/labelled/0.flac").resolve())
    for name in ("l1", "l10"):
        assert len((tmp_path / "data" / name / "valid.jsonl").read_text().splitlines()) == 5
        assert (tmp_path / "data" / name / "vocab.json").is_file()
    with pytest.raises(SystemExit, match="test-unseen"):
        (prep / "train.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows if "unseen" not in r["id"])
        )
        study.split(prep, tmp_path / "data2")


def test_study_summary_reports_each_run_the_reductions_and_the_seen_unseen_ratio(tmp_path, capsys):
    import json

    study = _study()
    cer = {"pretrained-l10": 0.2, "scratch-l10": 0.4, "pretrained-l1": 0.3, "scratch-l1": 0.9}
    for name, c in cer.items():
        (tmp_path / name).mkdir()
        rows = [
            {"update": 100, "loss": 2.0, "updates_per_s": 2.0},
            {"update": 400, "loss": 1.0, "updates_per_s": 1.0},
        ]
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for test, factor in (("test-seen", 1.0), ("test-unseen", 1.2)):
            groups = [{"group": "flite-slt", "sentences": 3, "wer": 0.9, "cer": c * factor}]
            score = {"wer": 0.5, "cer": c * factor, "groups": groups}
            (tmp_path / f"{name}-{test}-score.json").write_text(json.dumps(score))
    summary = study.summarize(tmp_path)
    run = summary["runs"]["pretrained-l10"]
    assert run["updates"] == 400 and run["minutes"] == 5.8  # 50 s + 300 s
    assert run["test-unseen"]["greedy"]["by_group"] == {"flite-slt": 0.24} and run["test-seen"]["lm"] is None
    findings = summary["findings"]
    assert findings["l10/greedy/test-seen: pretrained vs scratch"] == 0.5
    assert findings["l1/greedy/test-unseen: pretrained vs scratch"] == round(1 - 0.36 / 1.08, 4)
    assert findings["l1/greedy: pretrained unseen / seen CER"] == 1.2
    assert (
        "l10/lm/test-seen: pretrained vs scratch" in findings
        and findings["l10/lm/test-seen: pretrained vs scratch"] is None
    )
    out = capsys.readouterr().out
    assert "l10/greedy/test-seen: pretrained vs scratch: 50% relative CER reduction" in out
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_heldout_preset_reads_other_collections_and_voices():
    preset = make_data.PRESETS["heldout"]
    assert len(set(preset.voices)) == 48
    assert {v.partition(":")[0] for v in preset.voices} == {"espeak", "flite", "festival"}
    assert not set(make_data.HELDOUT_FORTUNES) & set(make_data.FORTUNE_FILES)


def test_noisy_copy_is_at_the_asked_snr(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "test").mkdir()
    for i in range(3):
        speech = 0.1 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000) * (1 + rng.random())
        sf.write(tmp_path / "test" / f"t{i}.flac", speech, 16000, subtype="PCM_16")
        (tmp_path / "test" / f"t{i}.txt").write_text("a b\n")
    assert make_data.write_noisy_copy(tmp_path, "test", 10.0, seed=1) == 3
    for i in range(3):
        clean, _ = sf.read(tmp_path / "test" / f"t{i}.flac")
        noisy, _ = sf.read(tmp_path / "test-noisy" / f"t{i}.flac")
        noise = noisy - clean
        snr = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
        assert abs(snr - 10.0) < 0.1
        assert (tmp_path / "test-noisy" / f"t{i}.txt").read_text() == "a b\n"
