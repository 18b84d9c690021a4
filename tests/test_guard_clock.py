"""The session clock: process start from /proc, the sandbox's simulated start and limit."""

from __future__ import annotations

import os
import time

import pytest

from kaggle_kit.errors import ConfigError
from kaggle_kit.guard.clock import SessionClock, process_start_time


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for name in ("KAGGLE_KIT_SIM_SESSION_START", "KAGGLE_KIT_SIM_SESSION_LIMIT_S", "KAGGLE_KIT_SESSION_START"):
        monkeypatch.delenv(name, raising=False)


def test_process_start_is_before_now_and_after_boot():
    started = process_start_time()
    assert started is not None
    assert started <= time.time() + 1
    assert process_start_time(os.getppid()) <= started + 1  # the parent started first


def test_default_limit_is_twelve_hours_and_configurable():
    clock = SessionClock.from_environment()
    assert clock.source == "process" and clock.limit_s == 12 * 3600
    assert 0 < clock.time_left() <= 12 * 3600
    assert SessionClock.from_environment(limit_s=3600).limit_s == 3600


def test_sandbox_variables_win(monkeypatch):
    monkeypatch.setenv("KAGGLE_KIT_SIM_SESSION_START", str(time.time() - 50))
    monkeypatch.setenv("KAGGLE_KIT_SIM_SESSION_LIMIT_S", "60")
    clock = SessionClock.from_environment(limit_s=43200)
    assert clock.source == "simulated" and clock.limit_s == 60
    assert 0 < clock.time_left() <= 10.5
    assert clock.should_stop(20) and not clock.should_stop(1)


def test_time_left_never_negative():
    clock = SessionClock(start=time.time() - 100, limit_s=10)
    assert clock.time_left() == 0 and clock.should_stop(0)


def test_bad_values(monkeypatch):
    monkeypatch.setenv("KAGGLE_KIT_SIM_SESSION_LIMIT_S", "soon")
    with pytest.raises(ConfigError, match="KAGGLE_KIT_SIM_SESSION_LIMIT_S"):
        SessionClock.from_environment()
    monkeypatch.delenv("KAGGLE_KIT_SIM_SESSION_LIMIT_S")
    with pytest.raises(ConfigError, match="not positive"):
        SessionClock.from_environment(limit_s=0)


def test_deadline_margin_scales_with_the_session_and_the_measured_times():
    from kaggle_kit.guard.clock import deadline_margin

    # A full Kaggle session keeps today's ten minutes, plus the saves, a step and an evaluation.
    assert deadline_margin(12 * 3600, save_s=2.0, step_s=1.0, eval_s=30.0) == 600 + 4 + 1 + 30
    # A five-minute session (or 12 h at --clock-scale 144) keeps 5 % of it.
    assert deadline_margin(300, save_s=0.5, step_s=0.2) == pytest.approx(15 + 1 + 0.2)
    # Never more than half the session, however slow the save.
    assert deadline_margin(60, save_s=100) == 30
