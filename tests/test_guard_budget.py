"""The training budget: the real optimizer step is timed (every micro-batch of it), the steps are the loop's, the
memory test switches accumulation on when the batch must shrink, and planning leaves the run bit-identical."""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from kaggle_kit.checkpoint import Checkpointer
from kaggle_kit.errors import ConfigError
from kaggle_kit.guard.accelerator import DevicePlan
from kaggle_kit.guard.budget import plan_budget
from kaggle_kit.guard.clock import SessionClock
from kaggle_kit.training import TrainConfig, seed_everything, total_steps, train

CPU = DevicePlan(world_size=1, backend="gloo", device_type="cpu", accelerator="none")
MICRO_S = 2.0  # simulated seconds of one micro-batch's forward and backward
EVAL_S = 7.0  # simulated seconds of one validation


class Regression(torch.utils.data.Dataset):
    """40 samples with noise drawn at load time (an augmentation that must not move the run's generators)."""

    def __init__(self, n: int = 40) -> None:
        gen = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 4, generator=gen)
        self.y = self.x.sum(dim=1, keepdim=True)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index] + 0.1 * torch.randn(4), self.y[index]


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch[0]), batch[1])


def make_model(*, seed: int = 0, hidden: int = 16) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.Dropout(0.3), nn.ReLU(), nn.Linear(hidden, 1))


