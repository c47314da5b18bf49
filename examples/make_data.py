#!/usr/bin/env python3
"""Synthesise the example speech corpus: English sentences from Debian's fortunes, spoken by
espeak-ng and flite voices, written as 16 kHz mono FLAC with `NAME.txt` transcripts.

    python examples/make_data.py                      # the bundled set -> examples/mini/
    python examples/make_data.py --large --out examples/large   # ~1 h unlabelled, for experiments
    python examples/make_data.py --large --out examples/large --lm-text lm.txt   # text for `w2v lm`

Splits: `unlabelled/` (audio only, several sentences per file, for pretraining), `labelled/`
(fine-tuning), `dev/` and `test/` (held-out sentences, same voices). No sentence appears in two
splits. `metadata.tsv` lists every file with its text, voice and synthesis settings.
Deterministic: the same seed and tools give the same sentences, voices and settings.
Needs espeak-ng (flite is optional), numpy, soundfile and soxr.
"""

from __future__ import annotations

import argparse
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
# Typical mean F0 (Hz) of each flite voice, the centre of its pitch jitter.
FLITE_F0 = {"slt": 160.0, "awb": 105.0, "rms": 100.0, "kal16": 105.0}


@dataclass(frozen=True)
class Preset:
    """Target seconds of audio per split and sentences per unlabelled file."""

    seconds: dict[str, float]
    sentences_per_unlabelled: tuple[int, int]
    voices: tuple[str, ...]


PRESETS = {
    "mini": Preset({"test": 55, "dev": 36, "labelled": 140, "unlabelled": 225}, (2, 4), MINI_VOICES),
    "large": Preset({"test": 300, "dev": 300, "labelled": 600, "unlabelled": 3600}, (3, 5), LARGE_VOICES),
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
        if engine not in ("espeak", "flite") or not name:
            raise SystemExit(f"bad voice {v!r}: write engine:name, e.g. espeak:en-us+m3 or flite:slt")
        if engine == "flite" and name not in FLITE_F0:
            raise SystemExit(f"unknown flite voice {name!r}: use one of {', '.join(FLITE_F0)}")
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
            preset.voices,
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
    for split in ("unlabelled", "labelled", "dev", "test"):
        shutil.rmtree(out / split, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_metadata(out, [])


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
) -> list[tuple[Item, float]]:
    """Build every split of `preset` into `out`; returns (item, seconds) per file written."""
    engines = {"espeak": "espeak-ng", "flite": "flite"}
    for engine in {v.partition(":")[0] for v in parse_voices(preset.voices)}:
        if shutil.which(engines[engine]) is None:
            raise SystemExit(f"{engines[engine]} not found: install it (apt-get install {engines[engine]})")
    sentences = load_sentences(fortunes)
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
        "--lm-text", type=Path, help="write OUT's text-only LM sentences (see lm_sentences) to this file and exit"
    )
    args = p.parse_args(argv)
    name = "large" if args.large else "mini"
    if args.lm_text:
        out = args.out or Path(__file__).resolve().parent / name
        sentences = lm_sentences(out, args.fortunes)
        args.lm_text.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
        print(f"wrote {args.lm_text}: {len(sentences)} sentences not spoken in {out}'s unlabelled, dev or test audio",
              file=sys.stderr)
        return
    preset = PRESETS[name]
    if args.voices:
        preset = Preset(preset.seconds, preset.sentences_per_unlabelled, parse_voices(args.voices))
    out = args.out or Path(__file__).resolve().parent / name
    t0 = time.perf_counter()
    rows = build(out, preset, args.seed, max(1, args.workers), args.noise_dbfs, args.fortunes)
    for split in preset.seconds:
        secs = [s for it, s in rows if it.split == split]
        print(f"{split:>10}: {len(secs):4d} files, {sum(secs) / 60:5.2f} min", file=sys.stderr)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 2**20:.2f} MiB) in {math.ceil(time.perf_counter() - t0)} s", file=sys.stderr)


if __name__ == "__main__":
    main()
