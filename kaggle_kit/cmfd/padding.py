"""The one padding rule: pad to a multiple of lcm(ViT patch, decoder stride), predict, crop back to H x W.

The first attempt padded to multiples of 32, which the ViT's 14-pixel patch embedding cannot divide.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pad_multiple(patch_size: int, decoder_stride: int) -> int:
    """The size multiple every model input must have: lcm(patch_size, decoder_stride)."""
    return math.lcm(int(patch_size), int(decoder_stride))


def pad_to_multiple(x: torch.Tensor, multiple: int, *, value: float = 0.0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two dimensions at the bottom and right up to a multiple.

    Args:
        x: (..., H, W) tensor.
        multiple: target multiple of H and W.
        value: fill value of the padding.

    Returns:
        The padded tensor and the original (H, W), to hand to `crop_to`.
    """
    h, w = x.shape[-2:]
    pad_h = -h % multiple
    pad_w = -w % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), value=value)
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the last two dimensions back to ``size`` (the inverse of `pad_to_multiple`)."""
    h, w = size
    return x[..., :h, :w]
