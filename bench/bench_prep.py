"""Prep throughput: hours of audio prepared per minute of wall time.

    python bench/bench_prep.py --hours 0.5 --workers 2

Synthesises a folder of typical sources (44.1 kHz stereo 16-bit WAV and 48 kHz mono FLAC,
5-20 s each) in a temporary directory, runs `prepare` on it, then runs it again to show the
cost of a resumed run (everything cached). The reference figure is a plain single-process
`load_audio` + `write_audio` loop over the same files, measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=0.25, help="hours of synthetic audio (default 0.25)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    args = ap.parse_args()
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
