"""Pretraining throughput, audio-seconds per second: our model vs transformers' Wav2Vec2ForPreTraining.

    python bench/bench_pretrain.py --preset tiny --batch 4 --seconds 4 --steps 5
    python bench/bench_pretrain.py --preset tiny --conv-dim 256 --batch 4 --seconds 4 --steps 5
    python bench/bench_pretrain.py --preset base --device cuda --amp
    python bench/bench_pretrain.py --preset base --batch 2 --seconds 4 --amp-ours   # bf16 (AMX) vs fp32
    python bench/bench_pretrain.py --preset tiny --batch 4 --seconds 4 --kernels    # fast paths on vs off

Same config (our preset converted with `config_to_hf`), same weights, same batch, masks and
negatives, same AdamW; a training step is forward + backward + optimizer step. Prints the
median over `--steps` timed steps (after `--warmup` untimed ones) and the ratio ours / theirs.
`--kernels` times our step with the fast paths of model/kernels.py against the same step on the
plain ops (`kernels.use(False)`), the gain each kept fast path has to show.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from w2vcli.checkpoints.huggingface import config_to_hf, state_to_hf  # noqa: E402
from w2vcli.model import Wav2Vec2ForPreTraining, kernels  # noqa: E402
from w2vcli.model.config import preset  # noqa: E402
from w2vcli.pipelines.pretrain import frame_lengths  # noqa: E402
from w2vcli.training.masking import compute_mask_indices, sample_negative_indices  # noqa: E402
from w2vcli.training.task import amp_dtype  # noqa: E402


def models(name: str, device: torch.device, conv_dim: int | None = None):
    from transformers import Wav2Vec2Config
    from transformers import Wav2Vec2ForPreTraining as HFPreTraining

    config = preset(name).replace(layerdrop=0.0)
    if conv_dim:
        config = config.replace(conv_dim=(conv_dim,) * len(config.conv_dim))
    ours = Wav2Vec2ForPreTraining(config)
    theirs = HFPreTraining(Wav2Vec2Config(**config_to_hf(config, "pretraining")))
    missing, unexpected = theirs.load_state_dict(state_to_hf(ours.state_dict()), strict=False)
    assert not unexpected, unexpected
    return config, ours.to(device).train(), theirs.to(device).train()


def batch(config, b: int, seconds: float, device: torch.device, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    n = int(seconds * 16000)
    wav = torch.randn(b, n, generator=gen) * 0.1
    t = int(frame_lengths(config, torch.tensor([n]))[0])
    mask = compute_mask_indices((b, t), config.mask_time_prob, config.mask_time_length, None, 2, gen)
    neg = sample_negative_indices(mask, config.num_negatives, gen)
    return wav.to(device), mask.to(device), neg.to(device)


def step_ours(model, opt, wav, mask, neg):
    out = model(wav, mask, neg)
    (out.loss * out.num_masked).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def step_theirs(model, opt, wav, mask, neg):
    out = model(wav, mask_time_indices=mask, sampled_negative_indices=neg)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def timed(runs, device, dtypes: dict, warmup: int, steps: int) -> dict[str, float]:
    """Median seconds per step of each (name, step, model, inputs), under autocast to dtypes[name]
    (None: off); steps alternate between the models so that load from other processes on a shared
    machine hits both alike."""
    opts = {
        name: torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-6)
        for name, _, model, _ in runs
    }
    times: dict[str, list[float]] = {name: [] for name, *_ in runs}
    for i in range(warmup + steps):
        for name, step, model, inputs in runs:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            dtype = dtypes[name]
            with torch.autocast(device.type, dtype, enabled=dtype is not None):
                step(model, opts[name], *inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=["tiny", "base", "large"])
    p.add_argument("--conv-dim", type=int, help="CNN channels (the issue's tiny config: 256)")
    p.add_argument("--batch", type=int, default=4, help="utterances per batch")
    p.add_argument("--seconds", type=float, default=2.0, help="crop length")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--amp",
        action="store_true",
        help="autocast for both models: bf16/fp16 on CUDA, bf16 on CPUs with AMX",
    )
    p.add_argument(
        "--amp-ours",
        action="store_true",
        help="autocast ours only: `--amp` training against transformers' default fp32",
    )
    p.add_argument(
        "--kernels", action="store_true", help="ours with model/kernels.py on vs off, not transformers"
    )
    p.add_argument(
        "--dtype",
        choices=["bf16", "fp16"],
        help="with --amp/--amp-ours on CUDA: the autocast dtype (default: bf16 where supported; timing only, "
        "no loss scaling)",
    )
    a = p.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(0)
    config, ours, theirs = models(a.preset, device, a.conv_dim)
    inputs = batch(config, a.batch, a.seconds, device)
    dtype = amp_dtype(device, a.amp or a.amp_ours)
    if a.dtype:
        if device.type != "cuda" or not (a.amp or a.amp_ours):
            p.error("--dtype needs --device cuda and --amp or --amp-ours")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    dtypes = {"w2vcli": dtype, "transformers": None if a.amp_ours else dtype}
    audio = a.batch * a.seconds
    print(
        f"{a.preset} (conv {config.conv_dim[0]}): {sum(p.numel() for p in ours.parameters()) / 1e6:.1f}M params, batch {a.batch} x "
        f"{a.seconds:g} s, {int(inputs[1].sum())} masked frames, {device}, "
        f"w2vcli {dtypes['w2vcli'] or 'fp32'}, transformers {dtypes['transformers'] or 'fp32'}, "
        f"{torch.get_num_threads()} threads"
    )
    runs = [("w2vcli", step_ours, ours, inputs), ("transformers", step_theirs, theirs, inputs)]
    if a.kernels:
        plain_model = copy.deepcopy(ours)

        def step_plain(*args):
            with kernels.use(False):
                step_ours(*args)

        runs = [("w2vcli", step_ours, ours, inputs), ("plain ops", step_plain, plain_model, inputs)]
        dtypes["plain ops"] = dtypes["w2vcli"]
    results = {}
    for name, seconds in timed(runs, device, dtypes, a.warmup, a.steps).items():
        results[name] = audio / seconds
        print(f"{name:>13}: {seconds * 1000:8.1f} ms/step  {results[name]:8.1f} audio-s/s")
    other = "plain ops" if a.kernels else "transformers"
    print(f"ratio w2vcli / {other}: {results['w2vcli'] / results[other]:.2f}x")


if __name__ == "__main__":
    main()
