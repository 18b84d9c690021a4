"""Schedulers built the same way across torch versions (ReduceLROnPlateau's verbose is gone in current torch)."""

from __future__ import annotations

import inspect

import pytest
import torch

from kaggle_kit.errors import ConfigError
from kaggle_kit.guard.compat import compat_notes, make_grad_scaler, make_scheduler

_VERBOSE_GONE = "verbose" not in inspect.signature(torch.optim.lr_scheduler.ReduceLROnPlateau.__init__).parameters


def _optimizer():
    return torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)


def test_plateau_with_verbose_builds_and_steps():
    if _VERBOSE_GONE:
        with pytest.raises(TypeError):  # the bug the first attempt hit
            torch.optim.lr_scheduler.ReduceLROnPlateau(_optimizer(), verbose=True)
        with pytest.warns(UserWarning, match="verbose"):
            sched = make_scheduler("plateau", _optimizer(), mode="max", patience=0, factor=0.5, verbose=True)
    else:
        sched = make_scheduler("plateau", _optimizer(), mode="max", patience=0, factor=0.5, verbose=True)
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    sched.step(1.0)
    sched.step(0.5)
    sched.step(0.4)
    assert sched.optimizer.param_groups[0]["lr"] < 0.1


def test_names_classes_and_errors():
    assert isinstance(make_scheduler("cosine", _optimizer(), T_max=10), torch.optim.lr_scheduler.CosineAnnealingLR)
    assert isinstance(make_scheduler(torch.optim.lr_scheduler.StepLR, _optimizer(), step_size=2),
                      torch.optim.lr_scheduler.StepLR)
    with pytest.raises(ConfigError, match="unknown scheduler"):
        make_scheduler("warp-speed", _optimizer())
    with pytest.raises(ConfigError, match="patiense"):
        make_scheduler("ReduceLROnPlateau", _optimizer(), patiense=3)


def test_notes_and_scaler():
    notes = compat_notes()
    assert any("ReduceLROnPlateau" in n for n in notes) == _VERBOSE_GONE
    scaler = make_grad_scaler(enabled=False)
    assert not scaler.is_enabled()
