"""The accelerator and quota guard: catch the wrong GPU, a run that will not fit, and out-of-memory in the first minute."""

from kaggle_kit.guard.accelerator import AcceleratorInfo, DevicePlan, detect_accelerator, plan_devices
from kaggle_kit.guard.clock import SessionClock

__all__ = ["AcceleratorInfo", "DevicePlan", "SessionClock", "detect_accelerator", "plan_devices"]
