"""`--grad-checkpointing`: each transformer layer recomputed in the backward pass gives the same loss
and gradients (dropout masks included) and reaches the model from the CLI and the training loop."""

import pytest
import torch

from tests.train_helpers import small_model
from w2vcli.model import Wav2Vec2ForCTC
from w2vcli.training.config import PretrainConfig


def _grads(model, wav, labels, on: bool):
    model.wav2vec2.encoder.grad_checkpointing = on
    model.zero_grad()
    torch.manual_seed(7)  # the same dropout and layerdrop draws in both runs
    logits, frames, _ = model(wav)
    loss = torch.nn.functional.ctc_loss(
        logits.log_softmax(-1).transpose(0, 1), labels, frames, torch.full((len(wav),), labels.shape[1])
    )
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("stable", [False, True], ids=["post-LN", "pre-LN"])
def test_checkpointed_layers_give_the_same_loss_and_gradients(stable):
    torch.manual_seed(0)
    config = small_model().replace(
        vocab_size=12,
        hidden_dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.1,
        do_stable_layer_norm=stable,
    )
    model = Wav2Vec2ForCTC(config).train()
    wav, labels = torch.randn(2, 16000), torch.randint(1, 12, (2, 5))
    loss_a, a = _grads(model, wav, labels, False)
    loss_b, b = _grads(model, wav, labels, True)
    assert torch.equal(loss_a, loss_b) and a.keys() == b.keys() and len(a) > 10
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


def test_training_with_the_option_checkpoints_each_layer_and_ends_with_the_same_weights(
    tmp_path, monkeypatch
):
    from tests.test_train import weights
    from tests.train_helpers import make_corpus, small_train
    from w2vcli.model import transformer
    from w2vcli.pipelines.pretrain import pretrain
    from w2vcli.training.recipes import pretrain_settings

    corpus = make_corpus(tmp_path / "corpus", n=4)
    plain = pretrain(corpus, tmp_path / "plain", small_train(max_updates=2), small_model())
    calls = []
    real = transformer.checkpoint
    monkeypatch.setattr(transformer, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    ckpt = pretrain(
        corpus, tmp_path / "ckpt", small_train(max_updates=2, grad_checkpointing=True), small_model()
    )
    assert len(calls) >= 2 * small_model().num_hidden_layers  # every layer of every update
    a, b = weights(plain.checkpoint), weights(ckpt.checkpoint)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    cfg, _ = pretrain_settings("tiny", {"grad_checkpointing": True})
    assert cfg.grad_checkpointing is True and PretrainConfig().grad_checkpointing is False
