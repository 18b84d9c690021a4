"""The accelerator and quota guard: catch the wrong GPU, a run that will not fit, and out-of-memory in the first minute.

Modules: ``accelerator`` (detect GPUs, plan devices), ``ddp`` (one process per GPU), ``clock`` (session time left),
``quota`` (weekly GPU quota), ``fit`` (will the run fit?), ``memory`` (smoke test, batch-size search), ``budget``
(both, for the real optimizer step of a training config), ``compat`` (schedulers across torch versions),
``preflight`` (the table). Nothing heavy is imported here: torch loads on use, and ``budget`` (which needs the
training package and torch) only when one of its names is asked for.
"""

from __future__ import annotations

from kaggle_kit.guard.accelerator import AcceleratorInfo, DevicePlan, detect_accelerator, plan_devices
from kaggle_kit.guard.clock import SessionClock
from kaggle_kit.guard.ddp import RankContext, launch
from kaggle_kit.guard.fit import FitVerdict, check_fit
from kaggle_kit.guard.memory import BatchSizeResult, find_batch_size
from kaggle_kit.guard.preflight import PreflightReport, PreflightRow, run_preflight
from kaggle_kit.guard.quota import QuotaStatus, current_quota
from kaggle_kit.lazy_exports import lazy_exports

_EXPORTS = {"BudgetPlan": "kaggle_kit.guard.budget", "plan_budget": "kaggle_kit.guard.budget"}

__all__ = ["AcceleratorInfo", "BatchSizeResult", "BudgetPlan", "DevicePlan", "FitVerdict", "PreflightReport",
           "PreflightRow", "QuotaStatus", "RankContext", "SessionClock", "check_fit", "current_quota",
           "detect_accelerator", "find_batch_size", "launch", "plan_budget", "plan_devices", "run_preflight"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
