"""Pretraining a user can rely on (issue 15): continued pretraining from a model (`--init`), schedules
that follow a time budget, and recipes carried by the presets, the same from the command and the library."""

from __future__ import annotations

import json
import math

import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from tests.train_helpers import Ticks, make_corpus, small_finetune, small_model, small_train
from w2vcli.checkpoints.native import load_checkpoint, save_checkpoint
from w2vcli.cli import app
from w2vcli.data.text import Vocabulary
from w2vcli.model import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from w2vcli.pipelines.pretrain import frame_lengths, pretrain
from w2vcli.training.masking import compute_mask_indices, sample_negative_indices
from w2vcli.training.metrics import read_metrics
from w2vcli.training.recipes import finetune_settings, pretrain_settings
from w2vcli.training.rundir import load_trainer_state

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("audio"), n=6, seconds=1.5)


def fixed_loss(model: Wav2Vec2ForPreTraining, wav: torch.Tensor) -> float:
    """The model's loss in eval mode on `wav` (B, N) with seeded masks and negatives."""
    c = model.config
    t = int(frame_lengths(c, torch.tensor([wav.shape[1]]))[0])
    g = torch.Generator().manual_seed(0)
    mask = compute_mask_indices((wav.shape[0], t), c.mask_time_prob, c.mask_time_length, None, 1, g)
    negatives = sample_negative_indices(mask, c.num_negatives, g)
    with torch.no_grad():
        return float(model.eval()(wav, mask, negatives).loss)


def first_loss(run) -> float:
    return read_metrics(run / "metrics.jsonl")[0]["loss"]


def sharpened(config) -> Wav2Vec2ForPreTraining:
    """A pretraining model whose loss is far from a fresh model's (its projections scaled up), so the
    first loss of a continued run tells which of the two it started from."""
    torch.manual_seed(1)
    model = Wav2Vec2ForPreTraining(config)
    with torch.no_grad():
        model.project_hid.weight.mul_(30)
        model.project_q.weight.mul_(30)
    return model


def test_continue_from_our_checkpoint_starts_from_its_loss_and_resumes(corpus, tmp_path):
    config = small_model(hidden_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0)
    start = save_checkpoint(sharpened(config), tmp_path / "start")
    wav = torch.from_numpy(sf.read(corpus / "u0.wav", dtype="float32")[0])[None, :16000]
    loaded, fresh = (
        fixed_loss(load_checkpoint(start).model, wav),
        fixed_loss(Wav2Vec2ForPreTraining(config), wav),
    )
    cfg = small_train(max_updates=2, log_every=1, lr=1e-9, save_every=2)
    pretrain(corpus, tmp_path / "run", cfg, config, init=str(start))
    got = first_loss(tmp_path / "run")
    assert abs(got - loaded) < 0.25 * abs(loaded - fresh), (got, loaded, fresh)
    settings = json.loads((tmp_path / "run" / "train.json").read_text())
    assert settings["init"] == str(start) and settings["start"] == str(start)
    # an interrupted continued run resumes like any other (from its checkpoint, not from --init)
    pretrain(
        corpus, tmp_path / "run", small_train(max_updates=4, log_every=1, lr=1e-9), config, init=str(start)
    )
    assert [r["update"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2, 3, 4]


@pytest.mark.parametrize("style", ["parametrizations", "weight_g"])
def test_continue_from_a_hugging_face_pretraining_directory(corpus, tmp_path, style):
    hf_config = transformers.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        codevector_dim=32,
        proj_codevector_dim=16,
        num_codevectors_per_group=16,
        num_negatives=10,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
    )
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ForPreTraining(hf_config).eval()
    with torch.no_grad():
        hf.project_hid.weight.mul_(30)
    hf.save_pretrained(tmp_path / "hf")
    if style == "weight_g":  # older transformers files: the weight norm as weight_g / weight_v
        state = {
            k.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            ): v.contiguous()
            for k, v in hf.state_dict().items()
        }
        save_file(state, str(tmp_path / "hf" / "model.safetensors"))
    recipe_cfg, objective = pretrain_settings(
        "tiny",
        {
            "max_updates": 2,
            "log_every": 1,
            "lr": 1e-9,
            "batch_seconds": 3,
            "crop_seconds": 1,
            "device": "cpu",
        },
    )
    pretrain(
        corpus, tmp_path / "run", recipe_cfg, objective.replace(num_negatives=10), init=str(tmp_path / "hf")
    )
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "update-2")
    assert ckpt.config.hidden_size == 32 and ckpt.config.num_codevectors_per_group == 16  # the model's own
    assert ckpt.config.mask_time_length == 5  # the objective: the recipe's
    # export back to Hugging Face: the same loss on fixed masks and negatives
    from w2vcli.checkpoints.huggingface import export_hf

    export_hf(ckpt, tmp_path / "back")
    again = transformers.Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "back").eval()
    ours = ckpt.model.eval()
    wav = torch.randn(1, 16000) * 0.1
    t = int(frame_lengths(ours.config, torch.tensor([16000]))[0])
    g = torch.Generator().manual_seed(0)
    mask = compute_mask_indices((1, t), 0.3, 5, None, 2, g)
    negatives = sample_negative_indices(mask, 10, g)
    from w2vcli.model.wav2vec2 import normalize_waveform

    hf_input = (
        normalize_waveform(wav, torch.tensor([16000])) if ours.config.do_normalize else wav
    )  # its extractor's job
    with torch.no_grad():
        out = ours(wav, mask, negatives)
        ref = again(hf_input, mask_time_indices=mask, sampled_negative_indices=negatives)
    m = int(mask.sum())
    assert abs(ref.contrastive_loss.item() - out.contrastive_loss.item() * m) < 1e-3 * m  # measured ~1e-6 * m


