"""A resume applies this run's optimizer and scheduler settings over the checkpoint's, keeping the run's progress."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from _stop_after import StopAfter
from kaggle_kit.checkpoint import Checkpointer
from kaggle_kit.errors import CheckpointError
from kaggle_kit.training import TrainConfig, make_optimizer, make_scheduler, train
from kaggle_kit.training.hyperparameters import apply_declared_hyperparameters, declared_hyperparameters


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(4, 1)


def _trained(config: TrainConfig, total_steps: int, steps: int, scheduler_factory=None):
    """An optimizer and scheduler after ``steps`` steps, as a checkpoint would carry them, and their record."""
    model = _model()
    optimizer = make_optimizer(model, config)
    scheduler = (scheduler_factory or (lambda o, n: make_scheduler(o, n, config)))(optimizer, total_steps)
    record = declared_hyperparameters(optimizer, scheduler, total_steps=total_steps)
    for _ in range(steps):
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        if scheduler is not None and not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step()
    return optimizer.state_dict(), scheduler.state_dict() if scheduler is not None else None, record


def _resumed(config: TrainConfig, total_steps: int, saved, scheduler_factory=None):
    """This run's freshly built optimizer and scheduler, loaded from ``saved``, and this run's record."""
    model = _model()
    optimizer = make_optimizer(model, config)
    scheduler = (scheduler_factory or (lambda o, n: make_scheduler(o, n, config)))(optimizer, total_steps)
    now = declared_hyperparameters(optimizer, scheduler, total_steps=total_steps)
    optimizer.load_state_dict(saved[0])
    if scheduler is not None:
        scheduler.load_state_dict(saved[1])
    return optimizer, scheduler, now


def test_a_changed_lr_and_run_length_apply_to_a_cosine_schedule_at_its_position():
    old = TrainConfig(lr=1e-4, warmup_steps=5, precision="fp32")
    *saved, then = _trained(old, total_steps=100, steps=30)
    new = TrainConfig(lr=3e-4, warmup_steps=5, precision="fp32")
    optimizer, scheduler, now = _resumed(new, 200, saved)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * 25 / 95)))
    changes = apply_declared_hyperparameters(optimizer, scheduler, now=now, then=then, where="ckpt")
    assert changes == ["lr 0.0001 -> 0.0003", "the schedule spans 200 steps (was 100)"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi * 25 / 195)))
    assert scheduler.base_lrs == [3e-4] and scheduler.last_epoch == 30
    assert optimizer.state_dict()["state"][0]["step"] == 30  # the moments stay
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi * 26 / 195)))


def test_other_optimizer_settings_apply_and_an_unchanged_config_changes_nothing():
    *saved, then = _trained(TrainConfig(weight_decay=0.01, precision="fp32"), 50, 10)
    optimizer, scheduler, now = _resumed(TrainConfig(weight_decay=0.1, precision="fp32"), 50, saved)
    assert apply_declared_hyperparameters(optimizer, scheduler, now=now, then=then, where="c") == [
        "weight_decay 0.01 -> 0.1"]
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    assert isinstance(optimizer.param_groups[0]["betas"], tuple)
    optimizer, scheduler, now = _resumed(TrainConfig(weight_decay=0.01, precision="fp32"), 50, saved)
    restored_lr = optimizer.param_groups[0]["lr"]
    assert apply_declared_hyperparameters(optimizer, scheduler, now=now, then=then, where="c") == []
    assert optimizer.param_groups[0]["lr"] == restored_lr


def test_a_plateau_keeps_its_reductions_and_restarts_its_best_when_the_mode_flips():
    old = TrainConfig(lr=1e-3, scheduler="plateau", monitor_mode="max", precision="fp32")
    model = _model()
    optimizer = make_optimizer(model, old)
    scheduler = make_scheduler(optimizer, 10, old)
    then = declared_hyperparameters(optimizer, scheduler, total_steps=10)
    for score in (1.0, 0.5, 0.5, 0.5):  # no improvement: the plateau halves the lr
        scheduler.step(score)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    saved = (optimizer.state_dict(), scheduler.state_dict())
    new = TrainConfig(lr=2e-3, scheduler="plateau", monitor_mode="min", precision="fp32")
    optimizer, scheduler, now = _resumed(new, 10, saved)
    changes = apply_declared_hyperparameters(optimizer, scheduler, now=now, then=then, where="c")
    assert changes == ["lr 0.001 -> 0.002", "plateau mode max -> min"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # the new lr, halved as the old one was
    assert scheduler.mode == "min" and scheduler.best == math.inf and scheduler.num_bad_epochs == 0


def _step_lr(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.StepLR:
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, total_steps // 4), gamma=0.5)


def test_a_scheduler_the_kit_cannot_retime_refuses_a_new_run_length_with_the_two_ways_on():
    config = TrainConfig(lr=1e-3, precision="fp32")
    *saved, then = _trained(config, 40, 12, scheduler_factory=_step_lr)
    optimizer, scheduler, now = _resumed(config, 80, saved, scheduler_factory=_step_lr)
    with pytest.raises(CheckpointError, match=r"StepLR was built for 40.*set train\.epochs.*back so the run is 40 "
                                              r"steps long, or start a new run from an empty checkpoint folder"):
        apply_declared_hyperparameters(optimizer, scheduler, now=now, then=then, where="c")
    # Only the lr changed: it is rescaled by what the schedule did so far (one halving after 12 of 40 steps).
    optimizer, scheduler, now = _resumed(TrainConfig(lr=4e-3, precision="fp32"), 40, saved, scheduler_factory=_step_lr)
    assert apply_declared_hyperparameters(optimizer, scheduler, now=now, then=then, where="c") == ["lr 0.001 -> 0.004"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3) and scheduler.base_lrs == [4e-3]


def test_a_checkpoint_without_a_record_is_compared_with_its_restored_optimizer():
    config = TrainConfig(lr=1e-3, scheduler="none", precision="fp32")
    *saved, _ = _trained(config, 20, 5)
    optimizer, scheduler, now = _resumed(TrainConfig(lr=5e-4, scheduler="none", precision="fp32"), 20, saved)
    assert apply_declared_hyperparameters(optimizer, scheduler, now=now, then=None, where="c") == ["lr 0.001 -> 0.0005"]
    assert optimizer.param_groups[0]["lr"] == 5e-4
    with pytest.raises(CheckpointError, match="recorded optimizer hyperparameters are malformed"):
        apply_declared_hyperparameters(optimizer, scheduler, now=now, then={"param_groups": 3}, where="c")



class Line(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.x = torch.randn(32, 4, generator=torch.Generator().manual_seed(2))

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.x[index].sum(dim=0, keepdim=True)


def _mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch[0]), batch[1])


def test_resuming_with_a_new_lr_trains_with_it_and_says_so(tmp_path, capsys):
    def run(folder: str, lr: float, stop: int | None):
        config = TrainConfig(epochs=4, batch_size=4, lr=lr, precision="fp32", warmup_steps=2)
        return train(_model(), Line(), _mse, config, checkpointer=Checkpointer(tmp_path / folder, every_minutes=60),
                     clock=StopAfter(stop), progress=False, plot=False)

    reference = run("reference", 3e-4, None)
    run("resumed", 1e-4, 12)
    capsys.readouterr()
    resumed = run("resumed", 3e-4, None)
    # Epochs 2 to 4 ended on the 3e-4 schedule, exactly where a run that always had it is.
    assert [r["lr"] for r in resumed.history[1:]] == [r["lr"] for r in reference.history[1:]]
    assert "applying this run's values: lr 0.0001 -> 0.0003" in capsys.readouterr().out
