"""What each fast path of model/kernels.py buys, end to end: training steps with all of them on,
with each one off in turn, and with all off (the plain ops), alternating, medians.

    python bench/bench_kernels.py --preset tiny --task finetune --steps 15
    python bench/bench_kernels.py --preset tiny --task pretrain --steps 7
    python bench/bench_kernels.py --preset base --task pretrain --batch 2 --steps 3

`pretrain`: a Wav2Vec2ForPreTraining step (the CNN learns). `finetune`: a Wav2Vec2ForCTC step with
the CNN frozen, as from a pretrained start (the default). Each path must show a gain of at least
10% on some task and CPU to stay (issue 18); the CPU's flags are printed with the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pretrain import batch, models, step_ours  # noqa: E402
from bench_transcribe import cpu_flags  # noqa: E402

from w2vcli.model import Wav2Vec2ForCTC, kernels  # noqa: E402
from w2vcli.model.config import preset  # noqa: E402

PATHS = {"first_conv": ["first_conv"], "group_norm": ["group_norm"], "dropout": ["dropout", "attention"]}


def finetune_step(name: str, b: int, seconds: float):
    torch.manual_seed(0)
    config = preset(name).replace(vocab_size=32)
    model = Wav2Vec2ForCTC(config).train()
    model.wav2vec2.feature_extractor.requires_grad_(False)
    model.wav2vec2.config = config.replace(feature_grad_mult=0.0)  # frozen: no autograd through the CNN
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    wav = torch.randn(b, int(seconds * 16000)) * 0.1
    targets = torch.randint(1, 32, (b, int(seconds * 10)))
    target_lengths = torch.full((b,), targets.shape[1])

    def step():
        logits, frames, _ = model(wav)
        loss = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), targets, frames, target_lengths)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def pretrain_step(name: str, b: int, seconds: float):
    torch.manual_seed(0)
    config, model, _ = models(name, torch.device("cpu"))
    inputs = batch(config, b, seconds, torch.device("cpu"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    return lambda: step_ours(model, opt, *inputs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=["tiny", "base", "large"])
    p.add_argument("--task", default="finetune", choices=["finetune", "pretrain"])
    p.add_argument("--batch", type=int, default=4, help="utterances per batch")
    p.add_argument("--seconds", type=float, default=2.5, help="seconds per utterance")
    p.add_argument("--steps", type=int, default=9, help="timed steps per variant (after one untimed)")
    a = p.parse_args()
    print(f"$ {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(f"cpu: {cpu_flags()} threads={torch.get_num_threads()} torch={torch.__version__}", flush=True)
    step = (finetune_step if a.task == "finetune" else pretrain_step)(a.preset, a.batch, a.seconds)
    originals = {n: getattr(kernels, n) for names in PATHS.values() for n in names}

    def plain(fn):
        def run(*args, **kwargs):
            with kernels.use(False):
                return fn(*args, **kwargs)

        return run

    variants = {"all on": []} | {f"{path} off": names for path, names in PATHS.items()} | {"all off": None}
    times: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for i in range(a.steps + 1):
            for variant, off in variants.items():
                for n, fn in originals.items():
                    setattr(kernels, n, plain(fn) if off is None or n in off else fn)
                start = time.perf_counter()
                step()
                if i:
                    times[variant].append(time.perf_counter() - start)
    finally:
        for n, fn in originals.items():
            setattr(kernels, n, fn)
    on = statistics.median(times["all on"])
    print(f"{a.preset} {a.task}, batch {a.batch} x {a.seconds:g} s, median of {a.steps} steps")
    for variant, t in times.items():
        m = statistics.median(t)
        print(f"{variant:>16}: {m * 1000:8.1f} ms/step   gain of the fast path(s): {m / on:.3f}x")


if __name__ == "__main__":
    main()
