"""What the training loop's resumable, seeded data order costs, against a plain DataLoader in the same run.

The model is the issue's small MLP (64-256-256-10, batch 64, AdamW, torch on one thread), trained from an in-memory
dataset whose ``__getitem__`` is two tensor lookups. The loaders take turns batch by batch, so that the load of a
shared machine hits them alike; figures are medians over every batch:

* ``machinery_share``: (the loop's loader per batch - a plain ``DataLoader(dataset, batch_size, sampler=order)`` per
  batch) / a whole training step (loading included) with the plain loader. Target: at most 0.05.
* ``step_ratio``: a whole training step with the loop's loader over one with the plain loader.
* ``legacy_us_per_sample``: what kaggle-kit 0.1's per-sample save, seed and restore of the three global generators
  cost per sample, for comparison.
* ``augmenting_*``: the same with a dataset that draws its noise from torch's global generator in ``__getitem__``,
  where every sample must be seeded.

Run: ``.venv/bin/python benchmarks/bench_data_order.py`` (``--blocks 3`` for a short run, ``--json PATH`` to save).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kaggle_kit.training.data_order import epoch_loader, epoch_order
from kaggle_kit.training.seeding import mix_seed, preserved_random_state

BATCH = 64
BATCHES = 40


class InMemory(Dataset):
    """``(x[i], y[i])``; with ``noise`` it adds Gaussian noise drawn from torch's global generator (an augmentation)."""

    def __init__(self, n: int, *, noise: bool) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 64, generator=gen)
        self.y = torch.randint(0, 10, (n,), generator=gen)
        self.noise = noise

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[index]
        if self.noise:
            x = x + 0.1 * torch.randn(64)
        return x, self.y[index]


class LegacySeededView(Dataset):
    """kaggle-kit 0.1's loader dataset: every sample saved, seeded and restored all three global generators."""

    def __init__(self, dataset: Dataset, order: list[int], epoch: int) -> None:
        self.dataset, self.order, self.epoch = dataset, order, epoch

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int) -> Any:
        seed = mix_seed(0, self.epoch, position)
        with preserved_random_state():
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            return self.dataset[self.order[position]]


def _plain_loader(dataset: Dataset, epoch: int) -> DataLoader:
    return DataLoader(dataset, batch_size=BATCH, sampler=epoch_order(len(dataset), seed=0, epoch=epoch),
                      drop_last=True)


def _kit_loader(dataset: Dataset, epoch: int) -> DataLoader:
    return epoch_loader(dataset, seed=0, epoch=epoch, global_batch_size=BATCH, num_micro_batches=BATCHES)


def _legacy_loader(dataset: Dataset, epoch: int) -> DataLoader:
    view = LegacySeededView(dataset, epoch_order(len(dataset), seed=0, epoch=epoch), epoch)
    return DataLoader(view, batch_size=BATCH, sampler=range(len(view)), drop_last=True)


class _Trainer:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        loss = nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def _timed(batches: Iterator[Any], trainer: _Trainer) -> tuple[float, float]:
    """(seconds to load the next batch, seconds to load it and take a training step on it), in this thread's CPU
    time: everything runs in it (one torch thread, no loader workers), and other processes' load does not count."""
    start = time.thread_time()
    batch = next(batches)
    loaded = time.thread_time()
    trainer.step(batch)
    return loaded - start, time.thread_time() - start


def _compare(make_base: Callable[[int], DataLoader], make_other: Callable[[int], DataLoader], trainer: _Trainer,
             blocks: int) -> dict[str, float]:
    """Median per-batch times of two loaders taking turns batch by batch, so that machine load hits them alike."""
    load: dict[str, list[float]] = {"base": [], "other": []}
    full: dict[str, list[float]] = {"base": [], "other": []}
    for block in range(blocks + 1):
        iterators = {"base": iter(make_base(block)), "other": iter(make_other(block))}
        for batch in range(BATCHES):
            for name in ("base", "other") if batch % 2 == 0 else ("other", "base"):
                load_s, full_s = _timed(iterators[name], trainer)
                if block > 0:  # block 0 warms up
                    load[name].append(load_s)
                    full[name].append(full_s)
    return {f"{kind}_{name}": statistics.median(values)
            for kind, times in (("load", load), ("full", full)) for name, values in times.items()}


def measure(blocks: int) -> dict[str, float]:
    torch.set_num_threads(1)
    plain, noisy = InMemory(BATCH * BATCHES, noise=False), InMemory(BATCH * BATCHES, noise=True)
    trainer = _Trainer()
    kit = _compare(lambda e: _plain_loader(plain, e), lambda e: _kit_loader(plain, e), trainer, blocks)
    legacy = _compare(lambda e: _plain_loader(plain, e), lambda e: _legacy_loader(plain, e), trainer,
                      max(1, blocks // 5))
    augmenting = _compare(lambda e: _plain_loader(noisy, e), lambda e: _kit_loader(noisy, e), trainer, blocks)
    machinery = kit["load_other"] - kit["load_base"]
    augmenting_machinery = augmenting["load_other"] - augmenting["load_base"]
    legacy_machinery = legacy["load_other"] - legacy["load_base"]
    return {
        "plain_step_us": kit["full_base"] * 1e6,
        "plain_load_us_per_batch": kit["load_base"] * 1e6,
        "kit_load_us_per_batch": kit["load_other"] * 1e6,
        "machinery_us_per_batch": machinery * 1e6,
        "machinery_share": machinery / kit["full_base"],
        "step_ratio": kit["full_other"] / kit["full_base"],
        "plain_getitem_us_per_sample": kit["load_base"] / BATCH * 1e6,
        "legacy_us_per_sample": legacy_machinery / BATCH * 1e6,
        "legacy_share": legacy_machinery / legacy["full_base"],
        "augmenting_machinery_us_per_sample": augmenting_machinery / BATCH * 1e6,
        "augmenting_machinery_share": augmenting_machinery / augmenting["full_base"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10, help="epochs of 40 batches per loader (after a warm-up)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = measure(args.blocks)
    for name, value in figures.items():
        print(f"{name:38s} {value:10.3f}")
    verdict = "meets" if figures["machinery_share"] <= 0.05 else "MISSES"
    print(f"data-order machinery: {figures['machinery_share']:.1%} of a step ({verdict} the 5% target)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
