"""Patch descriptors by average pooling, the self-correlation, and its behaviour in half precision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kaggle_kit.cmfd.correlation import patch_descriptors, self_correlation, unfold_descriptors


@pytest.mark.parametrize("patch", [1, 2, 3, 4, 5, 12])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("same", [True, False])
def test_avg_pool_equals_unfold_mean(patch: int, stride: int, same: bool) -> None:
    torch.manual_seed(patch * 10 + stride)
    for h, w in ((13, 13), (16, 21)):
        x = torch.randn(2, 6, h, w)
        fast = patch_descriptors(x, patch=patch, stride=stride, same=same)
        ref = unfold_descriptors(x, patch=patch, stride=stride, same=same)
        assert fast.shape == ref.shape
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
        if same:
            assert fast.shape[-2:] == (-(-h // stride), -(-w // stride))


def test_unfold_formula_written_out() -> None:
    # The reference itself against the definition: the mean of each window, computed by slicing.
    x = torch.randn(1, 3, 9, 8)
    ref = unfold_descriptors(x, patch=3, stride=2, same=False)
    for i in range(ref.shape[2]):
        for j in range(ref.shape[3]):
            window = x[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            torch.testing.assert_close(ref[:, :, i, j], window.mean(dim=(2, 3)))


def _brute_force(desc: torch.Tensor, top_k: int, radius: int) -> torch.Tensor:
    b, c, h, w = desc.shape
    flat = F.normalize(desc.flatten(2), dim=1)
    sim = torch.einsum("bcn,bcm->bnm", flat, flat)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    near = ((ys[:, None] - ys[None]).abs() <= radius) & ((xs[:, None] - xs[None]).abs() <= radius)
    sim = sim.masked_fill(near, -2.0)
    return sim.topk(top_k, dim=2).values.transpose(1, 2).reshape(b, top_k, h, w)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_self_correlation_matches_brute_force_at_any_chunk(chunk: int) -> None:
    torch.manual_seed(0)
    desc = torch.randn(2, 8, 6, 7)
    scores, offsets = self_correlation(desc, top_k=3, exclude_radius=1, chunk=chunk)
    torch.testing.assert_close(scores, _brute_force(desc, 3, 1), atol=1e-5, rtol=1e-5)
    assert offsets.shape == (2, 6, 6, 7)


def test_best_match_of_a_copy_is_its_source_and_excludes_the_neighbourhood() -> None:
    torch.manual_seed(1)
    desc = torch.randn(1, 16, 10, 10)
    desc[:, :, 7, 8] = desc[:, :, 2, 1]  # a copy 5 rows down and 7 columns right
    scores, offsets = self_correlation(desc, top_k=2, exclude_radius=2)
    assert scores[0, 0, 7, 8] == pytest.approx(1.0, abs=1e-5)
    assert offsets[0, 0, 7, 8] == pytest.approx(-5 / 10)
    assert offsets[0, 1, 7, 8] == pytest.approx(-7 / 10)
    # No location ever matches within its own excluded neighbourhood.
    dy = (offsets[0, 0::2] * 10).round().abs()
    dx = (offsets[0, 1::2] * 10).round().abs()
    assert bool(((dy > 2) | (dx > 2)).all())


def test_gradient_flows_through_chunks() -> None:
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    a, _ = self_correlation(x, top_k=2, exclude_radius=1, chunk=4)
    (g1,) = torch.autograd.grad(a.sum(), x)
    b, _ = self_correlation(x, top_k=2, exclude_radius=1, chunk=100)
    (g2,) = torch.autograd.grad(b.sum(), x)
    torch.testing.assert_close(g1, g2)


def test_literal_fill_overflows_float16_but_dtype_minimum_does_not() -> None:
    # The first attempt's masked_fill(-1e9) on a float16 similarity (as autocast produces) cannot even run.
    sim = torch.randn(4, 8, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="overflow"):
        sim.masked_fill(torch.ones_like(sim, dtype=torch.bool), -1e9)
    desc = torch.randn(1, 8, 4, 4, dtype=torch.float16)
    scores, offsets = self_correlation(desc, top_k=20, exclude_radius=1)  # more matches than candidates for some
    assert scores.dtype == torch.float16
    assert torch.isfinite(scores).all() and torch.isfinite(offsets).all()
    assert scores.min() == torch.finfo(torch.float16).min


def test_bfloat16_autocast_forward_backward_is_finite() -> None:
    x = torch.randn(2, 16, 8, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores, offsets = self_correlation(patch_descriptors(x, patch=3), top_k=4, exclude_radius=1, chunk=16)
    assert scores.dtype == torch.bfloat16
    assert torch.isfinite(scores).all() and torch.isfinite(offsets).all()
    scores.float().clamp(min=-1).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_sparse_backward_matches_autograd_through_the_volume() -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    fast, _ = self_correlation(x, top_k=3, exclude_radius=1, chunk=4)
    (g_fast,) = torch.autograd.grad((fast * weights).sum(), x)
    dense, _ = self_correlation(x, top_k=3, exclude_radius=1, chunk=4, _dense=True)
    (g_dense,) = torch.autograd.grad((dense * weights).sum(), x)
    torch.testing.assert_close(g_fast, g_dense)
    # More matches asked than candidates: the filled surplus carries no gradient.
    small = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: self_correlation(t, top_k=4, exclude_radius=1, chunk=2)[0].clamp(min=-1),
                             (small,))
