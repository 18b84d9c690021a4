"""The training loop's data order: one permutation per epoch, resumable at any micro-batch, shared by DDP ranks.

Each epoch's order is a permutation drawn from (seed, epoch) alone, so a resumed session sees the same samples in the
same order as an uninterrupted one. A global micro-batch is a contiguous slice of that order; with DDP each rank takes
every ``world_size``-th sample of the slice (:func:`kaggle_kit.guard.ddp.shard_indices`), so the global batch and the
order do not depend on the number of ranks.

Every sample is loaded with the random generators (torch, numpy, random) seeded from (seed, epoch, position), then
restored: random augmentations are reproducible whichever worker loads the sample and wherever a session resumed,
and loading in the main process leaves the model's random stream (dropout) untouched.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from kaggle_kit.guard.ddp import shard_indices
from kaggle_kit.training.seeding import mix_seed, preserved_random_state

__all__ = ["epoch_order", "ResumableBatchSampler", "SeededView"]


def epoch_order(num_samples: int, *, seed: int, epoch: int) -> list[int]:
    """The order in which an epoch visits the dataset: a permutation drawn from (seed, epoch) alone."""
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch))
    return torch.randperm(num_samples, generator=generator).tolist()


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's part of each global micro-batch of one epoch, starting at a given micro-batch.

    Items are (dataset index, sample seed) pairs for :class:`SeededView`.
    """

    def __init__(
        self,
        order: Sequence[int],
        *,
        global_batch_size: int,
        num_micro_batches: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        epoch: int = 0,
    ) -> None:
        if global_batch_size % world_size:
            raise ValueError(f"global batch {global_batch_size} is not divisible by {world_size} ranks")
        self._order = order
        self._global = global_batch_size
        self._world = world_size
        self._num = num_micro_batches
        self._start = start
        self._rank = rank
        self._seed = seed
        self._epoch = epoch

    def __len__(self) -> int:
        return max(0, self._num - self._start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for micro in range(self._start, self._num):
            first = micro * self._global
            positions = shard_indices(range(first, first + self._global), self._rank, self._world)
            yield [(self._order[pos], mix_seed(self._seed, self._epoch, pos)) for pos in positions]


class SeededView(Dataset):
    """Wraps a map-style dataset; ``view[(index, seed)]`` loads ``dataset[index]`` under seeded random generators."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with preserved_random_state():
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            return self.dataset[index]
