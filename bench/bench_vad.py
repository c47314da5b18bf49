"""Which voice activity detector cuts speech into utterances better: Silero VAD (ONNX) or WebRTC's.

    python bench/bench_vad.py --split labelled --utterances 30   # the figures in serving/vad.py
    python bench/bench_vad.py                                     # the dev split (10 utterances)

Needs `pip install webrtcvad-wheels` (for the comparison only; w2v itself uses Silero, the listen extra).

Tracks are the shipped synthetic speech (examples/mini/<split>/*.flac, 16 kHz) laid end to end with
0.6-1.5 s of silence between utterances (longer than the 0.5 s that ends one), then white, pink or
brown noise (data/augment.colored_noise) added at 20, 10, 5 or 0 dB SNR (speech RMS over the
utterances' own spans against noise RMS).
Truth: each utterance's span, from its first to its last 10 ms frame within 40 dB of its loudest.

Both detectors give a score per 512-sample frame (32 ms): Silero its probability; WebRTC (modes 0-3)
the share of its 10 ms decisions inside the frame that said speech. Then:
- `frame acc`: frames scored >= 0.5 that lie inside a true span, and those < 0.5 outside, over all.
- through `serving.vad.Segmenter` (the same settings for both, padding 0), each true utterance is
  `found` (exactly one segment covers it, and that segment no other utterance), `split`, `merged`
  or `missed`; `false` counts segments over no utterance; `|start|` / `|end|` are the median errors
  of the found ones' speech spans, in ms.
- `cpu`: process seconds per second of audio to score the frames.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from w2vcli.data.augment import colored_noise  # noqa: E402
from w2vcli.serving.vad import FRAME, Segmenter, SileroVad, VadOptions, frames_of  # noqa: E402

SR = 16000
NOISES = {"white": 0.0, "pink": 1.0, "brown": 2.0}
SNRS = (None, 20.0, 10.0, 5.0, 0.0)


def span(clip: np.ndarray, floor_db: float = 40.0) -> tuple[int, int]:
    """Samples [first, last) of the clip's 10 ms frames within floor_db of its loudest frame."""
    n = len(clip) // 160
    rms = np.sqrt(np.mean(clip[: n * 160].reshape(n, 160) ** 2, axis=1) + 1e-12)
    on = np.flatnonzero(rms >= rms.max() * 10 ** (-floor_db / 20))
    return int(on[0]) * 160, (int(on[-1]) + 1) * 160


