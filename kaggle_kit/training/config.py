"""How to train (:class:`TrainConfig`), what a run did (:class:`TrainResult`), and how many steps a run takes.

:func:`steps_per_epoch` is the one place that counts optimizer steps: the loop runs exactly that many per epoch, and
the budget (:func:`kaggle_kit.guard.budget.plan_budget`) estimates the run's time from the same count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit.config import check_constraints, setting
from kaggle_kit.errors import ConfigError

__all__ = ["PRECISIONS", "TrainConfig", "TrainResult", "micro_batches_per_epoch", "steps_per_epoch", "total_steps"]

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """How to train; the schema of the ``train:`` section of a workload's YAML config.

    Attributes:
        epochs: Passes over the training set.
        batch_size: Samples per micro-batch over all DDP ranks together (must divide by the number of ranks).
        grad_accum_steps: Micro-batches per optimizer step.
        seed: Seeds the data order and each sample's augmentation.
        precision: ``fp32``, ``bf16`` or ``fp16``; mixed precision (autocast, plus GradScaler for fp16) on CUDA only.
        lr: Learning rate for :func:`kaggle_kit.training.make_optimizer`.
        weight_decay: Weight decay for :func:`kaggle_kit.training.make_optimizer`.
        optimizer: ``adamw`` or ``sgd`` for :func:`kaggle_kit.training.make_optimizer`.
        scheduler: ``none``, ``cosine`` (per step, with warmup) or ``plateau`` (per epoch, on the monitored metric).
        warmup_steps: Linear warmup for ``cosine``.
        grad_clip_norm: Clip the gradient norm to this value; None for no clipping.
        num_workers: DataLoader worker processes.
        max_steps_per_epoch: Cap on optimizer steps per epoch (quick runs); None for the whole dataset.
        deadline_margin_s: Save and stop when the session has this many seconds left; None (the default) scales it
            with the session and the measured save and step times (see
            :func:`kaggle_kit.guard.clock.deadline_margin`).
        flush_timeout_s: Longest wait at the end for the mirror to confirm the last checkpoint (never past the
            session's end).
        monitor: Metric of ``evaluate`` that picks the best epoch.
        monitor_mode: ``max`` or ``min``.
        log_every_s: Seconds between progress lines in a Batch log.
    """

    epochs: int = setting(1, ge=1)
    batch_size: int = setting(8, ge=1)
    grad_accum_steps: int = setting(1, ge=1)
    seed: int = 0
    precision: str = setting("bf16", choices=PRECISIONS)
    lr: float = setting(3e-4, gt=0)
    weight_decay: float = setting(0.01, ge=0)
    optimizer: str = setting("adamw", choices=("adamw", "sgd"))
    scheduler: str = setting("cosine", choices=("none", "cosine", "plateau"))
    warmup_steps: int = setting(0, ge=0)
    grad_clip_norm: float | None = setting(1.0, gt=0)
    num_workers: int = setting(0, ge=0)
    max_steps_per_epoch: int | None = setting(None, ge=1)
    deadline_margin_s: float | None = setting(None, ge=0)
    flush_timeout_s: float = setting(600.0, ge=0)
    monitor: str = "score"
    monitor_mode: str = setting("max", choices=("max", "min"))
    log_every_s: float = setting(30.0, gt=0)

    def validate(self) -> None:
        """Raises ConfigError naming the first field out of its range (see :func:`kaggle_kit.config.setting`)."""
        check_constraints(self, prefix="train")


@dataclass
class TrainResult:
    """What a call to :func:`kaggle_kit.training.train` did.

    Attributes:
        status: ``finished`` (all epochs done) or ``stopped`` (the session deadline came first; resume later).
        step: Optimizer steps done in total, over all sessions.
        epoch: Epochs completed.
        resumed_from_step: The checkpoint's step this session started from; None for a fresh start.
        steps_this_session: Optimizer steps done by this call.
        history: One record per completed epoch (see ``history.json``).
        best: The best epoch's record by ``monitor``; None without evaluation.
        output_dir: Where history, progress and the figure were written.
    """

    status: str
    step: int
    epoch: int
    resumed_from_step: int | None
    steps_this_session: int
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    output_dir: Path | None


def micro_batches_per_epoch(num_samples: int, config: TrainConfig, world_size: int = 1) -> int:
    """Global micro-batches the loop draws per epoch: whole batches only, capped by ``max_steps_per_epoch``.

    Args:
        num_samples: Samples in the training set.
        config: The training config (``batch_size`` is the global batch over all ranks).
        world_size: DDP ranks; the global batch must divide among them.

    Raises:
        ConfigError: a bad config, the batch does not divide among the ranks, or the training set holds less than
            one batch.
    """
    config.validate()
    if world_size < 1:
        raise ConfigError(f"world_size = {world_size} is invalid: it must be at least 1")
    if config.batch_size % world_size:
        raise ConfigError(
            f"train.batch_size = {config.batch_size} does not divide among {world_size} DDP ranks: "
            f"use a multiple of {world_size}"
        )
    num_micro = num_samples // config.batch_size
    if num_micro == 0:
        raise ConfigError(
            f"the training set has {num_samples} samples, fewer than train.batch_size = {config.batch_size}: "
            "lower the batch size or add data"
        )
    if config.max_steps_per_epoch is not None:
        num_micro = min(num_micro, config.max_steps_per_epoch * config.grad_accum_steps)
    return num_micro


def steps_per_epoch(num_samples: int, config: TrainConfig, world_size: int = 1) -> int:
    """Optimizer steps the loop takes per epoch; the last step of an epoch may group fewer micro-batches.

    Raises:
        ConfigError: as :func:`micro_batches_per_epoch`.
    """
    return math.ceil(micro_batches_per_epoch(num_samples, config, world_size) / config.grad_accum_steps)


def total_steps(num_samples: int, config: TrainConfig, world_size: int = 1) -> int:
    """Optimizer steps of the whole run, all epochs and sessions together (the cosine schedule's length).

    Raises:
        ConfigError: as :func:`micro_batches_per_epoch`.
    """
    return steps_per_epoch(num_samples, config, world_size) * config.epochs
