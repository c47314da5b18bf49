"""ONNX export and the ONNX Runtime engine: logits like our model's, the same text, timestamps,
chunking and beam search on both engines, int8 on the transformer's matrix products only, the CLI."""

import json
import os

import onnx
import pytest
import torch
from rapidfuzz.distance import Levenshtein

from w2vcli.checkpoints import onnx as w2v_onnx
from w2vcli.checkpoints import onnx_cache, resolve
from w2vcli.checkpoints.resolve import load_model
from w2vcli.data.text import SentencePieceVocabulary
from w2vcli.errors import W2VError
from w2vcli.pipelines.transcribe import TranscribeOptions, expand, transcribe

os.environ["HF_HUB_OFFLINE"] = "1"
pytest.importorskip("transformers")
from test_cli_transcribe import w2v  # noqa: E402
from test_transcribe import babble, make_hf_model, write  # noqa: E402


@pytest.fixture(scope="module", params=["layer", "group"])
def models(request, tmp_path_factory):
    """A random CTC model of each CNN layout, loaded on both engines (the ONNX one exported into the
    suite's cache, fp32 and int8)."""
    d = tmp_path_factory.mktemp(f"hf-{request.param}")
    make_hf_model(d, request.param, seed=5)
    torch_ = load_model(str(d), engine="torch")
    onnx_ = load_model(str(d), engine="onnx")
    int8 = load_model(str(d), engine="onnx", int8=True)
    return d, torch_, onnx_, int8


def run(paths, loaded, **options):
    return list(transcribe(expand([str(p) for p in paths]), loaded, TranscribeOptions(**options)))


def test_logits_within_1e4_of_our_model_at_any_batch_and_length(models):
    _, ours, exported, _ = models
    assert exported.engine == "onnx" and ours.engine == "torch"
    for batch, samples in [(1, 400), (1, 16000), (1, 57_123), (3, 24_000)]:
        wav = torch.randn(batch, samples)
        with torch.inference_mode():
            ref, _, _ = ours.model(wav)
        got, frames, _ = exported.model(wav)
        assert got.shape == ref.shape and frames.tolist() == [ref.shape[1]] * batch
        assert (got - ref).abs().max() < 1e-4  # measured at most 6e-6


def test_same_text_timestamps_chunks_and_beam_on_both_engines(models, tmp_path):
    _, ours, exported, _ = models
    paths = [write(tmp_path / f"{i}.wav", babble(s, 20 + i)) for i, s in enumerate([0.7, 2.4, 9.5])]
    for options in (
        {"timestamps": "word"},
        {"timestamps": "char", "chunk_seconds": 3.0, "stride_seconds": 0.5},
        {"beam": 4},
    ):
        a, b = run(paths, ours, **options), run(paths, exported, **options)
        assert [r.text for r in a] == [r.text for r in b], options
        if "timestamps" in options:
            assert [(r.words, r.chars) for r in a] == [(r.words, r.chars) for r in b]
    assert sum(len(r.text.split()) for r in a) >= 5  # the random model says something


def test_int8_quantizes_the_transformer_matmuls_only(models, tmp_path):
    d, ours, _, int8 = models
    graph = onnx.load(str(int8.model.path)).graph
    quantized = [
        n
        for n in graph.node
        if n.op_type in ("DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat")
    ]
    layers = json.loads((d / "config.json").read_text())["num_hidden_layers"]
    assert len({n.name for n in quantized}) >= 6 * layers  # q, k, v, out, and the two feed-forward layers
    # the feature projection and the CTC head (the first and the last product with a weight) stay fp32
    weights = {i.name for i in graph.initializer}
    nodes = list(graph.node)
    kept = [i for i, n in enumerate(nodes) if n.op_type == "MatMul" and n.input[1] in weights]
    where = [i for i, n in enumerate(nodes) if n in quantized]
    assert len(kept) == 2 and kept[0] < where[0] and kept[1] > where[-1]
    assert not any(n.op_type.startswith("QLinearConv") or n.op_type == "ConvInteger" for n in graph.node)
    assert w2v_onnx.read_meta(int8.model.path)["int8"] is True
    paths = [write(tmp_path / f"{i}.wav", babble(2.0, 40 + i)) for i in range(3)]
    a, b = run(paths, ours), run(paths, int8)
    cer = sum(Levenshtein.distance(x.text, y.text) for x, y in zip(a, b, strict=True))
    chars = sum(len(x.text) for x in a)
    assert chars > 10 and cer / chars < 0.05  # measured CER


def test_the_cache_serves_a_second_load_without_exporting(models, monkeypatch):
    d, _, exported, _ = models
    monkeypatch.setattr(w2v_onnx, "export", lambda *a, **k: pytest.fail("exported again"))
    monkeypatch.setattr(resolve, "load_ctc", lambda *a: pytest.fail("weights loaded for a cached export"))
    again = load_model(str(d), engine="onnx")
    assert again.engine == "onnx" and again.model.path == exported.model.path
    key = onnx_cache.cache_key(d, False)
    weights = next(d.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1))
    assert onnx_cache.cache_key(d, False) != key  # weights replaced: a new export


def test_vocabularies_travel_in_the_metadata():
    spm = SentencePieceVocabulary.train(["the cat sat on the mat"] * 20 + ["a dog ran far away"] * 20, 20)
    back = w2v_onnx.vocab_from_meta(json.loads(json.dumps(w2v_onnx.vocab_to_meta(spm))))
    assert back.model_proto == spm.model_proto and back.encode("the cat") == spm.encode("the cat")


@pytest.mark.slow
def test_cli_export_then_transcribe_the_file(tmp_path):
    d = tmp_path / "hf"
    make_hf_model(d, "group", seed=2)
    clip = write(tmp_path / "c.wav", babble(1.5, 3))
    out = tmp_path / "m.onnx"
    r = w2v("export", d, out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and "wrote" in r.stderr
    info = w2v("info", out, "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["head"] == "ctc (ONNX, fp32)"
    meta = w2v_onnx.read_meta(out)
    assert meta["normalize"] is True and meta["config"]["feat_extract_norm"] == "group"
    via_file = w2v("transcribe", clip, "--model", out)
    via_torch = w2v("transcribe", clip, "--model", d, "--engine", "torch")
    assert via_file.returncode == via_torch.returncode == 0, via_file.stderr
    assert json.loads(via_file.stdout)["text"] == json.loads(via_torch.stdout)["text"]
    # what a user can get wrong: one line each, non-zero exit
    for args, message in [
        (("export", d, out), "exists; add --overwrite"),
        (("export", d, tmp_path / "m.txt"), "must end in .onnx"),
        (("transcribe", clip, "--model", out, "--engine", "torch"), "runs on --engine onnx"),
        (("transcribe", clip, "--model", out, "--int8"), "fp32 ONNX model"),
        (("transcribe", clip, "--model", d, "--engine", "jax"), "expected one of auto, onnx, torch"),
    ]:
        r = w2v(*args)
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(out))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    with pytest.raises(W2VError, match="without w2vcli metadata"):
        load_model(str(foreign))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(W2VError, match="not a readable ONNX model"):
        load_model(str(garbage))