def track(split: str, count: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    files = sorted((ROOT / "examples/mini" / split).glob("*.flac"))
    picks = rng.choice(len(files), size=min(count, len(files)), replace=False)
    parts, truth, at = [np.zeros(SR, np.float32)], [], SR
    for k in picks:
        clip = sf.read(files[k], dtype="float32")[0]
        a, b = span(clip)
        truth.append((at + a, at + b))
        gap = np.zeros(int(rng.uniform(0.6, 1.5) * SR), np.float32)
        parts += [clip, gap]
        at += len(clip) + len(gap)
    return np.concatenate(parts), truth


def noisy(wav, truth, kind, snr, rng) -> np.ndarray:
    if snr is None:
        return wav
    speech = np.concatenate([wav[a:b] for a, b in truth])
    noise = colored_noise(len(wav), NOISES[kind], rng)
    noise *= np.sqrt(np.mean(speech**2)) / np.sqrt(np.mean(noise**2)) / 10 ** (snr / 20)
    return (wav + noise).astype(np.float32)


class WebRtc:
    """WebRTC VAD (webrtcvad-wheels) at one aggressiveness, scored per 512-sample frame."""

    def __init__(self, mode: int):
        import webrtcvad

        self.vad = webrtcvad.Vad(mode)

    def __call__(self, frames: np.ndarray) -> np.ndarray:  # (F, FRAME) -> (F,)
        pcm = (np.clip(frames.reshape(-1), -1, 1) * 32767).astype("<i2")
        n = len(pcm) // 160
        said = np.array([self.vad.is_speech(pcm[i * 160 : (i + 1) * 160].tobytes(), SR) for i in range(n)])
        centre = (np.arange(n) * 160 + 80) // FRAME  # the 512-sample frame each 10 ms decision falls in
        score = np.bincount(centre, weights=said, minlength=len(frames))
        return (score / np.maximum(np.bincount(centre, minlength=len(frames)), 1))[: len(frames)]


def judge(scores: np.ndarray, truth: list[tuple[int, int]], n_frames: int) -> dict:
    inside = np.zeros(n_frames, bool)
    for a, b in truth:
        inside[a // FRAME : -(-b // FRAME)] = True
    acc = float(np.mean((scores >= 0.5) == inside))
    seg = Segmenter(VadOptions(pad=0.0, max_seconds=60.0))
    segs = []
    for p in scores:
        segs += [u.speech for u in seg.push(np.zeros(FRAME, np.float32), float(p))]
    segs += [u.speech for u in seg.flush()]
    over = [[j for j, (c, d) in enumerate(segs) if c < b and d > a] for a, b in truth]
    users = [sum(j in o for o in over) for j in range(len(segs))]
    out = {"found": 0, "split": 0, "merged": 0, "missed": 0, "start": [], "end": []}
    for (a, b), o in zip(truth, over, strict=True):
        if not o:
            out["missed"] += 1
        elif len(o) > 1:
            out["split"] += 1
        elif users[o[0]] > 1:
            out["merged"] += 1
        else:
            out["found"] += 1
            out["start"].append(abs(segs[o[0]][0] - a) / SR * 1000)
            out["end"].append(abs(segs[o[0]][1] - b) / SR * 1000)
    out["false"] = sum(u == 0 for u in users)
    out["acc"] = acc
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="dev")
    ap.add_argument("--utterances", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    wav, truth = track(args.split, args.utterances, rng)
    print(f"{args.split}: {len(truth)} utterances, {len(wav) / SR:.1f} s; frame = {FRAME} samples (32 ms)")
    detectors = {"silero": SileroVad, **{f"webrtc-{m}": (lambda m=m: WebRtc(m)) for m in (0, 1, 2, 3)}}
    print(f"{'noise':>12} {'vad':>9} {'frame acc':>9} {'found':>5} {'split':>5} {'merged':>6} "
          f"{'missed':>6} {'false':>5} {'|start|':>7} {'|end|':>6} {'cpu':>7}")  # fmt: skip
    totals: dict[str, list] = {k: [] for k in detectors}
    for kind in NOISES:
        for snr in SNRS:
            if snr is None and kind != "white":
                continue
            x = noisy(wav, truth, kind, snr, rng)
            frames = np.stack(list(frames_of([x])))  # (F, FRAME)
            label = "clean" if snr is None else f"{kind} {snr:g} dB"
            for name, make in detectors.items():
                vad = make()
                t0 = time.process_time()
                scores = vad(frames)
                cpu = (time.process_time() - t0) / (len(x) / SR)
                r = judge(scores, truth, len(frames))
                med = lambda v: f"{statistics.median(v):.0f}" if v else "-"  # noqa: E731
                print(f"{label:>12} {name:>9} {r['acc']:9.3f} {r['found']:5d} {r['split']:5d} {r['merged']:6d} "
                      f"{r['missed']:6d} {r['false']:5d} {med(r['start']):>7} {med(r['end']):>6} {cpu:7.4f}")  # fmt: skip
                totals[name].append((r["acc"], r["found"] / len(truth), cpu))
    print("\nmean over conditions: vad, frame acc, utterances found, cpu s per audio s")
    for name, rows in totals.items():
        acc, found, cpu = (statistics.mean(c) for c in zip(*rows, strict=True))
        print(f"{name:>9} {acc:.3f} {found:.3f} {cpu:.4f}")


if __name__ == "__main__":
    main()
