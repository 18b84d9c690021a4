"""DDP for real on the CPU: two gloo processes reproduce the single-process loss curve at the same global batch."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from kaggle_kit.errors import ConfigError, DistributedError
from kaggle_kit.guard import ddp
from kaggle_kit.guard.accelerator import detect_accelerator, plan_devices

GLOBAL_BATCH = 8
STEPS = 20
# float32 all-reduce sums gradients in a different order than one process does; the curves agree to rounding.
RTOL, ATOL = 1e-5, 1e-6


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(GLOBAL_BATCH * STEPS, 6, generator=gen)
    y = x @ torch.randn(6, 1, generator=gen) + 0.1 * torch.randn(GLOBAL_BATCH * STEPS, 1, generator=gen)
    return x, y


def train_tiny(ctx: ddp.RankContext, lr: float) -> list[float]:
    """Tiny regression; returns the global-batch mean loss per step, as rank 0 would log it."""
    import torch.distributed as dist

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    if ctx.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x, y = _data()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(2)).tolist()
    per_rank = ddp.shard_batch_size(GLOBAL_BATCH, ctx.world_size)
    losses = []
    for step in range(STEPS):
        batch = ddp.shard_indices(order[step * GLOBAL_BATCH:(step + 1) * GLOBAL_BATCH], ctx.rank, ctx.world_size)
        assert len(batch) == per_rank
        loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        logged = loss.detach().clone()
        if ctx.world_size > 1:
            dist.all_reduce(logged)
            logged /= ctx.world_size
        losses.append(float(logged))
    return losses


@pytest.mark.slow
def test_two_gloo_processes_match_single_process_loss_curve(monkeypatch):
    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "T4x2")
    plan = plan_devices("gpu", detect_accelerator())
    assert (plan.world_size, plan.backend, plan.device_type) == (2, "gloo", "cpu")

    single = ddp.launch(train_tiny, world_size=1, backend="gloo", args=(0.05,))[0]
    ranks = ddp.launch(train_tiny, world_size=plan.world_size, backend=plan.backend, kwargs={"lr": 0.05})

    assert len(ranks) == 2 and ranks[0] == ranks[1]
    assert single[-1] < single[0] / 2  # it really trains, so matching curves mean something
    torch.testing.assert_close(torch.tensor(ranks[0]), torch.tensor(single), rtol=RTOL, atol=ATOL)


def test_refuses_function_from_main_or_local():
    def local_fn(ctx):
        return ctx.rank

    with pytest.raises(ConfigError, match="cannot import"):
        ddp.launch(local_fn, world_size=2, backend="gloo")
    local_fn.__module__ = "__main__"
    local_fn.__qualname__ = "local_fn"
    with pytest.raises(ConfigError, match="notebook cell"):
        ddp.launch(local_fn, world_size=2, backend="gloo")


def test_rejects_bad_world_size_backend_and_uneven_batch():
    with pytest.raises(ConfigError, match="world_size"):
        ddp.launch(train_tiny, world_size=0, backend="gloo")
    with pytest.raises(ConfigError, match="backend"):
        ddp.launch(train_tiny, world_size=2, backend="mpi")
    with pytest.raises(ConfigError, match="multiple of 2"):
        ddp.shard_batch_size(7, 2)
    assert ddp.shard_indices(list(range(8)), 1, 2) == [1, 3, 5, 7]


def rank_one_dies_in_teardown(ctx: ddp.RankContext) -> int:
    """Returns normally, then rank 1 aborts inside process-group teardown, as gloo sometimes does on exit."""
    import torch.distributed as dist

    if ctx.rank == 1:
        dist.destroy_process_group = os.abort
    return ctx.rank * 10


def rank_one_dies_while_working(ctx: ddp.RankContext) -> int:
    """Rank 1 is killed mid-run (as the OOM killer would); rank 0 waits on it in a collective."""
    import torch.distributed as dist

    if ctx.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.barrier()
    return ctx.rank


@pytest.mark.slow
def test_crash_in_teardown_after_every_rank_returned_keeps_the_results():
    with pytest.warns(RuntimeWarning, match=r"rank 1 died with signal SIGABRT while shutting down.*results are complete"):
        assert ddp.launch(rank_one_dies_in_teardown, world_size=2, backend="gloo") == [0, 10]


@pytest.mark.slow
def test_rank_killed_before_returning_is_a_clear_error():
    with pytest.raises(DistributedError, match=r"DDP rank 1 \(pid \d+\) died with signal SIGKILL before every rank"):
        ddp.launch(rank_one_dies_while_working, world_size=2, backend="gloo")
