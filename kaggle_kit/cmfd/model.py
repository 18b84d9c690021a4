"""The CMFD network: ViT features, their self-correlation, and a light decoder to per-pixel logits."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kaggle_kit.cmfd.backbone import DinoBackbone, build_backbone
from kaggle_kit.cmfd.config import CMFDConfig
from kaggle_kit.cmfd.correlation import patch_descriptors, self_correlation
from kaggle_kit.cmfd.padding import crop_to, pad_multiple, pad_to_multiple


def _conv(c_in: int, c_out: int, *, stride: int = 1, norm: bool = True) -> nn.Sequential:
    if not norm:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GELU())
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(math.gcd(8, c_out), c_out),
        nn.GELU(),
    )


class CMFDNet(nn.Module):
    """Copy-move forgery segmentation.

    ``forward`` takes (B, 3, H, W) images in [0, 1] of any size (pads to a multiple of lcm(patch, decoder stride)
    internally and crops back) and returns (B, 1, H, W) logits.
    """

    def __init__(self, cfg: CMFDConfig, backbone: DinoBackbone) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        stride = cfg.decoder.stride
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"decoder.stride must be a power of two, got {stride}")
        self.multiple = pad_multiple(backbone.patch_size, stride)
        d = cfg.decoder.channels
        k = cfg.correlation.top_k
        self.project = nn.Sequential(
            nn.Conv2d(backbone.out_channels, d, 1, bias=False), nn.GroupNorm(math.gcd(8, d), d), nn.GELU()
        )
        # No normalisation over space after the correlation: it would erase how high an image's best matches are,
        # which is what tells a forged image from an authentic one.
        self.match = _conv(4 * k, d, norm=False)
        # Sharpened evidence exp((s - 1) / t): an exact copy (s near 1) stands out from the merely similar texture
        # around it (s of 0.8-0.95); t is learned, starting at 0.05.
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.05)))
        self.fuse = nn.Sequential(_conv(d, d, norm=False), _conv(d, d, norm=False))
        stem: list[nn.Module] = []
        c_in, c_stem = 3, max(d // 2, 8)
        for _ in range(int(math.log2(stride))):
            stem.append(_conv(c_in, c_stem, stride=2))
            c_in = c_stem
        self.stem = nn.Sequential(*stem) if stem else nn.Identity()
        self.fine_k = cfg.decoder.fine_top_k
        self.head = nn.Sequential(_conv(d + c_in + 3 * self.fine_k, d, norm=False), nn.Conv2d(d, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] -> (B, 1, H, W) logits."""
        return self.forward_with_matches(images)[0]

    def forward_with_matches(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits plus each feature location's best match, which post-processing uses to pair source and copy.

        Returns:
            logits (B, 1, H, W); top-1 score (B, 1, h, w); top-1 offset (B, 2, h, w) as (dy / h, dx / w) on the
            correlation grid of the padded image.
        """
        padded, size = pad_to_multiple(images, self.multiple)
        feats = self.backbone(padded)
        c = self.cfg.correlation
        desc = patch_descriptors(feats, patch=c.patch, stride=c.stride)
        if c.center:
            # ViT tokens share a large common component (all cosines near 1); removing the per-image mean leaves
            # the content that tells one place from another.
            desc = desc - desc.mean(dim=(2, 3), keepdim=True)
        scores, offsets = self_correlation(desc, top_k=c.top_k, exclude_radius=c.exclude_radius, chunk=c.chunk)
        # Cosine similarities live in [-1, 1]; masked fill values (finfo.min) must not reach the convolutions.
        scores = scores.clamp(min=-1.0, max=1.0)
        evidence = torch.exp((scores.float() - 1.0) / self.log_temperature.exp()).to(scores.dtype)
        corr = torch.cat([scores, evidence, offsets], dim=1)
        if corr.shape[-2:] != feats.shape[-2:]:
            corr = F.interpolate(corr, size=feats.shape[-2:], mode="bilinear", align_corners=False)
        x = self.fuse(self.project(feats) + self.match(corr.to(feats.dtype)))
        low = self.stem(padded)
        parts = [F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False), low.to(x.dtype)]
        if self.fine_k:
            # A second self-correlation on the stem's features, on a grid `stride` pixels fine instead of 14, for
            # copies smaller than a ViT patch (a trained stem supplies the descriptors; at init they match poorly).
            fine = low - low.mean(dim=(2, 3), keepdim=True)
            f_scores, f_offsets = self_correlation(
                fine, top_k=self.fine_k, exclude_radius=self.cfg.decoder.fine_exclude_radius, chunk=c.chunk
            )
            parts += [f_scores.clamp(min=-1.0, max=1.0).to(x.dtype), f_offsets.to(x.dtype)]
        logits = self.head(torch.cat(parts, dim=1))
        logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return crop_to(logits, size), scores[:, :1], offsets[:, :2]


def build_model(cfg: CMFDConfig, *, from_checkpoint: bool = False) -> CMFDNet:
    """The model factory: backbone (weights as configured, see `build_backbone`) plus correlation and decoder.

    Pass ``from_checkpoint=True`` when a trained checkpoint is restored right after (inference): the pretrained
    backbone weights are then neither needed nor looked for.
    """
    return CMFDNet(cfg, build_backbone(cfg.backbone, from_checkpoint=from_checkpoint))
