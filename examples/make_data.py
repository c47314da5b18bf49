#!/usr/bin/env python3
"""Synthesise the example speech corpus: English sentences from Debian's fortunes, spoken by
espeak-ng and flite voices, written as 16 kHz mono FLAC with `NAME.txt` transcripts.

    python examples/make_data.py                      # the bundled set -> examples/mini/
    python examples/make_data.py --large --out examples/large   # ~1 h unlabelled, for experiments
    python examples/make_data.py --large --out examples/large --lm-text lm.txt   # text for `w2v lm`
    python examples/make_data.py --study --out ../study_data   # label-efficiency study, see below
    python examples/make_data.py --pretrain-corpus --hours 10 --out ../pretrain_data  # ~10 h, see below
    python examples/make_data.py --heldout --seed 7 --out ../heldout  # what no recipe was tuned on, see below

Splits: `unlabelled/` (audio only, several sentences per file, for pretraining), `labelled/`
(fine-tuning), `dev/` and `test/` (held-out sentences, same voices). No sentence appears in two
splits. `metadata.tsv` lists every file with its text, voice and synthesis settings.
Deterministic: the same seed and tools give the same sentences, voices and settings.
Needs espeak-ng (flite is optional), numpy, soundfile and soxr.

`--study` (examples/experiment.sh) has no unlabelled split: its unlabelled audio is the pretraining
corpus. `labelled/` (10 min) and `dev/` are spoken by the 8 voices of the bundled set; `test-seen/` by
the same voices, `test-unseen/` by 8 others of the same engines (6 espeak-ng, 2 flite) that only the
pretraining corpus speaks. Its test and dev sentences come from the held-out ones (HELD_OUT_SENTENCES).

`--heldout` is speech that nothing was tuned on: 10 min labelled, 5 min dev and 5 min test from the
fortune collections that no other set and no pretraining corpus reads (HELDOUT_FORTUNES, less any
sentence those do speak), by 48 voices (40 espeak-ng accent x variant pairs, the 5 flite voices and
the 3 festival ones), plus `test-noisy/`: the test files mixed with white, pink or brown noise at
--noisy-snr dB (default 10). Choose a seed no recipe was tuned on.

`--pretrain-corpus` writes only `unlabelled/` (plus metadata.tsv): HOURS of speech for a shipped
pretrained starting point, from every English espeak-ng voice (the `gmw/` ones of `espeak-ng
--voices=en`; the MBROLA ones need mbrola, which is not in Debian's main archive) combined with
every espeak-ng variant (`espeak-ng --voices=variant`) and no variant, every flite voice but the
limited-domain awb_time, and the English festival voices installed (`text2wave`), at widely varied
rates and pitches. Its sentences leave out every sentence that the mini and large sets could hold out
for dev or test (see HELD_OUT_SENTENCES); as there are fewer sentences than 10 hours need, each is
spoken more than once, by different voices. Re-running the same command resumes: files already
written are kept (the plan is the same), only missing ones are synthesised.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
# Debian ships offensive fortunes separately (fortunes-off, in off/); of the rest we keep only
# collections of plain prose, leaving out ASCII art, jargon, lyrics, non-English and topics
# (ethnic, men-women, drugs, politics) whose jokes we would rather not bundle.
FORTUNE_FILES = tuple(
    "computers cookie education food fortunes goedel humorists kids law literature love magic medicine "
    "miscellaneous paradoxum people pets platitudes pratchett riddles science sports startrek tao wisdom work".split()
)
MIN_WORDS, MAX_WORDS = 4, 20
SAMPLE_RATE = 16000
CHUNK = 8  # files planned at a time; fixed, so the output does not depend on --workers

WORD = r"[A-Za-z]+(?:['-][A-Za-z]+)*"
# No colons: in fortunes they mostly mark a speaker ("Billy: Well, ..."), which is not spoken.
SENTENCE_RE = re.compile(rf"^(?=[A-Z]){WORD}(?:[,;]? {WORD})*[.!?]$")
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "inc", "ltd", "co", "eg", "ie"}
SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")

# Voices of the bundled set: six espeak-ng accents and variants plus two flite voices.
MINI_VOICES = tuple(
    "espeak:en-us+m3 espeak:en-us+f2 espeak:en-gb+m1 espeak:en-gb-x-rp+f4 espeak:en-gb-scotland+m5 "
    "espeak:en-029+m7 flite:slt flite:awb".split()
)
LARGE_VOICES = MINI_VOICES + tuple(
    "espeak:en-us-nyc+m2 espeak:en-gb-x-gbclan+f3 espeak:en-gb-x-gbcwmd+m4 espeak:en-us+f1 flite:rms flite:kal16".split()
)
# The study's voices heard only in unlabelled audio: none of MINI_VOICES, the same engines in the same
# proportions (6 espeak-ng accent x variant pairs, 2 flite voices).
STUDY_UNSEEN_VOICES = LARGE_VOICES[len(MINI_VOICES) :] + ("espeak:en-029+f5", "espeak:en-gb-scotland+m2")
# Collections no other set reads, for --heldout (lyrics and tech jokes: other words, other rhythm).
HELDOUT_FORTUNES = tuple("songs-poems definitions linux knghtbrd perl zippy news debian linuxcookie".split())
HELDOUT_VOICES = (
    tuple(
        f"espeak:{accent}+{variant}"
        for accent in "en-029 en-gb en-gb-scotland en-gb-x-gbclan en-gb-x-gbcwmd en-gb-x-rp en-us en-us-nyc".split()
        for variant in "m2 f1 m6 f3 klatt3".split()
    )
    + tuple(f"flite:{v}" for v in ("awb", "kal", "kal16", "rms", "slt"))
    + tuple(f"festival:{v}" for v in ("cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone"))
)
# Typical mean F0 (Hz) of each flite voice, the centre of its pitch jitter.
FLITE_F0 = {"slt": 160.0, "awb": 105.0, "rms": 100.0, "kal16": 105.0, "kal": 105.0}


@dataclass(frozen=True)
class Preset:
    """Target seconds of audio per split and sentences per unlabelled file."""

    seconds: dict[str, float]
    sentences_per_unlabelled: tuple[int, int]
    voices: tuple[str, ...]
    split_voices: dict[str, tuple[str, ...]] | None = None  # splits spoken by other voices than `voices`

    def voices_of(self, split: str) -> tuple[str, ...]:
        return (self.split_voices or {}).get(split, self.voices)


PRESETS = {
    "mini": Preset({"test": 90, "dev": 36, "labelled": 600, "unlabelled": 225}, (2, 4), MINI_VOICES),
    "large": Preset({"test": 300, "dev": 300, "labelled": 600, "unlabelled": 3600}, (3, 5), LARGE_VOICES),
    "study": Preset(
        {"test-seen": 300, "test-unseen": 300, "dev": 300, "labelled": 600},
        (3, 5),
        MINI_VOICES,
        {"test-unseen": STUDY_UNSEEN_VOICES},
    ),
    "heldout": Preset({"test": 300, "dev": 300, "labelled": 600}, (3, 5), HELDOUT_VOICES),
}


@dataclass(frozen=True)
class Item:
    """One file to synthesise; every random choice is made when planning, none in the workers."""

    path: str  # relative to the output dir, without extension
    split: str
    text: str
    voice: str  # engine:name
    rate: float  # speaking-rate factor, 1 = the voice's default
    pitch: float  # pitch factor, 1 = the voice's default
    level_db: float  # peak level in dBFS; modest levels like real recordings, and FLAC packs them tighter
    margin: float  # seconds of silence kept or added at each end
    noise_db: float | None  # white-noise RMS in dBFS, None for none
    seed: int


def fortune_entries(text: str) -> list[str]:
    """Fortunes of one file, attributions dropped, whitespace collapsed."""
    text = re.sub(r".\x08", "", text)  # overstriking: "_\bA" prints an underlined A
    entries = []
    for block in re.split(r"^%$", text, flags=re.M):
        lines = []
        for line in block.splitlines():
            if line.strip().startswith("--"):
                break  # attribution; what follows belongs to it
            lines.append(line.strip())
        entries.append(" ".join(" ".join(lines).split()))
    return [e for e in entries if e]


def clean_sentence(sentence: str) -> str | None:
    """The sentence if an English reader would speak exactly its words, else None."""
    if not SENTENCE_RE.match(sentence):
        return None
    words = re.findall(r"[A-Za-z'-]+", sentence)
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    for w in words:
        # Acronyms and initials are spelt out by the synthesiser, so their text is not what is heard.
        if w.lower() in ABBREVIATIONS or (len(w) > 1 and w.isupper()) or (len(w) == 1 and w not in "aAI"):
            return None
    return sentence


def sentence_key(sentence: str) -> str:
    return " ".join(re.findall(r"[a-z']+", sentence.lower()))


def load_sentences(fortunes: Path = FORTUNES, files: tuple[str, ...] = FORTUNE_FILES) -> list[str]:
    """Clean, distinct sentences from the fortune collections, sorted (independent of file order)."""
    seen: dict[str, str] = {}
    for name in files:
        path = fortunes / name
        if not path.is_file():
            continue
        for entry in fortune_entries(path.read_text(encoding="utf-8", errors="replace")):
            for s in SPLIT_RE.split(entry):
                s = clean_sentence(s)
                if s is not None:
                    seen.setdefault(sentence_key(s), s)
    return sorted(seen.values())


def lm_sentences(out: Path, fortunes: Path = FORTUNES) -> list[str]:
    """Text-only data for a language model: the fortune sentences spoken in none of OUT's unlabelled,
    dev and test audio (the labelled transcripts are training data, so they stay)."""
    meta = out / "metadata.tsv"
    if not meta.is_file():
        raise SystemExit(f"{meta} not found: build the set first")
    spoken = set()
    for line in meta.read_text(encoding="utf-8").splitlines()[1:]:
        _, text, split, *_ = line.split("\t")
        if split != "labelled":
            spoken.update(sentence_key(s) for s in SPLIT_RE.split(text))
    return [s for s in load_sentences(fortunes) if sentence_key(s) not in spoken]


def parse_voices(spec: str | tuple[str, ...]) -> tuple[str, ...]:
    """'espeak:en-us+m3,flite:slt' -> ('espeak:en-us+m3', 'flite:slt'), checking engines and names."""
    voices = tuple(v.strip() for v in spec.split(",") if v.strip()) if isinstance(spec, str) else spec
    for v in voices:
        engine, _, name = v.partition(":")
        if engine not in ("espeak", "flite", "festival") or not name:
            raise SystemExit(f"bad voice {v!r}: write engine:name, e.g. espeak:en-us+m3 or flite:slt")
        if engine == "flite" and name not in FLITE_F0:
            raise SystemExit(f"unknown flite voice {name!r}: use one of {', '.join(FLITE_F0)}")
        if engine == "festival" and name not in festival_voices():
            installed = ", ".join(festival_voices()) or "none installed"
            raise SystemExit(f"unknown festival voice {name!r}: use one of {installed}")
    if not voices:
        raise SystemExit("no voices given")
    return voices


def voice_slug(voice: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", voice.lower()).strip("-")


def plan_items(
    split: str,
    sentences: list[str],
    start: int,
    voices: tuple[str, ...],
    rng: random.Random,
    per_file: tuple[int, int],
    noise_db: float | None,
) -> list[Item]:
    """Files for `sentences` in order; voices take turns (so every split hears every voice)."""
    items, i = [], 0
    while i < len(sentences):
        k = rng.randint(*per_file) if split == "unlabelled" else 1
        text = " ".join(sentences[i : i + k])
        n = start + len(items)
        voice = voices[n % len(voices)]
        items.append(
            Item(
                path=f"{split}/{split[0]}{n:04d}-{voice_slug(voice)}",
                split=split,
                text=text,
                voice=voice,
                rate=round(rng.uniform(0.85, 1.2), 3),
                pitch=round(rng.uniform(0.88, 1.12), 3),
                level_db=round(rng.uniform(-26.0, -14.0), 1),
                margin=round(rng.uniform(0.05, 0.25), 3),
                noise_db=None if noise_db is None else round(rng.uniform(noise_db - 10, noise_db), 1),
                seed=rng.randrange(2**31),
            )
        )
        i += k
    return items


def synth_command(item: Item, wav: str) -> tuple[list[str], str | None]:
    """The engine's command line and its stdin."""
    engine, _, name = item.voice.partition(":")
    if engine == "espeak":
        speed, pitch = round(175 * item.rate), round(min(99, max(0, 50 * item.pitch)))
        return ["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch), "-w", wav, "--stdin"], item.text
    if engine == "festival":
        # item.pitch is a speed factor applied after synthesis (render); Duration_Stretch makes up for
        # its tempo so the result speaks at item.rate. HTS voices ignore Duration_Stretch: there the
        # tempo follows item.pitch only.
        stretch = item.pitch / item.rate
        return [
            "text2wave",
            "-eval",
            f"(voice_{name})",
            "-eval",
            f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
            "-o",
            wav,
        ], item.text
    f0 = FLITE_F0[name] * item.pitch
    settings = f"--setf duration_stretch={1 / item.rate:.3f} --setf int_f0_target_mean={f0:.1f}".split()
    return ["flite", "-voice", name, *settings, "-t", item.text, "-o", wav], None


def render(item: Item, out: Path) -> tuple[Item, float]:
    """Synthesise, resample to 16 kHz, trim, set the level, add noise; write FLAC (+ .txt when labelled)."""
    import numpy as np
    import soundfile as sf
    import soxr

    with tempfile.TemporaryDirectory(prefix="w2v-make-data-") as tmp:
        wav = os.path.join(tmp, "speech.wav")
        cmd, stdin = synth_command(item, wav)
        subprocess.run(cmd, input=stdin, text=True, check=True, capture_output=True)
        x, sr = sf.read(wav, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if item.voice.startswith("festival:"):
        # Play faster/slower by item.pitch: pitch, formants and tempo move together (another speaker).
        x = soxr.resample(x, sr * item.pitch, SAMPLE_RATE, quality="HQ")
        sr = SAMPLE_RATE
    if sr != SAMPLE_RATE:
        x = soxr.resample(x, sr, SAMPLE_RATE, quality="HQ")
    loud = np.flatnonzero(np.abs(x) > np.abs(x).max() * 10 ** (-40 / 20))  # -40 dB below the peak
    pad = round(item.margin * SAMPLE_RATE)
    x = np.concatenate([np.zeros(pad, np.float32), x[loud[0] : loud[-1] + 1], np.zeros(pad, np.float32)])
    x *= 10 ** (item.level_db / 20) / np.abs(x).max()
    if item.noise_db is not None:
        rng = np.random.default_rng(item.seed)
        x += rng.standard_normal(len(x)).astype(np.float32) * 10 ** (item.noise_db / 20)
    target = out / f"{item.path}.flac"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_flac = target.with_name(f".{target.name}.tmp.flac")
    sf.write(tmp_flac, np.clip(x, -1, 1), SAMPLE_RATE, subtype="PCM_16", compression_level=1.0)  # FLAC -8
    os.replace(tmp_flac, target)
    if item.split != "unlabelled":
        (out / f"{item.path}.txt").write_text(item.text + "\n", encoding="utf-8")
    return item, len(x) / SAMPLE_RATE


def _render_star(args: tuple[Item, Path]) -> tuple[Item, float]:
    return render(*args)


def build_split(
    pool,
    out: Path,
    split: str,
    sentences: list[str],
    cursor: int,
    preset: Preset,
    seed: int,
    noise_db: float | None,
) -> tuple[list[tuple[Item, float]], int]:
    """Synthesise chunk after chunk until `target` seconds; returns (rows, new sentence cursor).

    Chunks are fixed-size slices of the sentence list, so which sentences a split uses depends only
    on the seed, not on timing; the surplus of the last chunk is deleted and its sentences unused.
    """
    rows, total, target, rng = [], 0.0, preset.seconds[split], random.Random(f"{seed}:{split}")
    while total < target:
        if cursor >= len(sentences):
            raise SystemExit(f"ran out of sentences in {split}: ask for less audio")
        per = CHUNK * (preset.sentences_per_unlabelled[1] if split == "unlabelled" else 1)
        items = plan_items(
            split,
            sentences[cursor : cursor + per],
            len(rows),
            preset.voices_of(split),
            rng,
            preset.sentences_per_unlabelled,
            noise_db,
        )
        cursor += per
        results = (
            pool.map(_render_star, [(it, out) for it in items]) if pool else [render(it, out) for it in items]
        )
        for item, seconds in results:
            if total >= target:
                for ext in (".flac", ".txt"):
                    (out / f"{item.path}{ext}").unlink(missing_ok=True)
                continue
            rows.append((item, seconds))
            total += seconds
        print(f"\r{split:>10}: {len(rows):4d} files, {total:7.1f} / {target:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    return rows, cursor


def prepare_out(out: Path) -> None:
    """Empty the split folders of a previous build; refuse to touch a folder we did not make.

    metadata.tsv marks our folders; it is written first, so an interrupted build can be redone.
    """
    if out.exists() and any(out.iterdir()) and not (out / "metadata.tsv").exists():
        raise SystemExit(f"{out} is not empty and has no metadata.tsv: choose an empty or new --out folder")
    for split in ("unlabelled", "labelled", "dev", "test", "test-seen", "test-unseen", "test-noisy"):
        shutil.rmtree(out / split, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_metadata(out, [])


def write_noisy_copy(out: Path, split: str, snr_db: float, seed: int) -> int:
    """OUT/SPLIT-noisy: each file of SPLIT with white, pink or brown noise (drawn per file) mixed in at
    exactly `snr_db` dB SNR over the whole file, transcripts copied. Returns the number of files."""
    import numpy as np
    import soundfile as sf

    from w2vcli.data.augment import colored_noise, mix_at_snr  # the training augmentation's noise

    src, dst = out / split, out / f"{split}-noisy"
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(src.glob("*.flac"))
    for i, f in enumerate(files):
        rng = np.random.default_rng([seed, i])
        x, sr = sf.read(f, dtype="float64")
        noise = colored_noise(x.shape[0], float(rng.choice([0.0, 1.0, 2.0])), rng)
        sf.write(dst / f.name, np.clip(mix_at_snr(x, noise, snr_db), -1, 1), sr, subtype="PCM_16")
        shutil.copyfile(f.with_suffix(".txt"), dst / f.with_suffix(".txt").name)
    return len(files)


def write_metadata(out: Path, rows: list[tuple[Item, float]]) -> None:
    lines = ["path\ttext\tsplit\tvoice\trate\tpitch\tseconds"]
    lines += [
        f"{it.path}.flac\t{it.text}\t{it.split}\t{it.voice}\t{it.rate}\t{it.pitch}\t{s:.2f}" for it, s in rows
    ]
    (out / "metadata.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build(
    out: Path,
    preset: Preset,
    seed: int = 0,
    workers: int = 2,
    noise_db: float | None = None,
    fortunes: Path = FORTUNES,
    files: tuple[str, ...] = FORTUNE_FILES,
) -> list[tuple[Item, float]]:
    """Build every split of `preset` into `out`; returns (item, seconds) per file written. `files`: the
    fortune collections to read; other than the default, sentences the default ones hold are left out."""
    engines = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}
    all_voices = preset.voices + tuple(v for vs in (preset.split_voices or {}).values() for v in vs)
    for engine in {v.partition(":")[0] for v in parse_voices(all_voices)}:
        if shutil.which(engines[engine]) is None:
            raise SystemExit(f"{engines[engine]} not found: install it (apt-get install {engines[engine]})")
    sentences = load_sentences(fortunes, files)
    if files != FORTUNE_FILES:
        spoken = {sentence_key(s) for s in load_sentences(fortunes)}
        sentences = [s for s in sentences if sentence_key(s) not in spoken]
    if not sentences:
        raise SystemExit(f"no fortunes found in {fortunes}: apt-get install fortunes, or pass --fortunes DIR")
    random.Random(seed).shuffle(sentences)
    prepare_out(out)
    rows, cursor = [], 0
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        for split in preset.seconds:
            split_rows, cursor = build_split(pool, out, split, sentences, cursor, preset, seed, noise_db)
            rows += split_rows
            if (
                split in ("test", "test-seen", "test-unseen", "dev")
                and seed == 0
                and cursor > HELD_OUT_SENTENCES
            ):
                # The pretraining corpus leaves out only the first HELD_OUT_SENTENCES of this shuffle.
                raise SystemExit(
                    f"{split} used sentences past the held-out ones: ask for less dev/test audio"
                )
    finally:
        if pool:
            pool.close()
            pool.join()
    write_metadata(out, rows)
    return rows


# --- The pretraining corpus (--pretrain-corpus) ----------------------------------------------------

# Every sentence that the mini or large set (seed 0) can hold out: both take test, then dev, from the
# start of the same seed-0 shuffle, one sentence a file, until 300 + 300 s (large) or 55 + 36 s (mini)
# are written, in chunks of CHUNK. Their sentences last 3.1-3.4 s on average (examples/mini/metadata.tsv),
# so large's test + dev take ~200 sentences plus at most 2 x CHUNK of surplus; 600 would cover them even
# at ~1 s a sentence. The dev and test sentences of examples/mini/metadata.tsv are left out as well, by
# their text (the held-out count is exact only for the seed-0 sets: other seeds shuffle differently).
HELD_OUT_SENTENCES = 600
# Share of the corpus's seconds per engine. flite and festival voices are built from recordings of
# real speakers (examples/RESULTS.md: flite voices are most of the fine-tuned models' error), so they
# get more than their number of voices would; espeak-ng brings the accents and the variants.
ENGINE_SHARE = {"espeak": 0.5, "flite": 0.3, "festival": 0.2}
FESTIVAL_VOICES = Path("/usr/share/festival/voices")
FESTIVAL_ENGLISH = ("english", "us", "british", "uk")  # festival's language folders of English voices


def espeak_accents() -> list[str]:
    """English espeak-ng voices, by language code (`gmw/` files: espeak-ng's own, no MBROLA)."""
    out = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=True).stdout
    codes = [
        f[1]
        for f in (line.split() for line in out.splitlines()[1:])
        if len(f) >= 5 and f[4].startswith("gmw/")
    ]
    return sorted(dict.fromkeys(codes))


def espeak_variants() -> list[str]:
    """espeak-ng's voice variants, by file name (`!v/NAME` -> NAME)."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = [
        f[4][3:]
        for f in (line.split() for line in out.splitlines()[1:])
        if len(f) >= 5 and f[4].startswith("!v/")
    ]
    return sorted(dict.fromkeys(names))


def flite_voices() -> list[str]:
    if shutil.which("flite") is None:
        return []
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    return sorted(v for v in out.split(":", 1)[-1].split() if v in FLITE_F0)


def festival_voices(root: Path = FESTIVAL_VOICES) -> list[str]:
    if shutil.which("text2wave") is None:
        return []
    return sorted(
        d.name
        for lang in FESTIVAL_ENGLISH
        if (root / lang).is_dir()
        for d in (root / lang).iterdir()
        if d.is_dir()
    )


def corpus_voices() -> dict[str, list[str]]:
    """engine -> voices (engine:name), each list sorted; espeak-ng: every accent x (no variant + every variant)."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found: install it (apt-get install espeak-ng)")
    accents = espeak_accents()
    variants = [""] + [f"+{v}" for v in espeak_variants()]
    voices = {"espeak": [f"espeak:{a}{v}" for a in accents for v in variants]}
    voices["flite"] = [f"flite:{v}" for v in flite_voices()]
    voices["festival"] = [f"festival:{v}" for v in festival_voices()]
    return {e: v for e, v in voices.items() if v}


def held_out_sentences(fortunes: Path, mini: Path) -> set[str]:
    """Keys of the sentences that the mini and large sets may use for dev or test (see HELD_OUT_SENTENCES)."""
    sentences = load_sentences(fortunes)
    random.Random(0).shuffle(sentences)
    keys = {sentence_key(s) for s in sentences[:HELD_OUT_SENTENCES]}
    meta = mini / "metadata.tsv"
    if meta.is_file():
        for line in meta.read_text(encoding="utf-8").splitlines()[1:]:
            _, text, split, *_ = line.split("\t")
            if split in ("dev", "test"):
                keys.add(sentence_key(text))
    return keys


def corpus_items(engine: str, voices: list[str], sentences, rng: random.Random, per_file: tuple[int, int]):
    """Endless plan of one engine's files. Voices take turns in an order shuffled once per round, so
    every voice speaks before any speaks twice; rates and pitches are drawn per file."""
    n = 0
    while True:
        order = list(voices)
        rng.shuffle(order)
        for voice in order:
            text = " ".join(next(sentences) for _ in range(rng.randint(*per_file)))
            if engine == "espeak":  # -s 131-236 words a minute, -p 20-85 (default 50)
                rate, pitch = rng.uniform(0.75, 1.35), rng.uniform(0.4, 1.7)
            elif engine == "flite":
                rate, pitch = rng.uniform(0.8, 1.3), rng.uniform(0.8, 1.25)
            else:  # pitch is a speed factor: formants move too
                rate, pitch = rng.uniform(0.8, 1.25), rng.uniform(0.88, 1.14)
            yield Item(
                path=f"unlabelled/u{n:05d}-{voice_slug(voice)}",
                split="unlabelled",
                text=text,
                voice=voice,
                rate=round(rate, 3),
                pitch=round(pitch, 3),
                level_db=round(rng.uniform(-26.0, -14.0), 1),
                margin=round(rng.uniform(0.05, 0.25), 3),
                noise_db=None,
                seed=rng.randrange(2**31),
            )
            n += 1


def sentence_stream(sentences: list[str], seed: int):
    """The sentences over and over, each pass in a new seeded order."""
    for rnd in range(10**6):
        order = list(sentences)
        random.Random(f"{seed}:pass{rnd}").shuffle(order)
        yield from order


def _existing_or_render(args: tuple[Item, Path]) -> tuple[Item, float]:
    item, out = args
    target = out / f"{item.path}.flac"
    if target.is_file():  # written by an earlier, interrupted run of the same plan
        import soundfile as sf

        return item, sf.info(str(target)).frames / SAMPLE_RATE
    return render(item, out)


def build_pretrain_corpus(
    out: Path,
    hours: float,
    seed: int = 0,
    workers: int = 2,
    fortunes: Path = FORTUNES,
    mini: Path | None = None,
) -> list[tuple[Item, float]]:
    """Write HOURS of unlabelled speech into OUT/unlabelled; resumable (see the module docstring)."""
    voices = corpus_voices()
    missing = [e for e in ENGINE_SHARE if e not in voices]
    share = {e: ENGINE_SHARE[e] / sum(ENGINE_SHARE[e] for e in voices) for e in voices}
    held = held_out_sentences(fortunes, mini or Path(__file__).resolve().parent / "mini")
    sentences = [s for s in load_sentences(fortunes) if sentence_key(s) not in held]
    if not sentences:
        raise SystemExit(f"no fortunes found in {fortunes}: apt-get install fortunes, or pass --fortunes DIR")
    print(
        f"{len(sentences)} sentences ({len(held)} held out); voices: "
        + ", ".join(f"{e} {len(v)}" for e, v in voices.items())
        + (f"; not installed: {', '.join(missing)}" if missing else ""),
        file=sys.stderr,
    )
    plan_file = out / "plan.txt"
    plan = f"pretrain-corpus hours={hours} seed={seed}\n" + "".join(
        f"{v}\n" for vs in voices.values() for v in vs
    )
    if out.exists() and any(out.iterdir()):
        if not plan_file.is_file() or plan_file.read_text(encoding="utf-8") != plan:
            raise SystemExit(
                f"{out} holds something else than this plan: choose an empty or new --out folder"
            )
    out.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(plan, encoding="utf-8")
    stream = sentence_stream(sentences, seed)
    rows: list[tuple[Item, float]] = []
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        for engine, engine_voices in voices.items():
            items = corpus_items(engine, engine_voices, stream, random.Random(f"{seed}:{engine}"), (3, 5))
            target, total, n = share[engine] * hours * 3600, 0.0, 0
            while total < target:  # chunk by chunk, as build_split: what is written depends on the seed only
                chunk = [(next(items), out) for _ in range(CHUNK * 4)]
                results = (
                    pool.map(_existing_or_render, chunk) if pool else [_existing_or_render(a) for a in chunk]
                )
                for item, seconds in results:
                    if total >= target:
                        (out / f"{item.path}.flac").unlink(missing_ok=True)
                        continue
                    rows.append((item, seconds))
                    total, n = total + seconds, n + 1
                print(
                    f"\r{engine:>10}: {n:5d} files, {total / 3600:5.2f} / {target / 3600:.2f} h",
                    end="",
                    file=sys.stderr,
                )
            print(file=sys.stderr)
    finally:
        if pool:
            pool.close()
            pool.join()
    write_metadata(out, rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--mini", action="store_true", help="the bundled set, ~8 minutes (default)")
    size.add_argument(
        "--large", action="store_true", help="~1 h unlabelled, 10 min labelled, 5 min dev and test"
    )
    size.add_argument(
        "--study",
        action="store_true",
        help="10 min labelled, 5 min dev, 5 min test by the same voices, 5 min test by others (no unlabelled)",
    )
    size.add_argument(
        "--heldout",
        action="store_true",
        help="10 min labelled, 5 min dev and test from sentences and voices no recipe was tuned on, + test-noisy",
    )
    p.add_argument(
        "--noisy-snr", type=float, default=10.0, help="--heldout: SNR of test-noisy/ in dB (default 10)"
    )
    size.add_argument(
        "--pretrain-corpus",
        action="store_true",
        help="only unlabelled/: --hours of every English espeak-ng, flite and festival voice (needs --out)",
    )
    p.add_argument("--hours", type=float, default=10.0, help="size of --pretrain-corpus (default 10)")
    p.add_argument("--out", type=Path, help="output folder (default examples/mini or examples/large)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="parallel synthesis processes (default 2)")
    p.add_argument("--voices", help="comma-separated engine:name list (default: the preset's voices)")
    p.add_argument(
        "--noise-dbfs",
        type=float,
        default=None,
        help="add white noise at a seeded level between X-10 and X dBFS RMS (default: none)",
    )
    p.add_argument(
        "--fortunes", type=Path, default=FORTUNES, help=f"fortune files folder (default {FORTUNES})"
    )
    p.add_argument(
        "--lm-text",
        type=Path,
        help="write OUT's text-only LM sentences (see lm_sentences) to this file and exit",
    )
    args = p.parse_args(argv)
    if args.pretrain_corpus:
        if args.out is None or args.voices or args.noise_dbfs is not None or args.lm_text:
            raise SystemExit(
                "--pretrain-corpus needs --out and takes none of --voices, --noise-dbfs, --lm-text"
            )
        t0 = time.perf_counter()
        rows = build_pretrain_corpus(args.out, args.hours, args.seed, max(1, args.workers), args.fortunes)
        by_engine: dict[str, list[float]] = {}
        for it, sec in rows:
            by_engine.setdefault(it.voice.partition(":")[0], []).append(sec)
        for engine, secs in by_engine.items():
            voices = len({it.voice for it, _ in rows if it.voice.startswith(engine + ":")})
            print(
                f"{engine:>10}: {len(secs):5d} files, {sum(secs) / 3600:5.2f} h, {voices} voices",
                file=sys.stderr,
            )
        size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
        print(
            f"wrote {args.out}: {len(rows)} files, {sum(s for _, s in rows) / 3600:.2f} h ({size / 2**20:.0f} MiB) "
            f"in {math.ceil(time.perf_counter() - t0)} s",
            file=sys.stderr,
        )
        return
    name = "large" if args.large else "study" if args.study else "heldout" if args.heldout else "mini"
    if args.lm_text:
        out = args.out or Path(__file__).resolve().parent / name
        sentences = lm_sentences(out, args.fortunes)
        args.lm_text.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
        print(
            f"wrote {args.lm_text}: {len(sentences)} sentences not spoken in {out}'s unlabelled, dev or test audio",
            file=sys.stderr,
        )
        return
    preset = PRESETS[name]
    if args.voices:
        preset = dataclasses.replace(preset, voices=parse_voices(args.voices))
    out = args.out or Path(__file__).resolve().parent / name
    t0 = time.perf_counter()
    if name == "heldout" and args.out is None:
        raise SystemExit("--heldout needs --out")
    files = HELDOUT_FORTUNES if name == "heldout" else FORTUNE_FILES
    rows = build(out, preset, args.seed, max(1, args.workers), args.noise_dbfs, args.fortunes, files)
    for split in preset.seconds:
        secs = [s for it, s in rows if it.split == split]
        print(f"{split:>10}: {len(secs):4d} files, {sum(secs) / 60:5.2f} min", file=sys.stderr)
    if name == "heldout":
        n = write_noisy_copy(out, "test", args.noisy_snr, args.seed)
        print(f"test-noisy: {n:4d} files at {args.noisy_snr:g} dB SNR", file=sys.stderr)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 2**20:.2f} MiB) in {math.ceil(time.perf_counter() - t0)} s", file=sys.stderr)


if __name__ == "__main__":
    main()
