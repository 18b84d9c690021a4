"""The weekly GPU quota: how much is left, and how fast this session burns it.

Sources, first that answers wins:

1. ``KAGGLE_KIT_SIM_QUOTA_LEFT_S`` inside the offline sandbox (already-scaled seconds);
2. the Kaggle API (``KaggleApi.quota_view()``: used, allowed and refresh time), when credentials are found and the
   API answers;
3. the run ledger kept with the checkpoint mirror (a JSON list of sessions, each with its accelerator and wall
   seconds) plus the quota the user read off kaggle.com when the ledger started.

Kaggle bills some accelerators faster than wall time (the first attempt saw a two-T4 session charged at twice the
rate). The burn rate per accelerator is a setting; the defaults are observations, not documented figures, and every
report says so.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from kaggle_kit import envvars
from kaggle_kit.errors import ConfigError, KaggleApiError, KaggleKitError, MalformedFileError
from kaggle_kit.fileio import read_json
from kaggle_kit.kaggle_platform import DEFAULT_BURN_RATES, WEEKLY_GPU_QUOTA_S
from kaggle_kit.kaggle_platform import burn_rate as platform_burn_rate

SIM_QUOTA_ENV = envvars.SIM_QUOTA_LEFT_S
DEFAULT_WEEKLY_GPU_S = WEEKLY_GPU_QUOTA_S
WEEK_S = 7 * 24 * 3600.0

__all__ = ["QuotaStatus", "burn_rate", "quota_from_api", "quota_from_ledger", "current_quota", "read_ledger",
           "DEFAULT_BURN_RATES", "DEFAULT_WEEKLY_GPU_S"]


@dataclass(frozen=True)
class QuotaStatus:
    """Weekly GPU quota as one source reports it, in quota seconds.

    Attributes:
        left_s: Quota left.
        used_s: Quota used this week, when the source knows it.
        allowed_s: The week's allowance, when the source knows it.
        source: ``"api"``, ``"ledger"`` or ``"simulated"``.
        refresh_time: When the weekly window resets (API only).
        notes: Caveats (fallbacks taken, unverified figures).
    """

    left_s: float
    used_s: float | None
    allowed_s: float | None
    source: str
    refresh_time: datetime | None = None
    notes: tuple[str, ...] = field(default=())

    def wall_seconds_left(self, accelerator: str, burn_rates: Mapping[str, float] | None = None) -> float | None:
        """Wall seconds of ``accelerator`` the quota left still buys; None when it does not touch the GPU quota."""
        rate = burn_rate(accelerator, burn_rates)
        return None if rate == 0 else self.left_s / rate

    def describe(self) -> str:
        parts = [f"{self.left_s / 3600:.2f} h left"]
        if self.used_s is not None and self.allowed_s is not None:
            parts.append(f"{self.used_s / 3600:.2f} of {self.allowed_s / 3600:.2f} h used")
        if self.refresh_time is not None:
            parts.append(f"refreshes {self.refresh_time.isoformat(timespec='minutes')}")
        return f"{', '.join(parts)} ({self.source})"


def burn_rate(accelerator: str, burn_rates: Mapping[str, float] | None = None) -> float:
    """Quota seconds charged per wall second on ``accelerator`` (e.g. ``"T4x2"``); settings override the defaults."""
    return platform_burn_rate(accelerator, dict(burn_rates or {}))


def quota_from_api(api: Any | None = None) -> QuotaStatus:
    """The GPU quota from ``KaggleApi.quota_view()``.

    Args:
        api: An authenticated ``KaggleApi``; default :func:`kaggle_kit.kaggle_api.make_api`.

    Raises:
        CredentialError: no credentials.
        KaggleApiError: the API did not answer or answered without a GPU quota.
    """
    if api is None:
        from kaggle_kit.kaggle_api import make_api

        api = make_api()
    try:
        response = api.quota_view()
    except KaggleKitError:
        raise
    except Exception as exc:  # requests, HTTP and decoding errors all mean the same here: no answer
        raise KaggleApiError(f"the quota query (GetAcceleratorQuotaStatistics) failed: {exc}. Check internet "
                             "(Settings > Internet on) and credentials, or give the run ledger instead") from exc
    gpu = getattr(response, "gpu_quota", None)
    if gpu is None or gpu.total_time_allowed is None:
        raise KaggleApiError("the quota query answered without a GPU quota: give the run ledger instead")
    used = gpu.time_used.total_seconds() if gpu.time_used is not None else 0.0
    allowed = gpu.total_time_allowed.total_seconds()
    return QuotaStatus(left_s=max(0.0, allowed - used), used_s=used, allowed_s=allowed, source="api",
                       refresh_time=response.quota_refresh_time)


def _timestamp(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _normalise_accelerator(value: Any) -> str:
    """``"T4x2"``, ``"T4 x2"`` and ``"T4x2 x2"`` (kind plus count, as some writers record it) all mean two T4s."""
    if not isinstance(value, str) or not value.strip():
        return "unknown"
    text = value.strip()
    match = re.fullmatch(r"(.+?)\s+x(\d+)", text)
    if match is None:
        return text
    base, count = match.groups()
    return base if base.endswith(f"x{count}") else f"{base}x{count}"


def read_ledger(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Sessions from a run ledger, each with ``accelerator``, wall ``seconds`` and ``ended`` (epoch or None).

    Accepts the checkpoint mirror's ``ledger.json`` (``{"format": "kaggle-kit-ledger/1", "sessions": [{"started",
    "ended", "accelerator", ...}]}``, seconds from start to end) and a plain JSON list of ``{"accelerator",
    "seconds", "ended"?}``.

    Raises:
        ConfigError: the file is missing or not JSON, or an entry gives neither seconds nor start and end.
    """
    ledger = Path(path)
    if not ledger.exists():
        raise ConfigError(f"run ledger {ledger} does not exist: pass the ledger.json the checkpoint mirror keeps, "
                          "or enter the quota by hand")
    try:
        data = read_json(ledger)
    except MalformedFileError as exc:
        raise ConfigError(f"run ledger {ledger} is not readable JSON ({exc})") from None
    sessions = data.get("sessions") if isinstance(data, dict) else data
    if not isinstance(sessions, list):
        raise ConfigError(f"run ledger {ledger} should hold a JSON list of sessions")
    out = []
    for i, entry in enumerate(sessions):
        if not isinstance(entry, dict):
            raise ConfigError(f"run ledger {ledger}, entry {i}: expected an object, got {entry!r}")
        started, ended = _timestamp(entry.get("started")), _timestamp(entry.get("ended"))
        seconds = entry.get("seconds", entry.get("wall_s"))
        if not isinstance(seconds, (int, float)):
            if started is None or ended is None:
                raise ConfigError(f"run ledger {ledger}, entry {i}: needs \"seconds\" (wall seconds) or "
                                  f"\"started\" and \"ended\" times, got {entry!r}")
            seconds = max(0.0, ended - started)
        out.append({"accelerator": _normalise_accelerator(entry.get("accelerator")), "seconds": float(seconds),
                    "ended": ended if ended is not None else started})
    return out


