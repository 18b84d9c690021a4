"""A run's state in the project: one small JSON file per run, and a lock so two ``kaggle-kit run`` of the same run
refuse each other.

The file is written before every step that changes Kaggle (a push, a submission) and after every session ends, so a
``kaggle-kit run`` killed at any point finds, when started again, the session it left running and re-attaches to it
instead of pushing a second one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kaggle_kit.errors import MalformedFileError, RunError
from kaggle_kit.fileio import atomic_write_json, read_json
from kaggle_kit.project import RUNS_DIR

__all__ = ["RUNS_DIR", "STATE_FORMAT", "RunLock", "RunState", "SessionRecord", "check_run_name", "load_state",
           "run_folder", "runs_dir", "save_state", "state_path"]

STATE_FORMAT = "kaggle-kit-run/1"
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


@dataclass
class SessionRecord:
    """One pushed session of a run.

    Attributes:
        index: 1 for the first session of the run.
        notebook: The declared notebook it ran (training, or the inference one).
        version: The kernel version the push created (None while the push is under way).
        versions_before: The kernel's newest version before the push: a push cut off before its reply was saved
            is found again as the first version above it.
        pushed_at, ended_at: Epoch seconds (ended_at None while it runs).
        time_limit_s: The session limit it was pushed with (None: Kaggle's own).
        status: Kaggle's last status; kind: the classifier's kind once it ended.
        reason: One line on how it ended.
        mirror_step_before, mirror_step_after: The mirror's newest checkpoint step before the push and after the end.
        step: The training step it reached (from its output's progress file), resumed_from: where it started.
        output: The folder its output was downloaded to, relative to the run's folder.
    """

    index: int
    notebook: str
    version: int | None = None
    versions_before: int = 0
    pushed_at: float = 0.0
    ended_at: float | None = None
    time_limit_s: float | None = None
    status: str = ""
    kind: str = ""
    reason: str = ""
    mirror_step_before: int | None = None
    mirror_step_after: int | None = None
    step: int | None = None
    resumed_from: int | None = None
    seconds_per_step: float | None = None
    output: str | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


@dataclass
class RunState:
    """Where a run stands.

    Attributes:
        run: The run's name (the state file's name).
        notebook: The training notebook.
        kernel: Its kernel ``owner/slug``.
        code_version: The code dataset's version pinned for every session of the run.
        phase: ``training``, ``trained``, ``inferring``, ``inferred``, ``submitting`` or ``done`` (submitted).
        stop_reason: Why the run last stopped short of its goal, with what to do ("" when it did not).
        sessions: Every session pushed, in order.
        submission: What was submitted (``{"ref", "score", ...}``), or None.
    """

    run: str
    notebook: str
    kernel: str
    code_version: int | None = None
    phase: str = "training"
    stop_reason: str = ""
    created_at: float = field(default_factory=time.time)
    sessions: list[SessionRecord] = field(default_factory=list)
    submission: dict[str, Any] | None = None

    def training_sessions(self) -> list[SessionRecord]:
        return [s for s in self.sessions if s.notebook == self.notebook]

    def active(self) -> SessionRecord | None:
        """The session pushed and not yet ended, if any."""
        return next((s for s in reversed(self.sessions) if not s.ended), None)


def check_run_name(name: str) -> str:
    """``name`` when it can name a state file (letters, digits, ``_.-``); else RunError."""
    if not _RUN_NAME.fullmatch(name or ""):
        raise RunError(f"run name {name!r}: use letters, digits, '.', '_' and '-' (at most 80), e.g. train-2")
    return name


def runs_dir(root: Path) -> Path:
    """Where a project keeps its runs (their state files and folders)."""
    return Path(root) / RUNS_DIR


def state_path(folder: Path, run: str) -> Path:
    """The state file of ``run`` in the runs folder ``folder``."""
    return Path(folder) / f"{check_run_name(run)}.json"


def run_folder(folder: Path, run: str) -> Path:
    """Where a run keeps the sessions' downloaded outputs, the summary and the figure."""
    return Path(folder) / check_run_name(run)


def save_state(folder: Path, state: RunState) -> Path:
    path = state_path(folder, state.run)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"format": STATE_FORMAT, **dataclasses.asdict(state)}, indent=1)
    return path


def load_state(folder: Path, run: str) -> RunState | None:
    """The saved state of ``run``, or None when there is none.

    Raises:
        RunError: the file is not a run state (named, with what to do).
    """
    path = state_path(folder, run)
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except MalformedFileError as exc:
        raise RunError(f"{exc}: move {path} away to start the run afresh") from None
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise RunError(f"{path} is not a kaggle-kit run state ({STATE_FORMAT}): move it away to start afresh")
    try:
        sessions = [SessionRecord(**s) for s in data.get("sessions") or []]
        known = {f.name for f in dataclasses.fields(RunState)} - {"sessions"}
        state = RunState(**{k: v for k, v in data.items() if k in known}, sessions=sessions)
    except TypeError as exc:
        raise RunError(f"{path} holds a field this kit does not know ({exc}): move it away to start afresh") from None
    if state.run != run:
        raise RunError(f"{path} is the state of run {state.run!r}, not {run!r}: move it away to start afresh")
    return state


class RunLock:
    """An exclusive lock on one run (an advisory ``flock`` held while ``kaggle-kit run`` works on it).

    The kernel drops the lock when the process dies, so a killed ``kaggle-kit run`` never leaves the run locked.
    """

    def __init__(self, folder: Path, run: str) -> None:
        self.path = state_path(folder, run).with_suffix(".lock")
        self._file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunError(f"run {self.path.stem!r} is already being carried by {holder} (lock {self.path}): "
                           "wait for it, or stop it first; two runs of the same notebook would push twice") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
