"""Alignment accuracy and memory on long recordings whose utterance boundaries are known exactly.

    python bench/bench_align.py --model RUN --manifest TEST.jsonl --minutes 10
    python bench/bench_align.py --model RUN --manifest TEST.jsonl --minutes 60 --memory
    python bench/bench_align.py --model RUN --manifest TEST.jsonl --minutes 30 --segment --corrupt 0.05

Held-out utterances (a prep manifest: audio + text) are trimmed to their speech (first and last
sample within 40 dB of the clip's peak), then concatenated with random pauses of 0.3-1.5 s (low
noise, not silence) into one long file, tiled until it lasts `--minutes`; the true start and end
of every utterance are known to the sample. `w2v align`'s library call aligns the whole transcript,
and each utterance's boundaries are read from its first word's start and last word's end.
Prints the median and 95th percentile of the absolute boundary errors (the targets: 30 ms
and 120 ms), the share of words flagged, the time, and with `--memory` the peak RSS of a
separate process aligning the file. `--segment` runs `w2v segment`'s library call instead and
scores each kept segment's text against what its audio says (CER; the target: under 2% for 97% of
segments): the true utterances whose middles fall inside it, or, with `--punctuated DIR` (the
utterances' original texts), a part of an utterance when the segment cuts it where the original has
punctuation (the synthesiser pauses there, so a cut there is right) and the cut falls inside that
utterance's audio; the strict figure (whole utterances only) is printed beside it; `--corrupt F` first replaces the text of a fraction F
of the utterances by another utterance's (misread passages) and counts how many of the segments
holding one were dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_transcribe import cpu_flags  # noqa: E402

from w2vcli.data.manifest import read_manifest  # noqa: E402

SR = 16000


def trimmed(path: str) -> np.ndarray:
    wav, sr = sf.read(path, dtype="float32")
    assert sr == SR, f"{path}: {sr} Hz (give a prep manifest: 16 kHz)"
    loud = np.flatnonzero(np.abs(wav) > np.abs(wav).max() * 10 ** (-40 / 20))
    return wav[loud[0] : loud[-1] + 1]


def build(manifest: str, minutes: float, seed: int, out: Path) -> tuple[Path, list[dict]]:
    """The long file and, per utterance, its text and true start/end in seconds."""
    rng = np.random.default_rng(seed)
    utts = [u for u in read_manifest(manifest) if u.text]
    clips = [(trimmed(u.audio), u.text, u.id) for u in utts]
    pieces, truth, at = [], [], 0
    while at < minutes * 60 * SR:
        for i in rng.permutation(len(clips)):
            wav, text, utt_id = clips[i]
            pause = int(rng.uniform(0.3, 1.5) * SR)
            pieces.append((rng.standard_normal(pause) * 1e-3).astype(np.float32))
            at += pause
            truth.append({"text": text, "start": at / SR, "end": (at + len(wav)) / SR, "id": utt_id})
            pieces.append(wav)
            at += len(wav)
            if at >= minutes * 60 * SR:
                break
    pieces.append(np.zeros(int(0.5 * SR), np.float32))
    path = out / "long.flac"
    sf.write(path, np.concatenate(pieces), SR, subtype="PCM_16")
    (out / "long.txt").write_text(" ".join(t["text"] for t in truth) + "\n")
    return path, truth


PUNCT = tuple(",;:.!?)\"'")


def split_points(truth: list[dict], folders: list[str]) -> None:
    """Each utterance's `splits`: word positions k where a cut before word k is a pause the speech
    has (the original text has punctuation after word k - 1: the synthesiser pauses there), from
    NAME.txt in `folders` (NAME: the manifest id's last part). Where the original's words do not map
    one to one onto the normalised text (numbers read out, hyphens), none."""
    originals = {}
    for folder in folders:
        for f in Path(folder).glob("*.txt"):
            originals[f.stem] = f.read_text(encoding="utf-8").split()
    for t in truth:
        words = originals.get(t["id"].rsplit("/", 1)[-1], [])
        t["splits"] = set()
        if len(words) == len(t["text"].split()):
            t["splits"] = {k + 1 for k, w in enumerate(words[:-1]) if w.endswith(PUNCT)}


def expected_text(row: dict, first: int, truth: list[dict], owner: list[tuple[int, int]]) -> str | None:
    """What a kept segment should say: its own words when each utterance its audio cuts into is cut
    at one of that utterance's pauses (`splits`) and the words it claims lie in the utterances its
    audio holds; else the whole utterances whose middles it holds (the strict reading). None: a
    misread utterance is involved."""
    n = len(row["original"].split())
    claimed = owner[first : first + n]
    utts = sorted({i for i, _ in claimed})
    ok = True
    for i in utts:
        t = truth[i]
        ks = [k for j, k in claimed if j == i]
        total = len(t["text"].split())
        whole = ks[0] == 0 and ks[-1] == total - 1
        inside = (
            row["start"] <= (t["start"] + t["end"]) / 2 <= row["end"]
            if whole
            else (t["start"] < row["end"] and t["end"] > row["start"])
        )
        clean_edges = (ks[0] == 0 or ks[0] in t["splits"]) and (
            ks[-1] == total - 1 or ks[-1] + 1 in t["splits"]
        )
        ok = ok and inside and clean_edges
    if ok:
        return " ".join(truth[i].get("said", truth[i]["text"]).split()[k] for i, k in claimed)
    return None


def corrupt(truth: list[dict], fraction: float, seed: int) -> set[int]:
    """Give a fraction of the utterances another utterance's text (in the transcript only)."""
    rng = np.random.default_rng(seed + 1)
    bad = set(rng.choice(len(truth), int(round(fraction * len(truth))), replace=False).tolist())
    for i in bad:
        truth[i]["said"] = truth[i]["text"]
        truth[i]["text"] = truth[(i + len(truth) // 2) % len(truth)]["text"]
    return bad


def segment_file(model: str, path: Path, text: str, truth: list[dict], bad: set[int], out: Path) -> None:
    from rapidfuzz.distance import Levenshtein

    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.pipelines.segment import REPORT, segment

    t0 = time.perf_counter()
    summary = segment(str(path), text, load_model(model), out / "segments")
    seconds = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "segments" / REPORT).read_text().splitlines()]
    owner = [(i, k) for i, t in enumerate(truth) for k in range(len(t["text"].split()))]
    cers, strict, with_bad, first = [], [], {"kept": 0, "dropped": 0}, 0
    for r in rows:
        at, first = first, first + len(r["original"].split())
        inside = [i for i, t in enumerate(truth) if r["start"] <= (t["start"] + t["end"]) / 2 <= r["end"]]
        claimed = {i for i, _ in owner[at:first]}
        if any(i in bad for i in set(inside) | claimed):
            with_bad["kept" if r["kept"] else "dropped"] += 1
            continue
        if r["kept"]:
            whole = " ".join(truth[i].get("said", truth[i]["text"]) for i in inside)
            strict.append(Levenshtein.distance(r["original"], whole) / max(len(whole), 1))
            said = expected_text(r, at, truth, owner)
            said = whole if said is None else said
            cers.append(Levenshtein.distance(r["original"], said) / max(len(said), 1))  # the text as given
            if cers[-1] >= 0.02 and os.environ.get("SHOW"):
                print(
                    f"  CER {cers[-1]:.3f} [{r['start']}, {r['end']}] ours: {r['original']!r}\n      true: {said!r}"
                )
    cers, strict = np.array(cers), np.array(strict)
    print(
        f"segment: {summary['kept']} of {summary['segments']} kept ({summary['kept_seconds'] / 60:.1f} of "
        f"{summary['duration'] / 60:.1f} min), dropped {summary['dropped']}; kept segments with CER < 2% "
        f"against what their audio says: {np.mean(cers < 0.02):.1%} (target 97%; counting a cut at a pause "
        f"inside an utterance as wrong: {np.mean(strict < 0.02):.1%}), median CER {np.median(cers):.4f}; "
        f"segments holding a misread utterance: {with_bad['dropped']} dropped, {with_bad['kept']} kept; {seconds:.1f} s"
    )


def align_options(edges: list[str] | None):
    """AlignOptions with `--edge NAME=VALUE` overrides of EdgeOptions, or `--edge off` (pads only)."""
    import dataclasses

    from w2vcli.decoding.edges import EdgeOptions
    from w2vcli.pipelines.align import AlignOptions

    if edges == ["off"]:
        return AlignOptions(edges=None)
    changes = dict(e.split("=", 1) for e in edges or [])
    return AlignOptions(edges=dataclasses.replace(EdgeOptions(), **{k: float(v) for k, v in changes.items()}))


def align_file(model: str, path: Path, text: str, edges: list[str] | None = None) -> dict:
    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.pipelines.align import align, align_inputs

    loaded = load_model(model)
    t0 = time.perf_counter()
    (result,) = align(align_inputs([str(path)], text=text), loaded, align_options(edges))
    return {"seconds": time.perf_counter() - t0, "result": result.to_dict()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True, help="held-out utterances: a prep manifest with text")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory", action="store_true", help="align in a child process and report its peak RSS")
    p.add_argument("--segment", action="store_true", help="run w2v segment and score its segments")
    p.add_argument(
        "--corrupt", type=float, default=0.0, help="with --segment: fraction of misread utterances"
    )
    p.add_argument("--worst", type=int, default=0, help="print the N largest boundary errors")
    p.add_argument(
        "--punctuated",
        action="append",
        metavar="DIR",
        help="with --segment: folders of the utterances' original NAME.txt (punctuation: where the speech pauses)",
    )
    p.add_argument(
        "--edge", action="append", metavar="NAME=VALUE", help="EdgeOptions override (repeatable), or 'off'"
    )
    a = p.parse_args()
    print(f"$ {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(f"cpu: {cpu_flags()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path, truth = build(a.manifest, a.minutes, a.seed, Path(tmp))
        text = (Path(tmp) / "long.txt").read_text()
        if a.segment:
            split_points(truth, a.punctuated or [])
            bad = corrupt(truth, a.corrupt, a.seed) if a.corrupt else set()
            segment_file(a.model, path, " ".join(t["text"] for t in truth), truth, bad, Path(tmp))
            return
        if a.memory:
            code = (
                f"import sys, json, resource; sys.path.insert(0, {str(ROOT / 'bench')!r}); sys.path.insert(0, {str(ROOT)!r})\n"
                f"from bench_align import align_file\n"
                f"out = align_file({a.model!r}, __import__('pathlib').Path({str(path)!r}), open({str(Path(tmp) / 'long.txt')!r}).read())\n"
                "out['rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
                "print(json.dumps(out))"
            )
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            out = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            out = align_file(a.model, path, text, a.edge)
            out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    words = out["result"]["words"]
    errors, signed, cases, k = [], {"start": [], "end": []}, [], 0
    for i, t in enumerate(truth):
        n = len(t["text"].split())
        mine = words[k : k + n]
        k += n
        for edge, word, true in (("start", mine[0], t["start"]), ("end", mine[-1], t["end"])):
            errors.append(abs(word[edge] - true))
            signed[edge].append(word[edge] - true)
            cases.append((abs(word[edge] - true), i, edge, word, true))
    err_ms = np.array(errors) * 1000
    print(
        "signed error (aligned - true), median: start "
        + ", end ".join(f"{np.median(signed[e]) * 1000:+.0f} ms" for e in ("start", "end"))
    )
    for error, i, edge, word, true in sorted(cases, key=lambda c: -c[0])[: a.worst]:
        print(
            f"  {error * 1000:5.0f} ms  utterance {i} {edge}: {word['word']!r} [{word['start']:.2f}, "
            f"{word['end']:.2f}] score {word.get('score', float('nan')):.2f}; true {edge} {true:.2f}; "
            f"{truth[i]['text'][:60]!r}"
        )
    flagged = sum(not w.get("aligned", True) for w in words)
    print(
        f"{a.minutes:g} min, {len(truth)} utterances, {len(words)} words: boundary error median "
        f"{np.median(err_ms):.0f} ms, p95 {np.percentile(err_ms, 95):.0f} ms, max {err_ms.max():.0f} ms "
        f"(targets 30 / 120 ms); {flagged} words unaligned; aligned in {out['seconds']:.1f} s; "
        f"peak RSS {out['rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
