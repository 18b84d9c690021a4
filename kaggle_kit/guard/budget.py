"""The training budget, asked once before the run: does the batch fit the device's memory, and does the rest of the
run fit the session and the GPU quota?

:func:`plan_budget` runs the memory smoke test (:func:`kaggle_kit.guard.memory.find_batch_size`), keeping the global
batch with gradient accumulation when the batch must shrink; times whole optimizer steps as the loop takes them
(every micro-batch's forward and backward, then the optimizer step, through
:class:`kaggle_kit.training.step.OptimizerStep`); counts the steps the loop will still run with
:func:`kaggle_kit.training.config.steps_per_epoch`; and asks :func:`kaggle_kit.guard.fit.check_fit` whether that
many steps, plus validation, fit.

Every trial runs on a copy of the model with the random generators restored afterwards, so planning the budget
changes neither the weights that train nor the random streams a resumed run must reproduce.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.utils.data import default_collate

from kaggle_kit.errors import ConfigError
from kaggle_kit.guard.accelerator import AcceleratorInfo, DevicePlan, detect_accelerator, plan_devices
from kaggle_kit.guard.clock import SessionClock
from kaggle_kit.guard.fit import DEFAULT_UPLOAD_MARGIN_S, FitVerdict, check_fit
from kaggle_kit.guard.memory import ON_OOM, BatchSizeResult, find_batch_size
from kaggle_kit.guard.quota import QuotaStatus, current_quota
from kaggle_kit.training.config import TrainConfig, steps_per_epoch, total_steps
from kaggle_kit.training.data_order import SeededView, epoch_order
from kaggle_kit.training.objectives import EvaluateFn, LossFn
from kaggle_kit.training.seeding import preserved_random_state
from kaggle_kit.training.step import (
    OptimizerFactory,
    OptimizerStep,
    SchedulerFactory,
    evaluate_model,
    move_to_device,
)

__all__ = ["BudgetPlan", "ResumePoint", "plan_budget"]


class ResumePoint(Protocol):
    """Where a resumed run continues (:class:`kaggle_kit.checkpoint.Restored` has both)."""

    step: int  # optimizer steps done, over all sessions
    epoch: int  # the epoch in progress (epochs completed)


@dataclass(frozen=True)
class BudgetPlan:
    """What :func:`plan_budget` decided.

    Attributes:
        config: The config to train with: the planned one, or with a smaller batch and more accumulation steps
            when the planned batch does not fit the device's memory.
        memory: The memory smoke test; None when it was not run (the CPU without a simulated GPU).
        fit: Whether the rest of the run fits the session and the quota, and the ways out when it does not.
        steps_per_epoch: Optimizer steps per epoch under ``config``.
        steps_left: Optimizer steps the loop will still run, this session and later ones.
        evaluations_left: Validations still to run (one per epoch).
        eval_s: Measured seconds of one validation; 0 without ``evaluate``.
    """

    config: TrainConfig
    memory: BatchSizeResult | None
    fit: FitVerdict
    steps_per_epoch: int
    steps_left: int
    evaluations_left: int
    eval_s: float

    def describe(self) -> str:
        memory = self.memory.describe() if self.memory is not None else "memory not tested (no GPU, real or simulated)"
        batch = (f"batch {self.config.batch_size} x {self.config.grad_accum_steps} accumulation step(s), "
                 f"{self.steps_per_epoch} steps per epoch, {self.steps_left} steps and {self.evaluations_left} "
                 f"validation(s) of {self.eval_s:.1f} s left")
        return "\n".join((memory, batch, self.fit.describe()))


class _TrialBatches:
    """Micro-batches for trial steps, drawn as the loop draws epoch 0's and loaded under seeded generators."""

    def __init__(self, dataset: Any, config: TrainConfig, device: torch.device,
                 collate_fn: Callable[[list[Any]], Any] | None) -> None:
        order = epoch_order(len(dataset), seed=config.seed, epoch=0)
        self.view = SeededView(dataset, order, seed=config.seed, epoch=0)
        self.device = device
        self.collate = collate_fn or default_collate
        self.position = 0

    def next(self, size: int) -> Any:
        """The next ``size`` samples of the order (wrapping around), collated and on the device."""
        positions = [(self.position + i) % len(self.view) for i in range(size)]
        self.position += size
        return move_to_device(self.collate(self.view.load(positions)), self.device)


