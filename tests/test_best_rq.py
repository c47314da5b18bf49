"""BEST-RQ (model/best_rq.py, `pretrain --objective best-rq`): the targets and the loss computed by hand,
learning on a tiny corpus, and the same backbone as every other head (checkpoints, fine-tuning, export)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.train_helpers import small_model, small_train
from w2vcli.checkpoints.huggingface import export_hf
from w2vcli.checkpoints.native import load_checkpoint, save_checkpoint
from w2vcli.errors import UsageError
from w2vcli.model import Wav2Vec2ForCTC
from w2vcli.model.best_rq import (
    HOP,
    MEL_BINS,
    WINDOW,
    Wav2Vec2ForBestRQ,
    log_mel,
    mel_filterbank,
    stacked_features,
)
from w2vcli.pipelines.pretrain import frame_lengths, pretrain

SR = 16_000


def test_mel_filterbank_is_triangles_on_the_mel_scale():
    fb = mel_filterbank()
    assert fb.shape == (WINDOW // 2 + 1, MEL_BINS)
    assert torch.all(fb >= 0) and torch.all(fb.max(0).values <= 1.0)
    peaks = fb.argmax(0)
    assert torch.all(peaks[1:] >= peaks[:-1])  # ascending centres
    widths = (fb > 0).sum(0).float()
    assert widths[-10:].mean() > 3 * widths[10:20].mean()  # mel: wider filters at high frequencies


def test_log_mel_puts_a_tone_in_its_band():
    t = torch.arange(SR) / SR
    for hz in (300.0, 3000.0):
        mel = log_mel(torch.sin(2 * math.pi * hz * t)[None], mel_filterbank())[0]  # (F, MEL_BINS)
        assert mel.shape == ((SR - WINDOW) // HOP + 1, MEL_BINS)
        centre = mel_filterbank().argmax(0).float() * (SR / 2) / (WINDOW // 2)  # bin centres in Hz
        assert abs(float(centre[mel.mean(0).argmax()]) - hz) < 0.1 * hz + 60


def test_stacked_features_line_up_with_model_frames():
    config = small_model()
    n = SR
    t = int(frame_lengths(config, torch.tensor([n]))[0])
    wav = 1e-3 * torch.randn(1, n, generator=torch.Generator().manual_seed(0))
    frame = 20
    burst = torch.randn(400, generator=torch.Generator().manual_seed(1))  # broadband, so every bin sees it
    wav[0, frame * 320 : frame * 320 + 400] += burst
    feats = stacked_features(wav, t, mel_filterbank())
    assert feats.shape == (1, t, 2 * MEL_BINS)
    energy = feats[0].mean(-1)
    assert int(energy.argmax()) == frame  # the burst's 25 ms is model frame 20's window
    assert torch.allclose(feats[0].reshape(-1, MEL_BINS).mean(0), torch.zeros(MEL_BINS), atol=1e-4)


def test_targets_and_loss_by_hand():
    torch.manual_seed(0)
    config = small_model(rpq_codebook_size=32, rpq_codebook_dim=8, rpq_num_codebooks=2)
    model = Wav2Vec2ForBestRQ(config).eval()
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    t = int(frame_lengths(config, torch.tensor([8000]))[0])
    mask = torch.zeros(2, t, dtype=torch.bool)
    mask[0, 3:9] = mask[1, 10:14] = True
    out = model(wav, mask)

    # targets: nearest codebook entry in L2 of the normalised projection, brute force in float64
    x = stacked_features(wav, t, mel_filterbank()).double() @ model.quantizer.projection.double()
    x = x / x.norm(dim=-1, keepdim=True)
    books = model.quantizer.codebooks.double()  # (C, V, E)
    dist = ((x[:, :, None, None, :] - books[None, None]) ** 2).sum(-1)  # (B, T, C, V)
    targets = dist.argmin(-1)[mask]  # (M, C)
    assert torch.equal(model.quantizer(wav, t)[mask], targets)

    # loss: mean over masked frames and codebooks of -log softmax at the target
    hidden = model.wav2vec2(wav, mask_time_indices=mask).last_hidden_state[mask]
    logits = (hidden @ model.classifier.weight.T + model.classifier.bias).double().reshape(-1, 2, 32)
    logp = logits - logits.logsumexp(-1, keepdim=True)
    expected = -logp.gather(-1, targets[..., None]).mean()
    assert out.num_masked == 10
    assert float(out.cross_entropy.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert float(out.accuracy) == pytest.approx(float((logits.argmax(-1) == targets).double().mean()))
    assert out.cross_entropy.requires_grad


def test_clean_targets_come_from_the_audio_before_augmentation(tmp_path):
    from w2vcli.data.augment import Augment
    from w2vcli.data.loader import Batch
    from w2vcli.pipelines._pretrain_best_rq import BestRQTask

    torch.manual_seed(0)
    config = small_model(rpq_codebook_size=32)
    model = Wav2Vec2ForBestRQ(config).eval()
    gen = torch.Generator().manual_seed(2)
    clean, noisy = torch.randn(2, 8000, generator=gen), torch.randn(2, 8000, generator=gen)
    t = int(frame_lengths(config, torch.tensor([8000]))[0])
    mask = torch.zeros(2, t, dtype=torch.bool)
    mask[:, 4:12] = True
    hidden = model.wav2vec2(noisy, mask_time_indices=mask).last_hidden_state[mask]
    logits = model.classifier(hidden).reshape(-1, config.rpq_num_codebooks, 32)
    for target_wav, source in ((None, noisy), (noisy, noisy), (clean, clean)):
        out = model(noisy, mask, target_wav=target_wav)
        targets = model.quantizer(source, t)[mask]
        expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 32), targets.reshape(-1))
        assert float(out.cross_entropy) == pytest.approx(float(expected), rel=1e-5)
    assert not torch.equal(model.quantizer(clean, t), model.quantizer(noisy, t))

    # The loader keeps the audio before augmenting; the task hands it to the model as the targets'.
    wav = torch.from_numpy(np.sin(np.arange(16000) / 8).astype(np.float32))[None].repeat(2, 1)
    batch = Augment(("noise",), prob=1.0, keep_clean=True)(
        Batch(wav.clone(), torch.tensor([16000, 16000]), ["a", "b"]), np.random.default_rng(0)
    )
    assert torch.equal(batch.clean, wav) and not torch.equal(batch.waveforms, wav)
    cfg = small_train(objective="best-rq", augment=("noise",), clean_targets=True)
    task = BestRQTask(config, cfg, frame_lengths)
    prepared = task.prepare(batch, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(prepared.target_wav, wav) and torch.equal(prepared.wav, batch.waveforms)
    plain = Augment(("noise",), prob=1.0)(
        Batch(wav.clone(), torch.tensor([16000, 16000]), ["a", "b"]), np.random.default_rng(0)
    )
    assert (
        plain.clean is None and task.prepare(plain, torch.Generator(), torch.device("cpu")).target_wav is None
    )

    # Only where it means something: BEST-RQ with augmentation.
    from w2vcli.training.config import PretrainConfig

    for wrong in ({"objective": "best-rq"}, {"augment": ("noise",)}):
        with pytest.raises(UsageError, match="clean_targets needs objective best-rq and augment"):
            PretrainConfig(clean_targets=True, **wrong)


def test_quantizer_is_frozen_and_saved(tmp_path):
    model = Wav2Vec2ForBestRQ(small_model())
    assert not any("quantizer" in name for name, _ in model.named_parameters())
    save_checkpoint(model, tmp_path / "ckpt")
    back = load_checkpoint(tmp_path / "ckpt")
    assert back.head == "best-rq"
    assert torch.equal(back.model.quantizer.codebooks, model.quantizer.codebooks)
    assert torch.equal(back.model.quantizer.projection, model.quantizer.projection)


def tone_corpus(root, n=8, seconds=1.5):
    """Runs of 0.1 s of one of four square waves (harmonics across the band, so every mel bin holds
    signal, not noise), little noise: a masked frame's code follows from its run."""
    import soundfile as sf

    from w2vcli.data.manifest import Utterance, write_manifest

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    utts = []
    for k in range(n):
        runs = rng.integers(4, size=int(seconds * 10))
        t = np.arange(1600) / SR
        wav = np.concatenate([0.3 * np.sign(np.sin(2 * np.pi * (150 + 130 * r) * t)) for r in runs])
        wav += 0.003 * rng.standard_normal(wav.shape[0])
        sf.write(root / f"u{k}.wav", wav.astype(np.float32), SR)
        utts.append(Utterance(f"u{k}", f"u{k}.wav", wav.shape[0] / SR))
    write_manifest(root / "train.jsonl", utts)
    write_manifest(root / "valid.jsonl", [])
    return root


