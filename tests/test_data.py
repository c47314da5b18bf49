"""Data layer: bucketing under a seconds bound, DDP shards, resume, crops, padding, loaders."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from w2vcli.data.augment import perturb_speed
from w2vcli.data.batching import LengthBatchSampler, pack_batches
from w2vcli.data.loader import (
    LABEL_PAD,
    Item,
    ManifestDataset,
    collate_crops,
    collate_padded,
    filter_utterances,
    make_loader,
)
from w2vcli.data.manifest import ManifestIndex, Utterance, read_manifest, write_manifest
from w2vcli.data.text import Vocabulary
from w2vcli.errors import W2VError

SR = 16_000
WORDS = ["a cat", "the dog sat", "hi", "sun and moon", "red", "big blue sea", "no", "one two"]


def _durations(n: int = 37, seed: int = 0) -> list[float]:
    return np.random.default_rng(seed).uniform(0.05, 3.0, n).round(4).tolist()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[Utterance], dict[str, np.ndarray]]:
    """Sixteen tiny float wavs with distinct samples (a slice of one is recognisable), plus a manifest."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(1)
    utts, wavs = [], {}
    for k in range(16):
        n = 160 * int(rng.integers(3, 40))  # multiples of 10 ms, so manifest durations are exact
        wav = rng.uniform(-0.5, 0.5, n).astype(np.float32)
        sf.write(root / f"u{k}.wav", wav, SR, subtype="FLOAT")
        utt_id = f"u{k}"
        wavs[utt_id] = wav
        utts.append(Utterance(utt_id, str(root / f"u{k}.wav"), n / SR, WORDS[k % len(WORDS)]))
    write_manifest(root / "train.jsonl", utts)
    return read_manifest(root / "train.jsonl"), wavs


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.from_texts(WORDS)


def _cost(batch, durations):
    return max(durations[i] for i in batch) * len(batch)


def test_batches_respect_seconds_bound_and_long_items_stand_alone():
    durations = _durations() + [6.0]
    sampler = LengthBatchSampler(durations, 4.0, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    for b in batches:
        assert len(b) == 1 or _cost(b, durations) <= 4.0
    assert [len(durations) - 1] in batches
    assert any(len(b) > 2 for b in batches)  # packing actually groups short items


def test_similar_lengths_share_a_batch():
    durations = [0.1, 2.0, 0.1, 2.0, 0.1, 2.0]
    batches = pack_batches(durations, sorted(range(6), key=durations.__getitem__), 4.0)
    assert batches == [[0, 2, 4], [1, 3], [5]]


def test_max_batch_size_and_crop_cost():
    durations = [0.1] * 10 + [5.0] * 4
    assert all(len(b) <= 3 for b in LengthBatchSampler(durations, 100.0, max_batch_size=3))
    # Cropped to 1 s, the long items cost 1 s each: four of them fit under 4 s together.
    cropped = list(LengthBatchSampler(durations, 4.0, max_item_seconds=1.0, shuffle=False))
    assert [10, 11, 12, 13] in [sorted(b) for b in cropped]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5])
def test_ddp_ranks_are_disjoint_cover_everything_and_have_equal_length(world_size):
    durations = _durations()
    per_rank = [
        list(LengthBatchSampler(durations, 4.0, seed=7, rank=r, world_size=world_size))
        for r in range(world_size)
    ]
    assert len({len(b) for b in per_rank}) == 1
    seen = sorted(i for batches in per_rank for b in batches for i in b)
    assert seen == list(range(len(durations)))
    for batches in per_rank:
        assert all(_cost(b, durations) <= 4.0 for b in batches)


def test_ddp_with_only_single_item_batches_repeats_rather_than_hangs():
    durations = [5.0, 6.0, 7.0]
    per_rank = [list(LengthBatchSampler(durations, 1.0, rank=r, world_size=4)) for r in range(4)]
    assert [len(b) for b in per_rank] == [1, 1, 1, 1]
    assert {i for batches in per_rank for b in batches for i in b} == {0, 1, 2}


