"""Memory smoke test: one forward and backward at the planned batch before the run starts, and the largest batch
that fits when the planned one does not.

On a CUDA device the peak is ``torch.cuda.max_memory_allocated`` and an out-of-memory error is the real one. On the
CPU (tests, the sandbox's simulated GPUs) the same search runs against a simulated device: every tensor an operator
allocates during the step is counted while it lives (a dispatch mode sees each allocation, a weak reference each
release), on top of the tensors that already existed (parameters, inputs), and exceeding the limit raises
:class:`SimulatedOutOfMemoryError` at the allocation that crosses it, as a real allocator would.

The search follows Lightning's batch-size finder in ``binsearch`` mode: halve from the planned batch until a step
fits, then bisect between the largest batch that fits and the smallest that does not.
"""

from __future__ import annotations

import gc
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from kaggle_kit.errors import AcceleratorError, ConfigError

ON_OOM = ("accumulate", "suggest")

__all__ = ["BatchSizeResult", "MemoryProbe", "SimulatedOutOfMemoryError", "find_batch_size", "measure_step"]


class SimulatedOutOfMemoryError(RuntimeError):
    """The simulated device ran out of memory (CPU runs only)."""


@dataclass(frozen=True)
class MemoryProbe:
    """One trial step: its batch, whether it fit, and its peak (None when it ran out of memory before the end)."""

    batch_size: int
    fits: bool
    peak_bytes: int | None


@dataclass(frozen=True)
class BatchSizeResult:
    """Outcome of the smoke test and search.

    Attributes:
        planned_batch: The configured (global) batch.
        max_batch: Largest batch whose step fits.
        batch_size: Batch per step to use: ``max_batch``'s divisor keeping the global batch under ``"accumulate"``,
            ``max_batch`` itself under ``"suggest"``, the planned batch when it fits.
        accumulation_steps: Gradient accumulation steps; ``batch_size * accumulation_steps == planned_batch`` unless
            ``on_oom="suggest"``.
        limit_bytes: The device memory limit measured against.
        peak_bytes: Peak at ``max_batch`` (or the largest batch measured to the end).
        device: Where the test ran.
        simulated: The limit and out-of-memory were simulated (CPU).
        probes: Every trial, in order.
    """

    planned_batch: int
    max_batch: int
    batch_size: int
    accumulation_steps: int
    limit_bytes: int
    peak_bytes: int | None
    device: str
    simulated: bool
    probes: tuple[MemoryProbe, ...] = field(default=())

    @property
    def fits_planned(self) -> bool:
        return self.max_batch >= self.planned_batch

    def describe(self) -> str:
        peak = f"{self.peak_bytes / 2**20:.0f} MiB" if self.peak_bytes is not None else "?"
        where = f"{self.device}{' (simulated limit)' if self.simulated else ''}"
        if self.fits_planned:
            return f"batch {self.planned_batch} fits on {where}: peak {peak} of {self.limit_bytes / 2**20:.0f} MiB"
        head = (f"batch {self.planned_batch} does not fit on {where}; largest that fits: {self.max_batch} (peak {peak} "
                f"of {self.limit_bytes / 2**20:.0f} MiB)")
        if self.batch_size * self.accumulation_steps == self.planned_batch:
            return (f"{head}; use batch {self.batch_size} with {self.accumulation_steps} gradient accumulation steps "
                    f"(global batch {self.planned_batch} kept)")
        return f"{head}; suggested batch {self.batch_size} (the global batch changes: scale the learning rate)"


class _AllocationTracker:
    """Counts the bytes of tensors allocated by operators while they live, plus the tensors they read."""

    def __init__(self, limit_bytes: int) -> None:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self
        self.limit = limit_bytes
        self.allocated: dict[int, list[int]] = {}  # storage address -> [bytes, live tensor objects]
        self.resident: dict[int, int] = {}  # storages that existed before the step (parameters, inputs)
        self.current = 0
        self.peak = 0
        self.exceeded = False

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                for value in (*args, *(kwargs or {}).values()):
                    if isinstance(value, torch.Tensor):
                        tracker.note_resident(value)
                out = func(*args, **(kwargs or {}))
                for value in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(value, torch.Tensor):
                        tracker.note_allocated(value)
                return out

        self.mode = _Mode()

    def _total(self) -> int:
        return self.current + sum(self.resident.values())

    def note_resident(self, tensor: Any) -> None:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key and key not in self.allocated and key not in self.resident:
            self.resident[key] = storage.nbytes()
            self._check()

    def note_allocated(self, tensor: Any) -> None:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if not key or key in self.resident:
            return  # an in-place result or a view of a tensor that existed before
        entry = self.allocated.get(key)
        if entry is None:
            entry = self.allocated[key] = [storage.nbytes(), 0]
            self.current += entry[0]
            self._check()
        entry[1] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.allocated.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.allocated[key]

    def _check(self) -> None:
        total = self._total()
        self.peak = max(self.peak, total)
        if total > self.limit and not self.exceeded:
            self.exceeded = True
            raise SimulatedOutOfMemoryError(f"simulated device out of memory: {total} bytes > limit {self.limit}")


