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
import io
import json
import logging
import os
import signal
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from w2vcli import __version__
from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.text import SentencePieceVocabulary, Vocabulary
from w2vcli.errors import W2VError
from w2vcli.model.config import ModelConfig

META = "w2vcli"  # the metadata key: one JSON object
INPUT, OUTPUT = "wav", "logits"  # the graph's names: (B, N) float32 -> (B, T, V)


def import_ort():
    """onnxruntime, with its telemetry off. Importing it writes a device id and an event database under
    ~/.cache/Microsoft unless ORT_DISABLE_TELEMETRY is set first; a user who sets it keeps their choice."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    if hasattr(onnxruntime, "disable_telemetry_events") and os.environ["ORT_DISABLE_TELEMETRY"] == "1":
        onnxruntime.disable_telemetry_events()
    return onnxruntime


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401

        import_ort()
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
        return SentencePieceVocabulary(base64.b64decode(meta["model"], validate=True))
    if not isinstance(meta.get("tokens"), list) or not all(isinstance(t, str) for t in meta["tokens"]):
        raise ValueError("tokens must be a list of strings")
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
        with _interruptible():
            return _export(model, config, vocab, out, int8)
    finally:
        model.wav2vec2.config = own


@contextlib.contextmanager
def _interruptible():
    """Ctrl-C stays a KeyboardInterrupt. torch.export imports its compiler on first use; an interrupt
    inside those imports leaves modules half-initialised, and the exporter reports what then breaks
    as its own error (AttributeError wrapped in TorchExportError), or goes on with another strategy.
    An interrupted export ends in the interrupt, whatever it raised or returned."""
    interrupted = []

    def on_sigint(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:  # ignored, or someone else's
        yield
        return
    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    except Exception:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt


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
    return _meta_of(_load_proto(path), path)


def _load_proto(path: str | os.PathLike):
    _require_onnx()
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file is the user's input error
        raise W2VError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None


def _meta_of(proto, path) -> dict:
    return _meta_from({e.key: e.value for e in proto.metadata_props}, path)


def _meta_from(props: dict, path) -> dict:
    """The w2vcli object among a file's metadata properties (key -> string)."""
    again = "; export it again with `w2v export`"
    if META not in props:
        raise W2VError(f"{path}: an ONNX model without w2vcli metadata; export it with `w2v export`")
    try:
        meta = json.loads(props[META])
    except ValueError:
        raise W2VError(f"{path}: its w2vcli metadata is not JSON{again}") from None
    if not isinstance(meta, dict):
        raise W2VError(f"{path}: its w2vcli metadata is not a JSON object{again}")
    return meta


@dataclass(frozen=True)
class OnnxModelInfo:
    """What an ONNX file written by `w2v export` says about itself, checked against its graph."""

    config: ModelConfig  # the architecture (our config.json fields)
    vocab: object  # Vocabulary or SentencePieceVocabulary, one token per logit
    normalize: bool  # inputs must be normalised by the caller
    int8: bool  # the transformer's matrix products are int8
    parameters: int  # weights stored in the graph


def load_info(path: str | os.PathLike) -> OnnxModelInfo:
    """Read and check an ONNX file's metadata and graph with the onnx package (`w2v info`: it counts
    the weights too): every way a file can disagree with what the engine expects (metadata, input and
    output names, vocabulary size) is one W2VError naming it."""
    import math

    proto = _load_proto(path)
    initializers = {i.name for i in proto.graph.initializer}
    outputs = list(proto.graph.output)
    dims = outputs[0].type.tensor_type.shape.dim if outputs else []
    width = dims[-1].dim_value if len(dims) == 3 and dims[-1].HasField("dim_value") else None
    parameters = sum(math.prod(t.dims) for t in proto.graph.initializer if len(t.dims) > 0)
    return _checked(
        _meta_of(proto, path),
        [v.name for v in proto.graph.input if v.name not in initializers],
        [v.name for v in outputs],
        width,
        parameters,
        path,
    )


