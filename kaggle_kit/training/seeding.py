"""Seeds and the global random generators: derived seeds, seeding everything, and leaving the generators untouched.

A resumed run is bit-identical to an uninterrupted one only if nothing outside the loop draws from the global
generators between the restore and the first step; :func:`preserved_random_state` lets data loading and trial steps
(the budget's) run without moving them.

The data order seeds the generators a dataset draws from before each sample, and must find out which ones those are
around every batch without slowing a step down: :class:`GeneratorSnapshot` takes a cheap snapshot of the global torch
(CPU), numpy and Python generators, tells which of them were drawn from since, and rewinds those.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import random
import struct
import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["mix_seed", "seed_everything", "preserved_random_state", "GENERATORS", "seed_generators",
           "capture_generators", "restore_generators", "GeneratorSnapshot"]

GENERATORS = ("torch", "numpy", "python")
_MT19937_WORDS = 624
_MT19937_STATE_BYTES = 4 * _MT19937_WORDS + 4  # numpy's mt19937_state: uint32 key[624]; int pos
# The generator behind random.random(), random.shuffle() and the other module functions.
_PYTHON_GENERATOR: random.Random = random.random.__self__  # type: ignore[attr-defined]


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


def seed_generators(seed: int, generators: Collection[str]) -> None:
    """Seeds the named global generators (``torch``: the CPU one; ``numpy``; ``python``)."""
    if "torch" in generators:
        # Not torch.manual_seed: that also seeds every CUDA device, which costs ~0.2 ms and moves the GPU's stream.
        torch.default_generator.manual_seed(seed)
    if "numpy" in generators:
        np.random.seed(seed % 2**32)
    if "python" in generators:
        random.seed(seed)


def capture_generators(generators: Collection[str]) -> dict[str, Any]:
    """The full states of the named global generators, for :func:`restore_generators`."""
    states: dict[str, Any] = {}
    if "torch" in generators:
        states["torch"] = torch.get_rng_state()
    if "numpy" in generators:
        states["numpy"] = np.random.get_state(legacy=False)  # a dict, whatever the bit generator
    if "python" in generators:
        states["python"] = random.getstate()
    return states


def restore_generators(states: Mapping[str, Any]) -> None:
    """Puts back the states :func:`capture_generators` took."""
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "numpy" in states:
        np.random.set_state(states["numpy"])
    if "python" in states:
        random.setstate(states["python"])


def _numpy_raw_state() -> bytes | None:
    """The global MT19937's key and position, read in place (0.5 us, where ``get_state`` takes ~100 us)."""
    bit_generator = np.random.get_bit_generator()
    if not isinstance(bit_generator, np.random.MT19937):
        return None
    return ctypes.string_at(bit_generator.ctypes.state_address, _MT19937_STATE_BYTES)


@functools.lru_cache(maxsize=1)
def _python_state_offset() -> int | None:
    """Where CPython keeps a ``random.Random``'s position and key inside the object (``int index; uint32_t
    state[624]`` after the object header), so that they can be read in 1 us where ``getstate`` takes ~20 us; None
    where this interpreter lays them out otherwise, as checked against ``getstate`` on probe generators."""
    offset = object.__basicsize__
    if random.Random.__base__.__basicsize__ < offset + _MT19937_STATE_BYTES:
        return None
    for seed in (1, 2):
        probe = random.Random(seed)
        for _ in range(seed * 100):
            probe.random()
        if _python_state_from_raw(ctypes.string_at(id(probe) + offset, _MT19937_STATE_BYTES), None) \
                != probe.getstate():
            return None
    return offset


def _python_raw_state() -> bytes | tuple[Any, ...]:
    """The global Python generator's state: read in place as bytes where that is safe, else ``getstate()``."""
    offset = _python_state_offset()
    if offset is None:
        return random.getstate()
    return ctypes.string_at(id(_PYTHON_GENERATOR) + offset, _MT19937_STATE_BYTES)


def _python_state_from_raw(raw: bytes, gauss_next: float | None) -> tuple[Any, ...]:
    index = int.from_bytes(raw[:4], sys.byteorder, signed=True)
    key = struct.unpack(f"={_MT19937_WORDS}I", raw[4:])
    return random.Random.VERSION, (*key, index), gauss_next


class GeneratorSnapshot:
    """A cheap snapshot of the global generators: which were drawn from since, and rewinding those.

    Taking one and asking :meth:`drawn` costs a few microseconds, because the Mersenne Twister states of numpy and
    Python are read in place as bytes (numpy's through its ctypes interface, Python's where CPython's layout checks
    out) instead of through ``get_state``/``getstate`` (~100 us and ~20 us). Numpy's legacy cached Gaussian is not
    in the bytes: a rewind restores it as :meth:`take` was told it is (``numpy_gauss``).
    """

    def __init__(self, torch_state: torch.Tensor, numpy_state: bytes | dict[str, Any],
                 python_state: bytes | tuple[Any, ...], python_gauss: float | None,
                 numpy_gauss: tuple[int, float]) -> None:
        self.torch_state = torch_state
        self.torch_bytes = torch_state.numpy().tobytes()
        self.numpy_state = numpy_state
        self.python_state = python_state
        self.python_gauss = python_gauss
        self.numpy_gauss = numpy_gauss

    @classmethod
    def take(cls, *, numpy_gauss: tuple[int, float] | None = None) -> GeneratorSnapshot:
        """Snapshots all three generators.

        Args:
            numpy_gauss: numpy's (has_gauss, cached Gaussian) when known; None reads them (the slow full state).
        """
        raw = _numpy_raw_state()
        numpy_state: bytes | dict[str, Any]
        if raw is None or numpy_gauss is None:
            full = np.random.get_state(legacy=False)
            numpy_gauss = (int(full["has_gauss"]), float(full["gauss"]))
            numpy_state = raw if raw is not None else full
        else:
            numpy_state = raw
        return cls(torch.get_rng_state(), numpy_state, _python_raw_state(), _PYTHON_GENERATOR.gauss_next,
                   numpy_gauss or (0, 0.0))

    def drawn(self) -> set[str]:
        """The generators drawn from (or reseeded) since the snapshot."""
        changed = set()
        if torch.get_rng_state().numpy().tobytes() != self.torch_bytes:
            changed.add("torch")
        if isinstance(self.numpy_state, bytes):
            if _numpy_raw_state() != self.numpy_state:
                changed.add("numpy")
        elif repr(np.random.get_state(legacy=False)) != repr(self.numpy_state):  # another bit generator
            changed.add("numpy")
        if _python_raw_state() != self.python_state or _PYTHON_GENERATOR.gauss_next != self.python_gauss:
            changed.add("python")
        return changed

    def rewind(self, generators: Collection[str]) -> None:
        """Puts the named generators back as they were at the snapshot."""
        if "torch" in generators:
            torch.set_rng_state(self.torch_state)
        if "numpy" in generators:
            np.random.set_state(self.full_numpy_state())
        if "python" in generators:
            state = self.python_state
            random.setstate(_python_state_from_raw(state, self.python_gauss) if isinstance(state, bytes) else state)

    def full_numpy_state(self) -> tuple[Any, ...] | dict[str, Any]:
        """The state for ``np.random.set_state``."""
        if not isinstance(self.numpy_state, bytes):
            return self.numpy_state
        key = np.frombuffer(self.numpy_state, dtype=np.uint32, count=_MT19937_WORDS).copy()
        pos = int.from_bytes(self.numpy_state[4 * _MT19937_WORDS:], sys.byteorder, signed=True)
        return ("MT19937", key, pos, *self.numpy_gauss)