def _is_cuda(device: Any) -> bool:
    return str(device).startswith("cuda")


def measure_step(step: Callable[[], object], *, device: Any = "cpu", limit_bytes: int) -> MemoryProbe:
    """Run ``step`` once and report whether it fit ``limit_bytes`` and its peak; batch size left 0 for the caller."""
    import torch

    if _is_cuda(device):
        torch.cuda.synchronize(device)
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            step()
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError:
            return MemoryProbe(0, False, None)
        finally:
            gc.collect()
            torch.cuda.empty_cache()
        peak = int(torch.cuda.max_memory_allocated(device))
        return MemoryProbe(0, peak <= limit_bytes, peak)
    tracker = _AllocationTracker(limit_bytes)
    try:
        with tracker.mode:
            step()
    except Exception:
        # The autograd engine re-raises errors from backward as its own RuntimeError: trust the tracker's flag.
        if not tracker.exceeded:
            raise
        return MemoryProbe(0, False, None)
    return MemoryProbe(0, True, tracker.peak)


def _default_limit(device: Any) -> tuple[int, bool]:
    import torch

    if _is_cuda(device):
        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory), False
    from kaggle_kit.guard.accelerator import detect_accelerator

    info = detect_accelerator()
    if info.simulated and info.count:
        return info.memory_bytes[0], True
    raise ConfigError("a memory test on the CPU needs a limit: pass memory_limit_bytes, or set "
                      "KAGGLE_KIT_SIM_ACCELERATOR to simulate a GPU (e.g. T4 for 15 GiB)")


def find_batch_size(step_fn_factory: Callable[[int], Callable[[], object]], *, planned_batch: int,
                    memory_limit_bytes: int | None = None, device: Any = "cpu",
                    on_oom: str = "accumulate") -> BatchSizeResult:
    """Smoke-test the planned batch and, when it does not fit, find the largest batch that does.

    Args:
        step_fn_factory: ``factory(batch_size) -> step``; ``step()`` runs one forward and backward at that batch and
            the real input size, under AMP when the run uses it; it should start with
            ``model.zero_grad(set_to_none=True)`` so a failed trial's gradients do not count against the next.
        planned_batch: The configured batch.
        memory_limit_bytes: The device memory to fit; default the CUDA device's total, or on the CPU the simulated
            accelerator's memory.
        device: ``"cuda:N"`` measures the real device; ``"cpu"`` runs against the simulated limit.
        on_oom: ``"accumulate"`` keeps the global batch with gradient accumulation (the batch per step divides the
            planned batch); ``"suggest"`` proposes the largest batch that fits, changing the global batch.

    Raises:
        ConfigError: bad arguments.
        AcceleratorError: not even a batch of 1 fits.
    """
    if planned_batch < 1:
        raise ConfigError(f"planned batch {planned_batch} must be at least 1")
    if on_oom not in ON_OOM:
        raise ConfigError(f"on_oom={on_oom!r} is not one of {', '.join(ON_OOM)}")
    simulated = not _is_cuda(device)
    if memory_limit_bytes is None:
        limit, simulated = _default_limit(device)
    else:
        limit = int(memory_limit_bytes)
    probes: list[MemoryProbe] = []

    def trial(batch: int) -> MemoryProbe:
        probe = measure_step(step_fn_factory(batch), device=device, limit_bytes=limit)
        probe = MemoryProbe(batch, probe.fits, probe.peak_bytes)
        probes.append(probe)
        return probe

    first = trial(planned_batch)
    best: MemoryProbe | None = first if first.fits else None
    failing = None if first.fits else planned_batch
    while best is None:
        batch = failing // 2 if failing else 0
        if batch < 1:
            raise AcceleratorError(
                f"not even a batch of 1 fits in {limit / 2**30:.1f} GiB on {device}: lower the input size, enable "
                "mixed precision (AMP), or choose an accelerator with more memory")
        probe = trial(batch)
        if probe.fits:
            best = probe
        else:
            failing = batch
    if failing is not None:
        low, high = best.batch_size, failing
        while high - low > 1:
            probe = trial((low + high) // 2)
            if probe.fits:
                best, low = probe, probe.batch_size
            else:
                high = probe.batch_size
    max_batch = best.batch_size
    if max_batch >= planned_batch:
        batch_size, accumulation = planned_batch, 1
    elif on_oom == "suggest":
        batch_size, accumulation = max_batch, 1
    else:
        accumulation = next(k for k in range(math.ceil(planned_batch / max_batch), planned_batch + 1)
                            if planned_batch % k == 0)
        batch_size = planned_batch // accumulation
    return BatchSizeResult(planned_batch=planned_batch, max_batch=max_batch, batch_size=batch_size,
                           accumulation_steps=accumulation, limit_bytes=limit, peak_bytes=best.peak_bytes,
                           device=str(device), simulated=simulated, probes=tuple(probes))
