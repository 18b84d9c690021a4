"""What the loop optimises and scores: the signatures of ``loss_fn`` and ``evaluate``, and picklable helpers for both.

The helpers are module-level so they pickle into DDP ranks, where a function defined in a notebook cell would not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["LossFn", "EvaluateFn", "supervised_loss", "ScoreFunction"]

LossFn = Callable[[nn.Module, Any], torch.Tensor]
EvaluateFn = Callable[[nn.Module], Mapping[str, float]]


def supervised_loss(criterion: Callable[[Any, Any], torch.Tensor], model: nn.Module, batch: Any) -> torch.Tensor:
    """``criterion(model(batch[0]), batch[1])``: the usual loss for (input, target, ...) batches.

    Bind the criterion with ``functools.partial(supervised_loss, criterion)``; that pickles for DDP.
    """
    return criterion(model(batch[0]), batch[1])


@dataclass
class ScoreFunction:
    """``evaluate`` for :func:`kaggle_kit.training.train` from a metric ``fn(model, *args, device=..., **kwargs)``.

    A module-level class, so it pickles into DDP ranks where a notebook's lambda would not.
    """

    fn: Callable[..., float]
    name: str = "score"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        return {self.name: float(self.fn(model, *self.args, device=device, **self.kwargs))}
