"""What the trainers eat: a dataset over a manifest, crop and pad collation, a resumable loader.

B = utterances in a batch, N = samples (16 kHz), L = label tokens.
Pretraining crops every item of a batch to the shortest one (group-norm feature encoders are not
padding-invariant, so no padding at all); fine-tuning pads with zeros and carries lengths and
CTC labels. Batch membership comes from `w2vcli.data.batching.LengthBatchSampler`. Speed perturbation,
when asked for, resamples each item before either collation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from functools import partial

import numpy as np
import torch

from w2vcli.data.audio import SAMPLE_RATE, load_audio
from w2vcli.data.batching import LengthBatchSampler, grid_samples
from w2vcli.data.manifest import ManifestIndex, Utterance
from w2vcli.errors import W2VError
from w2vcli.model.config import RECEPTIVE_FIELD

LABEL_PAD = -100


def filter_utterances(
    utts: Sequence[Utterance],
    min_seconds: float = RECEPTIVE_FIELD / SAMPLE_RATE,
    max_seconds: float | None = None,
    require_text: bool = False,
) -> tuple[list[Utterance], dict[str, int]]:
    """Keep what a trainer can use; return the kept utterances and {reason: count} of the rest (a
    `ManifestIndex` gives a `ManifestIndex`, filtered on its arrays without parsing a line)."""
    if isinstance(utts, ManifestIndex):
        return _filter_index(utts, min_seconds, max_seconds, require_text)
    kept, skipped = [], {}
    for u in utts:
        if u.duration < min_seconds:
            reason = f"shorter than {min_seconds:g} s"
        elif max_seconds is not None and u.duration > max_seconds:
            reason = f"longer than {max_seconds:g} s"
        elif require_text and not (u.text or "").strip():
            reason = "no transcript"
        else:
            kept.append(u)
            continue
        skipped[reason] = skipped.get(reason, 0) + 1
    return kept, skipped


def _filter_index(
    index: ManifestIndex, min_seconds: float, max_seconds: float | None, require_text: bool
) -> tuple[ManifestIndex, dict[str, int]]:
    d = index.durations
    reasons = [(d < min_seconds, f"shorter than {min_seconds:g} s")]
    if max_seconds is not None:
        reasons.append((d > max_seconds, f"longer than {max_seconds:g} s"))
    if require_text:
        reasons.append((~index.texted, "no transcript"))
    dropped, skipped = np.zeros(len(index), bool), {}
    for mask, reason in reasons:  # the first reason that applies, as for a list
        new = mask & ~dropped
        if new.any():
            skipped[reason] = int(new.sum())
        dropped |= new
    return index.subset(~dropped), skipped


@dataclass
class Item:
    id: str
    wav: torch.Tensor  # (N,) float32
    length: int
    labels: torch.Tensor | None = None  # (L,) int64


class ManifestDataset:
    """Map-style dataset: `dataset[i]` decodes utterance i (and encodes its text if a vocabulary is given)."""

    def __init__(self, utts: Sequence[Utterance], vocab=None, sample_rate: int = SAMPLE_RATE) -> None:
        self.utts = utts if isinstance(utts, ManifestIndex) else list(utts)  # an index stays on disk
        self.vocab = vocab
        self.sample_rate = sample_rate
        if vocab is not None:
            if isinstance(self.utts, ManifestIndex):
                missing = int((~self.utts.texted).sum())
            else:
                missing = sum(1 for u in self.utts if u.text is None)
            if missing:
                raise W2VError(
                    f"{missing} utterances have no transcript; fine-tuning needs text (run `w2v prep` with transcripts)"
                )

    def __len__(self) -> int:
        return len(self.utts)

    @property
    def durations(self) -> Sequence[float]:
        if isinstance(self.utts, ManifestIndex):
            return self.utts.durations
        return [u.duration for u in self.utts]

    def __getitem__(self, i: int) -> Item:
        u = self.utts[i]
        wav = torch.from_numpy(load_audio(u.audio, self.sample_rate))
        labels = None
        if self.vocab is not None:
            labels = torch.tensor(self.vocab.encode(u.text), dtype=torch.long)
        return Item(u.id, wav, wav.shape[0], labels)


@dataclass
class Batch:
    waveforms: torch.Tensor  # (B, N) float32; zeros past `lengths`
    lengths: torch.Tensor  # (B,) int64 samples
    ids: list[str]
    labels: torch.Tensor | None = None  # (B, L) int64, `label_pad` past `label_lengths`
    label_lengths: torch.Tensor | None = None  # (B,) int64
    clean: torch.Tensor | None = None  # (B, N): the waveforms before augmentation, when kept

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def seconds(self) -> float:
        """Audio actually in the batch (not padding), for throughput."""
        return float(self.lengths.sum()) / SAMPLE_RATE

    def _map(self, fn) -> Batch:
        return Batch(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device, non_blocking: bool = False) -> Batch:
        return self._map(
            lambda v: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
        )

    def pin_memory(self) -> Batch:
        # DataLoader(pin_memory=True) calls this on custom batch types.
        return self._map(lambda v: v.pin_memory() if isinstance(v, torch.Tensor) else v)


def collate_crops(
    items: Sequence[Item],
    generator: torch.Generator | None = None,
    max_crop_samples: int | None = None,
) -> Batch:
    """Crop every item to the shortest in the batch (at most `max_crop_samples`) at random offsets; a
    shortest item under the cap sets a length rounded down to the batch-length grid (`grid_samples`)."""
    size = min(it.length for it in items)
    if max_crop_samples is None or size < max_crop_samples:
        size = grid_samples(size, up=False)
    else:
        size = max_crop_samples
    crops = []
    for it in items:
        start = int(torch.randint(it.length - size + 1, (1,), generator=generator))
        crops.append(it.wav[start : start + size])
    waveforms = torch.stack(crops)  # (B, N)
    lengths = torch.full((len(items),), size, dtype=torch.long)
    return Batch(waveforms, lengths, [it.id for it in items])


def collate_padded(
    items: Sequence[Item],
    generator: torch.Generator | None = None,
    label_pad: int = LABEL_PAD,
) -> Batch:
    """Zero-pad waveforms to the longest item's length rounded up to the batch-length grid
    (`grid_samples`); pad labels with `label_pad` when every item has them.

    `generator` is unused; it keeps the signature of `collate_crops` so the loader can call either.
    """
    lengths = torch.tensor([it.length for it in items], dtype=torch.long)
    waveforms = torch.zeros(len(items), grid_samples(int(lengths.max())))  # (B, N)
    for b, it in enumerate(items):
        waveforms[b, : it.length] = it.wav
    labels = label_lengths = None
    if items and all(it.labels is not None for it in items):
        label_lengths = torch.tensor([len(it.labels) for it in items], dtype=torch.long)
        labels = torch.full((len(items), int(label_lengths.max())), label_pad, dtype=torch.long)  # (B, L)
        for b, it in enumerate(items):
            labels[b, : len(it.labels)] = it.labels
    return Batch(waveforms, lengths, [it.id for it in items], labels, label_lengths)


Collate = Callable[..., Batch]


class _BatchFetcher:
    """Dataset over (seed, indices) keys so a worker decodes and collates a whole batch;
    the crop generator is seeded per batch, so crops do not depend on the number of workers."""

    def __init__(self, dataset: ManifestDataset, collate: Collate) -> None:
        self.dataset, self.collate = dataset, collate

    def __getitem__(self, key: tuple[int, list[int]]) -> Batch:
        seed, indices = key
        generator = torch.Generator().manual_seed(seed)
        return self.collate([self.dataset[i] for i in indices], generator=generator)


class _Keys:
    def __init__(self, sampler: LengthBatchSampler) -> None:
        self.sampler = sampler

    def __iter__(self):
        return self.sampler.keyed()

    def __len__(self) -> int:
        return len(self.sampler)


def _first(x):
    return x


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator + worker_id; make numpy and random follow.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class BatchLoader:
    """Iterating runs the rest of the current epoch; `state_dict()` counts batches *delivered*,
    which is what a checkpoint needs (the DataLoader's workers prefetch ahead of the trainer)."""

    def __init__(
        self,
        dataset: ManifestDataset,
        sampler: LengthBatchSampler,
        collate: Collate,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
    ) -> None:
        self.dataset, self.sampler = dataset, sampler
        self.epoch, self.position = sampler.epoch, sampler.position
        generator = torch.Generator().manual_seed(sampler.seed)
        extra = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if num_workers > 0 else {}
        self.loader = torch.utils.data.DataLoader(
            _BatchFetcher(dataset, collate),
            sampler=_Keys(sampler),
            batch_size=None,
            collate_fn=_first,
            num_workers=num_workers,
            pin_memory=pin_memory,
            worker_init_fn=_seed_worker,
            generator=generator,
            **extra,
        )

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        self.sampler.load_state_dict(self.state_dict())
        for batch in self.loader:
            self.position += 1
            yield batch
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "batches": len(self)}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
        self.epoch, self.position = self.sampler.epoch, self.sampler.position


