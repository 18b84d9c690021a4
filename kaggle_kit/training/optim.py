"""The default optimizer and scheduler the loop builds from a :class:`TrainConfig`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from kaggle_kit.training.config import TrainConfig

__all__ = ["make_optimizer", "make_scheduler"]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over the parameters that require gradients, as ``config`` says."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, config: TrainConfig) -> Any:
    """The scheduler ``config.scheduler`` names (None for ``none``); ``cosine`` steps per optimizer step."""
    if config.scheduler == "none":
        return None
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=config.monitor_mode, factor=0.5, patience=1)
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
