"""The data order: every sample loaded as if under generators seeded from (seed, epoch, position), the global
generators left as they were, and the seeding paid only for the generators a dataset draws from."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from _stop_after import StopAfter
from kaggle_kit.checkpoint import Checkpointer
from kaggle_kit.training import TrainConfig, train
from kaggle_kit.training.data_order import SeededView, epoch_loader, epoch_order
from kaggle_kit.training.seeding import GeneratorSnapshot, mix_seed

SEED, EPOCH = 3, 2


class Draws(torch.utils.data.Dataset):
    """24 samples; ``uses`` names the generators ``__getitem__`` draws from, for every sample or the odd ones."""

    def __init__(self, uses: tuple[str, ...], *, odd_only: bool = False, n: int = 24) -> None:
        self.uses, self.odd_only, self.n = uses, odd_only, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[float, ...]:
        values = [float(index)]
        if self.odd_only and index % 2 == 0:
            return tuple(values)
        if "torch" in self.uses:
            values.append(float(torch.randn(())))
        if "numpy" in self.uses:
            values.append(float(np.random.standard_normal()))  # the legacy generator, with its cached Gaussian
        if "python" in self.uses:
            values.append(random.random())
        return tuple(values)


def reference(dataset: Draws, positions: list[int]) -> list[tuple[float, ...]]:
    """What each sample must be: loaded right after seeding all three generators from its position."""
    order = epoch_order(len(dataset), seed=SEED, epoch=EPOCH)
    out = []
    for position in positions:
        seed = mix_seed(SEED, EPOCH, position)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        out.append(dataset[order[position]])
    return out


def global_states() -> tuple[bytes, tuple, tuple]:
    np_state = np.random.get_state()
    return torch.get_rng_state().numpy().tobytes(), (np_state[0], np_state[1].tobytes(), *np_state[2:]), \
        random.getstate()


CASES = [((), False), (("torch",), False), (("numpy",), False), (("python",), False), (("numpy", "python"), True),
         (("torch", "numpy", "python"), False)]


@pytest.mark.parametrize(("uses", "odd_only"), CASES)
def test_samples_are_seeded_by_position_and_the_generators_untouched(uses, odd_only):
    dataset = Draws(uses, odd_only=odd_only)
    expected = reference(dataset, list(range(len(dataset))))
    np.random.standard_normal()  # leave a cached Gaussian in numpy's legacy generator: it must survive too
    torch.manual_seed(11)
    before = global_states()
    view = SeededView(dataset, epoch_order(len(dataset), seed=SEED, epoch=EPOCH), seed=SEED, epoch=EPOCH)
    # Batches in any order and size, as a resumed session or another rank would ask for them.
    got = {}
    for positions in ([8, 9, 10, 11], [0, 2, 4, 6], [1, 3, 5, 7], [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]):
        for position, sample in zip(positions, view.load(positions)):
            got[position] = sample
    assert [got[p] for p in range(len(dataset))] == expected
    assert global_states() == before
    assert view.seeded == (set(uses) if uses else set())


def test_a_fresh_view_mid_epoch_loads_what_an_uninterrupted_one_did():
    dataset = Draws(("torch", "python"), odd_only=True)
    whole = [s for batch in epoch_loader(dataset, seed=SEED, epoch=EPOCH, global_batch_size=4, num_micro_batches=6,
                                         collate_fn=list) for s in batch]
    resumed = [s for batch in epoch_loader(dataset, seed=SEED, epoch=EPOCH, global_batch_size=4, num_micro_batches=6,
                                           start=3, collate_fn=list) for s in batch]
    assert resumed == whole[12:]
    # Two DDP ranks share each global batch between them, sample for sample.
    ranks = [[s for batch in epoch_loader(dataset, seed=SEED, epoch=EPOCH, global_batch_size=4, num_micro_batches=6,
                                          rank=rank, world_size=2, collate_fn=list) for s in batch] for rank in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == sorted(whole)
    assert ranks[0][:2] == [whole[0], whole[2]] and ranks[1][:2] == [whole[1], whole[3]]
    # Loader workers (each with generators of its own, seeded by the DataLoader) load the same samples.
    workers = [s for batch in epoch_loader(dataset, seed=SEED, epoch=EPOCH, global_batch_size=4, num_micro_batches=6,
                                           num_workers=2, collate_fn=list) for s in batch]
    assert workers == whole


class Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_seeding_is_paid_only_for_the_generators_a_dataset_draws_from(monkeypatch):
    restores = {name: Counter(fn) for name, fn in (("torch", torch.set_rng_state), ("numpy", np.random.set_state),
                                                   ("python", random.setstate))}
    monkeypatch.setattr(torch, "set_rng_state", restores["torch"])
    monkeypatch.setattr(np.random, "set_state", restores["numpy"])
    monkeypatch.setattr(random, "setstate", restores["python"])
    loads = 0
    for uses in ((), ("torch",)):
        dataset = Draws(uses, n=80)
        for _ in epoch_loader(dataset, seed=SEED, epoch=EPOCH, global_batch_size=8, num_micro_batches=10,
                              collate_fn=list):
            loads += 1
        drawn = {name: counter.calls for name, counter in restores.items()}
        if not uses:
            # A dataset that draws nothing: no generator is saved and restored, per sample or per batch.
            assert drawn == {"torch": 0, "numpy": 0, "python": 0}
        else:
            # One restore per batch (and one rewind), not one per sample; the other generators are left alone.
            assert drawn == {"torch": 10 + 1, "numpy": 0, "python": 0}


def test_the_snapshot_sees_every_generator_and_rewinds_it():
    for draw, name in ((lambda: torch.rand(3), "torch"), (lambda: np.random.rand(), "numpy"),
                       (lambda: np.random.standard_normal(), "numpy"), (random.random, "python"),
                       (lambda: random.gauss(0, 1), "python"), (lambda: [random.random() for _ in range(624)], "python"),
                       (lambda: np.random.rand(624), "numpy")):
        before = global_states()
        snapshot = GeneratorSnapshot.take()
        assert snapshot.drawn() == set()
        draw()
        assert snapshot.drawn() == {name}
        snapshot.rewind({name})
        assert global_states() == before and snapshot.drawn() == set()


def test_the_snapshot_falls_back_where_the_states_cannot_be_read_in_place(monkeypatch):
    from kaggle_kit.training import seeding

    # An interpreter whose random.Random is laid out otherwise, and numpy's global generator swapped for a PCG64.
    monkeypatch.setattr(seeding, "_python_state_offset", lambda: None)
    original = np.random.get_bit_generator()
    np.random.set_bit_generator(np.random.PCG64(5))
    try:
        dataset = Draws(("numpy", "python"), odd_only=True)
        before = (random.getstate(), repr(np.random.get_state(legacy=False)))
        view = SeededView(dataset, epoch_order(len(dataset), seed=SEED, epoch=EPOCH), seed=SEED, epoch=EPOCH)
        first, again = view.load([0, 1, 2, 3]), view.load([0, 1, 2, 3])
        assert first == again and view.seeded == {"numpy", "python"}
        assert (random.getstate(), repr(np.random.get_state(legacy=False))) == before
    finally:
        np.random.set_bit_generator(original)


def test_training_on_a_dataset_drawing_from_numpy_and_python_resumes_bit_identically(tmp_path):
    class Regression(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))

        def __len__(self) -> int:
            return 32

        def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.x[index]
            if index % 3 == 0:  # an augmentation that only some samples get
                x = x * (1 + 0.1 * float(np.random.standard_normal())) + random.random()
            return x, x.sum(dim=0, keepdim=True)

    def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return nn.functional.mse_loss(model(batch[0]), batch[1])

    def run(folder: str, stop: int | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
        config = TrainConfig(epochs=2, batch_size=4, precision="fp32", lr=0.05)
        train(model, Regression(), loss, config, checkpointer=Checkpointer(tmp_path / folder, every_minutes=60),
              clock=StopAfter(stop), progress=False, plot=False)
        return {k: v.clone() for k, v in model.state_dict().items()}

    whole = run("a", None)
    run("b", 5)
    np.random.seed(7)
    random.seed(7)
    resumed = run("b", None)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
