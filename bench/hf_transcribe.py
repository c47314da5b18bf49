"""The reference for bench/bench_cli.py: transcribe files with transformers the way its users do.

    python bench/hf_transcribe.py HF_MODEL_DIR FILE_OR_FOLDER...

Loads `Wav2Vec2ForCTC` and `Wav2Vec2Processor` with `from_pretrained`, then for each file: read it
(soundfile), the feature extractor, one forward pass over the whole file in `inference_mode`, argmax,
the tokenizer's decode; one JSON line per file on stdout, as `w2v transcribe` prints. A folder stands
for its .flac and .wav files, sorted. No chunking: that is what the model card's example does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    import soundfile as sf
    import torch
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    model_dir, *inputs = sys.argv[1:]
    model = Wav2Vec2ForCTC.from_pretrained(model_dir).eval()
    processor = Wav2Vec2Processor.from_pretrained(model_dir)
    files = []
    for name in inputs:
        p = Path(name)
        files += sorted(f for f in p.iterdir() if f.suffix in (".flac", ".wav")) if p.is_dir() else [p]
    for f in files:
        wav, rate = sf.read(f, dtype="float32")
        x = processor(wav, sampling_rate=rate, return_tensors="pt").input_values
        with torch.inference_mode():
            ids = model(x).logits.argmax(-1)
        print(json.dumps({"audio": str(f), "text": processor.batch_decode(ids)[0]}), flush=True)


if __name__ == "__main__":
    main()
