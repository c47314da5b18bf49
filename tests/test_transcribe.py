"""Transcription pipeline: parity with transformers, chunked = unchunked, timestamps, batching, errors, inputs."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from w2vcli.checkpoints.resolve import load_model
from w2vcli.errors import W2VError
from w2vcli.pipelines.transcribe import TranscribeOptions, expand, transcribe

os.environ["HF_HUB_OFFLINE"] = "1"  # never the network in tests
transformers = pytest.importorskip("transformers")

CHARS = list("etaoinshrdlucmwy'")
VOCAB = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *CHARS])}
TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    conv_dim=(32,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    vocab_size=len(VOCAB),
)


def make_hf_model(directory, norm: str = "layer", seed: int = 0):
    """A random transformers Wav2Vec2ForCTC saved with vocab, tokenizer and feature extractor files.

    The CTC head is scaled so argmax varies from frame to frame (non-trivial text), and <s>/</s> are
    suppressed because the HF tokenizer prints them literally (see test_decoding's known differences).
    """
    torch.manual_seed(seed)
    layer = norm == "layer"
    config = transformers.Wav2Vec2Config(
        **TINY, feat_extract_norm=norm, do_stable_layer_norm=layer, conv_bias=layer
    )
    model = transformers.Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(30)
        model.lm_head.bias[1:3] = -100
    model.save_pretrained(directory)
    (directory / "vocab.json").write_text(json.dumps(VOCAB))
    transformers.Wav2Vec2CTCTokenizer(str(directory / "vocab.json")).save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=layer).save_pretrained(
        directory
    )
    return model


def babble(seconds: float, seed: int) -> np.ndarray:
    """Speech-like test audio: 80-300 ms tones of changing pitch and loudness, with pauses."""
    rng = np.random.default_rng(seed)
    out, n = [], int(seconds * 16000)
    while sum(map(len, out)) < n:
        k = int(rng.uniform(0.08, 0.3) * 16000)
        t = np.arange(k) / 16000
        amp = 0.0 if rng.random() < 0.15 else rng.uniform(0.05, 0.5)
        out.append(amp * np.sin(2 * np.pi * rng.uniform(90, 900) * t) * np.hanning(k))
    wav = np.concatenate(out)[:n] + 0.01 * rng.standard_normal(n)
    return wav.astype(np.float32)


def write(path, wav, sr=16000):
    sf.write(path, wav, sr, subtype="FLOAT")
    return str(path)


@pytest.fixture(scope="module", params=["layer", "group"])
def hf_dir(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"hf-{request.param}")
    return d, make_hf_model(d, request.param)


def run(paths, model_dir, **options):
    loaded = load_model(str(model_dir), device="cpu")
    return list(transcribe(expand([str(p) for p in paths]), loaded, TranscribeOptions(**options)))


def test_greedy_equals_transformers_argmax_and_tokenizer(hf_dir, tmp_path):
    d, hf = hf_dir
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(d)
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(d)
    waves = [babble(s, seed) for seed, s in enumerate([0.4, 1.0, 2.3, 3.7])]
    paths = [write(tmp_path / f"f{i}.wav", w) for i, w in enumerate(waves)]
    ours = run(paths, d)
    exact = words = 0
    for w, r in zip(waves, ours, strict=True):
        with torch.no_grad():
            ids = hf(fe(w, sampling_rate=16000, return_tensors="pt").input_values).logits.argmax(-1)
        ref = tok.batch_decode(ids)[0]
        words += len(ref.split())
        assert r.text == " ".join(ref.split())  # HF keeps a double space for "| <pad> |"
        exact += r.text == ref
    assert exact >= 3
    assert words >= 5  # the random model really says something


def test_layer_norm_batches_equal_one_by_one(hf_dir, tmp_path):
    d, _ = hf_dir
    paths = [
        write(tmp_path / f"b{i}.wav", babble(s, 10 + i)) for i, s in enumerate([0.6, 1.9, 1.2, 3.1, 0.9])
    ]
    single = run(paths, d, batch_seconds=0)
    batched = run(paths, d, batch_seconds=60)
    assert sorted(r.text for r in batched) == sorted(r.text for r in single)
    assert {r.audio: r.text for r in batched} == {r.audio: r.text for r in single}


@pytest.mark.slow
def test_long_audio_chunked_within_one_percent_cer_of_unchunked(tmp_path):
    jiwer = pytest.importorskip("jiwer")
    d = tmp_path / "m"
    make_hf_model(d, "layer", seed=3)
    wav = babble(90.0, seed=7)
    path = write(tmp_path / "long.wav", wav)
    whole = run([path], d, chunk_seconds=0, timestamps="word")[0]
    chunked = run([path], d, chunk_seconds=20, stride_seconds=4, timestamps="word")[0]
    assert len(whole.text) > 500
    assert jiwer.cer(whole.text, chunked.text) < 0.01
    assert chunked.duration == pytest.approx(90.0)
    words = chunked.words
    assert len(words) == len(chunked.text.split())
    assert all(w["start"] < w["end"] for w in words)
    assert all(a["end"] <= b["start"] for a, b in zip(words, words[1:]))  # monotonic
    assert words[0]["start"] >= 0 and words[-1]["end"] <= 90.0


def test_errors_are_reported_and_skipped(hf_dir, tmp_path):
    d, _ = hf_dir
    good = write(tmp_path / "good.wav", babble(1.0, 1))
    empty = write(tmp_path / "empty.wav", np.zeros(0, np.float32))
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    tiny = write(tmp_path / "tiny.wav", np.zeros(100, np.float32))
    results = run([empty, good, text, tmp_path / "missing.wav", tiny], d)
    by = {os.path.basename(r.audio): r for r in results}
    assert by["good.wav"].error is None and by["good.wav"].text
    assert "no audio samples" in by["empty.wav"].error
    assert "not an audio file" in by["notes.wav"].error
    assert "No such file" in by["missing.wav"].error
    assert "too short" in by["tiny.wav"].error
    assert [os.path.basename(r.audio) for r in results] == [
        "empty.wav",
        "good.wav",
        "notes.wav",
        "missing.wav",
        "tiny.wav",
    ]


def test_resampling_stereo_and_char_timestamps(hf_dir, tmp_path):
    d, _ = hf_dir
    wav16 = babble(2.0, 5)
    import soxr

    stereo = np.stack([soxr.resample(wav16, 16000, 44100)] * 2, axis=1)
    a = write(tmp_path / "a16.wav", wav16)
    b = write(tmp_path / "b44.wav", stereo, 44100)
    r16, r44 = run([a, b], d, timestamps="char")
    assert r44.duration == pytest.approx(2.0, abs=0.01)
    chars = r44.chars
    assert "".join(c["char"] for c in chars).split() == r44.text.split()
    assert all(c["end"] <= r44.duration + 0.02 for c in chars)
    assert r16.text and r44.text  # the streamed resampler itself is checked in test_chunking


def test_int8_runs_and_mostly_agrees(tmp_path):
    d = tmp_path / "m"
    make_hf_model(d, "layer")
    path = write(tmp_path / "x.wav", babble(3.0, 2))
    fp32 = run([path], d)[0].text
    loaded = load_model(str(d), device="cpu", int8=True)
    assert any("quantized" in type(m).__module__ for m in loaded.model.modules())
    int8 = next(transcribe(expand([path]), loaded)).text
    jiwer = pytest.importorskip("jiwer")
    assert jiwer.cer(fp32, int8) < 0.05  # measured 0.0 (fbgemm); 0.015 on the AMX path (onednn, bf16)


def test_int8_on_amx_packs_for_onednn_and_runs_attention_in_bf16(tmp_path):
    from w2vcli.checkpoints.quantize import quantize
    from w2vcli.model.transformer import Attention

    d = tmp_path / "m"
    make_hf_model(d, "layer")
    loaded = load_model(str(d), device="cpu")
    fast = quantize(loaded.model, amx=True)  # the path AMX CPUs take; it runs (slower) on any CPU
    assert type(fast.lm_head) is torch.nn.Linear  # the head stays fp32
    assert "quantized" in type(fast.wav2vec2.encoder.layers[0].feed_forward.output_dense).__module__
    assert {m.inference_dtype for m in fast.modules() if isinstance(m, Attention)} == {torch.bfloat16}
    assert {m.inference_dtype for m in loaded.model.modules() if isinstance(m, Attention)} == {None}
    wav = torch.from_numpy(babble(3.0, 2))
    x = (wav - wav.mean()) / wav.std()  # the caller normalises (loaded.normalize)
    with torch.inference_mode():
        ref, got = loaded.model(x[None])[0], fast(x[None])[0]  # (1, T, V)
    assert got.dtype == torch.float32
    assert (ref.argmax(-1) == got.argmax(-1)).float().mean() > 0.95  # measured 0.987 (2 of 149 frames differ)


def test_streamed_greedy_equals_greedy_over_stitched_logits(tmp_path):
    """Greedy decoding per chunk, stitched, is greedy decoding of the stitched logits: same tokens,
    same frames, same text. Tiny chunks put many borders inside the file."""
    from w2vcli.data.chunking import ChunkPlan, stitch_greedy
    from w2vcli.decoding.ctc import greedy_search, to_text
    from w2vcli.pipelines._transcribe_engine import Prefetcher, run_events

    d = tmp_path / "m"
    make_hf_model(d, "layer", seed=3)
    loaded = load_model(str(d), device="cpu")
    path = write(tmp_path / "x.wav", babble(9.0, 3))
    plan = ChunkPlan.from_seconds(1.0, 0.2, loaded.config)

    def pieces(reduce):
        prefetch = Prefetcher([path], plan, loaded.normalize)
        try:
            events = list(
                run_events(prefetch, loaded.model, "cpu", 0, True, prefetch.pending, loaded.normalize, reduce)
            )
        finally:
            prefetch.close()
        assert [ev.kind for ev, _, _ in events] == ["end"]
        return events[0][1]

    logits = pieces(None)
    assert len(logits) >= 10
    whole = greedy_search(np.concatenate([lg for _, lg in logits]))
    hyp = stitch_greedy(pieces(greedy_search))
    assert len(whole.ids) > 20
    assert (hyp.ids, hyp.starts, hyp.ends) == (whole.ids, whole.starts, whole.ends)
    text = run([path], d, chunk_seconds=1.0, stride_seconds=0.2)[0].text
    assert text == to_text(whole, loaded.vocab)


def test_expand_dirs_manifests_stdin_and_name_collisions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for rel in ["corpus/a/x.wav", "corpus/b/x.wav", "corpus/a/x.flac", "corpus/a/notes.txt", "other/y.wav"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"id": "utt1", "audio": "other/y.wav", "duration": 1.0}) + "\n"
    )
    items = expand(["corpus", "m.jsonl", "-", "corpus/a/x.wav"], stdin_lines=["other/y.wav\n", "z.wav\n"])
    rels = [i.rel for i in items]
    assert rels == ["corpus/a/x", "corpus/a/x.wav", "corpus/b/x", "other/y", "z"]  # x.flac came first
    assert items[3].id == "utt1"  # from the manifest; stdin's other/y.wav is the same file, kept once
    assert len(set(rels)) == len(rels)


def test_beam_and_word_lm_flags_change_the_search(hf_dir, tmp_path):
    d, _ = hf_dir
    path = write(tmp_path / "x.wav", babble(3.0, 4))
    greedy = run([path], d)[0].text
    beam = run([path], d, beam=8, timestamps="word")[0]
    assert beam.text and all(a["end"] <= b["start"] for a, b in zip(beam.words, beam.words[1:]))
    arpa = tmp_path / "lm.arpa"
    arpa.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0 <unk>\n-99 <s>\n-1.0 </s>\n\n\\end\\\n")
    penalised = run([path], d, beam=8, lm=str(arpa), lm_weight=1.0, word_score=-30.0)[0].text
    assert len(penalised.split()) < len(greedy.split())  # a per-word cost merges words
    letters = sorted({c for c in greedy if c.isalpha()})
    lexicon = tmp_path / "letters.txt"
    lexicon.write_text("\n".join(letters))
    spelt = run([path], d, beam=8, lexicon=str(lexicon))[0].text
    assert spelt and all(len(w) == 1 and w in letters for w in spelt.split())  # only one-letter words exist
    with pytest.raises(W2VError, match="no words"):  # the --lm file as the lexicon: read once, its unigrams
        run([path], d, beam=8, lm=str(arpa), lexicon=str(arpa))
