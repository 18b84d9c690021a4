"""Training on several processes: :func:`train` in each DDP rank, and one call that trains as a device plan says."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kaggle_kit.checkpoint import Checkpointer, run_id_for
from kaggle_kit.errors import DistributedError
from kaggle_kit.guard.accelerator import DevicePlan
from kaggle_kit.guard.ddp import RankContext, launch
from kaggle_kit.mirror import DatasetMirror
from kaggle_kit.training.config import TrainResult
from kaggle_kit.training.loop import train

__all__ = ["train_on_ranks", "train_with_plan", "checkpointer_for_rank", "RankOutcome", "train_rank_with_weights"]


def checkpointer_for_rank(
    rank: int, *, directory: str | os.PathLike[str], mirror: str | None = None, **options: Any
) -> Checkpointer:
    """A :class:`kaggle_kit.checkpoint.Checkpointer`; rank 0 alone gets the :class:`DatasetMirror` of ``mirror``.

    ``functools.partial(checkpointer_for_rank, directory=..., mirror=...)`` is the ``checkpointer`` to pass to
    :func:`train_with_plan` under DDP. ``options`` go to the Checkpointer (``run_name``, ``run_id``,
    ``resume_inputs``, ``resume_from``, ``keep``, ...).
    """
    dataset_mirror = DatasetMirror(mirror) if mirror and rank == 0 else None
    if mirror and rank != 0 and options.get("run_id") is None:
        # Only rank 0 mirrors, but every rank names the run as rank 0 does.
        options["run_id"] = run_id_for(mirror_handle=mirror, run_name=options.pop("run_name", None))
    return Checkpointer(directory, mirror=dataset_mirror, restore_only=rank != 0, **options)


def train_on_ranks(ctx: RankContext, *, model: nn.Module, **kwargs: Any) -> TrainResult:
    """Per-rank entry for :func:`kaggle_kit.guard.ddp.launch`: :func:`train` on the rank's device."""
    # Spawn hands tensors over in shared memory: without a private copy every rank would step the same weights.
    return train(copy.deepcopy(model), device=ctx.device, **kwargs)


@dataclass
class RankOutcome:
    """What a DDP rank hands back to :func:`train_with_plan`.

    Attributes:
        result: The rank's :class:`TrainResult`.
        final_weights: Rank 0's ``state_dict`` at the end of training, on the CPU; None on the other ranks.
    """

    result: TrainResult
    final_weights: dict[str, torch.Tensor] | None


def train_rank_with_weights(ctx: RankContext, *, model: nn.Module, **kwargs: Any) -> RankOutcome:
    """Per-rank entry of :func:`train_with_plan`: :func:`train_on_ranks`, and rank 0's final weights."""
    rank_model = copy.deepcopy(model)
    result = train(rank_model, device=ctx.device, **kwargs)
    weights = None
    if ctx.is_main:
        weights = {name: value.detach().cpu() for name, value in rank_model.state_dict().items()}
    return RankOutcome(result, weights)


def train_with_plan(plan: DevicePlan, *, model: nn.Module, **kwargs: Any) -> TrainResult:
    """Trains as a :class:`kaggle_kit.guard.accelerator.DevicePlan` says: one process, or DDP over its ranks.

    Either way ``model`` holds the final weights afterwards (the weights of the last step, as one process leaves
    them; the best epoch's are in the checkpoint folder): under DDP the ranks train copies, and rank 0's weights are
    loaded back into ``model``, which stays on the device it was on.

    Args:
        plan: The device plan (``world_size``, ``backend``, ``device_type``).
        model: The model to train.
        **kwargs: The other arguments of :func:`train`. Under DDP they must pickle: module-level functions (not
            notebook cells), and ``checkpointer`` as a ``factory(rank)``.

    Returns:
        Rank 0's result.
    """
    if plan.world_size > 1:
        outcome = launch(train_rank_with_weights, world_size=plan.world_size, backend=plan.backend,
                         kwargs={"model": model, **kwargs})[0]
        if outcome.final_weights is None:
            raise DistributedError("DDP rank 0 returned no weights, so the trained model cannot be handed back")
        model.load_state_dict(outcome.final_weights)
        return outcome.result
    return train(model, device=torch.device(plan.device_type), **kwargs)