def _device_for(plan: DevicePlan) -> torch.device:
    return torch.device("cuda:0" if plan.device_type == "cuda" else "cpu")


def _resume_position(resume_from: ResumePoint | None, *, epoch_steps: int, config: TrainConfig) -> tuple[int, int]:
    """(epochs completed, steps done in the epoch in progress) of a resumed run; (0, 0) for a fresh one."""
    if resume_from is None:
        return 0, 0
    epoch, step = int(resume_from.epoch), int(resume_from.step)
    done_in_epoch = step - epoch * epoch_steps
    if not 0 <= epoch <= config.epochs or not 0 <= done_in_epoch <= epoch_steps:
        raise ConfigError(
            f"the checkpoint to resume (step {step}, epoch {epoch + 1}) does not match this plan of {config.epochs} "
            f"epoch(s) of {epoch_steps} steps (batch {config.batch_size} x {config.grad_accum_steps} accumulation "
            "steps): resume with the batch size, accumulation and dataset it was trained with, or start afresh"
        )
    return epoch, done_in_epoch


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def plan_budget(
    model: nn.Module,
    dataset: Any,
    loss_fn: LossFn,
    config: TrainConfig,
    *,
    plan: DevicePlan | None = None,
    accelerator: AcceleratorInfo | None = None,
    evaluate: EvaluateFn | None = None,
    resume_from: ResumePoint | None = None,
    clock: SessionClock | None = None,
    quota: QuotaStatus | Literal["current"] | None = "current",
    on_memory_shortfall: str = "accumulate",
    memory_limit_bytes: int | None = None,
    optimizer_factory: OptimizerFactory | None = None,
    scheduler_factory: SchedulerFactory | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    warmup_steps: int = 1,
    timed_steps: int = 3,
    upload_margin_s: float = DEFAULT_UPLOAD_MARGIN_S,
    burn_rates: Mapping[str, float] | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> BudgetPlan:
    """Fits the batch to the device's memory, times the real optimizer step, and checks the run fits.

    Takes the arguments :func:`kaggle_kit.training.train` will get, so it measures the step that will run.

    Args:
        model: The model to train; only a copy is stepped.
        dataset: The training set (map-style); trial batches are loaded from it as the loop loads them.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``, as for :func:`kaggle_kit.training.train`.
        config: The planned training config.
        plan: The device plan (the preflight's ``device_plan``); default ``plan_devices("auto", accelerator)``.
            Trials run on its first device at the per-rank batch; under DDP the ranks step in parallel, and the
            gradient all-reduce between them is not timed.
        accelerator: The detected accelerator (the preflight's ``accelerator``); default detected now.
        evaluate: The per-epoch validation, timed once; None for none.
        resume_from: The restored checkpoint (``step`` and ``epoch``) when resuming, so only the steps left count.
        clock: The session clock; default :meth:`SessionClock.from_environment`.
        quota: The GPU quota; ``"current"`` asks :func:`kaggle_kit.guard.quota.current_quota`; None ignores it.
        on_memory_shortfall: ``"accumulate"`` keeps the global batch with gradient accumulation when the batch
            must shrink; ``"suggest"`` only reports the largest batch that fits and keeps the config.
        memory_limit_bytes: The device memory to fit; default the CUDA device's, or the simulated GPU's.
        optimizer_factory: As for :func:`kaggle_kit.training.train`.
        scheduler_factory: As for :func:`kaggle_kit.training.train`.
        collate_fn: As for :func:`kaggle_kit.training.train`.
        warmup_steps: Untimed optimizer steps before timing.
        timed_steps: Timed optimizer steps; their median is the step time.
        upload_margin_s: Kept free for the final checkpoint upload.
        burn_rates: Per-accelerator quota burn rates overriding the defaults.
        timer: Seconds, monotonic; tests pass a fake clock.

    Raises:
        ConfigError: a bad config, a dataset smaller than one batch, a bad ``on_memory_shortfall``, or a checkpoint
            that does not match the plan.
        AcceleratorError: not even a batch of 1 fits the device's memory.
    """
    if on_memory_shortfall not in ON_OOM:
        raise ConfigError(f"on_memory_shortfall = {on_memory_shortfall!r} is invalid: use one of {', '.join(ON_OOM)}")
    if isinstance(quota, str) and quota != "current":
        raise ConfigError(f"quota = {quota!r} is invalid: pass a QuotaStatus, 'current' or None")
    if plan is None:
        accelerator = accelerator if accelerator is not None else detect_accelerator()
        plan = plan_devices("auto", accelerator)
    world = max(1, plan.world_size)
    steps_per_epoch(len(dataset), config, world)  # a bad config or a tiny dataset fails before any trial
    device = _device_for(plan)
    if device.type == "cuda" or memory_limit_bytes is not None:
        test_memory = True
    else:
        accelerator = accelerator if accelerator is not None else detect_accelerator()
        test_memory = accelerator.simulated and accelerator.count > 0
    with preserved_random_state(cuda_devices=[device] if device.type == "cuda" else []):
        probe = copy.deepcopy(model).to(device).train()
        step = OptimizerStep.create(probe, config, device, total_steps=total_steps(len(dataset), config, world),
                                    optimizer_factory=optimizer_factory, scheduler_factory=scheduler_factory)
        batches = _TrialBatches(dataset, config, device, collate_fn)
        memory = None
        if test_memory:
            memory = _test_memory(step, loss_fn, batches, config=config, world=world, device=device,
                                  on_memory_shortfall=on_memory_shortfall, memory_limit_bytes=memory_limit_bytes)
            if not memory.fits_planned and on_memory_shortfall == "accumulate":
                config = dataclasses.replace(config, batch_size=memory.batch_size * world,
                                             grad_accum_steps=config.grad_accum_steps * memory.accumulation_steps)
        epoch_steps = steps_per_epoch(len(dataset), config, world)
        epochs_done, done_in_epoch = _resume_position(resume_from, epoch_steps=epoch_steps, config=config)
        eval_s = 0.0
        if evaluate is not None:
            started = timer()
            evaluate_model(evaluate, probe, step.autocast)
            eval_s = timer() - started
        optimizer_step = _optimizer_step(step, loss_fn, batches, config=config, world=world)
        fit = check_fit(optimizer_step, steps_per_epoch=epoch_steps, epochs=config.epochs - epochs_done,
                        steps_done=done_in_epoch, clock=clock,
                        quota=current_quota() if quota == "current" else quota, accelerator=plan.accelerator,
                        eval_s_per_epoch=eval_s, upload_margin_s=upload_margin_s, warmup_steps=warmup_steps,
                        timed_steps=timed_steps, burn_rates=burn_rates, timer=timer)
        del probe, step, batches, optimizer_step
        _release(device)
    steps_done = epochs_done * epoch_steps + done_in_epoch
    return BudgetPlan(config=config, memory=memory, fit=fit, steps_per_epoch=epoch_steps,
                      steps_left=epoch_steps * config.epochs - steps_done, evaluations_left=config.epochs - epochs_done,
                      eval_s=eval_s)


def _test_memory(step: OptimizerStep, loss_fn: LossFn, batches: _TrialBatches, *, config: TrainConfig, world: int,
                 device: torch.device, on_memory_shortfall: str, memory_limit_bytes: int | None) -> BatchSizeResult:
    """The smoke test and batch search at the per-rank batch: one micro-batch and the optimizer step per trial."""

    def trial_at(batch_size: int) -> Callable[[], None]:
        batch = batches.next(batch_size)

        def trial() -> None:
            step.model.zero_grad(set_to_none=True)
            step.run(loss_fn, [batch])

        return trial

    return find_batch_size(trial_at, planned_batch=config.batch_size // world, memory_limit_bytes=memory_limit_bytes,
                           device=str(device), on_oom=on_memory_shortfall)


def _optimizer_step(step: OptimizerStep, loss_fn: LossFn, batches: _TrialBatches, *, config: TrainConfig,
                    world: int) -> Callable[[], None]:
    """One whole optimizer step of the run: ``grad_accum_steps`` micro-batches at the per-rank batch.

    With ``num_workers = 0`` the loop loads each micro-batch in its own process, so the step loads them too; with
    workers, loading overlaps the step, so the micro-batches are loaded once beforehand.
    """
    size = config.batch_size // world
    preloaded = [batches.next(size) for _ in range(config.grad_accum_steps)] if config.num_workers else None

    def optimizer_step() -> None:
        if preloaded is not None:
            step.run(loss_fn, preloaded)
        else:
            step.run(loss_fn, [batches.next(size) for _ in range(config.grad_accum_steps)])

    return optimizer_step