def session_info(session, path) -> OnnxModelInfo:
    """`load_info` from an open ONNX Runtime session, without the onnx package: importing it and
    parsing a base model's protobuf again cost ~2 s of a short job's start (bench/RESULTS.md). The
    weights are not counted (parameters 0)."""
    outputs = session.get_outputs()
    shape = outputs[0].shape if outputs else []
    width = shape[-1] if len(shape) == 3 and isinstance(shape[-1], int) else None
    return _checked(
        _meta_from(dict(session.get_modelmeta().custom_metadata_map), path),
        [i.name for i in session.get_inputs()],
        [o.name for o in outputs],
        width,
        0,
        path,
    )


def _checked(meta: dict, inputs: list, outputs: list, width, parameters: int, path) -> OnnxModelInfo:
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("vocab"), dict):
        raise W2VError(f"{path}: its w2vcli metadata lacks the model's config or vocabulary")
    try:
        config = ModelConfig.from_dict(meta["config"])
    except (W2VError, TypeError, ValueError) as e:
        raise W2VError(f"{path}: the model config in its metadata is invalid ({e})") from None
    try:
        vocab = vocab_from_meta(meta["vocab"])
    except Exception as e:  # noqa: BLE001 - any decoding failure means the same to the user
        raise W2VError(f"{path}: the vocabulary in its metadata is unreadable ({type(e).__name__})") from None
    if inputs != [INPUT] or not outputs or outputs[0] != OUTPUT:
        raise W2VError(
            f"{path}: the graph takes {inputs} and gives {outputs}; a w2vcli model "
            f"takes [{INPUT!r}] and gives [{OUTPUT!r}]"
        )
    for size, what in ((config.vocab_size, "its config gives"), (width, "the graph outputs")):
        if size is not None and size != len(vocab):
            raise W2VError(
                f"{path}: the vocabulary has {len(vocab)} tokens but {what} {size} logits a frame; "
                "the vocabulary does not belong to this model"
            )
    return OnnxModelInfo(config, vocab, bool(meta.get("normalize")), bool(meta.get("int8")), parameters)


def open_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime session on the CPU for the file at `path`; one W2VError when it cannot load."""
    ort = import_ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ONNX Runtime's one error type for any bad graph
        try:
            import onnx  # noqa: F401
        except ImportError:
            pass
        else:
            _load_proto(path)  # a file that is not ONNX at all says so, as `w2v info` does
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise W2VError(f"{path}: ONNX Runtime cannot load it ({reason})") from None


class OnnxCTC:
    """An ONNX file on ONNX Runtime, called like Wav2Vec2ForCTC in eval mode: (wav (B, N), lengths)
    -> (logits (B, T, V), frame lengths (B,), None). Padded batches are not supported (the graph has
    no lengths input); the engine sends one input at a time on the CPU."""

    def __init__(
        self,
        path: str | os.PathLike,
        config: ModelConfig,
        threads: int | None = None,
        vocab_size: int = 0,
        session=None,
    ):
        self.session = session if session is not None else open_session(path, threads)
        self.config = config
        self.path = Path(path)
        self.vocab_size = vocab_size  # logits per frame the caller's vocabulary names (0: unchecked)

    @classmethod
    def open(cls, path: str | os.PathLike, threads: int | None = None) -> tuple[OnnxCTC, OnnxModelInfo]:
        """The model at `path` and what its metadata says, checked, from one ONNX Runtime session."""
        session = open_session(path, threads)
        info = session_info(session, path)
        return cls(path, info.config, vocab_size=len(info.vocab), session=session), info

    def __call__(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        if lengths is not None and wav.shape[0] > 1:
            raise ValueError("ONNX models run one input at a time")
        x = np.ascontiguousarray(wav.detach().float().cpu().numpy())
        try:
            logits = torch.from_numpy(self.session.run([OUTPUT], {INPUT: x})[0])  # (B, T, V)
        except Exception as e:  # noqa: BLE001 - a graph that loads but cannot run our input
            reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
            raise W2VError(f"{self.path}: ONNX Runtime cannot run it ({reason})") from None
        if logits.ndim != 3 or (self.vocab_size and logits.shape[-1] != self.vocab_size):
            raise W2VError(
                f"{self.path}: the graph gives logits of shape {tuple(logits.shape)}, not "
                f"(batch, frames, {self.vocab_size}) for its vocabulary"
            )
        frames = torch.full((wav.shape[0],), logits.shape[1], dtype=torch.long)
        return logits, frames, None