def quota_from_ledger(path: str | os.PathLike[str], *, allowed_s: float = DEFAULT_WEEKLY_GPU_S,
                      entered_used_s: float = 0.0, since: float | None = None,
                      burn_rates: Mapping[str, float] | None = None) -> QuotaStatus:
    """Estimate the quota from the run ledger and a figure the user entered.

    Args:
        path: The ledger file.
        allowed_s: The weekly allowance (Kaggle shows it under Settings > Quota); default 30 h.
        entered_used_s: Quota already used when the ledger's window began, as read off kaggle.com.
        since: Epoch seconds; sessions that ended before it are not counted. Default: one week ago.
        burn_rates: Per-accelerator burn rates overriding :data:`DEFAULT_BURN_RATES`.
    """
    cutoff = time.time() - WEEK_S if since is None else since
    used = float(entered_used_s)
    for entry in read_ledger(path):
        ended = entry["ended"]
        if ended is not None and ended < cutoff:
            continue
        used += entry["seconds"] * burn_rate(entry["accelerator"], burn_rates)
    rates = {**DEFAULT_BURN_RATES, **(burn_rates or {})}
    note = "burn rates " + ", ".join(f"{k} {v:g}x" for k, v in rates.items() if v not in (0.0, 1.0)) + " (unverified)"
    return QuotaStatus(left_s=max(0.0, allowed_s - used), used_s=used, allowed_s=allowed_s, source="ledger",
                       notes=(note,))


def current_quota(*, ledger_path: str | os.PathLike[str] | None = None, allowed_s: float = DEFAULT_WEEKLY_GPU_S,
                  entered_used_s: float = 0.0, burn_rates: Mapping[str, float] | None = None,
                  use_api: bool = True) -> QuotaStatus | None:
    """The quota from the best source available; None when no source can tell.

    Raises:
        ConfigError: the sandbox's quota variable is not a number, or the ledger is unreadable.
    """
    sim = os.environ.get(SIM_QUOTA_ENV)
    if sim:
        try:
            left = float(sim)
        except ValueError:
            raise ConfigError(f"{SIM_QUOTA_ENV}={sim!r} is not a number of seconds") from None
        return QuotaStatus(left_s=left, used_s=None, allowed_s=None, source="simulated")
    notes: list[str] = []
    if use_api:
        from kaggle_kit.kaggle_api import find_credentials

        if find_credentials() is None:
            notes.append("no Kaggle credentials: quota not asked of the API")
        else:
            try:
                return quota_from_api()
            except KaggleKitError as exc:
                notes.append(f"API quota unavailable: {exc}")
    if ledger_path is not None:
        status = quota_from_ledger(ledger_path, allowed_s=allowed_s, entered_used_s=entered_used_s,
                                   burn_rates=burn_rates)
        return QuotaStatus(status.left_s, status.used_s, status.allowed_s, status.source,
                           notes=(*notes, *status.notes))
    return None
