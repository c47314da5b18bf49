"""Prep throughput: hours of audio prepared per minute of wall time, or files per second.

    python bench/bench_prep.py --hours 0.5 --workers 2
    python bench/bench_prep.py --files 100000 --workers 16 --tmp /scratch

Hours mode synthesises a folder of typical sources (44.1 kHz stereo 16-bit WAV and 48 kHz mono
FLAC, 5-20 s each) in a temporary directory, runs `prepare` on it, then runs it again to show the
cost of a resumed run (everything cached). The reference figure is a plain single-process
`load_audio` + `write_audio` loop over the same files, measured in the same run.

Files mode measures many short files: `--files N` symlinks (to 8 real 1 s files of mixed rates,
channels and formats) in folders of 1,000, prepared twice, each run in a fresh process so that
its peak memory (the main process, and the largest worker) is its own. The second run must
convert nothing (incremental). The reference is the plain loop over the first 1,000 files.
Disk: about 22 KB of FLAC per file (2.2 GB at 100,000) under --tmp.
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
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from w2vcli.data.audio import load_audio, write_audio  # noqa: E402
from w2vcli.pipelines.prep import PrepOptions, prepare  # noqa: E402


def synthesise(folder: Path, hours: float, seed: int = 0) -> float:
    """Noise-excited 'speech' with pauses; returns the seconds written."""
    rng = np.random.default_rng(seed)
    total, i = 0.0, 0
    while total < hours * 3600:
        seconds = float(rng.uniform(5, 20))
        sr, channels, ext = (44100, 2, "wav") if i % 2 else (48000, 1, "flac")
        n = int(seconds * sr)
        envelope = (np.sin(np.linspace(0, seconds * 3, n)) > -0.3).astype(np.float32)
        x = 0.1 * rng.standard_normal((n, channels)).astype(np.float32) * envelope[:, None]
        speaker = folder / f"spk{i % 7}"
        speaker.mkdir(exist_ok=True)
        sf.write(speaker / f"utt{i:05d}.{ext}", x, sr, subtype="PCM_16")
        total, i = total + seconds, i + 1
    return total


def reference(src: Path, dst: Path) -> float:
    start = time.perf_counter()
    for p in sorted(src.rglob("utt*")):
        write_audio(dst / (p.stem + ".flac"), load_audio(p))
    return time.perf_counter() - start


def symlink_corpus(folder: Path, files: int, seconds: float = 1.0, seed: int = 0) -> None:
    """`files` symlinks to 8 real files (16/44.1/48 kHz, mono/stereo, WAV/FLAC), 1,000 per folder."""
    rng = np.random.default_rng(seed)
    real = folder / "_real"
    real.mkdir(parents=True)
    targets = []
    for k in range(8):
        sr, channels, ext = [(16000, 1, "wav"), (44100, 2, "wav"), (48000, 1, "flac"), (22050, 1, "flac")][
            k % 4
        ]
        t = np.arange(int(seconds * sr)) / sr
        x = 0.2 * np.sin(2 * np.pi * (200 + 40 * k) * t) + 0.01 * rng.standard_normal(len(t))  # (N,)
        path = real / f"r{k}.{ext}"
        sf.write(path, np.stack([x] * channels, axis=1).astype(np.float32), sr, subtype="PCM_16")
        targets.append(path)
    corpus = folder / "corpus"
    for i in range(files):
        sub = corpus / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        target = targets[i % len(targets)]
        os.symlink(target, sub / f"f{i:06d}{target.suffix}")


def _peak_of_descendants(stop: threading.Event, peak: list) -> None:
    """Linux: the largest VmHWM (peak RSS) among this process's descendants (the pool's workers
    are children of the forkserver, so RUSAGE_CHILDREN does not see them), sampled every 0.5 s."""
    me = os.getpid()
    while not stop.wait(0.5):
        parents = {}
        for d in Path("/proc").iterdir():
            try:
                stat = (d / "stat").read_text()
                parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
        for pid in parents:
            p = pid
            while p in parents and p not in (me, 0, 1):
                p = parents[p]
            if p == me and pid != me:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
                    peak[0] = max(peak[0], int(hwm.split()[1]) / 1024)
                except (OSError, StopIteration, ValueError):
                    continue


def one_run(src: str, out: str, workers: int) -> None:
    """A single `prepare` in this process; prints its figures as JSON (run by files mode)."""
    stop, worker_peak = threading.Event(), [0.0]
    sampler = threading.Thread(target=_peak_of_descendants, args=(stop, worker_peak), daemon=True)
    if Path("/proc/self/status").exists():
        sampler.start()
    start = time.perf_counter()
    options = PrepOptions(workers=workers, valid_percent=5)
    report = prepare([src], out, options, on_progress=lambda p: None)  # as the CLI: per-file callbacks
    elapsed = time.perf_counter() - start
    stop.set()
    kb = 1 if sys.platform != "darwin" else 1 / 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    figures = {
        "elapsed": elapsed,
        "found": report.files["found"],
        "converted": report.files["converted"],
        "cached": report.files["cached"],
        "rejected": report.files["rejected"],
        "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kb / 1024,
        "worker_mb": worker_peak[0],
    }
    print(json.dumps(figures))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def files_mode(args) -> None:
    print(f"$ bench_prep.py --files {args.files} --workers {args.workers}")
    print(f"cpu: {cpu_name()!r}, {os.cpu_count()} cores; python {platform.python_version()}")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        start = time.perf_counter()
        symlink_corpus(Path(tmp), args.files)
        print(f"made {args.files} symlinks to 8 files of 1 s in {time.perf_counter() - start:.1f} s")
        src, out = Path(tmp) / "corpus", Path(tmp) / "out"
        runs = []
        for label in ("fresh", "second"):
            cmd = [sys.executable, __file__, "--one-run", str(src), str(out), str(args.workers)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = runs[-1]
            print(
                f"{label:6s} run: {r['found']} files in {r['elapsed']:.1f} s = {r['found'] / r['elapsed']:.0f} files/s; "
                f"{r['converted']} converted, {r['cached']} reused, {r['rejected']} rejected; "
                f"peak RSS main {r['main_mb']:.0f} MB, largest worker {r['worker_mb']:.0f} MB"
            )
        fresh, second = runs
        assert fresh["rejected"] == 0 and fresh["converted"] == args.files, fresh
        assert second["converted"] == 0 and second["cached"] == args.files, "second run was not incremental"
        sample = Path(tmp) / "ref"
        first = sorted((src / "d000").iterdir())[:1000]
        start = time.perf_counter()
        for p in first:
            write_audio(sample / (p.stem + ".flac"), load_audio(p))
        ref_rate = len(first) / (time.perf_counter() - start)
    rate = args.files / fresh["elapsed"]
    print(f"reference loop, 1 process, {len(first)} files: {ref_rate:.0f} files/s")
    print(f"ratio prep / reference: {rate / ref_rate:.2f}x")
    print(f"ratio second run / fresh run (time): {second['elapsed'] / fresh['elapsed']:.3f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=0.25, help="hours of synthetic audio (default 0.25)")
    ap.add_argument("--files", type=int, default=None, help="files mode: this many short files (e.g. 100000)")
    ap.add_argument(
        "--tmp", default=None, help="files mode: folder for the corpus and outputs (default: system tmp)"
    )
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--one-run", nargs=3, metavar=("SRC", "OUT", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_run:
        return one_run(args.one_run[0], args.one_run[1], int(args.one_run[2]))
    if args.files:
        return files_mode(args)
    with tempfile.TemporaryDirectory() as tmp:
        src, out, ref = Path(tmp) / "corpus", Path(tmp) / "out", Path(tmp) / "ref"
        src.mkdir()
        seconds = synthesise(src, args.hours)
        hours = seconds / 3600
        print(f"synthesised {hours:.2f} h in {len(list(src.rglob('utt*')))} files")
        start = time.perf_counter()
        report = prepare([src], out, PrepOptions(workers=args.workers, valid_percent=5))
        fresh = time.perf_counter() - start
        start = time.perf_counter()
        again = prepare([src], out, PrepOptions(workers=args.workers, valid_percent=5))
        resumed = time.perf_counter() - start
        assert not report.rejected and again.files["cached"] == report.files["converted"]
        base = reference(src, ref)
    print(f"prep, {args.workers} workers: {hours / (fresh / 60):.2f} audio h/min ({fresh:.1f} s)")
    print(f"reference loop, 1 process: {hours / (base / 60):.2f} audio h/min ({base:.1f} s)")
    print(f"ratio prep / reference: {base / fresh:.2f}x")
    print(f"resumed run (all cached): {resumed:.2f} s")


if __name__ == "__main__":
    main()