def test_shuffle_is_deterministic_by_seed_and_epoch():
    durations = _durations()
    a, b = LengthBatchSampler(durations, 4.0, seed=1), LengthBatchSampler(durations, 4.0, seed=1)
    assert a.batches(0) == b.batches(0)
    assert a.batches(0) != a.batches(1)
    assert a.batches(0) != LengthBatchSampler(durations, 4.0, seed=2).batches(0)
    assert len(a.batches(0)) == len(a.batches(1))
    unshuffled = LengthBatchSampler(durations, 4.0, shuffle=False)
    assert unshuffled.batches(0) == unshuffled.batches(5)


def test_iterating_advances_epochs():
    sampler = LengthBatchSampler(_durations(), 4.0, seed=1)
    first, second = list(sampler), list(sampler)
    assert first == sampler.batches(0) and second == sampler.batches(1)
    assert sampler.state_dict()["epoch"] == 2


def test_sampler_resume_yields_exactly_the_remaining_batches():
    durations = _durations()
    full = LengthBatchSampler(durations, 4.0, seed=5, rank=1, world_size=2)
    full.set_epoch(3)
    expected = list(full)
    interrupted = LengthBatchSampler(durations, 4.0, seed=5, rank=1, world_size=2)
    interrupted.set_epoch(3)
    it = iter(interrupted)
    consumed = [next(it) for _ in range(4)]
    state = interrupted.state_dict()
    assert state["epoch"] == 3 and state["position"] == 4
    resumed = LengthBatchSampler(durations, 4.0, seed=5, rank=1, world_size=2)
    resumed.load_state_dict(state)
    assert consumed + list(resumed) == expected
    assert resumed.state_dict()["epoch"] == 4


