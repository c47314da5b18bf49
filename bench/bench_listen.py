"""`w2v listen` latency at real-time pace: first partial after speech starts, final line after it ends.

    python bench/bench_listen.py --preset tiny base           # random-weight models, 8 utterances
    python bench/bench_listen.py --model runs/ft --utterances 12 --engine onnx

A real `w2v listen -` process is fed s16le PCM through a pipe, 100 ms at a time on the clock: the
shipped held-out sentences (examples/mini/test) with 1.2 s of silence between them. Its stdout
(final JSON lines) and stderr (plain `partial:` lines, since stderr is a pipe) are read in threads
that stamp each line on arrival. For utterance k with speech from a_k to b_k (stream seconds, from
the clean clip's level): `first partial` = arrival of its first partial - a_k, `final` = arrival of
its final line - b_k. The final waits for --min-silence (0.5 s) by design; what the model and the
loop add is `final - 0.5`. Medians and maxima per model; the CPU's flags and the thread count head
the output. Last, the finals' CER against the sentences' transcripts beside `w2v transcribe`'s on
the same clip files, and between the two (meaningful with a trained `--model` only). Models with `--preset` have random weights (bench_transcribe.random_checkpoint), which
cost the same per second of audio as trained ones; their text is nonsense.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_transcribe import cpu_flags, random_checkpoint  # noqa: E402

SR = 16000
PIECE_SECONDS = 0.1


def clips(count: int) -> list[Path]:
    return sorted((ROOT / "examples/mini/test").glob("*.flac"))[:count]


def stream(count: int, gap: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Sentences between silences, and each one's speech (start, end) in seconds."""
    files = clips(count)
    parts, spans, at = [np.zeros(int(gap * SR), np.float32)], [], int(gap * SR)
    for f in files:
        clip = sf.read(f, dtype="float32")[0]
        n = len(clip) // 160
        rms = np.sqrt(np.mean(clip[: n * 160].reshape(n, 160) ** 2, axis=1) + 1e-12)
        on = np.flatnonzero(rms >= rms.max() / 100)
        spans.append(((at + on[0] * 160) / SR, (at + (on[-1] + 1) * 160) / SR))
        parts += [clip, np.zeros(int(gap * SR), np.float32)]
        at += len(clip) + int(gap * SR)
    return np.concatenate(parts), spans


def run(model: str, wav: np.ndarray, engine: str | None, extra: list[str]) -> tuple[list, list, float]:
    """Feed `wav` at real-time pace; returns (partials, finals) as (arrival seconds, payload) and t0."""
    cmd = [sys.executable, "-m", "w2vcli", "listen", "-", "--model", model, *extra]
    if engine:
        cmd += ["--engine", engine]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partials, finals, errors, ready = [], [], [], threading.Event()

    def read_err():
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            if line.startswith("partial: "):
                partials.append((time.monotonic(), line[9:].rstrip("\n")))
            elif line.startswith("listening to"):
                ready.set()
            else:
                errors.append(line)

    def read_out():
        for raw in proc.stdout:
            finals.append((time.monotonic(), json.loads(raw)))

    threads = [threading.Thread(target=f, daemon=True) for f in (read_err, read_out)]
    for t in threads:
        t.start()
    if not ready.wait(600):
        proc.kill()
        raise SystemExit("w2v listen did not start:\n" + "".join(errors))
    pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2")
    piece = int(PIECE_SECONDS * SR)
    t0 = time.monotonic()
    for k, i in enumerate(range(0, len(pcm), piece)):
        time.sleep(max(0.0, t0 + k * PIECE_SECONDS - time.monotonic()))
        proc.stdin.write(pcm[i : i + piece].tobytes())
        proc.stdin.flush()
    proc.stdin.close()
    proc.wait(120)
    for t in threads:
        t.join(5)
    if proc.returncode != 0:
        raise SystemExit(f"w2v listen failed ({proc.returncode}):\n" + "".join(errors))
    return partials, finals, t0


def latencies(partials, finals, t0, spans) -> tuple[list[float], list[float], int]:
    """Per utterance: first partial after speech start, final after speech end; and finals matched."""
    first, final, matched = [], [], 0
    for a, b in spans:
        mine = [(t, f) for t, f in finals if f["start"] <= b and f["end"] >= a]
        if not mine:
            continue
        matched += 1
        done = mine[0][0]
        final.append(done - (t0 + b))
        early = [t for t, _ in partials if t0 + a <= t <= done]
        if early:
            first.append(early[0] - (t0 + a))
    return first, final, matched


def cer_against_transcribe(model: str, engine: str | None, files: list[Path], finals, spans) -> str:
    """CER of listen's finals and of `w2v transcribe` on the same clips, against the transcripts."""
    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.data.text import normalize_text
    from w2vcli.pipelines.transcribe import expand, transcribe
    from w2vcli.scoring.error_rates import char_edits, error_rate, total

    loaded = load_model(model, device="cpu", engine=engine)
    offline = [r.text for r in transcribe(expand([str(f) for f in files]), loaded)]
    refs = [normalize_text(f.with_suffix(".txt").read_text()) for f in files]
    heard = []
    for a, b in spans:  # the text of every final line over this utterance, in order
        heard.append(" ".join(f["text"] for _, f in finals if f["start"] <= b and f["end"] >= a))

    def rate(pairs) -> float:  # percent, over all characters
        counts = total(char_edits(r, h) for r, h in pairs)
        return 100 * error_rate(counts.errors, counts.ref_len)

    ours, theirs = rate(zip(refs, heard, strict=True)), rate(zip(refs, offline, strict=True))
    between = rate(zip(offline, heard, strict=True))
    return f"CER listen {ours:.2f}%, transcribe {theirs:.2f}% ({ours - theirs:+.2f} points); listen vs transcribe {between:.2f}%"


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.3f} s, max {max(values):.3f} s (n={len(values)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", nargs="*", default=["tiny"], help="random-weight models to time (tiny, base)")
    ap.add_argument("--model", action="append", default=[], help="a model directory or file to time as well")
    ap.add_argument("--utterances", type=int, default=8)
    ap.add_argument("--gap", type=float, default=1.2, help="seconds of silence between utterances")
    ap.add_argument("--engine", choices=["auto", "onnx", "torch"], default=None)
    ap.add_argument("--step", type=float, default=0.3)
    a = ap.parse_args()
    wav, spans = stream(a.utterances, a.gap)
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(
        f"cpu: {cpu_flags()}; OMP_NUM_THREADS={threads}; engine {a.engine or os.environ.get('W2V_ENGINE') or 'auto'}"
    )
    print(
        f"stream: {len(spans)} utterances, {len(wav) / SR:.1f} s, fed {PIECE_SECONDS:g} s at a time; step {a.step:g} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        models = [(p, str(random_checkpoint(p, Path(tmp) / p))) for p in a.preset] + [(m, m) for m in a.model]
        for name, path in models:
            partials, finals, t0 = run(path, wav, a.engine, ["--step", str(a.step)])
            first, final, matched = latencies(partials, finals, t0, spans)
            print(f"{name}: {len(finals)} final lines for {len(spans)} utterances ({matched} matched)")
            print(f"  first partial after speech start: {summary(first)}")
            print(f"  final line after speech end:       {summary(final)} (0.5 s of it is --min-silence)")
            print(f"  {cer_against_transcribe(path, a.engine, clips(a.utterances), finals, spans)}")


if __name__ == "__main__":
    main()
