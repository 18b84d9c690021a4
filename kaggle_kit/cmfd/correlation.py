"""Self-correlation of patch descriptors: each location's best matches elsewhere in the same image.

The descriptor of a location is the mean of the features in a ``patch x patch`` window, which is exactly what
average pooling computes; the first attempt built the same values with ``F.unfold`` and a mean, through a
(B, C*patch*patch, N) intermediate. Queries are processed in chunks, so memory is bounded by
``chunk x N`` similarities however large the image, and the backward pass gathers only the top-k pairs instead of
rebuilding similarity-sized gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


_EPS = 1e-12  # as F.normalize
_BACKWARD_ELEMENTS = 1 << 20  # gathered (query, match, channel) entries per backward step: 4 MiB in float32


def _same_padding(patch: int) -> tuple[int, int, int, int]:
    before = patch // 2
    after = patch - 1 - before
    return (before, after, before, after)


def patch_descriptors(x: torch.Tensor, *, patch: int, stride: int = 1, same: bool = True) -> torch.Tensor:
    """Mean of every ``patch x patch`` window of a feature map.

    Args:
        x: (B, C, H, W) features.
        patch: window side.
        stride: step between windows.
        same: zero-pad so the output covers ``ceil(H / stride) x ceil(W / stride)`` locations (padding counts
            as zeros in the mean, as it does with a zero-padded ``F.unfold``); otherwise only full windows.

    Returns:
        (B, C, H', W') descriptors.
    """
    if patch == 1 and stride == 1:
        return x
    if not same:
        return F.avg_pool2d(x, kernel_size=patch, stride=stride)
    # Symmetric padding of patch // 2 inside the pooling (no padded copy of x); an even patch yields one extra
    # row and column at the end, which the slice drops, leaving windows that start patch // 2 before each location.
    out = F.avg_pool2d(x, kernel_size=patch, stride=stride, padding=patch // 2, count_include_pad=True)
    h, w = x.shape[2:]
    return out[:, :, : -(-h // stride), : -(-w // stride)]


def unfold_descriptors(x: torch.Tensor, *, patch: int, stride: int = 1, same: bool = True) -> torch.Tensor:
    """The first attempt's formula (``F.unfold`` then a mean): the reference that tests and benchmarks compare to."""
    if same and patch > 1:
        x = F.pad(x, _same_padding(patch))
    b, c, h, w = x.shape
    cols = F.unfold(x, kernel_size=patch, stride=stride)  # (B, C*p*p, L)
    out_h = (h - patch) // stride + 1
    out_w = (w - patch) // stride + 1
    return cols.view(b, c, patch * patch, -1).mean(dim=2).view(b, c, out_h, out_w)


