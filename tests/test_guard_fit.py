"""Does the planned run fit the session and the quota? Verdicts and the options they offer."""

from __future__ import annotations

import time

import pytest

from kaggle_kit.errors import ConfigError
from kaggle_kit.guard.clock import SessionClock
from kaggle_kit.guard.fit import assess_fit, time_step
from kaggle_kit.guard.quota import QuotaStatus


def _clock(left_s: float) -> SessionClock:
    return SessionClock(start=time.time(), limit_s=left_s)


def test_time_step_skips_warmup_and_takes_median():
    calls = []
    # A fake timer: the three timed steps "take" 1, 5 and 2 seconds; the median is 2.
    readings = iter([0, 1, 10, 15, 20, 22])
    seconds = time_step(lambda: calls.append(1), warmup_steps=2, timed_steps=3, timer=lambda: next(readings))
    assert len(calls) == 5 and seconds == 2
    with pytest.raises(ConfigError):
        time_step(lambda: None, timed_steps=0)


def test_fits_within_session():
    verdict = assess_fit(1.0, steps_per_epoch=100, epochs=5, clock=_clock(3600), upload_margin_s=600)
    assert verdict.fits and verdict.limited_by == "session" and not verdict.options
    assert verdict.estimate_s == 500 and verdict.epochs_that_fit == 5


def test_session_too_short_offers_fewer_epochs_or_resume():
    verdict = assess_fit(10.0, steps_per_epoch=100, epochs=10, clock=_clock(6000), upload_margin_s=600)
    assert not verdict.fits and verdict.limited_by == "session"
    assert verdict.epochs_that_fit == 5  # 5400 s budget / 1000 s per epoch
    assert "train 5 epoch(s) instead of 10" in verdict.options[0]
    assert "resume" in verdict.options[1]
    assert "does NOT fit" in verdict.describe()


def test_quota_on_two_t4_burns_double():
    quota = QuotaStatus(left_s=3000, used_s=None, allowed_s=None, source="simulated")
    plan = dict(steps_per_epoch=500, epochs=4, clock=_clock(43200), quota=quota, upload_margin_s=0)
    two = assess_fit(1.0, accelerator="T4x2", **plan)
    assert two.limited_by == "quota" and two.quota_wall_left_s == 1500
    assert not two.fits and two.epochs_that_fit == 3
    assert "2x quota" in two.options[-1] and "unverified" in two.options[-1]
    one = assess_fit(1.0, accelerator="T4", **plan)  # the same quota buys twice the wall time on one T4
    assert one.fits and one.quota_wall_left_s == 3000
    cpu = assess_fit(1.0, accelerator="none", **plan)  # a CPU session does not touch the GPU quota
    assert cpu.limited_by == "session" and cpu.quota_wall_left_s is None


def test_bad_plan_is_config_error():
    with pytest.raises(ConfigError, match="epoch"):
        assess_fit(1.0, steps_per_epoch=0, epochs=1, clock=_clock(10))


def test_resumed_epoch_counts_only_its_remaining_steps():
    # 3 epochs left of 100 steps at 10 s, 40 steps of the first already done: 2600 s, of which 2400 fit 2 epochs.
    verdict = assess_fit(10.0, steps_per_epoch=100, epochs=3, steps_done=40, clock=_clock(3000), upload_margin_s=600)
    assert verdict.estimate_s == 2600 and not verdict.fits and verdict.epochs_that_fit == 2
    with pytest.raises(ConfigError, match="steps_done"):
        assess_fit(10.0, steps_per_epoch=100, epochs=3, steps_done=101, clock=_clock(3000))
    with pytest.raises(ConfigError, match="steps_done"):
        assess_fit(10.0, steps_per_epoch=100, epochs=0, steps_done=1, clock=_clock(3000))
