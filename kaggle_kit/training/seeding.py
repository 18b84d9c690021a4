"""Seeds and the global random generators: derived seeds, seeding everything, and leaving the generators untouched.

A resumed run is bit-identical to an uninterrupted one only if nothing outside the loop draws from the global
generators between the restore and the first step; :func:`preserved_random_state` lets data loading and trial steps
(the budget's) run without moving them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["mix_seed", "seed_everything", "preserved_random_state"]


def mix_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers, stable across processes, machines and Python versions."""
    digest = hashlib.blake2b(b",".join(str(int(p)).encode() for p in parts), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def seed_everything(seed: int) -> None:
    """Seeds Python, numpy and torch (all devices), e.g. before building a model."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def preserved_random_state(*, cuda_devices: Sequence[torch.device | int] = ()) -> Iterator[None]:
    """Restores the torch (CPU and ``cuda_devices``), numpy and Python generators on exit, whatever ran inside."""
    torch_state = torch.get_rng_state()
    cuda_states = [(device, torch.cuda.get_rng_state(device)) for device in cuda_devices]
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        for device, state in cuda_states:
            torch.cuda.set_rng_state(state, device)
        random.setstate(py_state)
        np.random.set_state(np_state)
