"""`--grad-checkpointing`: peak memory and time of one fine-tuning step, with and without it.

    python bench/bench_checkpointing.py                        # large, 1 x 15 s, CPU
    python bench/bench_checkpointing.py --preset base --seconds 30 --batch 2

Each mode runs in a fresh process (peak RSS is the process's own): a random-weight Wav2Vec2ForCTC
of the preset in training mode (dropout on, the CNN frozen as fine-tuning has it), one forward pass
over `--batch` x `--seconds` of noise, the CTC loss against random labels, one backward pass. Reports
the peak RSS above the process's size once the model is built (activations and gradients), the
step's wall time, and how far the gradients of the two modes differ (max |diff| over all of them,
and the two global norms): they must be equal, as the dropout masks repeat in the recomputation.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def step(a) -> None:
    import torch

    from w2vcli.model import Wav2Vec2ForCTC
    from w2vcli.model.config import preset

    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(preset(a.preset).replace(vocab_size=32, layerdrop=0.0)).train()
    model.wav2vec2.feature_extractor.requires_grad_(False)
    model.wav2vec2.encoder.grad_checkpointing = a.mode == "on"
    wav = torch.randn(a.batch, int(a.seconds * 16000))
    labels = torch.randint(1, 32, (a.batch, int(a.seconds * 12)))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(1)
    t = time.perf_counter()
    logits, frames, _ = model(wav)
    loss = torch.nn.functional.ctc_loss(
        logits.log_softmax(-1).transpose(0, 1), labels, frames, torch.full((a.batch,), labels.shape[1])
    )
    loss.backward()
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    torch.save(grads, a.out)
    norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()])))
    print(
        json.dumps(
            {"mode": a.mode, "peak_mb": (peak - base) / 1024, "wall": wall, "loss": float(loss), "norm": norm}
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="large", choices=["tiny", "base", "large"])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--mode", choices=["on", "off"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.mode:
        step(a)
        return
    import torch
    from bench_transcribe import cpu_flags

    print(f"cpu: {cpu_flags()}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(f"preset {a.preset}, {a.batch} x {a.seconds:g} s, one fine-tuning step (forward + backward)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("off", "on"):
            out = Path(tmp) / f"{mode}.pt"
            args = ["--preset", a.preset, "--seconds", str(a.seconds), "--batch", str(a.batch)]
            done = subprocess.run(
                [sys.executable, __file__, *args, "--mode", mode, "--out", str(out)],
                capture_output=True,
                text=True,
                check=True,
            )
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[mode]
            print(
                f"  checkpointing {mode:>3}: peak +{r['peak_mb']:8.0f} MB  step {r['wall']:6.1f} s  "
                f"loss {r['loss']:.6f}  grad norm {r['norm']:.6f}",
                flush=True,
            )
        off, on = torch.load(Path(tmp) / "off.pt"), torch.load(Path(tmp) / "on.pt")
        diff = max(float((off[k] - on[k]).abs().max()) for k in off)
    print(
        f"memory: {results['off']['peak_mb'] / max(results['on']['peak_mb'], 1):.2f}x less with it; "
        f"time: {results['on']['wall'] / results['off']['wall']:.2f}x; gradients max |diff| {diff:.2e}"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
