"""Our checkpoint format and the Hugging Face converter's edge cases (old key names, .bin, bad configs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from w2vcli.checkpoints.huggingface import config_from_hf, convert, import_hf
from w2vcli.checkpoints.native import is_checkpoint, load_backbone, load_checkpoint, save_checkpoint
from w2vcli.data.text import Vocabulary
from w2vcli.errors import W2VError
from w2vcli.model import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from w2vcli.model.config import preset

transformers = pytest.importorskip("transformers")


def small():
    return preset("tiny").replace(
        conv_dim=(16,) * 7,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        codevector_dim=16,
        proj_codevector_dim=16,
        num_codevectors_per_group=8,
        vocab_size=8,
    )


def hf_ctc(tmp_path, **kwargs):
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        vocab_size=8,
    )
    torch.manual_seed(0)
    model = transformers.Wav2Vec2ForCTC(cfg).eval()
    model.save_pretrained(tmp_path, **kwargs)
    return model


def test_save_load_roundtrip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(small())
    vocab = Vocabulary.from_texts(["abc"])
    save_checkpoint(model, tmp_path / "ck", vocab, step=3)
    assert is_checkpoint(tmp_path / "ck")
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.head == "ctc" and ck.vocab.tokens == vocab.tokens and ck.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k]), k
    # overwriting replaces the directory whole and leaves no temporary siblings
    save_checkpoint(Wav2Vec2ForPreTraining(small()), tmp_path / "ck")
    assert load_checkpoint(tmp_path / "ck").head == "pretraining"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_load_rejects_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(W2VError, match="not a w2vcli checkpoint"):
        load_checkpoint(tmp_path)
    torch.manual_seed(0)
    save_checkpoint(Wav2Vec2ForCTC(small()), tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["hidden_size"] = 64  # weights no longer match
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(W2VError):
        load_checkpoint(tmp_path / "ck")


def test_backbone_transfers_from_pretraining_to_ctc():
    torch.manual_seed(0)
    pre, ctc = Wav2Vec2ForPreTraining(small()), Wav2Vec2ForCTC(small())
    load_backbone(ctc, pre)
    for k, v in pre.state_dict().items():
        if k.startswith("wav2vec2."):
            assert torch.equal(v, ctc.state_dict()[k])


@pytest.mark.parametrize("layout", ["parametrizations", "weight_g_v", "pytorch_model.bin", "bare_model"])
def test_import_accepts_every_key_layout(tmp_path, layout):
    hf = hf_ctc(tmp_path / "src")
    ref = import_hf(tmp_path / "src")
    state = load_file(str(tmp_path / "src" / "model.safetensors"))
    if layout == "weight_g_v":
        for new, old in (("original0", "weight_g"), ("original1", "weight_v")):
            key = "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight." + new
            state["wav2vec2.encoder.pos_conv_embed.conv." + old] = state.pop(key)
    if layout == "bare_model":  # a Wav2Vec2Model file has no "wav2vec2." prefix; add a head to convert it
        state = {k.removeprefix("wav2vec2."): v for k, v in state.items()}
    (tmp_path / "src" / "model.safetensors").unlink()
    if layout == "pytorch_model.bin":
        torch.save(state, tmp_path / "src" / "pytorch_model.bin")
    else:
        save_file(state, str(tmp_path / "src" / "model.safetensors"))
    ck = import_hf(tmp_path / "src")
    x = torch.randn(1, 8000)
    with torch.no_grad():
        assert torch.allclose(ck.model(x)[0], ref.model(x)[0], atol=1e-6)
        assert torch.allclose(ck.model(x)[0], hf(x).logits, atol=1e-4)


def test_pickled_code_in_bin_is_refused(tmp_path):
    hf_ctc(tmp_path)
    (tmp_path / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(W2VError, match="not safe to load") as e:
        import_hf(tmp_path)
    assert "weights_only=False" not in str(e.value)  # torch's advice would run the attacker's code


@pytest.mark.parametrize(
    "field,value", [("feat_extract_activation", "relu"), ("add_adapter", True), ("hidden_act", "swish")]
)
def test_unsupported_config_fields_are_named(field, value):
    with pytest.raises(W2VError, match=field):
        config_from_hf({"model_type": "wav2vec2", field: value})
    with pytest.raises(W2VError, match="model_type"):
        config_from_hf({"model_type": "hubert"})


def test_convert_roundtrip_and_cli(tmp_path):
    hf = hf_ctc(tmp_path / "hf")
    Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c"]).save(tmp_path / "hf")
    cli = [sys.executable, "-m", "w2vcli", "convert"]
    assert subprocess.run(cli + [str(tmp_path / "hf"), str(tmp_path / "ours")]).returncode == 0
    ours = load_checkpoint(tmp_path / "ours")
    assert ours.vocab.tokens[5:] == ["a", "b", "c"]
    convert(tmp_path / "ours", tmp_path / "back", to="hf")
    again = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "back").eval()
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "back")
    assert tok.convert_ids_to_tokens([5, 6, 7]) == ["a", "b", "c"]
    x = torch.randn(1, 8000)
    with torch.no_grad():
        assert torch.allclose(again(x).logits, hf(x).logits, atol=1e-5)
    bad = subprocess.run(cli + [str(tmp_path / "nope"), str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "does not exist" in bad.stderr
    bad = subprocess.run(
        cli + [str(tmp_path / "ours"), str(tmp_path / "x"), "--to", "onnx"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--to" in bad.stderr