def make_loader(
    utts: Sequence[Utterance],
    batch_seconds: float,
    *,
    vocab=None,
    crop_seconds: float | None = None,
    max_batch_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
    label_pad: int = LABEL_PAD,
    speed_perturb: Sequence[float] = (),
    augment=None,
) -> BatchLoader:
    """The loader a trainer needs: crops when `crop_seconds` is given (pretraining), else zero
    padding plus CTC labels when `vocab` is given (fine-tuning, validation). `speed_perturb`: speed
    factors drawn per item (batches are packed by the original durations, so a batch of slowed-down
    items holds up to 1/min(factors) x batch_seconds). `augment`: a `data.augment.Augment` applied to
    each collated batch."""
    dataset = ManifestDataset(utts, vocab)
    sampler = LengthBatchSampler(
        dataset.durations,
        batch_seconds,
        max_item_seconds=crop_seconds,
        max_batch_size=max_batch_size,
        pad_grid=crop_seconds is None,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    if crop_seconds is not None:
        collate = partial(collate_crops, max_crop_samples=round(crop_seconds * SAMPLE_RATE))
    else:
        collate = partial(collate_padded, label_pad=label_pad)
    if any(f != 1.0 for f in speed_perturb):
        from w2vcli.data.augment import perturbed_collate  # it builds on this module's Item and Batch

        collate = partial(perturbed_collate, collate=collate, factors=tuple(speed_perturb))
    if augment is not None and augment.kinds:
        from w2vcli.data.augment import augmented_collate

        collate = partial(augmented_collate, collate=collate, augment=augment)
    return BatchLoader(dataset, sampler, collate, num_workers=num_workers, pin_memory=pin_memory)
