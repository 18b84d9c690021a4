"""Training on several processes: :func:`train` in each DDP rank, and one call that trains as a device plan says."""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn

from kaggle_kit.checkpoint import Checkpointer
from kaggle_kit.guard.accelerator import DevicePlan
from kaggle_kit.guard.ddp import RankContext, launch
from kaggle_kit.mirror import DatasetMirror
from kaggle_kit.training.config import TrainResult
from kaggle_kit.training.loop import train

__all__ = ["train_on_ranks", "train_with_plan", "checkpointer_for_rank"]


def checkpointer_for_rank(
    rank: int, *, directory: str | os.PathLike[str], mirror: str | None = None, **options: Any
) -> Checkpointer:
    """A :class:`kaggle_kit.checkpoint.Checkpointer`; rank 0 alone gets the :class:`DatasetMirror` of ``mirror``.

    ``functools.partial(checkpointer_for_rank, directory=..., mirror=...)`` is the ``checkpointer`` to pass to
    :func:`train_with_plan` under DDP.
    """
    dataset_mirror = DatasetMirror(mirror) if mirror and rank == 0 else None
    return Checkpointer(directory, mirror=dataset_mirror, restore_only=rank != 0, **options)


def train_on_ranks(ctx: RankContext, *, model: nn.Module, **kwargs: Any) -> TrainResult:
    """Per-rank entry for :func:`kaggle_kit.guard.ddp.launch`: :func:`train` on the rank's device."""
    # Spawn hands tensors over in shared memory: without a private copy every rank would step the same weights.
    return train(copy.deepcopy(model), device=ctx.device, **kwargs)


def train_with_plan(plan: DevicePlan, **kwargs: Any) -> TrainResult:
    """Trains as a :class:`kaggle_kit.guard.accelerator.DevicePlan` says: one process, or DDP over its ranks.

    Args:
        plan: The device plan (``world_size``, ``backend``, ``device_type``).
        **kwargs: Arguments of :func:`train`. Under DDP they must pickle: module-level functions (not notebook
            cells), and ``checkpointer`` as a ``factory(rank)``.

    Returns:
        Rank 0's result.
    """
    if plan.world_size > 1:
        return launch(train_on_ranks, world_size=plan.world_size, backend=plan.backend, kwargs=kwargs)[0]
    return train(device=torch.device(plan.device_type), **kwargs)
