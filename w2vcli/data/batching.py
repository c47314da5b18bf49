"""Length-bucketed batches bounded by audio seconds, sharded for DDP and resumable mid-epoch.

A batch costs its padded size: (longest item in seconds) x (number of items). Utterances are
sorted by duration so that similar lengths share a batch, packed greedily under
`batch_seconds`, and the batch order is shuffled per epoch from (seed, epoch). Every rank
builds the same global list and takes every `world_size`-th batch, so ranks see disjoint data
and the same number of batches (a rank that runs out early would hang DDP's all-reduce).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence

import numpy as np

from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.errors import W2VError
from w2vcli.model.config import FRAME_STRIDE

FRAME_SAMPLES = FRAME_STRIDE  # one frame of the feature encoder (20 ms)
_GRID = sorted({math.ceil(1.1**k) for k in range(240)})  # frames: 1, 2, 3, ..., then ~10% apart


def grid_samples(n: int, up: bool = True) -> int:
    """`n` samples rounded up (padding) or down (cropping) to the batch-length grid: whole frames, ~10%
    apart. On a CPU, oneDNN builds its convolution and matmul kernels for every input shape it meets
    and caches 1,024 of them; with a new length every batch, building them cost ~100 ms of a `tiny`
    fine-tuning step that otherwise takes ~120 ms. On the grid a data set's batches take a few dozen
    shapes, for ~5% padding on average. Lengths under one frame are left alone."""
    frames = -(-n // FRAME_SAMPLES) if up else n // FRAME_SAMPLES
    if n < FRAME_SAMPLES or frames > _GRID[-1]:
        return n
    i = bisect_left(_GRID, frames) if up else bisect_right(_GRID, frames) - 1
    return _GRID[i] * FRAME_SAMPLES


def grid_seconds(seconds: float) -> float:
    """The padded length of an item of `seconds` (the grid, rounded up)."""
    return grid_samples(math.ceil(seconds * SAMPLE_RATE - 1e-6)) / SAMPLE_RATE


def pack_batches(
    durations: Sequence[float], order: Sequence[int], batch_seconds: float, max_batch_size: int | None = None
) -> list[list[int]]:
    """Greedily pack indices (visited in `order`, ascending duration) into batches under the bound.

    An item longer than `batch_seconds` on its own still forms a batch of one.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for i in order:
        longest_if_added = max(longest, durations[i])
        too_big = longest_if_added * (len(current) + 1) > batch_seconds + 1e-9
        too_many = max_batch_size is not None and len(current) >= max_batch_size
        if current and (too_big or too_many):
            batches.append(current)
            current, longest_if_added = [], durations[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


def even_out(batches: list[list[int]], world_size: int) -> list[list[int]]:
    """Make the batch count a multiple of `world_size` without dropping or repeating data.

    Splitting a batch in two keeps both halves under the bound; the biggest batches are split
    first. Only when every batch is a single item (tiny data, many ranks) are batches repeated.
    """
    batches = [list(b) for b in batches]
    while len(batches) % world_size:
        j = max(range(len(batches)), key=lambda k: len(batches[k]))
        if len(batches[j]) < 2:
            for k in range(world_size - len(batches) % world_size):
                batches.append(list(batches[k]))
            return batches
        b = batches[j]
        batches[j : j + 1] = [b[: len(b) // 2], b[len(b) // 2 :]]
    return batches


class Packed(Sequence[list[int]]):
    """Batches of indices in two arrays (all indices, where each batch starts): what a rank keeps
    for an epoch, 8 bytes an utterance where lists of ints cost ~36."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.flat = np.fromiter((i for b in batches for i in b), dtype=np.int64)
        self.starts = np.cumsum([0] + [len(b) for b in batches], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        k %= len(self)
        return self.flat[self.starts[k] : self.starts[k + 1]].tolist()

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


def batch_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for the randomness inside one batch (crop offsets), independent of workers."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class LengthBatchSampler:
    """Yields lists of dataset indices; iterating runs the rest of the current epoch, then moves to the next.

    durations: seconds per utterance (manifest `duration`).
    batch_seconds: bound on (longest item) x (items) per batch.
    max_item_seconds: what one item can cost at most; pretraining passes its crop length, since
        longer items are cropped to it.
    max_batch_size: optional cap on items per batch.
    pad_grid: items are zero-padded to `grid_samples` (fine-tuning), so that is what they cost.
    shuffle: shuffle batch order (and the grouping of equal-length items) per epoch from (seed, epoch).
    rank, world_size: DDP shard; all ranks must pass the same durations, bounds and seed.

    Resume: `state_dict()` is {"epoch", "position"} (batches this rank has yielded this epoch);
    `load_state_dict()` continues with exactly the batches an uninterrupted run would yield.
    """

    def __init__(
        self,
        durations: Sequence[float],
        batch_seconds: float,
        *,
        max_item_seconds: float | None = None,
        max_batch_size: int | None = None,
        pad_grid: bool = False,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(durations) == 0:
            raise W2VError("no utterances to batch; check the manifest (or the duration filters)")
        if batch_seconds <= 0:
            raise W2VError(f"--batch-seconds must be positive, got {batch_seconds}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        cap = float("inf") if max_item_seconds is None else max_item_seconds
        costs = np.minimum(np.asarray(durations, dtype=np.float64), cap)
        if pad_grid:
            costs = np.array([grid_seconds(c) for c in costs.tolist()], dtype=np.float64)
        self.costs = costs  # an array: 8 bytes an utterance on every rank (a list of floats costs 32)
        self.batch_seconds = batch_seconds
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, Packed] | None = None

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All ranks' batches for `epoch`, in the order they are consumed (rank r takes r, r+ws, ...)."""
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.costs)
        # Shuffling before a stable sort varies which equal-length items share a batch each epoch
        # (all items longer than the crop cost the same when pretraining).
        pre = rng.permutation(n) if self.shuffle else np.arange(n)
        order = pre[np.argsort(self.costs[pre], kind="stable")]
        batches = pack_batches(self.costs.tolist(), order.tolist(), self.batch_seconds, self.max_batch_size)
        batches = even_out(batches, self.world_size)
        if self.shuffle:
            batches = [batches[k] for k in rng.permutation(len(batches))]
        return batches

    def batches(self, epoch: int) -> Packed:
        """This rank's batches for `epoch`."""
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, Packed(self.global_batches(epoch)[self.rank :: self.world_size]))
        return self._cache[1]

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same every epoch and on every rank)."""
        return len(self.batches(self.epoch))

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        while self.position < len(batches):
            self.position += 1
            yield list(batches[self.position - 1])
        self.epoch, self.position = self.epoch + 1, 0

    def keyed(self) -> Iterator[tuple[int, list[int]]]:
        """Like iterating, but each batch comes with its seed from (seed, epoch, global batch number)."""
        epoch = self.epoch
        for batch in self:
            yield batch_seed(self.seed, epoch, (self.position - 1) * self.world_size + self.rank), batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "batches": len(self)}

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` left off. If the batch count changed (other data or world size),
        continue at the same fraction of the epoch."""
        self.epoch = int(state["epoch"])
        position = int(state["position"])
        old, new = int(state.get("batches", len(self))), len(self)
        self.position = min(new, round(position * new / old)) if old and old != new else position