def test_resume_with_another_world_size_keeps_the_fraction_of_the_epoch():
    durations = _durations()
    one = LengthBatchSampler(durations, 4.0)
    state = {"epoch": 0, "position": len(one) // 2, "batches": len(one)}
    two = LengthBatchSampler(durations, 4.0, rank=0, world_size=2)
    two.load_state_dict(state)
    assert abs(two.position - len(two) / 2) <= 1


def test_bad_inputs_are_user_errors():
    with pytest.raises(W2VError):
        LengthBatchSampler([], 4.0)
    with pytest.raises(W2VError):
        LengthBatchSampler([1.0], 0.0)


def test_filter_reports_what_it_skipped():
    utts = [
        Utterance("a", "a.wav", 0.01, "x"),
        Utterance("b", "b.wav", 1.0, ""),
        Utterance("c", "c.wav", 1.0, "hi"),
        Utterance("d", "d.wav", 30.0, "long"),
        Utterance("e", "e.wav", 1.0),
    ]
    kept, skipped = filter_utterances(utts, max_seconds=20.0, require_text=True)
    assert [u.id for u in kept] == ["c"]
    assert skipped == {"shorter than 0.025 s": 1, "no transcript": 2, "longer than 20 s": 1}
    kept, skipped = filter_utterances(utts)
    assert [u.id for u in kept] == ["b", "c", "d", "e"] and sum(skipped.values()) == 1


def test_dataset_returns_waveform_length_and_labels(corpus, vocab):
    utts, wavs = corpus
    item = ManifestDataset(utts, vocab)[2]
    assert item.wav.dtype == torch.float32 and item.length == len(wavs[item.id])
    torch.testing.assert_close(item.wav, torch.from_numpy(wavs[item.id]))
    assert item.labels.tolist() == vocab.encode(utts[2].text)
    assert ManifestDataset(utts)[2].labels is None
    with pytest.raises(W2VError, match="transcript"):
        ManifestDataset([Utterance("x", "x.wav", 1.0)], vocab)


def _items(lengths, labels=None):
    rng = np.random.default_rng(0)
    return [
        Item(
            f"i{k}",
            torch.from_numpy(rng.uniform(-1, 1, n).astype(np.float32)),
            n,
            None if labels is None else torch.tensor(labels[k]),
        )
        for k, n in enumerate(lengths)
    ]


def _is_slice(crop: torch.Tensor, source: torch.Tensor) -> bool:
    starts = (source == crop[0]).nonzero().flatten().tolist()
    return any(torch.equal(source[s : s + len(crop)], crop) for s in starts)


def test_crops_are_equal_length_within_source_and_seeded():
    items = _items([900, 1200, 700, 3000])
    batch = collate_crops(items, torch.Generator().manual_seed(0))  # the shortest, 700, down to the grid
    assert batch.waveforms.shape == (4, 640) and batch.lengths.tolist() == [640] * 4
    assert all(_is_slice(batch.waveforms[b], it.wav) for b, it in enumerate(items))
    capped = collate_crops(items, torch.Generator().manual_seed(0), max_crop_samples=500)
    assert capped.waveforms.shape == (4, 500)
    assert all(_is_slice(capped.waveforms[b], it.wav) for b, it in enumerate(items))
    again = collate_crops(items, torch.Generator().manual_seed(0), max_crop_samples=500)
    assert torch.equal(capped.waveforms, again.waveforms)
    other = collate_crops(items, torch.Generator().manual_seed(1), max_crop_samples=500)
    assert not torch.equal(capped.waveforms, other.waveforms)


def test_padding_and_labels():
    items = _items([5, 9, 3], labels=[[4, 5], [6, 7, 8, 9], [10]])
    batch = collate_padded(items)
    assert batch.waveforms.shape == (3, 9) and batch.lengths.tolist() == [5, 9, 3]
    for b, it in enumerate(items):
        assert torch.equal(batch.waveforms[b, : it.length], it.wav)
        assert not batch.waveforms[b, it.length :].any()
    assert batch.labels.tolist() == [
        [4, 5, LABEL_PAD, LABEL_PAD],
        [6, 7, 8, 9],
        [10, LABEL_PAD, LABEL_PAD, LABEL_PAD],
    ]
    assert batch.label_lengths.tolist() == [2, 4, 1] and batch.ids == ["i0", "i1", "i2"]
    assert collate_padded(items, label_pad=0).labels[2].tolist() == [10, 0, 0, 0]
    assert collate_padded(_items([5, 9])).labels is None


def test_finetune_loader_epoch_pads_under_the_bound(corpus, vocab):
    utts, wavs = corpus
    loader = make_loader(utts, 1.0, vocab=vocab, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader)
    assert sorted(i for b in batches for i in b.ids) == sorted(wavs)
    for batch in batches:
        assert len(batch) == 1 or batch.waveforms.numel() <= 1.0 * SR
        for b, utt_id in enumerate(batch.ids):
            assert torch.equal(batch.waveforms[b, : batch.lengths[b]], torch.from_numpy(wavs[utt_id]))
        assert batch.labels.shape == (len(batch), int(batch.label_lengths.max()))
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["position"] == 0


def _same(a, b):
    return a.ids == b.ids and torch.equal(a.waveforms, b.waveforms) and torch.equal(a.lengths, b.lengths)


def test_loader_resume_continues_with_identical_crops(corpus):
    utts, _ = corpus
    kwargs = dict(crop_seconds=0.1, seed=4, rank=1, world_size=2)
    expected = list(make_loader(utts, 0.5, **kwargs))
    first = make_loader(utts, 0.5, **kwargs)
    it = iter(first)
    consumed = [next(it) for _ in range(2)]
    state = first.state_dict()
    resumed = make_loader(utts, 0.5, **kwargs)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(consumed) + len(rest) == len(expected)
    assert all(_same(a, b) for a, b in zip(consumed + rest, expected, strict=True))
    assert all(b.waveforms.shape[1] <= 0.1 * SR and b.waveforms.numel() <= 0.5 * SR for b in expected)
    # The next epoch crops differently.
    assert not all(_same(a, b) for a, b in zip(list(resumed), expected, strict=False))


def test_manifest_index_reads_what_read_manifest_reads(tmp_path):
    import json
    import pickle

    lines = [
        {"id": "a", "audio": "a.wav", "duration": 0.01, "text": "x"},
        {"id": "b", "audio": "sub/b.flac", "duration": 1.0, "text": "  "},
        {"audio": "/abs/c.wav", "duration": 1.5, "text": "héllo wörld", "speaker": "s1"},
        {"id": "d", "audio": "d.wav", "duration": 30.0, "text": "long"},
        {"id": "e", "audio": "e.wav", "duration": 2.0},
    ]
    text = "\n".join(json.dumps(d, ensure_ascii=False) for d in lines[:2]) + "\n\n   \n"
    text += "\n".join(json.dumps(d, ensure_ascii=False) for d in lines[2:])  # no final newline
    path = tmp_path / "train.jsonl"
    path.write_text(text, encoding="utf-8")
    index, listed = ManifestIndex(path), read_manifest(path)
    assert len(index) == 5 and list(index) == listed and index[-1] == listed[-1]
    assert index.durations.tolist() == [0.01, 1.0, 1.5, 30.0, 2.0]
    assert index.texted.tolist() == [True, False, True, True, False]
    for args in [(), (0.025, 20.0, True), (0.025, None, True), (1.2, 5.0, False)]:
        kept, skipped = filter_utterances(index, *args)
        expected, expected_skipped = filter_utterances(listed, *args)
        assert isinstance(kept, ManifestIndex) and list(kept) == expected and skipped == expected_skipped
    clone = pickle.loads(pickle.dumps(index[1:4]))  # what a DataLoader worker gets
    assert list(clone) == listed[1:4] and clone[0].audio == str(tmp_path / "sub/b.flac")
    with pytest.raises(IndexError):
        index[5]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text + '\n{"id": "z", "duration": 1}\n', encoding="utf-8")
    with pytest.raises(W2VError, match=r"bad.jsonl:8: not a manifest line"):
        ManifestIndex(bad)
    with pytest.raises(W2VError, match="cannot read manifest"):
        ManifestIndex(tmp_path / "missing.jsonl")


