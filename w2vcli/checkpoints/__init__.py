"""Checkpoints: our format, Hugging Face and ONNX interop, model resolution, quantization."""
