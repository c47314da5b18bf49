"""`--int8` on the PyTorch engine (`--engine torch`): dynamic int8 linear layers in the transformer.

The default CPU engine, ONNX Runtime, quantizes its own exported graph (checkpoints/onnx.py).
"""

from __future__ import annotations

import warnings


def quantize(model, amx: bool = False):
    """`--int8`: the transformer's linear layers (~60% of a CPU forward) in dynamic int8 with
    per-channel weight scales. The CNN input projection and the CTC head stay in fp32: they are
    cheap, and quantizing them doubled the logits' error.

    With `amx` (the CPU has AMX tiles) the weights are packed for oneDNN, whose int8 kernels run on
    AMX (~2.5x fbgemm's; the packed weights keep their engine whatever the global one is), and the
    CNN (most of the rest) runs under bfloat16 autocast and attention in bfloat16.
    """
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig

    from w2vcli.model.transformer import Attention

    engine = torch.backends.quantized.engine
    if amx and "onednn" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "onednn"
    try:
        with warnings.catch_warnings():  # torch announces a move to torchao; the API works as documented
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            model = torch.ao.quantization.quantize_dynamic(
                model, {"wav2vec2.encoder": per_channel_dynamic_qconfig}, dtype=torch.qint8
            )
    finally:
        torch.backends.quantized.engine = engine
    if amx:
        cnn = model.wav2vec2.feature_extractor
        cnn.forward = _autocast_bf16(cnn.forward)
        for m in model.modules():
            if isinstance(m, Attention):
                m.inference_dtype = torch.bfloat16
    return model


def _autocast_bf16(forward):
    """`forward` run under CPU bfloat16 autocast, its output back in float32 for the int8 layers."""
    import torch

    def run(*args):
        with torch.autocast("cpu", torch.bfloat16):
            return forward(*args).float()

    return run
