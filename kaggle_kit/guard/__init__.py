"""The accelerator and quota guard: catch the wrong GPU, a run that will not fit, and out-of-memory in the first minute.

Modules: ``accelerator`` (detect GPUs, plan devices), ``ddp`` (one process per GPU), ``clock`` (session time left),
``quota`` (weekly GPU quota), ``fit`` (will the run fit?), ``memory`` (smoke test, batch-size search), ``compat``
(schedulers across torch versions), ``preflight`` (the table). Nothing heavy is imported here: torch loads on use.
"""

from kaggle_kit.guard.accelerator import AcceleratorInfo, DevicePlan, detect_accelerator, plan_devices
from kaggle_kit.guard.clock import SessionClock
from kaggle_kit.guard.ddp import RankContext, launch
from kaggle_kit.guard.fit import FitVerdict, check_fit
from kaggle_kit.guard.memory import BatchSizeResult, find_batch_size
from kaggle_kit.guard.preflight import PreflightReport, PreflightRow, run_preflight
from kaggle_kit.guard.quota import QuotaStatus, current_quota

__all__ = ["AcceleratorInfo", "BatchSizeResult", "DevicePlan", "FitVerdict", "PreflightReport", "PreflightRow",
           "QuotaStatus", "RankContext", "SessionClock", "check_fit", "current_quota", "detect_accelerator",
           "find_batch_size", "launch", "plan_devices", "run_preflight"]
