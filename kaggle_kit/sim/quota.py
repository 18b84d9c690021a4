"""The accelerator-quota area: the GPU seconds sessions used this quota week, and
``kernels.KernelsApiService/GetAcceleratorQuotaStatistics`` (``kaggle quota``)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from kaggle_kit.kaggle_platform import WEEKLY_GPU_QUOTA_S, WEEKLY_TPU_QUOTA_S
from kaggle_kit.sim.rpc import Body, duration, iso_time, rpc
from kaggle_kit.sim.state import StateStore


def week_bounds(now: float) -> tuple[float, float]:
    """Start and end of the quota week (Kaggle resets GPU quota weekly; modelled as Saturday 00:00 UTC)."""
    day = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day - timedelta(days=(day.weekday() - 5) % 7)
    return start.timestamp(), (start + timedelta(days=7)).timestamp()


class Quota:
    """The quota ledger in the state (one entry per session that used a GPU) and the weekly allowance."""

    def __init__(self, store: StateStore, *, gpu_quota_s: float = WEEKLY_GPU_QUOTA_S) -> None:
        self.store = store
        self.gpu_quota_s = float(gpu_quota_s)

    @property
    def used_s(self) -> float:
        """GPU seconds used in the current quota week."""
        start, _ = week_bounds(time.time())
        with self.store.lock:
            return float(sum(e["gpu_s"] for e in self.store.data["quota"] if e["at"] >= start))

    @property
    def left_s(self) -> float:
        """GPU seconds left this quota week (never below zero)."""
        return max(0.0, self.gpu_quota_s - self.used_s)

    def record_gpu_use(self, gpu_s: float, *, kernel: str = "") -> None:
        """Add a session's GPU seconds to the ledger."""
        if gpu_s <= 0:
            return
        with self.store.lock:
            self.store.data["quota"].append({"at": time.time(), "gpu_s": float(gpu_s), "kernel": kernel})
            self.store.save()

    @rpc("kernels.KernelsApiService/GetAcceleratorQuotaStatistics")
    def get_accelerator_quota_statistics(self, body: Body, user: str) -> dict[str, Any]:
        _, refresh = week_bounds(time.time())
        return {"quotaRefreshTime": iso_time(refresh),
                "gpuQuota": {"timeUsed": duration(self.used_s), "totalTimeAllowed": duration(self.gpu_quota_s),
                             "timeReserved": "0s", "hasEverRun": bool(self.store.data["quota"])},
                "tpuQuota": {"timeUsed": "0s", "totalTimeAllowed": duration(WEEKLY_TPU_QUOTA_S), "timeReserved": "0s"}}