class FakeClock:
    """A timer that moves only when the code under test 'works': robust however busy the machine is."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Timed:
    """``loss_fn`` and ``evaluate`` that take MICRO_S and EVAL_S on the fake clock (or really sleep)."""

    def __init__(self, clock: FakeClock | None = None, *, micro_s: float = MICRO_S, eval_s: float = EVAL_S) -> None:
        self.clock, self.micro_s, self.eval_s = clock, micro_s, eval_s
        self.micro_batches = 0

    def _sleep(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.sleep(seconds)
        else:
            time.sleep(seconds)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.micro_batches += 1
        self._sleep(self.micro_s)
        return mse(model, batch)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        self._sleep(self.eval_s)
        return {"score": -float(model(torch.eye(4)).abs().mean())}


class NeverStop:
    def time_left(self) -> float:
        return 3600.0

    def should_stop(self, margin_s: float) -> bool:
        return False


def session(hours: float = 10.0) -> SessionClock:
    return SessionClock(start=time.time(), limit_s=hours * 3600)


def steps_train_runs(config: TrainConfig) -> int:
    result = train(make_model(), Regression(), mse, config, clock=NeverStop(), progress=False, plot=False)
    return result.step


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_estimate_is_every_micro_batch_of_a_step_times_the_steps_the_loop_runs():
    # 40 samples, batch 4: 10 micro-batches an epoch, 3 optimizer steps of accumulation 4 (not 40 // 16 = 2).
    config = TrainConfig(epochs=2, batch_size=4, grad_accum_steps=4, precision="fp32")
    steps = steps_train_runs(config)
    assert steps == 6
    clock = FakeClock()
    timed = Timed(clock)
    budget = plan_budget(make_model(), Regression(), timed.loss, config, plan=CPU, evaluate=timed.evaluate,
                         clock=session(), quota=None, timer=clock)
    expected = 4 * MICRO_S * steps + EVAL_S * config.epochs
    assert budget.fit.estimate_s == pytest.approx(expected, rel=0.10)
    assert budget.fit.step_s == pytest.approx(4 * MICRO_S, rel=0.10)
    assert (budget.steps_per_epoch, budget.steps_left, budget.evaluations_left) == (3, steps, 2)
    assert budget.eval_s == pytest.approx(EVAL_S) and budget.memory is None and budget.config == config
    assert budget.fit.fits
    assert timed.micro_batches == 4 * (1 + 3)  # one warmup and three timed steps, four micro-batches each


def test_real_sleep_is_never_underestimated():
    # Sleeping never takes less than asked, so this lower bound holds however busy the machine is.
    micro_s = 0.02
    config = TrainConfig(epochs=1, batch_size=4, grad_accum_steps=4, precision="fp32")
    budget = plan_budget(make_model(), Regression(), Timed(micro_s=micro_s).loss, config, plan=CPU, clock=session(),
                         quota=None, timed_steps=1)
    assert budget.fit.step_s >= 4 * micro_s
    assert budget.fit.estimate_s >= 4 * micro_s * total_steps(40, config)


def test_a_resumed_run_counts_only_the_steps_left():
    config = TrainConfig(epochs=2, batch_size=4, grad_accum_steps=4, precision="fp32")
    clock = FakeClock()
    timed = Timed(clock)
    # Step 4 is one step into the second epoch (3 steps an epoch): 2 steps and 1 validation are left.
    budget = plan_budget(make_model(), Regression(), timed.loss, config, plan=CPU, evaluate=timed.evaluate,
                         resume_from=SimpleNamespace(step=4, epoch=1), clock=session(), quota=None, timer=clock)
    assert (budget.steps_left, budget.evaluations_left) == (2, 1)
    assert budget.fit.estimate_s == pytest.approx(2 * 4 * MICRO_S + EVAL_S)
    with pytest.raises(ConfigError, match="does not match this plan"):
        plan_budget(make_model(), Regression(), mse, config, plan=CPU, resume_from=SimpleNamespace(step=9, epoch=1),
                    clock=session(), quota=None)


def test_session_too_short_is_reported_with_the_ways_out():
    config = TrainConfig(epochs=4, batch_size=4, grad_accum_steps=2, precision="fp32")
    clock = FakeClock()
    timed = Timed(clock, micro_s=100.0, eval_s=0.0)
    # 5 steps an epoch at 200 s: 1000 s an epoch; 1 h of session less the 600 s upload margin holds 2 epochs.
    budget = plan_budget(make_model(), Regression(), timed.loss, config, plan=CPU, clock=session(hours=1.0),
                         quota=None, timer=clock)
    assert not budget.fit.fits and budget.fit.epochs_that_fit == 2
    assert "train 2 epoch(s) instead of 4" in budget.describe()


def _peak(config: TrainConfig, model: nn.Module) -> int:
    budget = plan_budget(model, Regression(), mse, config, plan=CPU, clock=session(), quota=None,
                         memory_limit_bytes=10**12, timed_steps=1, warmup_steps=0)
    assert budget.memory is not None and budget.memory.fits_planned
    return budget.memory.peak_bytes


def test_memory_shortfall_switches_on_accumulation_and_the_estimate_follows():
    planned = TrainConfig(epochs=1, batch_size=8, grad_accum_steps=1, precision="fp32")
    model = make_model(hidden=512)  # activations dominate: the peak grows with the batch
    small, large = _peak(dataclasses.replace(planned, batch_size=2), model), _peak(planned, model)
    assert large > small
    limit = (small + large) // 2
    clock = FakeClock()
    timed = Timed(clock, eval_s=0.0)
    budget = plan_budget(model, Regression(), timed.loss, planned, plan=CPU, clock=session(), quota=None,
                         memory_limit_bytes=limit, timer=clock)
    memory, adjusted = budget.memory, budget.config
    assert memory is not None and not memory.fits_planned and memory.simulated
    assert 2 <= memory.max_batch < 8
    assert adjusted.grad_accum_steps > 1 and adjusted.batch_size * adjusted.grad_accum_steps == 8
    assert dataclasses.replace(adjusted, batch_size=8, grad_accum_steps=1) == planned
    assert budget.steps_left == steps_train_runs(adjusted) == 5
    assert budget.fit.estimate_s == pytest.approx(adjusted.grad_accum_steps * MICRO_S * 5)
    assert "accumulation" in budget.describe()

    suggested = plan_budget(model, Regression(), mse, planned, plan=CPU, clock=session(), quota=None,
                            memory_limit_bytes=limit, on_memory_shortfall="suggest")
    assert suggested.config == planned and suggested.memory.batch_size == memory.max_batch


def test_planning_leaves_a_fresh_run_bit_identical():
    config = TrainConfig(epochs=2, batch_size=4, grad_accum_steps=2, precision="fp32", lr=0.05)
    timed = Timed(FakeClock())

    model = make_model()
    reference = train(model, Regression(), mse, config, evaluate=timed.evaluate, clock=NeverStop(), progress=False,
                      plot=False)
    expected = weights(model)

    model = make_model()
    before = weights(model)
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    plan_budget(model, Regression(), mse, config, plan=CPU, evaluate=timed.evaluate, clock=session(), quota=None,
                memory_limit_bytes=10**12)
    assert torch.equal(states[0], torch.get_rng_state()) and states[1] == random.getstate()
    assert all(np.array_equal(a, b) for a, b in zip(states[2], np.random.get_state()))
    assert_identical(weights(model), before)
    result = train(model, Regression(), mse, config, evaluate=timed.evaluate, clock=NeverStop(), progress=False,
                   plot=False)
    assert result.history == reference.history
    assert_identical(weights(model), expected)


class StopAfter(NeverStop):
    def __init__(self, steps: int) -> None:
        self.steps, self.asked = steps, 0

    def should_stop(self, margin_s: float) -> bool:
        self.asked += 1
        return self.asked >= self.steps


def test_planning_leaves_a_resumed_run_bit_identical(tmp_path: Path):
    # As the notebook does: restore, plan the budget from the restored position, then train (which restores again).
    config = TrainConfig(epochs=2, batch_size=4, grad_accum_steps=2, precision="fp32", lr=0.05)
    model = make_model()
    uninterrupted = train(model, Regression(), mse, config, clock=NeverStop(), progress=False, plot=False)
    expected = weights(model)

    stopped = train(make_model(), Regression(), mse, config, checkpointer=Checkpointer(tmp_path / "ckpt"),
                    clock=StopAfter(3), progress=False, plot=False)
    assert stopped.status == "stopped" and stopped.step == 3
    torch.manual_seed(99)
    model = make_model(seed=5)
    checkpointer = Checkpointer(tmp_path / "ckpt")
    restored = checkpointer.restore(model=model)
    budget = plan_budget(model, Regression(), mse, config, plan=CPU, resume_from=restored, clock=session(),
                         quota=None, memory_limit_bytes=10**12)
    assert budget.steps_left == uninterrupted.step - 3
    resumed = train(model, Regression(), mse, config, checkpointer=checkpointer, clock=NeverStop(), progress=False,
                    plot=False)
    assert resumed.resumed_from_step == 3 and resumed.history == uninterrupted.history
    assert_identical(weights(model), expected)


def test_bad_arguments_are_refused_before_any_trial():
    timed = Timed(FakeClock())
    config = TrainConfig(batch_size=4, precision="fp32")
    with pytest.raises(ConfigError, match="on_memory_shortfall"):
        plan_budget(make_model(), Regression(), timed.loss, config, plan=CPU, on_memory_shortfall="pray")
    with pytest.raises(ConfigError, match="quota"):
        plan_budget(make_model(), Regression(), timed.loss, config, plan=CPU, quota="weekly")
    with pytest.raises(ConfigError, match="fewer than train.batch_size"):
        plan_budget(make_model(), Regression(n=3), timed.loss, config, plan=CPU, quota=None)
    with pytest.raises(ConfigError, match="train.precision"):
        plan_budget(make_model(), Regression(), timed.loss, TrainConfig(precision="fp8"), plan=CPU, quota=None)
    assert timed.micro_batches == 0


@pytest.mark.gpu
def test_on_cuda_the_real_memory_is_measured_and_the_generators_stay():
    plan = DevicePlan(world_size=1, backend="nccl", device_type="cuda", accelerator="T4")
    config = TrainConfig(epochs=1, batch_size=8, grad_accum_steps=2, precision="bf16")
    cuda_state, cpu_state = torch.cuda.get_rng_state(0), torch.get_rng_state()
    model = make_model()
    budget = plan_budget(model, Regression(), mse, config, plan=plan, clock=session(), quota=None)
    assert budget.memory is not None and not budget.memory.simulated and budget.memory.fits_planned
    assert budget.config == config and budget.fit.step_s > 0
    assert torch.equal(torch.cuda.get_rng_state(0), cuda_state) and torch.equal(torch.get_rng_state(), cpu_state)
    assert next(model.parameters()).device.type == "cpu"  # only the copy went to the GPU
