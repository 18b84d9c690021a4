"""The training loss: forged pixels are a few percent of forged images and absent from authentic ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kaggle_kit.cmfd.config import LossConfig


def cmfd_loss(logits: torch.Tensor, target: torch.Tensor, *, pos_weight: float, dice_weight: float) -> torch.Tensor:
    """Pixel BCE with ``pos_weight`` on forged pixels, plus soft Dice averaged over the forged images only.

    Dice on an authentic image (an empty target) has no useful optimum, so those images contribute through BCE,
    which pushes their pixels to 0; on forged images Dice counters the pixel imbalance that BCE alone suffers.

    Args:
        logits: (B, 1, H, W) raw scores (any float dtype; computed in float32).
        target: (B, 1, H, W) in {0, 1}, the union of an image's instance masks.
    """
    logits = logits.float()
    target = target.float()
    weight = torch.tensor(pos_weight, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
    if dice_weight <= 0:
        return bce
    prob = torch.sigmoid(logits).flatten(1)
    tgt = target.flatten(1)
    forged = tgt.sum(dim=1) > 0
    if not bool(forged.any()):
        return bce
    inter = (prob * tgt).sum(dim=1)
    dice = 1 - (2 * inter + 1) / (prob.sum(dim=1) + tgt.sum(dim=1) + 1)
    return bce + dice_weight * dice[forged].mean()


class CMFDLoss(torch.nn.Module):
    """`cmfd_loss` with its weights from a `LossConfig`, callable as ``loss(logits, target)``."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.pos_weight = cfg.pos_weight
        self.dice_weight = cfg.dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cmfd_loss(logits, target, pos_weight=self.pos_weight, dice_weight=self.dice_weight)
