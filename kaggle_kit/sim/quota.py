"""The accelerator-quota area: the GPU and TPU seconds sessions used this quota week, and
``kernels.KernelsApiService/GetAcceleratorQuotaStatistics`` (``kaggle quota``).

A running session is metered while it runs, as Kaggle counts it, so a notebook reading its quota mid-run sees it
move: the ledger holds finished sessions, and each running one adds its time so far at its burn rates.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from kaggle_kit.kaggle_platform import WEEKLY_GPU_QUOTA_S, WEEKLY_TPU_QUOTA_S, burn_rate, tpu_burn_rate
from kaggle_kit.sim.rpc import Body, duration, iso_time, rpc
from kaggle_kit.sim.state import StateStore


def week_bounds(now: float) -> tuple[float, float]:
    """Start and end of the quota week (Kaggle resets GPU quota weekly; modelled as Saturday 00:00 UTC)."""
    day = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day - timedelta(days=(day.weekday() - 5) % 7)
    return start.timestamp(), (start + timedelta(days=7)).timestamp()


@dataclass(frozen=True)
class _Meter:
    """A running session's quota clock: when it started and quota seconds per real second, GPU and TPU."""

    started: float
    gpu_rate: float
    tpu_rate: float

    def used(self, now: float) -> tuple[float, float]:
        elapsed = max(0.0, now - self.started)
        return elapsed * self.gpu_rate, elapsed * self.tpu_rate


class Quota:
    """The quota ledger in the state (one entry per session that used an accelerator), the sessions running now,
    and the weekly allowances."""

    def __init__(self, store: StateStore, *, gpu_quota_s: float = WEEKLY_GPU_QUOTA_S,
                 tpu_quota_s: float = WEEKLY_TPU_QUOTA_S) -> None:
        self.store = store
        self.gpu_quota_s = float(gpu_quota_s)
        self.tpu_quota_s = float(tpu_quota_s)
        self._lock = threading.Lock()
        self._running: dict[str, _Meter] = {}

    def _used(self) -> tuple[float, float]:
        now = time.time()
        start, _ = week_bounds(now)
        with self.store.lock:
            entries = [e for e in self.store.data["quota"] if e["at"] >= start]
            gpu = sum(float(e.get("gpu_s", 0.0)) for e in entries)
            tpu = sum(float(e.get("tpu_s", 0.0)) for e in entries)
        with self._lock:
            for meter in self._running.values():
                live_gpu, live_tpu = meter.used(now)
                gpu, tpu = gpu + live_gpu, tpu + live_tpu
        return gpu, tpu

    @property
    def used_s(self) -> float:
        """GPU seconds used in the current quota week, the running sessions' included."""
        return self._used()[0]

    @property
    def tpu_used_s(self) -> float:
        """TPU seconds used in the current quota week, the running sessions' included."""
        return self._used()[1]

    @property
    def left_s(self) -> float:
        """GPU seconds left this quota week (never below zero)."""
        return max(0.0, self.gpu_quota_s - self.used_s)

    def start_session(self, session: str, *, accelerator: str, clock_scale: float) -> None:
        """Start metering ``session`` (any unique name) on ``accelerator``, ``clock_scale`` Kaggle seconds per second."""
        meter = _Meter(time.time(), burn_rate(accelerator) * clock_scale, tpu_burn_rate(accelerator) * clock_scale)
        with self._lock:
            self._running[session] = meter

    def end_session(self, session: str, *, kernel: str = "") -> tuple[float, float]:
        """Stop metering ``session`` and bill what it used to the ledger; returns (GPU, TPU) seconds billed."""
        with self._lock:
            meter = self._running.pop(session, None)
        if meter is None:
            return 0.0, 0.0
        gpu_s, tpu_s = meter.used(time.time())
        self.record_use(gpu_s, tpu_s=tpu_s, kernel=kernel)
        return gpu_s, tpu_s

    def record_gpu_use(self, gpu_s: float, *, kernel: str = "") -> None:
        """Add a session's GPU seconds to the ledger."""
        self.record_use(gpu_s, kernel=kernel)

    def record_use(self, gpu_s: float, *, tpu_s: float = 0.0, kernel: str = "") -> None:
        """Add a session's GPU and TPU seconds to the ledger."""
        if gpu_s <= 0 and tpu_s <= 0:
            return
        with self.store.lock:
            self.store.data["quota"].append({"at": time.time(), "gpu_s": float(max(gpu_s, 0.0)),
                                             "tpu_s": float(max(tpu_s, 0.0)), "kernel": kernel})
            self.store.save()

    @rpc("kernels.KernelsApiService/GetAcceleratorQuotaStatistics")
    def get_accelerator_quota_statistics(self, body: Body, user: str) -> dict[str, Any]:
        _, refresh = week_bounds(time.time())
        gpu, tpu = self._used()
        with self.store.lock:
            entries = self.store.data["quota"]
            gpu_ever = any(float(e.get("gpu_s", 0.0)) > 0 for e in entries)
            tpu_ever = any(float(e.get("tpu_s", 0.0)) > 0 for e in entries)
        return {"quotaRefreshTime": iso_time(refresh),
                "gpuQuota": {"timeUsed": duration(gpu), "totalTimeAllowed": duration(self.gpu_quota_s),
                             "timeReserved": "0s", "hasEverRun": gpu_ever or gpu > 0},
                "tpuQuota": {"timeUsed": duration(tpu), "totalTimeAllowed": duration(self.tpu_quota_s),
                             "timeReserved": "0s", "hasEverRun": tpu_ever or tpu > 0}}
