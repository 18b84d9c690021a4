"""Will the planned run fit? Time a few real steps and compare with the session time and quota left.

The budget is the smaller of the session's time left and the wall time the GPU quota still buys at this
accelerator's burn rate, less a margin for the final checkpoint upload. When the run does not fit, the verdict
offers the two ways out: fewer epochs (how many fit), or keep the plan and let the deadline guard stop cleanly and
resume from the mirrored checkpoint in the next session.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from kaggle_kit.errors import ConfigError
from kaggle_kit.guard.clock import SessionClock
from kaggle_kit.guard.quota import QuotaStatus, burn_rate

DEFAULT_UPLOAD_MARGIN_S = 600.0

__all__ = ["FitVerdict", "time_step", "assess_fit", "check_fit", "DEFAULT_UPLOAD_MARGIN_S"]


@dataclass(frozen=True)
class FitVerdict:
    """Whether the planned run fits the time and quota left, and what to do if not.

    Attributes:
        fits: The whole plan fits the budget.
        step_s: Measured seconds per optimizer step.
        estimate_s: Estimated wall time of the planned run.
        budget_s: Wall time available for training (after the upload margin).
        limited_by: ``"session"`` or ``"quota"``: which limit is the smaller.
        session_left_s: Session time left.
        quota_wall_left_s: Wall time the quota buys on this accelerator; None if it does not touch the GPU quota.
        epochs_planned: Epochs planned.
        epochs_that_fit: Whole epochs that fit the budget.
        options: What to do when it does not fit; empty when it fits.
    """

    fits: bool
    step_s: float
    estimate_s: float
    budget_s: float
    limited_by: str
    session_left_s: float
    quota_wall_left_s: float | None
    epochs_planned: int
    epochs_that_fit: int
    options: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        head = (f"planned {self.epochs_planned} epoch(s): about {self.estimate_s / 3600:.2f} h at {self.step_s:.3f} "
                f"s/step; budget {self.budget_s / 3600:.2f} h (limited by {self.limited_by})")
        if self.fits:
            return head + ": fits"
        return head + ": does NOT fit. Options: " + " | ".join(self.options)


def _sync() -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_step(step: Callable[[], object], *, warmup_steps: int = 2, timed_steps: int = 3,
              timer: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds per call of ``step`` after ``warmup_steps`` untimed calls (compilation, cuDNN autotuning)."""
    if timed_steps < 1 or warmup_steps < 0:
        raise ConfigError(f"timed_steps={timed_steps} must be >= 1 and warmup_steps={warmup_steps} >= 0")
    for _ in range(warmup_steps):
        step()
    _sync()
    durations = []
    for _ in range(timed_steps):
        start = timer()
        step()
        _sync()
        durations.append(timer() - start)
    return statistics.median(durations)


def assess_fit(step_s: float, *, steps_per_epoch: int, epochs: int, clock: SessionClock,
               quota: QuotaStatus | None = None, accelerator: str = "none", eval_s_per_epoch: float = 0.0,
               upload_margin_s: float = DEFAULT_UPLOAD_MARGIN_S,
               burn_rates: Mapping[str, float] | None = None, steps_done: int = 0) -> FitVerdict:
    """Compare the planned run with the budget.

    Args:
        step_s: Seconds per optimizer step.
        steps_per_epoch: Optimizer steps per epoch.
        epochs: Epochs still to train, counting the one in progress.
        clock: The session clock.
        quota: The GPU quota; None when unknown (only the session limit counts then).
        accelerator: The accelerator kind, for its burn rate (e.g. ``"T4x2"``).
        eval_s_per_epoch: Validation time per epoch.
        upload_margin_s: Kept free for the final checkpoint upload.
        burn_rates: Per-accelerator burn rates overriding the defaults.
        steps_done: Steps of the epoch in progress already done (a resumed run); they are not timed again.
    """
    if steps_per_epoch < 1 or epochs < 0 or step_s < 0:
        raise ConfigError(f"cannot assess a plan of {epochs} epoch(s) x {steps_per_epoch} step(s) at {step_s} s/step")
    if not 0 <= steps_done <= (steps_per_epoch if epochs else 0):
        raise ConfigError(f"steps_done = {steps_done} must lie between 0 and the {steps_per_epoch} steps of the "
                          f"epoch in progress ({epochs} epoch(s) left)")
    epoch_s = step_s * steps_per_epoch + eval_s_per_epoch
    done_s = step_s * steps_done
    estimate = epoch_s * epochs - done_s
    session_left = clock.time_left()
    quota_wall = quota.wall_seconds_left(accelerator, burn_rates) if quota is not None else None
    available, limited_by = session_left, "session"
    if quota_wall is not None and quota_wall < session_left:
        available, limited_by = quota_wall, "quota"
    budget = max(0.0, available - upload_margin_s)
    # The epoch in progress costs its remaining steps only: count it as if its done steps were budget.
    fitting = epochs if epoch_s == 0 else min(epochs, math.floor((budget + done_s) / epoch_s))
    fits = estimate <= budget
    options: list[str] = []
    if not fits:
        if fitting >= 1:
            options.append(f"train {fitting} epoch(s) instead of {epochs} (about {fitting * epoch_s / 3600:.2f} h)")
        else:
            options.append(f"not even one epoch ({epoch_s / 3600:.2f} h) fits the {budget / 3600:.2f} h left")
        if limited_by == "session":
            sessions = math.ceil(estimate / max(budget, 1e-9)) if budget > 0 else "several"
            options.append(f"keep {epochs} epoch(s): the deadline guard checkpoints, mirrors and stops "
                           f"{upload_margin_s / 60:.0f} min before the limit; start a new session to resume "
                           f"(about {sessions} sessions in all)")
        else:
            rate = burn_rate(accelerator, burn_rates)
            refresh = (f" (quota refreshes {quota.refresh_time.isoformat(timespec='minutes')})"
                       if quota is not None and quota.refresh_time is not None else "")
            options.append(f"stop cleanly when the quota runs low and resume after it refreshes{refresh}; a "
                           f"{accelerator} session burns {rate:g}x quota per wall second (unverified)")
    return FitVerdict(fits=fits, step_s=step_s, estimate_s=estimate, budget_s=budget, limited_by=limited_by,
                      session_left_s=session_left, quota_wall_left_s=quota_wall, epochs_planned=epochs,
                      epochs_that_fit=fitting, options=tuple(options))


def check_fit(step: Callable[[], object], *, steps_per_epoch: int, epochs: int, clock: SessionClock | None = None,
              quota: QuotaStatus | None = None, accelerator: str = "none", eval_s_per_epoch: float = 0.0,
              upload_margin_s: float = DEFAULT_UPLOAD_MARGIN_S, warmup_steps: int = 2, timed_steps: int = 3,
              burn_rates: Mapping[str, float] | None = None, steps_done: int = 0,
              timer: Callable[[], float] = time.perf_counter) -> FitVerdict:
    """Time ``step`` (one optimizer step of the real run, every micro-batch of it) and assess the plan.

    See :func:`assess_fit`; :func:`kaggle_kit.guard.budget.plan_budget` builds the step and counts the steps.
    """
    step_s = time_step(step, warmup_steps=warmup_steps, timed_steps=timed_steps, timer=timer)
    return assess_fit(step_s, steps_per_epoch=steps_per_epoch, epochs=epochs,
                      clock=clock or SessionClock.from_environment(), quota=quota, accelerator=accelerator,
                      eval_s_per_epoch=eval_s_per_epoch, upload_margin_s=upload_margin_s, burn_rates=burn_rates,
                      steps_done=steps_done)
