"""ONNX interop: export a CTC model to one `.onnx` file, and run such files on ONNX Runtime.

The file holds the whole model from the (normalised) waveform to the logits, with dynamic batch and
length: input `wav` (B, N) float32 at 16 kHz, output `logits` (B, T, V). What the logits mean
travels inside it, as metadata: the architecture (our config.json fields), the vocabulary (the
characters, or the SentencePiece model) and whether inputs must be normalised first. Any ONNX
runtime can run it; `w2v transcribe --model FILE.onnx` reads it back without our weights.

`--int8` quantizes the transformer's matrix products only (dynamic int8: weights per output
channel, activations per batch). The CNN, its projection into the transformer and the CTC head stay
in fp32: they are cheap, and the first and last layers are the most sensitive to rounding.

The exporter is PyTorch's own (`torch.onnx.export`, dynamo), which reads the model's plain ops
(model/kernels.py off); quantization is ONNX Runtime's.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from w2vcli import __version__
from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.text import SentencePieceVocabulary, Vocabulary
from w2vcli.errors import W2VError
from w2vcli.model.config import ModelConfig

META = "w2vcli"  # the metadata key: one JSON object
CACHE_ENTRIES = 4  # exports kept in the cache (a base model is ~380 MB in fp32, ~100 MB in int8)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise W2VError(
            f"ONNX needs the onnx and onnxruntime packages ({e.name} is missing): pip install w2vcli"
        ) from None


def vocab_to_meta(vocab) -> dict:
    if isinstance(vocab, SentencePieceVocabulary):
        return {"kind": "sentencepiece", "model": base64.b64encode(vocab.model_proto).decode("ascii")}
    return {"kind": "characters", "tokens": list(vocab.tokens)}


def vocab_from_meta(meta: dict):
    if meta.get("kind") == "sentencepiece":
        return SentencePieceVocabulary(base64.b64decode(meta["model"]))
    return Vocabulary(list(meta["tokens"]))


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model(wav)[0]


def export(model, config: ModelConfig, vocab, out: str | os.PathLike, int8: bool = False) -> Path:
    """Write `model` (a Wav2Vec2ForCTC) as one ONNX file at `out`, atomically. `config` is the model's
    architecture as users know it: with `do_normalize`, the file's graph leaves normalisation to the
    caller (as the metadata says), so chunks of a long file share the whole file's statistics."""
    _require_onnx()
    out = Path(out)
    model = model.eval()
    own = model.wav2vec2.config
    model.wav2vec2.config = config.replace(do_normalize=False)  # normalisation is the caller's
    try:
        return _export(model, config, vocab, out, int8)
    finally:
        model.wav2vec2.config = own


