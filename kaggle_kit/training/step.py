"""One optimizer step as the loop takes it: each micro-batch's forward under autocast and its scaled backward, then
gradient clipping, the optimizer and scaler steps, and the per-step scheduler.

The loop and the budget (:func:`kaggle_kit.guard.budget.plan_budget`) both step through :class:`OptimizerStep`, so
the time the budget measures is the time of the step the loop runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, ContextManager

import torch
from torch import nn

from kaggle_kit.training.config import TrainConfig
from kaggle_kit.training.objectives import EvaluateFn, LossFn
from kaggle_kit.training.optim import make_optimizer, make_scheduler

__all__ = ["OptimizerFactory", "SchedulerFactory", "OptimizerStep", "autocast_dtype", "move_to_device",
           "evaluate_model"]

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int], Any]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: mixed precision runs on CUDA only, else None (fp32)."""
    if device.type != "cuda":
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (nested in mappings, lists, tuples and named tuples) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        moved = [move_to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


class OptimizerStep:
    """The optimizer, scheduler and gradient scaler of a run, and the step they take together.

    Attributes:
        model: The model whose parameters are optimised.
        train_model: What the forward pass calls: ``model``, or its DistributedDataParallel wrapper.
        optimizer: The optimizer.
        scheduler: The scheduler, or None; ReduceLROnPlateau is stepped per epoch by the loop, not here.
        scaler: The gradient scaler; enabled for fp16 only.
        amp_dtype: The autocast dtype, or None for fp32.
        grad_clip_norm: Clip the gradient norm to this; None for no clipping.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 scaler: torch.amp.GradScaler, *, amp_dtype: torch.dtype | None,
                 grad_clip_norm: float | None) -> None:
        self.model = model
        self.train_model: nn.Module = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.amp_dtype = amp_dtype
        self.grad_clip_norm = grad_clip_norm

    @classmethod
    def create(cls, model: nn.Module, config: TrainConfig, device: torch.device, *, total_steps: int,
               optimizer_factory: OptimizerFactory | None = None,
               scheduler_factory: SchedulerFactory | None = None) -> OptimizerStep:
        """The step the loop takes for ``config`` on ``device`` (``model`` already there).

        Args:
            model: The model, on ``device``.
            config: Precision, clipping, and the default optimizer and scheduler.
            device: Where the model is; mixed precision only on CUDA.
            total_steps: The run's optimizer steps, for the scheduler.
            optimizer_factory: ``factory(model) -> optimizer``; default :func:`make_optimizer`.
            scheduler_factory: ``factory(optimizer, total_steps) -> scheduler or None``; default
                :func:`make_scheduler`.
        """
        amp_dtype = autocast_dtype(config.precision, device)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)
        optimizer = optimizer_factory(model) if optimizer_factory else make_optimizer(model, config)
        scheduler = (
            scheduler_factory(optimizer, total_steps) if scheduler_factory
            else make_scheduler(optimizer, total_steps, config)
        )
        return cls(model, optimizer, scheduler, scaler, amp_dtype=amp_dtype, grad_clip_norm=config.grad_clip_norm)

    @property
    def scheduler_per_epoch(self) -> bool:
        """Whether the scheduler steps once per epoch on the monitored metric (ReduceLROnPlateau)."""
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    @property
    def checkpoint_scaler(self) -> torch.amp.GradScaler | None:
        """The scaler as checkpoints carry it: None when it is disabled."""
        return self.scaler if self.scaler.is_enabled() else None

    def autocast(self) -> ContextManager[Any]:
        """Autocast to the run's mixed precision; a no-op in fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def forward(self, loss_fn: LossFn, batch: Any) -> torch.Tensor:
        """The micro-batch's loss, under autocast."""
        with self.autocast():
            return loss_fn(self.train_model, batch)

    def backward(self, loss: torch.Tensor, group_size: int) -> None:
        """Accumulates the gradient of ``loss``, one of ``group_size`` micro-batches of this step."""
        self.scaler.scale(loss / group_size).backward()

    def apply(self) -> None:
        """Clips, steps the optimizer and the scaler, clears the gradients and steps a per-step scheduler."""
        if self.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and not self.scheduler_per_epoch:
            self.scheduler.step()

    def run(self, loss_fn: LossFn, micro_batches: list[Any]) -> None:
        """One whole optimizer step over ``micro_batches`` (already on the device), as the loop takes it."""
        for batch in micro_batches:
            self.backward(self.forward(loss_fn, batch), len(micro_batches))
        self.apply()


def evaluate_model(
    evaluate: EvaluateFn, model: nn.Module, autocast: Callable[[], ContextManager[Any]]
) -> dict[str, float]:
    """``evaluate(model)`` as the loop runs it: eval mode, no gradients, the run's autocast; train mode after."""
    model.eval()
    with torch.no_grad(), autocast():
        metrics = {k: float(v) for k, v in evaluate(model).items()}
    model.train()
    return metrics