def test_continue_from_a_ctc_model_starts_a_fresh_quantizer(corpus, tmp_path):
    vocab = Vocabulary.from_texts(["a cat"])
    torch.manual_seed(0)
    ctc = Wav2Vec2ForCTC(small_model(vocab_size=len(vocab)))
    start = save_checkpoint(ctc, tmp_path / "ctc", vocab)
    events = []
    pretrain(
        corpus,
        tmp_path / "run",
        small_train(max_updates=1, lr=1e-9),
        small_model().replace(num_codevectors_per_group=8),
        on_event=events.append,
        init=str(start),
    )
    assert any("quantizer" in e.message and "fresh" in e.message for e in events if e.kind == "warning")
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "update-1")
    assert ckpt.config.num_codevectors_per_group == 8  # the fresh quantizer is shaped by the recipe
    backbone = {k: v for k, v in ctc.state_dict().items() if k.startswith("wav2vec2.encoder.layers.0.")}
    continued = ckpt.model.state_dict()
    assert backbone and all(torch.allclose(v, continued[k], atol=1e-5) for k, v in backbone.items())


def test_a_flag_that_contradicts_init_is_refused_before_anything_is_written(corpus, tmp_path):
    start = save_checkpoint(Wav2Vec2ForPreTraining(small_model()), tmp_path / "start")
    run = tmp_path / "run"
    r = CliRunner().invoke(
        app,
        [
            "pretrain",
            str(corpus),
            "--init",
            str(start),
            "--out",
            str(run),
            "--codebook-size",
            "32",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code != 0 and "contradicts --init" in str(r.exception)
    assert not run.exists()


# Schedules that follow a time budget.


def test_a_time_budget_ends_with_the_schedule_complete(corpus, tmp_path):
    from w2vcli.training.schedule import lr_at

    cfg = small_train(
        max_updates=None,
        max_minutes=0.125,
        log_every=1,
        save_every=1000,
        gumbel_start=4.0,
        gumbel_end=0.5,
        gumbel_anneal=0.5,
        warmup=0.1,
    )
    result = pretrain(corpus, tmp_path / "run", cfg, small_model(), clock=Ticks(0.5))
    assert (result.update, result.stop_reason) == (15, "max_minutes")  # 7.5 s in updates of 0.5 s
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert records[-1]["progress"] == 1.0 and records[-1]["temperature"] == pytest.approx(0.5)
    # each update's lr is the schedule's at the progress the update began with (how far the clock had run),
    # so however slow the machine, the lr falls to 0 as the budget ends
    for before, record in zip(records, records[1:], strict=False):
        assert record["lr"] == pytest.approx(
            lr_at(cfg, record["update"] - 1, before["progress"]), rel=0.02, abs=1e-6
        )  # both logged to 6 and 4 decimals
    assert lr_at(cfg, records[-1]["update"], 1.0) == 0.0
    assert max(r["lr"] for r in records) > 0.5 * cfg.lr  # it did reach its peak on the way
    state = load_trainer_state(result.checkpoint)
    assert state["seconds"] == 0.125 * 60  # saved, so a resumed run continues the same clock


def test_progress_is_the_further_of_the_two_budgets():
    from w2vcli.training.config import TrainConfig
    from w2vcli.training.schedule import lr_at, progress

    both = TrainConfig(max_updates=100, max_minutes=10, lr=1.0, warmup=0.1)
    assert progress(both, 50, 60) == 0.5 and progress(both, 10, 300) == 0.5
    assert lr_at(both, 10, 0.55) == pytest.approx(0.5)  # halfway through the decay after a 10% warm-up
    tri = TrainConfig(max_updates=None, max_minutes=10, lr=1.0, schedule="tri_stage", warmup=0.1, hold=0.4)
    assert lr_at(tri, 3, 0.3) == 1.0 and lr_at(tri, 9, 1.0) == pytest.approx(0.05)
    assert lr_at(tri, 0, 0.05) == pytest.approx(0.01 + 0.99 * 0.5)
    # an update budget alone keeps the exact update-based schedule
    alone = TrainConfig(max_updates=100, lr=1.0, warmup=20)
    assert lr_at(alone, 9) == lr_at(alone, 9, 0.09) == pytest.approx(0.5)


def test_finetune_validation_and_freezing_follow_the_time_budget(tmp_path):
    from w2vcli.pipelines.finetune import FinetuneTask, finetune

    labelled = make_corpus(tmp_path / "lab", n=6, labelled=True, valid=2)
    cfg = small_finetune(
        max_updates=None,
        max_minutes=0.25,
        valid_every=0.25,
        freeze_updates=0.5,
        schedule="tri_stage",
        save_every=1000,
        log_every=1,
    )
    result = finetune(labelled, tmp_path / "ft", cfg, "none", small_model(), clock=Ticks(1.25))
    assert (result.update, result.stop_reason) == (12, "max_minutes")  # 15 s in updates of 1.25 s
    metrics = read_metrics(tmp_path / "ft" / "metrics.jsonl")
    # a quarter, a half, three quarters and the end of the budget, on any machine
    assert [r["update"] for r in metrics if "valid_wer" in r] == [3, 6, 9, 12]
    # only the CTC head learns for the first half of the budget
    assert [r["frozen"] for r in metrics if "frozen" in r] == [1.0] * 6 + [0.0] * 6
    task = FinetuneTask(small_model(), small_finetune(freeze_updates=0.5))
    model = Wav2Vec2ForCTC(small_model())
    task.begin_update(model, 1000, 0.4)
    assert not any(p.requires_grad for p in model.wav2vec2.encoder.parameters())
    task.begin_update(model, 1001, 0.6)
    assert all(p.requires_grad for p in model.wav2vec2.encoder.parameters())


# Recipes carried by the presets: the command and the library get the same values.


def test_the_command_and_the_library_share_the_recipes(monkeypatch, tmp_path):
    import w2vcli.pipelines.finetune as ft
    import w2vcli.pipelines.pretrain as pt

    seen = {}
    monkeypatch.setattr(pt, "pretrain", lambda data, out, cfg, model, **kw: seen.update(pre=(cfg, model)))
    monkeypatch.setattr(
        ft,
        "finetune",
        lambda data, out, cfg, init, model, overrides, **kw: seen.update(fine=(cfg, overrides)),
    )
    runner = CliRunner()
    for argv in (
        ["pretrain", str(tmp_path), "--out", str(tmp_path / "r")],
        ["finetune", str(tmp_path), "--init", "none", "--out", str(tmp_path / "f")],
    ):
        runner.invoke(app, argv)
    cfg, model = pretrain_settings("tiny")
    assert seen["pre"] == (cfg, model)
    assert (cfg.lr, cfg.batch_seconds, cfg.crop_seconds, cfg.gumbel_start) == (1e-3, 8.0, 2.0, 20.0)
    assert (model.num_negatives, model.num_codevectors_per_group, model.mask_time_length) == (20, 64, 5)
    assert seen["fine"] == finetune_settings("tiny")
    # flags override; a time budget alone drops the update budget
    timed, _ = pretrain_settings("tiny", {"max_minutes": 8, "lr": 5e-4})
    assert timed.max_updates is None and timed.lr == 5e-4 and timed.warmup == 0.05
    base, base_model = pretrain_settings("base")
    assert (base.lr, base_model.num_negatives, base_model.num_codevectors_per_group) == (5e-4, 100, 320)
    assert math.isclose(base.gumbel_anneal, 0.7)


def test_a_run_at_chance_after_a_quarter_of_its_budget_says_what_to_change():
    from w2vcli.model.config import preset
    from w2vcli.pipelines.pretrain import PretrainTask, pretraining_health
    from w2vcli.training.config import PretrainConfig

    at_chance = {"accuracy": 0.01, "code_perplexity": 300.0, "contrastive": 4.6, "contrastive_bits": 6.6}
    paper = PretrainTask(preset("base"), PretrainConfig(max_updates=100, gumbel_anneal=0.7))
    assert paper.check({**at_chance, "progress": 0.2}, 20) == []  # too early to say
    assert any("--preset tiny" in w for w in paper.check({**at_chance, "progress": 0.3}, 30))
    cfg, tiny = pretrain_settings("tiny")
    small = PretrainTask(tiny, cfg)
    assert any(
        "longer --max-minutes" in w for w in small.check({**at_chance, "accuracy": 0.05, "progress": 0.3}, 30)
    )
    assert (
        pretraining_health({"accuracy": 0.12, "code_perplexity": 90}, tiny)["verdict"] == "learning"
    )  # 2.5x
    assert pretraining_health({"accuracy": 0.12, "code_perplexity": 2.5}, tiny)["verdict"] == "collapsed"
