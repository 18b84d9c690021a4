"""The training loop's data order: one permutation per epoch, resumable at any micro-batch, shared by DDP ranks.

Each epoch's order is a permutation drawn from (seed, epoch) alone, so a resumed session sees the same samples in the
same order as an uninterrupted one. A global micro-batch is a contiguous slice of that order; with DDP each rank takes
every ``world_size``-th position of the slice (:func:`kaggle_kit.guard.ddp.shard_indices`), so the global batch and
the order do not depend on the number of ranks.

A sample is loaded as if the random generators (torch's CPU one, numpy's, Python's) had been seeded from
(seed, epoch, position) just before it: random augmentations are reproducible whichever worker loads the sample,
wherever a session resumed and however many ranks share the batch, and loading in the main process leaves the
model's random stream (dropout) untouched. Seeding costs microseconds per generator and sample, more than a small
model's step can spare, so :class:`SeededView` pays it only for the generators the dataset draws from: it loads a
batch unseeded, and when a cheap snapshot shows a generator moved, it rewinds it, seeds it from then on and loads the
batch again. A dataset that draws nothing costs a snapshot per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kaggle_kit.guard.ddp import shard_indices
from kaggle_kit.training.seeding import (
    GeneratorSnapshot,
    capture_generators,
    mix_seed,
    restore_generators,
    seed_generators,
)

__all__ = ["epoch_order", "ResumableBatchSampler", "SeededView", "epoch_loader"]


def epoch_order(num_samples: int, *, seed: int, epoch: int) -> list[int]:
    """The order in which an epoch visits the dataset: a permutation drawn from (seed, epoch) alone."""
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch))
    return torch.randperm(num_samples, generator=generator).tolist()


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields this rank's positions (in the epoch's order) of each global micro-batch, from a given micro-batch on."""

    def __init__(self, *, global_batch_size: int, num_micro_batches: int, start: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if global_batch_size % world_size:
            raise ValueError(f"global batch {global_batch_size} is not divisible by {world_size} ranks")
        self.global_batch_size = global_batch_size
        self.num_micro_batches = num_micro_batches
        self.start = start
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return max(0, self.num_micro_batches - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for micro in range(self.start, self.num_micro_batches):
            first = micro * self.global_batch_size
            yield shard_indices(range(first, first + self.global_batch_size), self.rank, self.world_size)


class SeededView(Dataset):
    """One epoch of a map-style dataset by position in its order, each sample loaded as if under seeded generators.

    ``view.load(positions)`` (also ``__getitems__``, which the DataLoader calls with a whole batch) returns
    ``dataset[order[p]]`` for each position ``p``; see the module's docstring for the seeding.

    Attributes:
        seeded: The generators the dataset was seen to draw from, seeded before each sample from then on.
    """

    def __init__(self, dataset: Any, order: Sequence[int], *, seed: int, epoch: int) -> None:
        self.dataset = dataset
        self.order = order
        self.seed = seed
        self.epoch = epoch
        self.seeded: set[str] = set()
        self.numpy_gauss: tuple[int, float] | None = None

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int) -> Any:
        return self.load([position])[0]

    def __getitems__(self, positions: Sequence[int]) -> list[Any]:
        return self.load(positions)

    def load(self, positions: Sequence[int]) -> list[Any]:
        """The samples at ``positions`` of the epoch's order, the global generators left as they were."""
        dataset, order = self.dataset, self.order
        while True:
            # The first snapshot reads numpy's cached Gaussian (slow); later ones reuse it (see GeneratorSnapshot).
            snapshot = GeneratorSnapshot.take(numpy_gauss=self.numpy_gauss)
            self.numpy_gauss = snapshot.numpy_gauss
            samples = self.load_seeded(positions) if self.seeded else [dataset[order[p]] for p in positions]
            drawn = snapshot.drawn() - self.seeded
            if not drawn:
                return samples
            snapshot.rewind(drawn)
            self.seeded |= drawn

    def load_seeded(self, positions: Sequence[int]) -> list[Any]:
        """Loads each sample after seeding the generators in :attr:`seeded`; restores those after the batch."""
        saved = capture_generators(self.seeded)
        try:
            samples = []
            for position in positions:
                seed_generators(mix_seed(self.seed, self.epoch, position), self.seeded)
                samples.append(self.dataset[self.order[position]])
            return samples
        finally:
            restore_generators(saved)


def epoch_loader(
    dataset: Any,
    *,
    seed: int,
    epoch: int,
    global_batch_size: int,
    num_micro_batches: int,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """The DataLoader of one epoch as the training loop draws it: this rank's micro-batches from ``start`` on."""
    sampler = ResumableBatchSampler(global_batch_size=global_batch_size, num_micro_batches=num_micro_batches,
                                    start=start, rank=rank, world_size=world_size)
    view = SeededView(dataset, epoch_order(len(dataset), seed=seed, epoch=epoch), seed=seed, epoch=epoch)
    return DataLoader(
        view, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn, pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(mix_seed(seed, epoch)), persistent_workers=False,
    )