def test_a_loader_over_an_index_gives_the_batches_of_one_over_a_list(corpus, vocab):
    utts, _ = corpus
    index = ManifestIndex(utts[0].audio.rsplit("/", 1)[0] + "/train.jsonl")
    for kwargs in ({"crop_seconds": 0.1}, {"vocab": vocab}):
        listed = list(make_loader(utts, 0.5, seed=3, **kwargs))
        indexed = list(make_loader(index, 0.5, seed=3, **kwargs))
        assert all(_same(a, b) for a, b in zip(indexed, listed, strict=True))
    workers = list(make_loader(index, 0.5, seed=3, crop_seconds=0.1, num_workers=2))
    assert all(
        _same(a, b)
        for a, b in zip(workers, list(make_loader(utts, 0.5, seed=3, crop_seconds=0.1)), strict=True)
    )


def test_workers_give_the_same_batches_and_count_what_was_delivered(corpus):
    utts, _ = corpus
    serial = list(make_loader(utts, 0.5, crop_seconds=0.1, seed=2))
    loader = make_loader(utts, 0.5, crop_seconds=0.1, seed=2, num_workers=2)
    it = iter(loader)
    got = [next(it) for _ in range(3)]
    assert loader.state_dict()["position"] == 3  # workers have prefetched further; the state must not say so
    got += list(it)
    assert all(_same(a, b) for a, b in zip(got, serial, strict=True))
    second_epoch = list(loader)  # persistent workers serve the next epoch
    assert len(second_epoch) == len(serial)