def test_best_rq_learns_on_a_tiny_corpus(tmp_path):
    data = tone_corpus(tmp_path / "data")
    cfg = small_train(objective="best-rq", max_updates=40, log_every=10, save_every=40, lr=3e-3, warmup=5)
    config = small_model(rpq_codebook_size=64, mask_time_prob=0.4, mask_time_length=4)
    result = pretrain(data, tmp_path / "run", cfg, config)
    assert result.update == 40
    import json

    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r and "update" in r]
    assert losses[-1] < 0.8 * losses[0]  # tones are predictable: the loss falls well below its start
    assert logs[-1]["x_chance"] > 2 and logs[-1]["health"] == "learning"

    # with augmentation and clean targets it learns too, and the run records the choice
    noisy = small_train(objective="best-rq", max_updates=20, log_every=10, save_every=20, lr=3e-3, warmup=5,
                        augment=("noise",), augment_prob=0.5, clean_targets=True)  # fmt: skip
    pretrain(data, tmp_path / "clean", noisy, config)
    assert json.loads((tmp_path / "clean" / "train.json").read_text())["train"]["clean_targets"] is True
    clean_logs = [
        json.loads(line) for line in (tmp_path / "clean" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["x_chance"] for r in clean_logs if "x_chance" in r][-1] > 2

    # resuming with the other objective is refused in one line
    with pytest.raises(UsageError, match="another objective"):
        pretrain(data, tmp_path / "run", small_train(max_updates=50), config)

    # the backbone fine-tunes like any other start: `wav2vec2.*` weights carried over exactly
    ckpt = load_checkpoint(result.checkpoint)
    ctc = Wav2Vec2ForCTC(ckpt.config)
    from w2vcli.checkpoints.native import load_backbone

    load_backbone(ctc, ckpt.model)
    for name, value in ckpt.model.wav2vec2.state_dict().items():
        assert torch.equal(ctc.wav2vec2.state_dict()[name], value)


def test_exported_backbone_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = Wav2Vec2ForBestRQ(small_model()).eval()
    save_checkpoint(model, tmp_path / "ckpt")
    export_hf(load_checkpoint(tmp_path / "ckpt"), tmp_path / "hf")
    hf = transformers.Wav2Vec2Model.from_pretrained(tmp_path / "hf").eval()
    wav = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 6000)).astype(np.float32))
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(tmp_path / "hf")  # normalises as ours does
    hf_in = fe(wav[0].numpy(), sampling_rate=SR, return_tensors="pt").input_values
    with torch.no_grad():
        ours = model.wav2vec2(wav).last_hidden_state
        theirs = hf(hf_in).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_init_from_a_contrastive_model_keeps_its_backbone(tmp_path):
    from w2vcli.model import Wav2Vec2ForPreTraining
    from w2vcli.pipelines.pretrain import initial_model

    torch.manual_seed(0)
    contrastive = Wav2Vec2ForPreTraining(small_model())
    save_checkpoint(contrastive, tmp_path / "start")
    events = []
    model, source = initial_model(str(tmp_path / "start"), small_model(), events.append, objective="best-rq")
    assert isinstance(model, Wav2Vec2ForBestRQ) and source == str(tmp_path / "start")
    for name, value in contrastive.wav2vec2.state_dict().items():
        assert torch.equal(model.wav2vec2.state_dict()[name], value)
    assert "BEST-RQ head" in events[0].message
    # and back: a BEST-RQ model continued with the contrastive task keeps its backbone, a fresh quantizer
    save_checkpoint(model, tmp_path / "brq")
    back, _ = initial_model(str(tmp_path / "brq"), small_model(), events.append)
    assert isinstance(back, Wav2Vec2ForPreTraining)
    assert torch.equal(
        back.wav2vec2.encoder.layers[0].attention.q_proj.weight,
        model.wav2vec2.encoder.layers[0].attention.q_proj.weight,
    )


def test_health_is_accuracy_against_one_code_in_v():
    from w2vcli.pipelines._pretrain_best_rq import health

    config = small_model(rpq_codebook_size=1000)
    assert health({"accuracy": 0.003}, config) == {"x_chance": 3.0, "health": "learning"}
    assert health({"accuracy": 0.0015}, config) == {"x_chance": 1.5, "health": "starting"}
    assert health({"accuracy": 0.001}, config) == {"x_chance": 1.0, "health": "at chance"}
