"""Transcription benchmarks: speed against transformers, many short files, long-file memory, start-up.

    python bench/bench_transcribe.py engines --preset base --seconds 20 --repeats 5
    python bench/bench_transcribe.py speed --preset base --seconds 20 --repeats 7
    python bench/bench_transcribe.py speed --preset base --seconds 20 --repeats 7 --int8
    python bench/bench_transcribe.py files --preset base --files 100 --repeats 3 --warmup 0
    python bench/bench_transcribe.py memory --preset base --minutes 10 60
    python bench/bench_transcribe.py startup --repeats 5
    python bench/bench_transcribe.py profile --preset base --seconds 10

Models have random weights: our Wav2Vec2ForCTC (`--preset`, 32 characters), converted with
`config_to_hf`/`state_to_hf` into transformers' Wav2Vec2ForCTC, so both hold the same weights.
The CTC head never picks <s>, </s> or <unk> (bias -100), which transformers' tokenizer would print.
Audio is real speech: examples/mini/test/*.flac concatenated and tiled to the length asked for.
`engines` times transformers and each of our engines (PyTorch and ONNX Runtime, fp32 and int8) on
one file, alternating, and prints the ratios and whether the text is identical: the measurement
that picks the default CPU engine, to be taken on each kind of CPU (the CPU's flags are printed).
`speed` times one transcription of one file (`--engine`, default auto), ours (`transcribe()`: read, forward, greedy, text) and
theirs (read, feature extractor, forward, argmax, tokenizer) alternating, and checks identical
text and per-frame argmax ids. Every run prints its parameters, medians and ratios; timings from
a loaded machine are noisy, and with 1 thread `cpu` (process time) is steadier than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from w2vcli.checkpoints.engine_choice import cpu_description  # noqa: E402
from w2vcli.checkpoints.native import save_checkpoint  # noqa: E402
from w2vcli.checkpoints.resolve import load_model  # noqa: E402
from w2vcli.data.text import Vocabulary  # noqa: E402
from w2vcli.model import Wav2Vec2ForCTC  # noqa: E402
from w2vcli.model.config import preset  # noqa: E402
from w2vcli.pipelines.transcribe import TranscribeOptions, expand, transcribe  # noqa: E402
from w2vcli.training.runtime import cpu_has_amx  # noqa: E402

SPEECH = ROOT / "examples/mini/test"
CHARS = "abcdefghijklmnopqrstuvwxyz'"


def speech(seconds: float) -> np.ndarray:
    """Real speech at 16 kHz, `seconds` long: the example test set, tiled."""
    clips = [sf.read(f, dtype="float32")[0] for f in sorted(SPEECH.glob("*.flac"))]
    audio = np.concatenate(clips)
    return np.tile(audio, int(seconds * 16000) // len(audio) + 1)[: int(seconds * 16000)]


def write(path: Path, wav: np.ndarray) -> Path:
    sf.write(path, wav, 16000, subtype="PCM_16", format="FLAC")
    return path


def random_checkpoint(name: str, directory: Path, seed: int = 0) -> Path:
    """Our CTC model with random weights and a 32-token character vocabulary, saved as a checkpoint."""
    torch.manual_seed(seed)
    vocab = Vocabulary.from_texts([CHARS])
    model = Wav2Vec2ForCTC(preset(name).replace(vocab_size=len(vocab), layerdrop=0.0))
    with torch.no_grad():
        model.lm_head.bias[1:4] = -100.0  # <s> </s> <unk>
    return save_checkpoint(model, directory, vocab)


def hf_side(ckpt: Path, config):
    """transformers' model, feature extractor and tokenizer for the same weights and vocabulary."""
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor
    from transformers import Wav2Vec2ForCTC as HFForCTC

    from w2vcli.checkpoints.huggingface import config_to_hf, state_to_hf
    from w2vcli.checkpoints.native import load_checkpoint

    ours = load_checkpoint(ckpt).model
    model = HFForCTC(Wav2Vec2Config(**config_to_hf(config, "ctc"))).eval()
    missing, unexpected = model.load_state_dict(state_to_hf(ours.state_dict()), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    fe = Wav2Vec2FeatureExtractor(do_normalize=config.do_normalize, return_attention_mask=False)
    return model, fe, Wav2Vec2CTCTokenizer(str(ckpt / "vocab.json"))


def timed(runs: dict, repeats: int, warmup: int) -> dict[str, tuple[float, float]]:
    """Median (wall, cpu) seconds of each run; runs alternate so that outside load hits all alike."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for i in range(warmup + repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            if i >= warmup:
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        n: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for n, t in times.items()
    }


def cpu_flags() -> str:
    """The CPU's model and the instruction-set flags that decide fp32, bf16 and int8 speed."""
    return cpu_description()


def header(a, **extra) -> None:
    print(f"cpu: {cpu_flags()}", flush=True)
    fields = dict(
        preset=a.preset,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        cpu=torch.backends.cpu.get_cpu_capability(),
        amx=cpu_has_amx(),
        engine=getattr(a, "engine", None) or os.environ.get("W2V_ENGINE") or "auto",
        load=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        **extra,
    )
    print(" ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def cmd_speed(a, tmp: Path) -> None:
    path = write(tmp / "speech.flac", speech(a.seconds))
    ckpt = random_checkpoint(a.preset, tmp / "model", a.seed)
    device = torch.device(a.device)
    loaded = load_model(str(ckpt), device=a.device, int8=a.int8, engine=a.engine)
    fp32 = load_model(str(ckpt), device=a.device, engine=a.engine) if a.int8 else loaded
    hf, fe, tok = hf_side(ckpt, loaded.config)
    hf = hf.to(device)
    options = TranscribeOptions(chunk_seconds=a.chunk_seconds)
    header(a, seconds=a.seconds, int8=a.int8, chunk_seconds=a.chunk_seconds, device=a.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out: dict[str, str] = {}

    def ours():
        out["ours"] = next(transcribe(expand([str(path)]), loaded, options)).text
        sync()

    def theirs():
        wav, _ = sf.read(path, dtype="float32")
        x = fe(wav, sampling_rate=16000, return_tensors="pt").input_values.to(device)
        with torch.inference_mode():
            ids = hf(x).logits.argmax(-1).cpu()
        out["theirs"] = tok.batch_decode(ids)[0]
        sync()

    result = timed({"w2vcli": ours, "transformers": theirs}, a.repeats, a.warmup)
    for name, (wall, cpu) in result.items():
        print(f"{name:>13}: wall {wall:7.3f} s  cpu {cpu:7.3f} s  RTF {wall / a.seconds:.4f}")
    print(
        f"ratio transformers / w2vcli: wall {result['transformers'][0] / result['w2vcli'][0]:.2f}x  "
        f"cpu {result['transformers'][1] / result['w2vcli'][1]:.2f}x"
    )
    with torch.inference_mode():
        x = fe(speech(min(a.seconds, 30.0)), sampling_rate=16000, return_tensors="pt").input_values.to(device)
        ref = hf(x).logits  # (1, T, V); our loaded models leave normalising to the caller, as here
        mine, base = loaded.model(x)[0].to(device), fp32.model(x)[0].to(device)
    agree = mine.argmax(-1) == ref.argmax(-1)  # (1, T)
    top2 = ref.log_softmax(-1).topk(2, dim=-1).values  # (1, T, 2)
    gap = top2[..., 0] - top2[..., 1]
    sure = gap > gap.quantile(0.75)  # a random model is torn on most frames; a trained one is not
    print(
        f"frame argmax agreement with transformers: {agree.float().mean():.4f} "
        f"(fp32 w2vcli: {(base.argmax(-1) == ref.argmax(-1)).float().mean():.4f}), "
        f"{agree[sure].float().mean():.4f} on the quarter of frames with the widest top-2 gap "
        f"(> {gap.quantile(0.75):.2f} nats); max |logit diff| {(mine - ref).abs().max():.2e}"
    )
    same = " ".join(out["ours"].split()) == " ".join(out["theirs"].split())
    print(f"identical text: {same} ({len(out['ours'].split())} words)")
    if a.int8:
        import jiwer

        text32 = next(transcribe(expand([str(path)]), fp32, options)).text
        print(
            f"int8 vs fp32 w2vcli: CER {jiwer.cer(text32, out['ours']):.4f}, WER {jiwer.wer(text32, out['ours']):.4f}"
        )


def cmd_engines(a, tmp: Path) -> None:
    """transformers against each engine of ours, fp32 and int8, on one file: medians, ratios, text."""
    import jiwer

    path = write(tmp / "speech.flac", speech(a.seconds))
    ckpt = random_checkpoint(a.preset, tmp / "model", a.seed)
    variants = {
        "torch fp32": load_model(str(ckpt), engine="torch"),
        "onnx fp32": load_model(str(ckpt), engine="onnx"),
        "torch int8": load_model(str(ckpt), engine="torch", int8=True),
        "onnx int8": load_model(str(ckpt), engine="onnx", int8=True),
    }
    hf, fe, tok = hf_side(ckpt, variants["torch fp32"].config)
    header(a, seconds=a.seconds)
    out: dict[str, str] = {}

    def ours(name, loaded):
        def run():
            out[name] = next(transcribe(expand([str(path)]), loaded, TranscribeOptions())).text

        return run

    def theirs():
        wav, _ = sf.read(path, dtype="float32")
        x = fe(wav, sampling_rate=16000, return_tensors="pt").input_values
        with torch.inference_mode():
            ids = hf(x).logits.argmax(-1)
        out["transformers"] = " ".join(tok.batch_decode(ids)[0].split())

    runs = {"transformers": theirs} | {name: ours(name, loaded) for name, loaded in variants.items()}
    result = timed(runs, a.repeats, a.warmup)
    ref_wall, ref_cpu = result["transformers"]
    for name, (wall, cpu) in result.items():
        text = out[name]
        vs = "identical" if text == out["transformers"] else f"CER {jiwer.cer(out['transformers'], text):.4f}"
        print(
            f"{name:>13}: wall {wall:7.3f} s  cpu {cpu:7.3f} s  {ref_wall / wall:5.2f}x wall "
            f"{ref_cpu / cpu:5.2f}x cpu  text vs transformers: {vs}"
        )


def cmd_files(a, tmp: Path) -> None:
    rng = np.random.default_rng(a.seed)
    lengths = rng.uniform(a.min_seconds, a.max_seconds, a.files)
    audio = speech(float(lengths.sum()) + 1)
    (tmp / "files").mkdir()
    paths, pos = [], 0
    for i, s in enumerate(lengths):
        n = int(s * 16000)
        paths.append(str(write(tmp / "files" / f"f{i:04d}.flac", audio[pos : pos + n])))
        pos += n
    joined = str(write(tmp / "joined.flac", audio[:pos]))
    loaded = load_model(str(random_checkpoint(a.preset, tmp / "model", a.seed)), int8=a.int8, engine=a.engine)
    seconds = pos / 16000
    header(a, files=a.files, seconds=round(seconds, 1), int8=a.int8)
    spent: dict[str, float] = {}
    runs = {}
    for b in a.batch_seconds:

        def files(b=b):
            results = list(transcribe(expand(paths), loaded, TranscribeOptions(batch_seconds=b)))
            spent[f"files, batch {b:g} s"] = sum(r.elapsed for r in results)

        runs[f"files, batch {b:g} s"] = files
    runs["one long file"] = lambda: list(transcribe(expand([joined]), loaded, TranscribeOptions()))
    list(
        transcribe(expand(paths[:1]), loaded)
    )  # one-time set-up (weights' spectrum, kernels) out of the timing
    result = timed(runs, a.repeats, a.warmup)
    long = result["one long file"][0]
    for name, (wall, cpu) in result.items():
        note = f"  model+decoding {spent[name]:.2f} s of it" if name in spent else ""
        print(f"{name:>20}: wall {wall:7.3f} s  {seconds / wall:7.1f} audio-s/s  cpu {cpu:7.3f} s{note}")
    for name in runs:
        if name != "one long file":
            print(f"ratio {name} / one long file (throughput): {long / result[name][0]:.2f}x")
    if loaded.config.feat_extract_norm == "group":
        print("(group-norm models always run one input at a time: --batch-seconds does not apply)")


MEMORY_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
if {threads}:
    torch.set_num_threads({threads})
from w2vcli.checkpoints.resolve import load_model
from w2vcli.pipelines.transcribe import expand, transcribe
loaded = load_model({model!r}, int8={int8}, engine={engine!r})
t = time.perf_counter()
r = next(transcribe(expand([{path!r}]), loaded))
print(json.dumps(dict(rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      wall=time.perf_counter() - t, duration=r.duration, words=len(r.text.split()))))
"""


def cmd_memory(a, tmp: Path) -> None:
    model = random_checkpoint(a.preset, tmp / "model", a.seed)
    header(a, minutes=a.minutes, int8=a.int8)
    rows = []
    for minutes in a.minutes:
        path = tmp / f"long-{minutes:g}.flac"
        with sf.SoundFile(path, "w", 16000, 1, "PCM_16", format="FLAC") as f:  # written in pieces
            for _ in range(int(minutes)):
                f.write(speech(60.0))
            f.write(speech(60.0 * (minutes % 1)))
        code = MEMORY_CHILD.format(
            root=str(ROOT),
            model=str(model),
            path=str(path),
            int8=a.int8,
            threads=a.threads or 0,
            engine=a.engine,
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{minutes:6g} min: peak RSS {row['rss_mb']:7.0f} MB  wall {row['wall']:7.1f} s  "
            f"RTF {row['wall'] / row['duration']:.4f}",
            flush=True,
        )
    print(
        f"ratio peak RSS {a.minutes[-1]:g} min / {a.minutes[0]:g} min: {rows[-1]['rss_mb'] / rows[0]['rss_mb']:.2f}x"
    )


def cmd_startup(a, tmp: Path) -> None:
    a.preset = "tiny"
    clip = str(write(tmp / "short.flac", speech(3.0)))
    model = str(random_checkpoint(a.preset, tmp / "tiny", a.seed))
    header(a, clip_seconds=3.0)
    commands = {
        "w2v --help": ["--help"],
        "w2v transcribe (tiny model, 3 s)": ["transcribe", clip, "-m", model],
    }
    budgets = {"w2v --help": 0.5, "w2v transcribe (tiny model, 3 s)": 3.0}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"} | ({"OMP_NUM_THREADS": str(a.threads)} if a.threads else {})
    runs = {
        name: (
            lambda args=args: subprocess.run(
                [sys.executable, "-m", "w2vcli", *args], env=env, capture_output=True, check=True
            )
        )
        for name, args in commands.items()
    }
    for name, (wall, _) in timed(runs, a.repeats, a.warmup).items():
        print(
            f"{name:>34}: {wall:6.2f} s  ratio to its {budgets[name]:g} s budget: {wall / budgets[name]:.2f}x"
        )


def cmd_profile(a, tmp: Path) -> None:
    from torch.profiler import ProfilerActivity, profile

    loaded = load_model(str(random_checkpoint(a.preset, tmp / "model", a.seed)), int8=a.int8, engine="torch")
    hf, _, _ = hf_side(tmp / "model", loaded.config)
    wav = torch.from_numpy(speech(a.seconds))[None]  # (1, N)
    header(a, seconds=a.seconds, int8=a.int8)
    for name, model in [("w2vcli", loaded.model), ("transformers", hf)]:
        with torch.inference_mode():
            model(wav)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                model(wav)
        print(f"--- {name}")
        print(
            prof.key_averages(group_by_input_shape=True).table(
                sort_by="self_cpu_time_total",
                row_limit=a.rows,
                max_name_column_width=40,
                max_shapes_column_width=60,
            )
        )


def main() -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--preset", default="base", choices=["tiny", "base", "large"])
    common.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    common.add_argument("--repeats", type=int, default=5, help="timed runs per variant")
    common.add_argument("--warmup", type=int, default=1, help="untimed runs per variant first")
    common.add_argument("--int8", action="store_true", help="our side loads with --int8")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--device", default="cpu", help="speed: cpu or cuda (both sides on it)")
    common.add_argument(
        "--engine", choices=["auto", "onnx", "torch"], help="ours (default: $W2V_ENGINE, else auto)"
    )
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("engines", parents=[common], help="one file: each engine of ours vs transformers")
    e.add_argument("--seconds", type=float, default=20.0)
    s = sub.add_parser("speed", parents=[common], help="one file: ours vs transformers")
    s.add_argument("--seconds", type=float, default=20.0)
    s.add_argument("--chunk-seconds", type=float, default=30.0, help="ours; longer files are chunked")
    f = sub.add_parser("files", parents=[common], help="many short files vs the same audio as one file")
    f.add_argument("--files", type=int, default=100)
    f.add_argument("--min-seconds", type=float, default=2.0)
    f.add_argument("--max-seconds", type=float, default=5.0)
    f.add_argument("--batch-seconds", type=float, nargs="+", default=[0.0], help="settings to compare")
    m = sub.add_parser("memory", parents=[common], help="peak RSS of one long file, in a fresh process")
    m.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    sub.add_parser("startup", parents=[common], help="w2v --help and a short transcription, end to end")
    r = sub.add_parser("profile", parents=[common], help="torch.profiler: where a forward's time goes")
    r.add_argument("--seconds", type=float, default=10.0)
    r.add_argument("--rows", type=int, default=25)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(
        f"$ {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}  ({platform.processor() or platform.machine()})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault(
            "W2V_CACHE", str(Path(tmp) / "cache")
        )  # random models: exports not worth keeping
        globals()[f"cmd_{a.command}"](a, Path(tmp))


if __name__ == "__main__":
    main()