def test_batch_moves_to_device(corpus):
    batch = collate_padded(_items([5, 9], labels=[[4], [5, 6]]))
    moved = batch.to("cpu")
    assert torch.equal(moved.labels, batch.labels) and moved.ids == batch.ids and batch.seconds == 14 / SR


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_pin_memory_pins_every_tensor(corpus, vocab):
    utts, _ = corpus
    batch = next(iter(make_loader(utts, 1.0, vocab=vocab, pin_memory=True)))
    assert batch.waveforms.is_pinned() and batch.lengths.is_pinned() and batch.labels.is_pinned()


def _peak_hz(wav: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(wav.numpy()))
    return float(np.argmax(spectrum)) * SR / len(wav)


def test_speed_perturbation_changes_tempo_and_pitch_together_and_keeps_labels():
    t = np.arange(SR) / SR
    tone = torch.from_numpy(np.sin(2 * np.pi * 400 * t).astype(np.float32))  # 1 s of 400 Hz
    items = [Item("a", tone, SR, torch.tensor([3, 4]))]
    for factor in (0.9, 1.1):
        (out,) = perturb_speed(items, [factor])
        assert (
            abs(out.length - SR / factor) <= 2
            and out.wav.shape == (out.length,)
            and out.wav.dtype == torch.float32
        )
        assert abs(_peak_hz(out.wav) - 400 * factor) < 3  # pitch moves with the tempo
        assert torch.equal(out.labels, items[0].labels) and out.id == "a"
    (same,) = perturb_speed(items, [1.0])
    assert same is items[0]


def test_speed_perturbed_loader_draws_per_item_and_is_reproducible(corpus, vocab):
    utts, wavs = corpus
    loader = make_loader(utts, 1.0, vocab=vocab, seed=3, speed_perturb=(0.9, 1.0, 1.1))
    batches = list(loader)
    lengths = {i: int(b.lengths[k]) for b in batches for k, i in enumerate(b.ids)}
    ratios = {round(len(wavs[i]) / n, 1) for i, n in lengths.items()}
    assert ratios == {0.9, 1.0, 1.1}  # 16 items: every factor drawn
    for b in batches:
        assert b.labels is not None and b.labels.shape[0] == len(b)
    again = list(make_loader(utts, 1.0, vocab=vocab, seed=3, speed_perturb=(0.9, 1.0, 1.1)))
    assert all(_same(a, b) for a, b in zip(batches, again, strict=True))
    crops = list(make_loader(utts, 0.5, crop_seconds=0.1, seed=3, speed_perturb=(0.9, 1.1)))
    assert all(b.waveforms.shape[1] <= 0.1 * SR for b in crops)
    in_workers = list(
        make_loader(utts, 0.5, crop_seconds=0.1, seed=3, speed_perturb=(0.9, 1.1), num_workers=2)
    )
    assert all(
        _same(a, b) for a, b in zip(crops, in_workers, strict=True)
    )  # drawn per batch, not per process


def test_grid_lengths_are_whole_frames_within_ten_percent_and_few():
    from w2vcli.data.batching import FRAME_SAMPLES, grid_samples

    lengths = range(FRAME_SAMPLES, 20 * SR, 97)
    ups = [grid_samples(n) for n in lengths]
    downs = [grid_samples(n, up=False) for n in lengths]
    for n, up, down in zip(lengths, ups, downs):
        assert up % FRAME_SAMPLES == 0 and down % FRAME_SAMPLES == 0
        assert n <= up <= 1.1 * n + FRAME_SAMPLES and n >= down >= n / 1.1 - FRAME_SAMPLES
        assert grid_samples(up) == up and grid_samples(down, up=False) == down
    assert ups == sorted(ups) and downs == sorted(downs)
    assert len(set(ups)) <= 70  # 20 ms to 20 s: batches reuse a few dozen kernel shapes
    assert grid_samples(200) == 200 == grid_samples(200, up=False)  # under a frame: untouched
