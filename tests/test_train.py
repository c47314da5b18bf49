"""The training loop: runs and checkpoints, resumes bitwise, skips non-finite steps, DDP = one process."""

from __future__ import annotations

import json
import math
import os
import signal
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.train_helpers import make_corpus, small_finetune, small_model, small_train
from w2vcli.pipelines.pretrain import PretrainTask, pretrain
from w2vcli.training.rundir import RunDir, load_trainer_state
from w2vcli.training.runtime import cpu_has_amx


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def weights(ckpt) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / "model.safetensors"))


def test_run_writes_checkpoints_metrics_and_settings(corpus, tmp_path):
    events = []
    result = pretrain(
        corpus, tmp_path / "run", small_train(save_every=2, keep=2), small_model(), on_event=events.append
    )
    run = RunDir(tmp_path / "run")
    assert result.update == 6 and result.stop_reason == "max_updates"
    assert [u for u, _ in run.updates()] == [4, 6]  # keep=2
    assert json.loads(run.last_file.read_text()) == {"checkpoint": "checkpoints/update-6", "update": 6}
    state = load_trainer_state(run.latest())  # weights_only=True
    assert (
        state["update"] == 6
        and state["data"]["position"] + state["data"]["epoch"] * state["data"]["batches"] == 6
    )
    records = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert [r["update"] for r in records] == [2, 4, 6]
    for key in (
        "loss",
        "accuracy",
        "prob_perplexity",
        "code_perplexity",
        "diversity",
        "temperature",
        "lr",
        "audio_seconds_per_s",
    ):
        assert all(key in r for r in records)
    assert json.loads(run.settings.read_text())["train"]["max_updates"] == 6
    assert {e.kind for e in events} >= {"start", "log", "checkpoint", "done"}


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_weights(corpus, tmp_path):
    straight = pretrain(corpus, tmp_path / "a", small_train(), small_model())

    def interrupt(event):  # Ctrl-C in the middle: the update finishes, a checkpoint is written
        if event.kind == "log" and event.update == 2:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = pretrain(corpus, tmp_path / "b", small_train(), small_model(), on_event=interrupt)
    assert stopped.stop_reason == "SIGINT" and stopped.update == 3
    resumed = pretrain(corpus, tmp_path / "b", small_train(), small_model())
    assert resumed.update == 6
    a, b = weights(straight.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x)["update"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert lines == [2, 3, 4, 6]  # the stop logs its partial window
    fresh = pretrain(corpus, tmp_path / "b", small_train(max_updates=2, fresh=True), small_model())
    assert fresh.update == 2 and [u for u, _ in RunDir(tmp_path / "b").updates()] == [2]


def test_half_written_checkpoint_is_ignored(corpus, tmp_path):
    pretrain(corpus, tmp_path / "run", small_train(max_updates=3), small_model())
    run = RunDir(tmp_path / "run")
    (run.checkpoints / "update-9").mkdir()  # as a kill -9 mid-save could leave it (never renamed in practice)
    (run.checkpoints / ".update-12.partial").mkdir()
    assert run.latest() == run.checkpoints / "update-3"
    run.last_file.write_text('{"checkpoint": "checkpoints/update-9"')  # torn pointer
    assert run.latest() == run.checkpoints / "update-3"
    assert pretrain(corpus, tmp_path / "run", small_train(max_updates=4), small_model()).update == 4


class NanAt(PretrainTask):
    """Poisons the loss of one update."""

    def __init__(self, *a, at: int):
        super().__init__(*a)
        self.at, self.update = at, 0

    def begin_update(self, model, update, spent):
        self.update = update
        return super().begin_update(model, update, spent)

    def loss(self, model, p):
        loss, stats = super().loss(model, p)
        return (loss * float("nan"), stats) if self.update == self.at else (loss, stats)


def test_non_finite_loss_skips_the_step(corpus, tmp_path, monkeypatch):
    import w2vcli.pipelines.pretrain as pipeline

    monkeypatch.setattr(pipeline, "PretrainTask", lambda *a: NanAt(*a, at=2))
    events = []
    snapshots = {}

    def watch(event):
        events.append(event)

    result = pretrain(
        corpus,
        tmp_path / "run",
        small_train(max_updates=4, save_every=1, keep=10),
        small_model(),
        on_event=watch,
    )
    run = RunDir(tmp_path / "run")
    for u, d in run.updates():
        snapshots[u] = weights(d)
    assert result.update == 4 and load_trainer_state(run.latest())["skipped"] == 1
    assert all(torch.equal(snapshots[2][k], snapshots[3][k]) for k in snapshots[2])  # update 3 was skipped
    assert not all(torch.equal(snapshots[3][k], snapshots[4][k]) for k in snapshots[3])
    assert all(torch.isfinite(v).all() for v in snapshots[4].values())
    assert any(e.kind == "warning" and "non-finite" in e.message for e in events)
    assert [json.loads(x)["skipped"] for x in run.metrics.read_text().splitlines()] == [0, 1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_rank(rank: int, port: int, corpus, out) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    pretrain(corpus, out, small_train(max_updates=2), small_model())


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_over_the_global_batch(corpus, tmp_path):
    torch.set_num_threads(1)
    one = pretrain(corpus, tmp_path / "one", small_train(max_updates=2, accumulate=2), small_model())
    mp.start_processes(
        _ddp_rank, args=(_free_port(), corpus, tmp_path / "ddp"), nprocs=2, start_method="spawn"
    )
    two = RunDir(tmp_path / "ddp").latest()
    a, b = weights(one.checkpoint), weights(two)
    assert RunDir(tmp_path / "ddp").updates()[-1][0] == 2
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("labelled"), n=8, labelled=True, valid=2)


def test_finetune_from_a_pretraining_run_keeps_best_with_vocab(corpus, labelled, tmp_path):
    from w2vcli.checkpoints.native import load_checkpoint
    from w2vcli.pipelines.finetune import finetune

    pt = pretrain(corpus, tmp_path / "pt", small_train(max_updates=2), small_model())
    events = []
    cfg = small_finetune(max_updates=4, freeze_updates=2, valid_every=2, schedule="tri_stage", warmup=0.25)
    result = finetune(
        labelled,
        tmp_path / "ft",
        cfg,
        str(tmp_path / "pt"),
        small_model(),
        {"mask_time_prob": 0.3, "mask_time_length": 2, "mask_feature_prob": 0.2},
        on_event=events.append,
    )
    assert result.update == 4
    frozen = [e.metrics["frozen"] for e in events if e.kind == "log"]
    assert frozen == [1.0, 0.0]
    valid = [e.metrics for e in events if e.kind == "valid"]
    assert [v["update"] for v in valid] == [2, 4] and all(0 <= v["valid_cer"] for v in valid)
    best = load_checkpoint(tmp_path / "ft" / "best")
    assert best.head == "ctc" and best.vocab is not None and best.config.vocab_size == len(best.vocab)
    assert best.config.feature_grad_mult == 0.0
    init = weights(pt.checkpoint)
    tuned = weights(result.checkpoint)
    cnn = [k for k in init if k.startswith("wav2vec2.feature_extractor.")]
    assert cnn and all(torch.equal(init[k], tuned[k]) for k in cnn)  # the CNN stays frozen
    assert not torch.equal(
        init["wav2vec2.encoder.layers.0.feed_forward.output_dense.weight"],
        tuned["wav2vec2.encoder.layers.0.feed_forward.output_dense.weight"],
    )


def test_finetune_can_train_a_pretrained_feature_encoder(corpus, labelled, tmp_path):
    from w2vcli.pipelines.finetune import finetune

    pt = pretrain(corpus, tmp_path / "pt", small_train(max_updates=1), small_model())
    result = finetune(
        labelled,
        tmp_path / "ft",
        small_finetune(max_updates=2, train_feature_encoder=True),
        str(tmp_path / "pt"),
        small_model(),
    )
    init, tuned = weights(pt.checkpoint), weights(result.checkpoint)
    key = "wav2vec2.feature_extractor.conv_layers.0.conv.weight"
    assert not torch.equal(init[key], tuned[key])


def test_layer_decay_gives_each_depth_its_share_of_the_lr(corpus, labelled, tmp_path):
    from w2vcli.model import Wav2Vec2ForCTC
    from w2vcli.pipelines.finetune import FinetuneTask, finetune

    model = Wav2Vec2ForCTC(small_model(vocab_size=8))
    layers = model.config.num_hidden_layers  # 2
    groups = FinetuneTask(model.config, small_finetune(layer_decay=0.5)).parameters(model)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    names = dict(model.named_parameters())
    trainable = {n for n in names if not n.startswith("wav2vec2.feature_extractor.")}
    assert {n for n, p in names.items() if id(p) in scale} == trainable  # each once, the CNN left out
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    by_name = {n: scale[id(names[n])] for n in trainable}
    assert by_name["lm_head.weight"] == by_name["wav2vec2.encoder.layer_norm.weight"] == 1.0
    assert by_name["wav2vec2.encoder.layers.1.attention.q_proj.weight"] == 0.5  # the top layer
    assert by_name["wav2vec2.encoder.layers.0.attention.q_proj.weight"] == 0.25
    for below in ("wav2vec2.feature_projection.projection.weight", "wav2vec2.masked_spec_embed"):
        assert by_name[below] == 0.5 ** (layers + 1)
    with_cnn = FinetuneTask(model.config, small_finetune(layer_decay=0.5), train_cnn=True).parameters(model)
    assert sum(len(g["params"]) for g in with_cnn) == len(names)
    assert [g["lr_scale"] for g in FinetuneTask(model.config, small_finetune()).parameters(model)] == [1.0]

    # In a run, the optimizer's groups learn at lr x scale, and a resume keeps them.
    pretrain(corpus, tmp_path / "pt", small_train(max_updates=1), small_model())
    cfg = small_finetune(max_updates=2, layer_decay=0.5, lr=1e-3, warmup=0)
    result = finetune(labelled, tmp_path / "ft", cfg, str(tmp_path / "pt"), small_model())
    assert json.loads((tmp_path / "ft" / "train.json").read_text())["train"]["layer_decay"] == 0.5
    saved = load_trainer_state(result.checkpoint)["optimizer"]["param_groups"]
    assert sorted(g["lr_scale"] for g in saved) == [0.125, 0.25, 0.5, 1.0]
    top = max(saved, key=lambda g: g["lr_scale"])["lr"]
    assert top > 0 and all(g["lr"] == pytest.approx(top * g["lr_scale"]) for g in saved)
    resumed = finetune(
        labelled,
        tmp_path / "ft",
        small_finetune(max_updates=3, layer_decay=0.5, lr=1e-3, warmup=0),
        str(tmp_path / "pt"),
        small_model(),
    )
    assert resumed.update == 3


def test_reinit_layers_starts_only_the_top_layers_afresh():
    import copy

    from w2vcli.errors import UsageError
    from w2vcli.model import Wav2Vec2ForCTC
    from w2vcli.pipelines.finetune import reinit_top_layers

    model = Wav2Vec2ForCTC(small_model())
    before = copy.deepcopy(model.state_dict())
    reinit_top_layers(model, 0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    top = len(model.wav2vec2.encoder.layers) - 1
    reinit_top_layers(model, 1)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith(f"wav2vec2.encoder.layers.{top}.") for k in changed)
    assert any("q_proj.weight" in k for k in changed)
    with pytest.raises(UsageError, match="transformer layers"):
        reinit_top_layers(model, top + 2)


def test_finetune_from_scratch_and_clear_init_errors(labelled, tmp_path):
    from w2vcli.checkpoints.native import load_checkpoint
    from w2vcli.errors import UsageError
    from w2vcli.pipelines.finetune import finetune

    result = finetune(
        labelled, tmp_path / "ft", small_finetune(max_updates=2, valid_every=2), "none", small_model()
    )
    assert result.best["update"] == 2 and "wer" in result.best
    settings = json.loads((tmp_path / "ft" / "train.json").read_text())
    assert settings["train_feature_encoder"] is True  # from scratch there is no pretrained CNN to keep
    assert load_checkpoint(result.checkpoint).config.feature_grad_mult > 0
    with pytest.raises(UsageError, match="--init"):
        finetune(
            labelled, tmp_path / "x", small_finetune(max_updates=1), str(tmp_path / "missing"), small_model()
        )


def test_best_checkpoint_ranks_by_the_chosen_error_rate_ties_broken_by_the_other():
    from w2vcli.errors import UsageError
    from w2vcli.training.config import FinetuneConfig
    from w2vcli.training.task import rank as _rank

    still_wrong_words = {"wer": 1.0, "cer": 0.7}
    worse_chars = {"wer": 1.0, "cer": 0.9}
    fewer_word_errors = {"wer": 0.99, "cer": 0.95}
    assert _rank(still_wrong_words, "wer") < _rank(worse_chars, "wer")
    assert _rank(fewer_word_errors, "wer") < _rank(still_wrong_words, "wer")
    assert _rank(still_wrong_words, "cer") < _rank(fewer_word_errors, "cer")
    with pytest.raises(UsageError, match="best_by must"):
        FinetuneConfig(best_by="loss")


def test_mixed_precision_is_fp32_on_cpu_unless_asked_and_bf16_needs_amx(monkeypatch):
    import w2vcli.training.runtime as distributed
    from w2vcli.errors import UsageError
    from w2vcli.training.task import amp_dtype

    cpu = torch.device("cpu")
    assert amp_dtype(cpu, None) is None and amp_dtype(cpu, False) is None
    monkeypatch.setattr(distributed, "cpu_has_amx", lambda: False)
    with pytest.raises(UsageError, match="AMX"):
        amp_dtype(cpu, True)
    monkeypatch.setattr(distributed, "cpu_has_amx", lambda: True)
    assert amp_dtype(cpu, True) == torch.bfloat16


@pytest.mark.skipif(not cpu_has_amx(), reason="no AMX-BF16 CPU")
def test_pretraining_in_bf16_on_an_amx_cpu_gives_finite_losses(corpus, tmp_path):
    events = []
    result = pretrain(
        corpus,
        tmp_path / "bf16",
        small_train(max_updates=3, amp=True, log_every=1),
        small_model(),
        on_event=events.append,
    )
    losses = [e.metrics["loss"] for e in events if e.kind == "log"]
    assert result.update == 3 and len(losses) == 3 and all(math.isfinite(loss) for loss in losses)


def test_gumbel_anneal_fits_the_temperature_schedule_to_the_run_and_a_misfit_is_warned():
    from w2vcli.errors import UsageError
    from w2vcli.training.config import PretrainConfig
    from w2vcli.training.schedule import gumbel_at

    cfg = PretrainConfig(max_updates=1000, gumbel_start=20.0, gumbel_end=0.5, gumbel_anneal=0.4)
    temperature = [gumbel_at(cfg, u) for u in (0, 200, 399, 401, 1000)]
    assert temperature[0] == 20.0 and math.isclose(temperature[1], math.sqrt(20.0 * 0.5), rel_tol=1e-6)
    assert (
        temperature[2] > 0.5 and temperature[3] == temperature[4] == 0.5
    )  # reaches the end at 40%, then holds
    assert (
        gumbel_at(PretrainConfig(gumbel_decay=0.99), 10) == 2.0 * 0.99**10
    )  # without anneal: the decay given
    timed = PretrainConfig(
        max_updates=None, max_minutes=10, gumbel_start=20.0, gumbel_end=0.5, gumbel_anneal=0.4
    )
    assert math.isclose(
        gumbel_at(timed, 3, spent=0.2), math.sqrt(20.0 * 0.5)
    )  # by the budget, not the update
    with pytest.raises(UsageError, match="gumbel_anneal must"):  # field names; the CLI shows flags
        PretrainConfig(gumbel_anneal=1.5)
    metrics = {"code_perplexity": 50.0, "contrastive": 1.0, "contrastive_bits": 1.4, "accuracy": 0.5}
    paper = PretrainTask(small_model(), PretrainConfig(max_updates=2000))  # 0.999995: 400k updates' schedule
    assert any("--gumbel-anneal" in w for w in paper.check(metrics, 1))
    assert paper.check(metrics, 2) == []  # once
    fitted = PretrainTask(small_model(), PretrainConfig(max_updates=2000, gumbel_anneal=0.7))
    assert fitted.check(metrics, 1) == []


def _validate_rank(rank: int, port: int, data, out) -> None:
    from w2vcli.data.manifest import read_manifest
    from w2vcli.pipelines.finetune import make_validator
    from w2vcli.training.runtime import Dist, init, shutdown

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist = Dist(rank, 2, rank)
    init(dist, torch.device("cpu"))
    model, vocab = _validation_model(data)
    result = make_validator(
        read_manifest(data / "valid.jsonl"),
        vocab,
        small_finetune(batch_seconds=1.5),
        torch.device("cpu"),
        dist,
    )(model)
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    shutdown(dist)


def _validation_model(data):
    from w2vcli.data.text import load_vocabulary
    from w2vcli.model import Wav2Vec2ForCTC

    vocab = load_vocabulary(data)
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(small_model(vocab_size=len(vocab), pad_token_id=vocab.blank_id)).eval()
    torch.nn.init.normal_(
        model.lm_head.weight, 0.0, 3.0
    )  # spread the outputs: some characters, not all blank
    return model, vocab


@pytest.mark.slow
def test_validation_under_ddp_splits_the_set_and_sums_the_edits_to_the_one_process_rates(tmp_path):
    from w2vcli.data.manifest import read_manifest
    from w2vcli.pipelines.finetune import make_validator

    data = make_corpus(tmp_path / "data", n=2, labelled=True, valid=5)  # 5: shards of 3 and 2
    model, vocab = _validation_model(data)
    one = make_validator(
        read_manifest(data / "valid.jsonl"), vocab, small_finetune(batch_seconds=1.5), torch.device("cpu")
    )(model)
    mp.start_processes(_validate_rank, args=(_free_port(), data, tmp_path), nprocs=2, start_method="spawn")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert 0 < one["cer"] and ranks[0] == ranks[1]
    assert all(math.isclose(ranks[0][k], one[k], rel_tol=1e-5) for k in ("wer", "cer", "loss"))
