"""Memory of one training rank over a big manifest: what it costs to read a manifest of a million
lines, build this rank's batches and start drawing them, the way `w2v pretrain`/`finetune` do.

    python bench/bench_manifest.py --lines 1000000 --world-size 2

Writes a prep-style `train.jsonl` of N lines (ids, paths into 8 real 1 s files, durations of 1-16 s,
transcripts of ~60 characters) and then, each in a fresh process so that its peak is its own, runs
rank 0 of `--world-size` three ways:
- `bare`: the imports alone (torch, w2vcli), the floor every process pays;
- `list`: the manifest read into a list of `Utterance` (what every rank did before: `read_manifest`);
- `index`: a `ManifestIndex` (offsets and durations in arrays; lines parsed when a batch needs them).
Each reads the manifest, filters it as fine-tuning does (`require_text`), builds the length-bucketed
loader of its rank (`make_loader`, fine-tuning's padding and vocabulary), and draws `--batches`
batches. Prints the peak RSS of each (ru_maxrss), what the manifest added over `bare`, and the time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards box at night near old mills".split()


def write_manifest(folder: Path, lines: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for k in range(8):
        sf.write(folder / f"a{k}.flac", rng.uniform(-0.3, 0.3, 16_000).astype(np.float32), 16_000)
    path = folder / "train.jsonl"
    durations = rng.uniform(1.0, 16.0, lines).round(3)
    picks = rng.integers(0, len(WORDS), (lines, 12))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            text = " ".join(WORDS[j] for j in picks[i])
            row = {"id": f"spk{i % 997:03d}-{i:07d}", "audio": f"a{i % 8}.flac", "duration": durations[i]}
            f.write(json.dumps({**row, "text": text}) + "\n")
    return path


def child(mode: str, manifest: Path, world_size: int, batches: int) -> dict:
    import torch  # noqa: F401  (the floor: every rank imports it)

    from w2vcli.data.loader import filter_utterances, make_loader
    from w2vcli.data.manifest import ManifestIndex, read_manifest
    from w2vcli.data.text import Vocabulary

    start = time.perf_counter()
    out = {"mode": mode}
    if mode != "bare":
        utts = read_manifest(manifest) if mode == "list" else ManifestIndex(manifest)
        utts, _ = filter_utterances(utts, 0.025, None, require_text=True)
        out["read_s"] = time.perf_counter() - start
        vocab = Vocabulary.from_texts([" ".join(WORDS)])
        loader = make_loader(utts, 60.0, vocab=vocab, seed=1, rank=0, world_size=world_size)
        out["loader_s"] = time.perf_counter() - start - out["read_s"]
        it = iter(loader)
        for _ in range(batches):
            next(it)
        out.update(utterances=len(utts), rank_batches=len(loader))
    out["seconds"] = time.perf_counter() - start
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--tmp", default=None, help="Where the manifest goes (about 130 MB a million lines).")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "MANIFEST"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, manifest = args.child
        print(json.dumps(child(mode, Path(manifest), args.world_size, args.batches)))
        return

    from w2vcli.checkpoints.engine_choice import cpu_description

    print(f"python {platform.python_version()}, {cpu_description()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        t = time.perf_counter()
        manifest = write_manifest(Path(tmp), args.lines)
        size = manifest.stat().st_size / 2**20
        print(f"manifest: {args.lines:,} lines, {size:.0f} MiB, written in {time.perf_counter() - t:.0f} s")
        rows = {}
        for mode in ("bare", "list", "index"):
            cmd = [sys.executable, __file__, "--child", mode, str(manifest)]
            cmd += ["--world-size", str(args.world_size), "--batches", str(args.batches)]
            done = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
            )
            if done.returncode:
                sys.exit(f"{mode} failed:\n{done.stderr}")
            rows[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    floor = rows["bare"]["peak_mb"]
    print(
        f"\nrank 0 of {args.world_size}, {args.batches} batches drawn; peak RSS (imports alone: {floor:.0f} MB)"
    )
    print(
        f"{'manifest as':<10} {'peak MB':>8} {'added MB':>9} {'B/line':>7} {'read s':>7} {'loader s':>9} {'total s':>8}"
    )
    for mode in ("list", "index"):
        r = rows[mode]
        added = r["peak_mb"] - floor
        per_line = added * 2**20 / args.lines
        print(
            f"{mode:<10} {r['peak_mb']:>8.0f} {added:>9.0f} {per_line:>7.0f} {r['read_s']:>7.1f} "
            f"{r['loader_s']:>9.1f} {r['seconds']:>8.1f}"
        )
    ratio = (rows["list"]["peak_mb"] - floor) / max(rows["index"]["peak_mb"] - floor, 1e-9)
    print(f"\nindex / list: {ratio:.1f}x less memory added per rank")


if __name__ == "__main__":
    main()
