"""Is a word's alignment confidence a probability? Word-level truth from festival, a reliability table.

    python bench/bench_confidence.py synth --out ../sets/tune --sentences tuning --voices kal_diphone,cmu_us_slt_arctic_hts --minutes 10 --seed 1
    python bench/bench_confidence.py collect --model RUN --data ../sets/tune --out tune-aug.jsonl
    python bench/bench_confidence.py fit tune-aug.jsonl           # the coefficients of decoding/confidence.py
    python bench/bench_confidence.py judge judged-*.jsonl --svg reliability.svg

`synth` speaks fortune sentences with festival, which reports where each word starts and ends (its
Segment relation: the synthesiser's own phone durations, exact to the sample), and writes the clips
with those times. `--sentences tuning` draws from the collections the example sets use,
`heldout` from the ones only `make_data.py --heldout` reads. `collect` trims each clip to its speech,
joins the clips with random pauses of 0.3-1.5 s (low noise) into one long file, aligns the whole
transcript with `w2v align`'s library call, and writes one row per word: the word's features as
`decoding/confidence.py` computes them, its `confidence`, its edge errors against the truth and
whether it is correctly placed (both edges within `--tolerance`, default 50 ms). `fit` fits the
logistic map from features to "correctly placed" (numpy, Newton steps). `judge` bins the words by
confidence and prints, per bin, the mean confidence beside the fraction correctly placed (a
calibrated confidence lies on the diagonal), the expected calibration error (ECE: the words-weighted
mean gap) and the Brier score, per file given; `--svg` draws the reliability plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "examples"))

SR = 16000
WORD_RE = re.compile(r"^[A-Za-z]+(?:'[A-Za-z]+)?$")


# ---------------------------------------------------------------- synth


def plain_words(sentence: str) -> list[str] | None:
    """The sentence's words without punctuation, or None when a word is not plain letters (festival
    would split or spell it, and the truth would not line up with the text)."""
    words = [w.strip('.,;:!?"()') for w in sentence.split()]
    return words if all(WORD_RE.match(w) for w in words) else None


def scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_batch(voice: str, items: list[tuple[str, str, float]], tmp: Path) -> dict[str, list]:
    """Speak (id, text, stretch) items with one festival process; per id, the words festival spoke
    with their start and end (seconds in its own wav, written to tmp/ID.wav)."""
    lines = [f"(voice_{voice})"]
    for utt_id, text, stretch in items:
        lines += [
            f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
            f"(set! utt (utt.synth (Utterance Text {scheme_string(text)})))",
            f'(utt.save.wave utt "{tmp / utt_id}.wav" \'riff)',
            '(mapcar (lambda (w) (format t "W %s %s %s %s\\n" '
            f'"{utt_id}" (item.name w) '
            '(item.feat w "R:SylStructure.daughter1.daughter1.R:Segment.p.end") '
            '(item.feat w "R:SylStructure.daughtern.daughtern.end"))) '
            "(utt.relation.items utt 'Word))",
        ]
    script = tmp / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, check=True).stdout
    words: dict[str, list] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "W":
            words.setdefault(parts[1], []).append((parts[2], float(parts[3]), float(parts[4])))
    return words


def synth(a: argparse.Namespace) -> None:
    import soxr
    from make_data import HELDOUT_FORTUNES, load_sentences, sentence_key

    if a.sentences == "tuning":
        sentences = load_sentences()
    else:
        seen = {sentence_key(s) for s in load_sentences()}
        sentences = [s for s in load_sentences(files=HELDOUT_FORTUNES) if sentence_key(s) not in seen]
    rng = random.Random(a.seed)
    rng.shuffle(sentences)
    voices = a.voices.split(",")
    out = Path(a.out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rows, seconds, k = [], 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        while seconds < a.minutes * 60 and k < len(sentences):
            batch: dict[str, list] = {v: [] for v in voices}
            texts = {}
            for _ in range(24):
                if k >= len(sentences):
                    break
                words = plain_words(sentences[k])
                k += 1
                if words is None:
                    continue
                utt_id = f"u{k:05d}"
                texts[utt_id] = words
                batch[rng.choice(voices)].append((utt_id, " ".join(words), rng.uniform(0.85, 1.2)))
            for voice, items in batch.items():
                if not items:
                    continue
                spoken = festival_batch(voice, items, Path(tmp))
                for utt_id, _, _ in items:
                    got = spoken.get(utt_id, [])
                    if [w.lower() for w, _, _ in got] != [w.lower() for w in texts[utt_id]]:
                        continue  # festival tokenised it otherwise: the times would not match the text
                    wav, sr = sf.read(Path(tmp) / f"{utt_id}.wav", dtype="float32", always_2d=True)
                    wav = soxr.resample(wav.mean(axis=1), sr, SR, quality="HQ")
                    sf.write(out / "clips" / f"{utt_id}.flac", wav, SR, subtype="PCM_16")
                    rows.append(
                        {"id": utt_id, "voice": voice, "text": " ".join(texts[utt_id]),
                         "words": [{"word": w, "start": s, "end": e} for w, (_, s, e) in zip(texts[utt_id], got)]}
                    )  # fmt: skip
                    seconds += len(wav) / SR
    with open(out / "words.jsonl", "w") as f:
        for r in sorted(rows, key=lambda r: r["id"]):
            f.write(json.dumps(r) + "\n")
    print(f"{len(rows)} utterances, {seconds / 60:.1f} min, voices {','.join(voices)} -> {out}")


# ---------------------------------------------------------------- collect


def build_long(data: Path, seed: int, out: Path) -> tuple[Path, list[dict]]:
    """One long file of the clips (trimmed to -40 dB of their peak) joined by pauses of 0.3-1.5 s; the
    words with their true times in it."""
    rng = np.random.default_rng(seed)
    utts = [json.loads(line) for line in open(data / "words.jsonl")]
    pieces, words, at = [], [], 0
    for i in rng.permutation(len(utts)):
        u = utts[i]
        wav, _ = sf.read(data / "clips" / f"{u['id']}.flac", dtype="float32")
        loud = np.flatnonzero(np.abs(wav) > np.abs(wav).max() * 10 ** (-40 / 20))
        first = loud[0]
        wav = wav[first : loud[-1] + 1]
        pause = int(rng.uniform(0.3, 1.5) * SR)
        pieces.append((rng.standard_normal(pause) * 1e-3).astype(np.float32))
        at += pause
        for w in u["words"]:
            start = max(w["start"] - first / SR, 0.0)
            end = min(w["end"] - first / SR, len(wav) / SR)
            words.append(
                {"word": w["word"], "start": at / SR + start, "end": at / SR + end, "voice": u["voice"]}
            )
        pieces.append(wav)
        at += len(wav)
    pieces.append(np.zeros(int(0.5 * SR), np.float32))
    path = out / "long.flac"
    sf.write(path, np.concatenate(pieces), SR, subtype="PCM_16")
    return path, words


def collect(a: argparse.Namespace) -> None:
    from bench_transcribe import cpu_flags

    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.pipelines.align import AlignOptions, align, align_inputs

    print(f"cpu: {cpu_flags()}", flush=True)
    options = AlignOptions(features=True)
    if a.pads:  # the pads of edges in running speech (EdgeOptions)
        start_pad, end_pad = map(float, a.pads.split(","))
        options.edges = dataclasses.replace(options.edges, start_pad=start_pad, end_pad=end_pad)
    with tempfile.TemporaryDirectory() as tmp:
        path, truth = build_long(Path(a.data), a.seed, Path(tmp))
        text = " ".join(w["word"] for w in truth)
        (result,) = align(align_inputs([str(path)], text=text), load_model(a.model), options)
    words = result.to_dict()["words"]
    assert len(words) == len(truth), (len(words), len(truth))  # noqa: S101
    tol = a.tolerance / 1000
    n_ok = 0
    with open(a.out, "w") as f:
        for w, t in zip(words, truth):
            row = {"word": t["word"], "voice": t["voice"], "model": a.model, "confidence": w.get("confidence", 0.0),
                   "features": w.get("features"), "score": w.get("score", 0.0), "fit": w.get("fit", 0.0)}  # fmt: skip
            if w.get("start") is None:
                row.update(start_error=None, end_error=None, correct=False)
            else:
                row.update(
                    start_error=round(w["start"] - t["start"], 4), end_error=round(w["end"] - t["end"], 4)
                )
                row["correct"] = bool(abs(row["start_error"]) <= tol and abs(row["end_error"]) <= tol)
            n_ok += row["correct"]
            f.write(json.dumps(row) + "\n")
    errs = np.array([max(abs(r), abs(s)) for r, s in ((w["start"] - t["start"], w["end"] - t["end"])
                     for w, t in zip(words, truth) if w.get("start") is not None)]) * 1000  # fmt: skip
    print(
        f"{len(words)} words ({a.data}, model {a.model}): correctly placed (both edges within {a.tolerance:g} ms) "
        f"{n_ok / len(words):.1%}; worse edge's error median {np.median(errs):.0f} ms, p90 "
        f"{np.percentile(errs, 90):.0f} ms -> {a.out}"
    )


# ---------------------------------------------------------------- fit / judge


def read_rows(paths: list[str]) -> list[dict]:
    return [json.loads(line) for p in paths for line in open(p)]


def fit(a: argparse.Namespace) -> None:
    from w2vcli.decoding.confidence import FEATURES, fit_logistic

    rows = [r for r in read_rows(a.rows) if r["features"] is not None]
    x = np.array([[r["features"][k] for k in FEATURES] for r in rows])
    y = np.array([float(r["correct"]) for r in rows])
    weights = fit_logistic(x, y, l2=a.l2)
    print(f"{len(rows)} words, {y.mean():.1%} correctly placed; fitted on {', '.join(a.rows)}")
    print("WEIGHTS = {" + ", ".join(f'"{k}": {v:.4f}' for k, v in zip(("bias", *FEATURES), weights)) + "}")


def reliability(rows: list[dict], bins: int) -> tuple[list[tuple], float, float]:
    conf = np.array([r["confidence"] for r in rows])
    ok = np.array([float(r["correct"]) for r in rows])
    table = []
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf >= lo) & ((conf < hi) | (hi == 1.0))
        if inside.any():
            gap = abs(conf[inside].mean() - ok[inside].mean())
            ece += gap * inside.sum() / len(rows)
            table.append((lo, hi, int(inside.sum()), conf[inside].mean(), ok[inside].mean()))
    return table, ece, float(np.mean((conf - ok) ** 2))


def judge(a: argparse.Namespace) -> None:
    curves = []
    for path in a.rows:
        rows = read_rows([path])
        table, ece, brier = reliability(rows, a.bins)
        ok = np.mean([r["correct"] for r in rows])
        conf = np.mean([r["confidence"] for r in rows])
        print(f"\n{path}: {len(rows)} words, correctly placed {ok:.1%}, mean confidence {conf:.1%}, "
              f"ECE {ece:.3f}, Brier {brier:.3f}")  # fmt: skip
        print("| confidence | words | mean confidence | correctly placed |\n|---|---:|---:|---:|")
        for lo, hi, n, c, o in table:
            print(f"| {lo:.1f}-{hi:.1f} | {n} | {c:.3f} | {o:.3f} |")
        curves.append((Path(path).stem, table))
    if a.svg:
        Path(a.svg).write_text(svg_plot(curves))
        print(f"\nreliability plot -> {a.svg}")


def svg_plot(curves: list[tuple[str, list[tuple]]]) -> str:
    """Mean confidence (x) against the fraction correctly placed (y) per bin, one line per file."""
    size, pad = 360, 40
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    def xy(c: float, o: float) -> str:
        return f"{pad + c * size:.1f},{pad + (1 - o) * size:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 2 * pad + 180}" height="{size + 2 * pad}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad + size}" x2="{pad + size}" y2="{pad}" stroke="#bbb" stroke-dasharray="4"/>',
        f'<text x="{pad + size / 2}" y="{size + 2 * pad - 8}" text-anchor="middle">mean confidence</text>',
        f'<text x="12" y="{pad + size / 2}" transform="rotate(-90 12 {pad + size / 2})" text-anchor="middle">'
        "fraction correctly placed</text>",
    ]
    for tick in (0, 0.5, 1):
        parts.append(
            f'<text x="{pad + tick * size}" y="{pad + size + 14}" text-anchor="middle">{tick:g}</text>'
        )
        parts.append(
            f'<text x="{pad - 6}" y="{pad + (1 - tick) * size + 4}" text-anchor="end">{tick:g}</text>'
        )
    for k, (name, table) in enumerate(curves):
        colour = colours[k % len(colours)]
        points = " ".join(xy(c, o) for _, _, _, c, o in table)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for _, _, n, c, o in table:
            x, y = xy(c, o).split(",")
            parts.append(
                f'<circle cx="{x}" cy="{y}" r="{1.5 + min(n, 400) ** 0.5 / 4:.1f}" fill="{colour}"/>'
            )
        parts.append(f'<text x="{pad + size + 10}" y="{pad + 14 + 16 * k}" fill="{colour}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth")
    s.add_argument("--out", required=True)
    s.add_argument("--sentences", choices=("tuning", "heldout"), default="tuning")
    s.add_argument("--voices", default="kal_diphone,ked_diphone,cmu_us_slt_arctic_hts")
    s.add_argument("--minutes", type=float, default=10.0)
    s.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("collect")
    c.add_argument("--model", required=True)
    c.add_argument("--data", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--pads", metavar="START,END", help="seconds: pads of edges in running speech")
    c.add_argument("--tolerance", type=float, default=50.0, help="ms: a word is correctly placed within it")
    f = sub.add_parser("fit")
    f.add_argument("rows", nargs="+")
    f.add_argument("--l2", type=float, default=1e-3)
    j = sub.add_parser("judge")
    j.add_argument("rows", nargs="+")
    j.add_argument("--bins", type=int, default=10)
    j.add_argument("--svg")
    a = p.parse_args()
    {"synth": synth, "collect": collect, "fit": fit, "judge": judge}[a.cmd](a)


if __name__ == "__main__":
    main()
