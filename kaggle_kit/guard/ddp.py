"""Run a training function data-parallel: one process per GPU (NCCL), or per simulated GPU on the CPU (gloo).

Semantics a single-device run keeps under :func:`launch` (the training loop's side of the contract):

- The global batch stays as configured: each rank takes ``global_batch // world_size`` samples per step
  (:func:`shard_batch_size` refuses a global batch that does not split evenly).
- The same learning rate and the same number of epochs; DDP averages gradients over ranks, so with a mean loss the
  update equals the single-process update on the whole global batch.
- Every rank walks the same deterministic order (same seed) and takes every ``world_size``-th sample of it, as
  ``torch.utils.data.DistributedSampler`` does (:func:`shard_indices`).
- Only rank 0 writes checkpoints, mirrors them and prints (``RankContext.is_main``); the other ranks must not.

From a notebook the function must live in an importable module (a ``.py`` file of the project): spawned processes
import it by name and cannot see functions defined in notebook cells.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from kaggle_kit.errors import AcceleratorError, ConfigError, DistributedError
from kaggle_kit.fileio import atomic_writer
from kaggle_kit.guard.clock import SESSION_START_ENV, SessionClock

BACKENDS = ("nccl", "gloo")
T = TypeVar("T")

__all__ = ["RankContext", "launch", "shard_batch_size", "shard_indices", "free_port"]


@dataclass(frozen=True)
class RankContext:
    """What a training function needs to know about its place in the group.

    Attributes:
        rank: This process's rank, 0..world_size-1.
        world_size: Number of processes.
        backend: ``"nccl"`` or ``"gloo"``.
        device: ``"cuda:<rank>"`` under NCCL, else ``"cpu"``.
    """

    rank: int
    world_size: int
    backend: str
    device: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that checkpoints, mirrors and prints."""
        return self.rank == 0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shard_batch_size(global_batch: int, world_size: int) -> int:
    """Per-rank batch that keeps the global batch.

    Raises:
        ConfigError: the global batch does not split evenly over the ranks.
    """
    if global_batch < world_size or global_batch % world_size:
        raise ConfigError(f"global batch {global_batch} does not split evenly over {world_size} processes: set the "
                          f"batch size to a multiple of {world_size}")
    return global_batch // world_size


def shard_indices(indices: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's share of a deterministic order: every ``world_size``-th item from ``rank``."""
    return list(indices[rank::world_size])


def _check_importable(fn: Callable[..., Any]) -> None:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if module in (None, "__main__") or "<locals>" in qualname or "<lambda>" in qualname:
        where = "a notebook cell or the main script" if module in (None, "__main__") else "inside another function"
        raise ConfigError(
            f"training function {qualname or fn!r} is defined in {where}, so the DDP worker processes cannot import "
            "it. Move it to a module of the project (e.g. src/train.py), import it from there, and pass that.")


def _worker(rank: int, fn: Callable[..., Any], world_size: int, backend: str, port: int, out_dir: str,
            args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    device = "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    try:
        result = fn(RankContext(rank, world_size, backend, device), *args, **kwargs)
        # Write then rename: the launcher must never read a half-written result of a rank that died mid-write.
        with atomic_writer(os.path.join(out_dir, f"rank{rank}.pkl")) as fh:
            pickle.dump(result, fh)
        # No rank tears its connections down while a peer may still be talking to it (gloo aborts on that).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _read_results(out_dir: str, world_size: int) -> list[Any] | None:
    """Every rank's result, or None when any rank has not written one."""
    paths = [Path(out_dir) / f"rank{rank}.pkl" for rank in range(world_size)]
    if not all(path.exists() for path in paths):
        return None
    results = []
    for path in paths:
        with open(path, "rb") as fh:
            results.append(pickle.load(fh))
    return results


def launch(fn: Callable[..., T], *, world_size: int, backend: str, args: Sequence[Any] = (),
           kwargs: dict[str, Any] | None = None) -> list[T]:
    """Run ``fn(ctx, *args, **kwargs)`` once per rank with ``torch.multiprocessing`` spawn, and wait for all.

    The process group is set up before ``fn`` runs (``MASTER_ADDR=127.0.0.1``, a free port, the given backend) and torn
    down after. ``world_size == 1`` runs ``fn`` in this process with no process group, so the same training function
    serves both cases.

    Args:
        fn: A module-level function taking a :class:`RankContext` first. Must be importable (not from ``__main__``).
        world_size: Number of processes (one per GPU).
        backend: ``"nccl"`` for CUDA devices, ``"gloo"`` for CPU.
        args: Positional arguments after the context; must pickle.
        kwargs: Keyword arguments; must pickle.

    Returns:
        Each rank's return value, rank 0 first (return values must pickle).

    Raises:
        ConfigError: ``fn`` is not importable, or ``world_size``/``backend`` is invalid.
        AcceleratorError: NCCL was asked for with fewer CUDA devices than ranks.
        DistributedError: A rank died (a signal or ``os._exit``) before every rank had returned its result. A crash
            while shutting down after that only warns: the results are complete.
    """
    kwargs = dict(kwargs or {})
    if world_size < 1:
        raise ConfigError(f"world_size {world_size} must be at least 1")
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}: nccl on GPUs, gloo on CPU")
    if world_size == 1:
        device = "cuda:0" if backend == "nccl" else "cpu"
        return [fn(RankContext(0, 1, backend, device), *args, **kwargs)]
    _check_importable(fn)
    import torch
    import torch.multiprocessing as mp

    if backend == "nccl" and torch.cuda.device_count() < world_size:
        raise AcceleratorError(f"NCCL with {world_size} processes needs {world_size} CUDA devices but torch sees "
                               f"{torch.cuda.device_count()}: use backend 'gloo' on CPU")
    # Ranks inherit the environment: let their session clocks count from this kernel's start, not their own.
    os.environ.setdefault(SESSION_START_ENV, repr(SessionClock.from_environment().start))
    with tempfile.TemporaryDirectory(prefix="kaggle-kit-ddp-") as out_dir:
        try:
            mp.spawn(_worker, args=(fn, world_size, backend, free_port(), out_dir, tuple(args), kwargs),
                     nprocs=world_size, join=True)
        except mp.ProcessExitedException as exc:
            how = f"with signal {exc.signal_name}" if exc.signal_name else f"with exit code {exc.exit_code}"
            results = _read_results(out_dir, world_size)
            if results is None:
                raise DistributedError(
                    f"DDP rank {exc.error_index} (pid {exc.error_pid}) died {how} before every rank had returned its "
                    "result, and the other ranks were stopped. A SIGKILL is usually the host running out of memory "
                    "(lower the batch size); see the rank's output above for anything else. If the run checkpoints, "
                    "running it again resumes from the last checkpoint.") from None
            # Every rank finished its work; a crash in process-group teardown must not throw the results away.
            warnings.warn(f"DDP rank {exc.error_index} died {how} while shutting down, after every rank had "
                          "returned its result; the results are complete", RuntimeWarning, stacklevel=2)
            return results
        results = _read_results(out_dir, world_size)
    if results is None:
        raise DistributedError(f"the {world_size} DDP ranks exited cleanly but not all wrote a result")
    return results