def _export(model, config: ModelConfig, vocab, out: Path, int8: bool) -> Path:
    import onnx

    from w2vcli.model import kernels

    field = config.receptive_field
    example = torch.randn(1, max(2 * SAMPLE_RATE, 2 * field))
    dims = {
        "wav": {
            0: torch.export.Dim("batch", min=1, max=4096),
            1: torch.export.Dim("samples", min=field, max=SAMPLE_RATE * 4 * 3600),
        }
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        with (
            kernels.use(False),
            torch.no_grad(),
            _quiet(),
            contextlib.redirect_stdout(io.StringIO()),  # the exporter's progress: not on stdout
        ):
            program = torch.onnx.export(
                _Logits(model),
                (example,),
                input_names=["wav"],
                output_names=["logits"],
                dynamic_shapes=dims,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            program.save(str(fp32), external_data=False)
        final = fp32
        if int8:
            final = Path(tmp) / "int8.onnx"
            with _quiet():
                _quantize(fp32, final)
        proto = onnx.load(str(final))
        meta = {
            "format": 1,
            "w2vcli": __version__,
            "config": config.to_dict(),
            "vocab": vocab_to_meta(vocab),
            "normalize": bool(config.do_normalize),
            "int8": int8,
        }
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = META, json.dumps(meta)
        proto.producer_name, proto.producer_version = "w2vcli", __version__
        staged = Path(tmp) / "final.onnx"
        onnx.save(proto, str(staged))
        os.replace(staged, out)
    return out


@contextlib.contextmanager
def _quiet():
    """The exporter and the quantizer log advice meant for their developers (missing torchvision,
    pre-processing): not for our users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _quantize(src: Path, dst: Path) -> None:
    """Dynamic int8 on the transformer's weight matrix products. The graph is in topological order and
    the CNN has no matrix products, so the first product with a weight is the feature projection and
    the last one the CTC head: those two stay fp32 (the exporter's node names do not say which is which)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    products = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in weights]
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=[products[0], products[-1]] if products else [],
    )


def read_meta(path: str | os.PathLike) -> dict:
    """The w2vcli metadata of an ONNX file (W2VError when it is not one of ours)."""
    _require_onnx()
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file is the user's input error
        raise W2VError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    for entry in proto.metadata_props:
        if entry.key == META:
            return json.loads(entry.value)
    raise W2VError(f"{path}: an ONNX model without w2vcli metadata; export it with `w2v export`")


class OnnxCTC:
    """An ONNX file on ONNX Runtime, called like Wav2Vec2ForCTC in eval mode: (wav (B, N), lengths)
    -> (logits (B, T, V), frame lengths (B,), None). Padded batches are not supported (the graph has
    no lengths input); the engine sends one input at a time on the CPU."""

    def __init__(self, path: str | os.PathLike, config: ModelConfig, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config = config
        self.path = Path(path)

    def __call__(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        if lengths is not None and wav.shape[0] > 1:
            raise ValueError("ONNX models run one input at a time")
        x = np.ascontiguousarray(wav.detach().float().cpu().numpy())
        logits = torch.from_numpy(self.session.run(["logits"], {"wav": x})[0])
        frames = torch.full((wav.shape[0],), logits.shape[1], dtype=torch.long)
        return logits, frames, None


def cache_dir() -> Path:
    """Where on-the-fly exports are kept: $W2V_CACHE, else $XDG_CACHE_HOME/w2vcli, else ~/.cache/w2vcli."""
    if os.environ.get("W2V_CACHE"):
        return Path(os.environ["W2V_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "w2vcli"


def cache_key(directory: Path, int8: bool) -> str:
    """A key for the export of the model in `directory` as its files are now: their names, sizes and
    modification times (a file changed or replaced is a new key), with int8 and the versions that
    export. Only the files' metadata is read, so a cached model starts without loading its weights."""
    directory = Path(directory).resolve()
    h = hashlib.sha256()
    h.update(json.dumps([str(directory), int8, __version__, torch.__version__]).encode())
    for f in sorted(p for p in directory.iterdir() if p.is_file()):
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def cached_export(directory: Path, int8: bool, announce=None) -> Path:
    """The ONNX file of the CTC model in `directory` from the cache, exported there first if needed
    (`announce(msg)` is told then: exporting takes seconds for tiny, about half a minute for base).
    The cache keeps the CACHE_ENTRIES most recently used exports."""
    root = cache_dir() / "onnx"
    path = root / f"{cache_key(directory, int8)}{'-int8' if int8 else ''}.onnx"
    if path.is_file():
        os.utime(path)
        return path
    from w2vcli.checkpoints.resolve import load_ctc

    ckpt, vocab = load_ctc(Path(directory))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise W2VError(
            f"cannot create the ONNX cache {root} ({e.strerror}); set W2V_CACHE or use --engine torch"
        ) from None
    if announce:
        announce(f"exporting the model to ONNX{' (int8)' if int8 else ''}, once: cached in {root}")
    export(ckpt.model, ckpt.config, vocab, path, int8=int8)
    entries = sorted(root.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[CACHE_ENTRIES:]:
        old.unlink(missing_ok=True)
    return path