def _grid(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    ys = torch.arange(h, device=device).repeat_interleave(w)
    xs = torch.arange(w, device=device).repeat(h)
    return ys, xs


def _near(ys: torch.Tensor, xs: torch.Tensor, start: int, stop: int, radius: int) -> torch.Tensor:
    return ((ys[start:stop, None] - ys[None, :]).abs() <= radius) & (
        (xs[start:stop, None] - xs[None, :]).abs() <= radius
    )


def _chunked_topk(
    flat: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, k: int, radius: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    queries = flat.transpose(1, 2)  # (B, N, C)
    scores, indices = [], []
    for start in range(0, flat.shape[2], chunk):
        stop = min(start + chunk, flat.shape[2])
        sim = torch.bmm(queries[:, start:stop], flat)  # (B, n, N), in the autocast dtype when enabled
        # In place: bmm's backward does not need its output, so no second (B, n, N) volume is made.
        sim.masked_fill_(_near(ys, xs, start, stop, radius), torch.finfo(sim.dtype).min)
        val, idx = sim.topk(k, dim=2)
        scores.append(val)
        indices.append(idx)
    return torch.cat(scores, dim=1), torch.cat(indices, dim=1)


class _TopKCosine(torch.autograd.Function):
    """Chunked top-k cosine similarities whose backward touches only the k selected pairs per query.

    Plain autograd would keep the normalised descriptors beside the raw ones and rebuild, chunk by chunk, a
    (B, n, N) gradient of the similarities and a full (B, C, N) gradient of the keys. Only the selected pairs carry
    gradient, so gathering them is exact; the normalisation is recomputed in backward instead of being stored.
    """

    @staticmethod
    def forward(ctx, desc, ys, xs, k, radius, chunk):  # type: ignore[override]
        norms = desc.norm(dim=1, keepdim=True).clamp_min(_EPS)  # (B, 1, N)
        val, idx = _chunked_topk(desc / norms, ys, xs, k, radius, chunk)
        ctx.save_for_backward(desc, norms, idx, val > torch.finfo(val.dtype).min)
        ctx.mark_non_differentiable(idx)
        return val, idx

    @staticmethod
    def backward(ctx, grad_val, _grad_idx):  # type: ignore[override]
        desc, norms, idx, valid = ctx.saved_tensors
        b, c, n = desc.shape
        unit = (desc / norms).transpose(1, 2)  # (B, N, C)
        grad = torch.zeros(b, n, c, dtype=desc.dtype, device=desc.device)
        g_all = grad_val.to(desc.dtype) * valid  # masked fills carry no gradient
        step = max(1, _BACKWARD_ELEMENTS // max(1, b * idx.shape[2] * c))
        for start in range(0, n, step):
            stop = min(start + step, n)
            ids = idx[:, start:stop].reshape(b, -1, 1).expand(-1, -1, c)  # (B, n*k, C)
            g = g_all[:, start:stop].unsqueeze(-1)  # (B, n, k, 1)
            matched = torch.gather(unit, 1, ids).view(b, stop - start, -1, c)
            grad[:, start:stop] += (g * matched).sum(dim=2)  # d/d query = sum over its k matches of g * key
            grad.scatter_add_(1, ids, (g * unit[:, start:stop].unsqueeze(2)).reshape(b, -1, c))  # d/d key
        # Through the normalisation u = d / |d|: grad_d = (grad_u - u <grad_u, u>) / |d|, in place.
        dot = torch.einsum("bnc,bnc->bn", grad, unit).unsqueeze(-1)
        grad.addcmul_(unit, dot, value=-1).div_(norms.transpose(1, 2))
        return grad.transpose(1, 2), None, None, None, None, None


def self_correlation(
    desc: torch.Tensor,
    *,
    top_k: int,
    exclude_radius: int,
    chunk: int = 256,
    _dense: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine similarities of every location with every other, its own neighbourhood excluded.

    Args:
        desc: (B, C, H, W) descriptors.
        top_k: matches kept per location.
        exclude_radius: a location never matches locations within this Chebyshev distance (itself included).
        chunk: query locations per step; memory holds ``B x chunk x H*W`` similarities at once.

    Returns:
        scores (B, top_k, H, W) and offsets (B, 2*top_k, H, W): for match i, channels ``2i`` and ``2i+1`` hold
        (dy / H, dx / W) from the query to its match. Masked entries use ``torch.finfo(dtype).min``, so float16 and
        bfloat16 never overflow; with fewer candidates than ``top_k`` the surplus scores are that minimum.
    """
    b, c, h, w = desc.shape
    n = h * w
    k = min(top_k, n)
    ys, xs = _grid(h, w, desc.device)
    if _dense:  # the first attempt's way, kept for comparisons: plain autograd through the similarities
        val, idx = _chunked_topk(F.normalize(desc.flatten(2), dim=1), ys, xs, k, exclude_radius, chunk)
    else:
        val, idx = _TopKCosine.apply(desc.flatten(2), ys, xs, k, exclude_radius, chunk)
    dy = (ys[idx] - ys[:, None]).to(val.dtype) / h
    dx = (xs[idx] - xs[:, None]).to(val.dtype) / w
    offsets = torch.stack((dy, dx), dim=3).reshape(b, n, 2 * k)
    if k < top_k:  # tiny maps: pad so the decoder always sees top_k channels
        val = F.pad(val, (0, top_k - k), value=torch.finfo(val.dtype).min)
        offsets = F.pad(offsets, (0, 2 * (top_k - k)))
    return (
        val.transpose(1, 2).reshape(b, top_k, h, w),
        offsets.transpose(1, 2).reshape(b, 2 * top_k, h, w),
    )


def reference_correlation(
    x: torch.Tensor, *, patch: int, stride: int, top_k: int, exclude_radius: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first attempt's whole pipeline (unfold descriptors, one full correlation volume); for comparisons only."""
    desc = unfold_descriptors(x, patch=patch, stride=stride)
    n = desc.shape[2] * desc.shape[3]
    return self_correlation(desc, top_k=top_k, exclude_radius=exclude_radius, chunk=n, _dense=True)
