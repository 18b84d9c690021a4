"""The session clock: when this Kaggle session started, its limit, and how much time is left.

Kaggle kills a session at its wall-time limit (12 h) counted from the kernel's start, so the start is the kernel
process's start time, read from ``/proc`` without psutil. The offline sandbox states both the start and the (scaled)
limit in ``KAGGLE_KIT_SIM_SESSION_START`` and ``KAGGLE_KIT_SIM_SESSION_LIMIT_S``; those win over everything else.
Child processes (the DDP ranks) inherit ``KAGGLE_KIT_SESSION_START``, so they count from the kernel's start, not
their own.

:func:`deadline_margin` says how many seconds before the end a run must stop to save in time: a share of the session
(capped) plus the measured save, step and evaluation times, so a short (or time-scaled) session still trains.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from kaggle_kit import envvars
from kaggle_kit.errors import ConfigError
from kaggle_kit.kaggle_platform import SESSION_LIMIT_S

SIM_START_ENV = envvars.SIM_SESSION_START
SIM_LIMIT_ENV = envvars.SIM_SESSION_LIMIT_S
SESSION_START_ENV = envvars.KIT_SESSION_START
DEFAULT_LIMIT_S = SESSION_LIMIT_S

MARGIN_SHARE = 0.05
MARGIN_SHARE_CAP_S = 600.0
# Disk speed assumed for a save before one has been timed; well below the local disks the benchmarks measured.
ESTIMATED_SAVE_BYTES_PER_S = 50e6

__all__ = ["SessionClock", "DEFAULT_LIMIT_S", "SESSION_START_ENV", "process_start_time", "deadline_margin",
           "describe_margin", "MARGIN_SHARE", "MARGIN_SHARE_CAP_S", "ESTIMATED_SAVE_BYTES_PER_S"]


def _float_env(name: str) -> float | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds: set it to e.g. 43200 or unset it") from None


def process_start_time(pid: int | str = "self") -> float | None:
    """Epoch seconds at which a process started, from ``/proc``; None where ``/proc`` is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        btime_line = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, StopIteration):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2:].split()
    start_ticks = int(fields[19])  # field 22 of the whole line: starttime, in clock ticks after boot
    return int(btime_line.split()[1]) + start_ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class SessionClock:
    """Wall-clock view of one session.

    Attributes:
        start: Epoch seconds when the session (the kernel process) started.
        limit_s: The session's wall-time limit in seconds.
        source: Where ``start`` came from: ``"simulated"``, ``"inherited"``, ``"process"`` or ``"now"``.
    """

    start: float
    limit_s: float
    source: str = "process"

    @classmethod
    def from_environment(cls, *, limit_s: float | None = None) -> SessionClock:
        """Build the clock of the current session.

        Args:
            limit_s: The configured session limit; ignored inside the sandbox, which states its own; default 12 h.

        Raises:
            ConfigError: a limit is not positive, or an environment variable is not a number.
        """
        sim_limit = _float_env(SIM_LIMIT_ENV)
        limit = sim_limit if sim_limit is not None else (DEFAULT_LIMIT_S if limit_s is None else float(limit_s))
        if limit <= 0:
            raise ConfigError(f"session limit {limit} s is not positive: configure a limit such as 43200 (12 h)")
        sim_start = _float_env(SIM_START_ENV)
        if sim_start is not None:
            return cls(start=sim_start, limit_s=limit, source="simulated")
        inherited = _float_env(SESSION_START_ENV)
        if inherited is not None:
            return cls(start=inherited, limit_s=limit, source="inherited")
        started = process_start_time()
        if started is not None:
            return cls(start=started, limit_s=limit, source="process")
        return cls(start=time.time(), limit_s=limit, source="now")

    def elapsed(self) -> float:
        """Seconds since the session started."""
        return max(0.0, time.time() - self.start)

    def time_left(self) -> float:
        """Seconds until the session limit; never negative."""
        return max(0.0, self.limit_s - self.elapsed())

    def should_stop(self, margin_s: float) -> bool:
        """Whether time left has fallen to ``margin_s`` or below: checkpoint, flush the mirror and stop now."""
        return self.time_left() <= margin_s

    def describe(self) -> str:
        return (f"session started {self.elapsed() / 60:.1f} min ago ({self.source}), "
                f"limit {self.limit_s / 3600:.2f} h, {self.time_left() / 60:.1f} min left")


def deadline_margin(session_s: float, *, save_s: float, step_s: float = 0.0, eval_s: float = 0.0) -> float:
    """Seconds before the session's end at which to save and stop, scaled with the session.

    ``MARGIN_SHARE`` of the session (at most ``MARGIN_SHARE_CAP_S``) for the mirror upload and the unexpected, plus
    two saves, one more step (the stop is checked between steps) and an evaluation (the step may end an epoch); never
    more than half the session, so a short session still trains.

    Args:
        session_s: The time the run has: the session's time left when training started.
        save_s: A checkpoint save, measured (or estimated before the first).
        step_s: An optimizer step, measured.
        eval_s: An evaluation, measured; 0 before the first.
    """
    share = min(MARGIN_SHARE_CAP_S, MARGIN_SHARE * session_s)
    return min(share + 2 * save_s + step_s + eval_s, session_s / 2)


def describe_margin(margin_s: float, session_s: float, *, save_s: float) -> str:
    """One line for the log at the start: the margin and what it is made of (``save_s`` still an estimate)."""
    share = min(MARGIN_SHARE_CAP_S, MARGIN_SHARE * session_s)
    return (f"deadline margin {margin_s:.0f} s: save and stop when that little of the {session_s / 60:.1f} min left "
            f"remains ({MARGIN_SHARE:.0%} of it, at most {MARGIN_SHARE_CAP_S:.0f} s, = {share:.0f} s, plus two saves "
            f"of {save_s:.1f} s as estimated from the state size, then as measured, and a step and an evaluation as "
            "measured; train.deadline_margin_s fixes it)")
