"""From a probability map to instance masks and the image-level ``authentic`` decision."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from kaggle_kit.cmfd.config import PostprocessConfig

_EIGHT = np.ones((3, 3), dtype=bool)


def _pair_components(labels: np.ndarray, n: int, offsets: np.ndarray) -> np.ndarray:
    """Union components whose pixels' best matches land in another component (source and copy of one move)."""
    h, w = labels.shape
    parent = list(range(n + 1))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    ys, xs = np.nonzero(labels)
    own = labels[ys, xs]
    ty = np.clip(np.rint(ys + offsets[0, ys, xs]).astype(np.int64), 0, h - 1)
    tx = np.clip(np.rint(xs + offsets[1, ys, xs]).astype(np.int64), 0, w - 1)
    hit = labels[ty, tx]
    sizes = np.bincount(own, minlength=n + 1)
    for comp in range(1, n + 1):
        targets = hit[(own == comp) & (hit != comp) & (hit > 0)]
        if targets.size == 0:
            continue
        best = np.bincount(targets, minlength=n + 1)
        other = int(best.argmax())
        # A real pair points at its partner with most of its pixels; a stray overlap does not.
        if best[other] >= 0.3 * sizes[comp]:
            parent[find(comp)] = find(other)
    return np.array([find(i) for i in range(n + 1)])


def instances_from_probs(
    prob: np.ndarray,
    cfg: PostprocessConfig,
    *,
    offsets: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Split a probability map into instance masks; an empty list means the image is authentic.

    Args:
        prob: (H, W) forged-pixel probabilities.
        cfg: thresholds (pixel, image, minimum area) and whether to pair source and copy.
        offsets: (2, H, W) best-match displacement (dy, dx) in pixels, used when ``cfg.pair_instances``.

    Returns:
        Boolean (H, W) masks, largest first.
    """
    if prob.size == 0 or float(prob.max()) < cfg.image_threshold:
        return []
    binary = prob >= cfg.pixel_threshold
    labels, n = ndimage.label(binary, structure=_EIGHT)
    if n == 0:
        return []
    min_area = max(1, int(round(cfg.min_area_frac * prob.size)))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_area
    keep[0] = False
    labels = np.where(keep[labels], labels, 0)
    if not keep.any():
        return []
    if cfg.pair_instances and offsets is not None and keep.sum() > 1:
        roots = _pair_components(labels, n, offsets)
        labels = roots[labels] * (labels > 0)
    ids = [i for i in np.unique(labels) if i != 0]
    masks = [labels == i for i in ids]
    masks.sort(key=lambda m: -int(m.sum()))
    return masks
