"""What `w2v segment`'s fit floor (`--min-fit`) sees: segment fits on speech with its own text, and on
the three things that must make no training pairs: the same speech with a wrong text, digital
silence, and white noise, each with the right text.

    python bench/calibrate_segment.py --model RUN examples/mini/dev examples/mini/test

Each folder's utterances (FLAC + `.txt` sidecar) are trimmed to their speech and joined with
pauses of 0.3-1.5 s of faint noise into one recording. The wrong text gives every utterance the
text of the one half the list away. Silence and noise (0.1 RMS, -20 dBFS) last as long as the
speech. Segments are planned with every filter off, so each condition's fits are all seen; then
the defaults' verdict is printed: segments kept, and whether the file is rejected whole. Tune the
floor on one folder and judge it on another (the README says which).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from w2vcli.checkpoints.resolve import load_model  # noqa: E402
from w2vcli.pipelines.segment import SegmentOptions, segment  # noqa: E402

SR = 16000


def recording(folder: Path, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    pieces, texts = [], []
    for flac in sorted(folder.glob("*.flac")):
        wav, _ = sf.read(flac, dtype="float32")
        loud = np.flatnonzero(np.abs(wav) > np.abs(wav).max() * 0.01)
        pieces += [(rng.standard_normal(int(rng.uniform(0.3, 1.5) * SR)) * 1e-3).astype(np.float32),
                   wav[loud[0] : loud[-1] + 1]]  # fmt: skip
        texts.append(flac.with_suffix(".txt").read_text().strip())
    pieces.append(np.zeros(SR // 2, np.float32))
    return np.concatenate(pieces), texts


def fits(loaded, wav: np.ndarray, text: str, tmp: Path, name: str, options: SegmentOptions) -> dict:
    path = tmp / f"{name}.wav"
    sf.write(path, wav, SR, subtype="FLOAT")
    summary = segment(str(path), text, loaded, tmp / name, options)
    rows = [
        __import__("json").loads(line) for line in (tmp / name / "segments.jsonl").read_text().splitlines()
    ]
    return {"summary": summary, "fits": np.array([r["fit"] for r in rows if r["reason"] != "too short"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("folders", nargs="+")
    p.add_argument("--max-seconds", type=float, default=10.0)
    a = p.parse_args()
    loaded = load_model(a.model, engine="torch")
    off = SegmentOptions(
        max_seconds=a.max_seconds, min_ratio=0, min_fit=0, min_file_fit=0, silence_db=-np.inf, max_bad_share=1
    )
    defaults = SegmentOptions(max_seconds=a.max_seconds)
    rng = np.random.default_rng(0)
    for folder in a.folders:
        wav, texts = recording(Path(folder), 0)
        half = len(texts) // 2
        conditions = {
            "speech, its text": (wav, texts),
            "speech, wrong text": (wav, texts[half:] + texts[:half]),
            "digital silence": (np.zeros_like(wav), texts),
            "white noise": ((0.1 * rng.standard_normal(len(wav))).astype(np.float32), texts),
        }
        print(f"{folder}: {len(texts)} utterances, {len(wav) / SR / 60:.1f} min")
        with tempfile.TemporaryDirectory() as tmp:
            for name, (audio, words) in conditions.items():
                key = name.replace(" ", "_").replace(",", "")
                raw = fits(loaded, audio, " ".join(words), Path(tmp), key, off)["fits"]
                verdict = fits(loaded, audio, " ".join(words), Path(tmp), key + "_d", defaults)["summary"]
                print(
                    f"  {name:20s} segment fit: median {np.median(raw):.3f}, range {raw.min():.3f}-{raw.max():.3f}"
                    f" ({len(raw)} segments); defaults keep {verdict['kept']} of {verdict['segments']}"
                    f"{', file rejected' if verdict['rejected'] else ''}"
                )


if __name__ == "__main__":
    main()
