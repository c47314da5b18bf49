"""Suite-wide settings: transcription runs on PyTorch unless a test asks for ONNX Runtime (each ONNX
export takes seconds; tests/test_onnx.py covers that engine), and exports go to a temporary cache."""

import os
import tempfile

os.environ.setdefault("W2V_ENGINE", "torch")
os.environ.setdefault("W2V_CACHE", tempfile.mkdtemp(prefix="w2v-cache-"))
