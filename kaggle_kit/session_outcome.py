"""How a Kaggle session ended, read from what Kaggle reports: one classifier for every command that polls.

Kaggle's status says little: a session stopped at its time limit, by the weekly quota or by a cancel is
``CANCEL_ACKNOWLEDGED`` (with the output written until then kept), and ``ERROR`` covers both a notebook that raised
and a platform failure. The evidence decides the rest: the session's log (Kaggle's JSON list of stream records, or
plain text), its output files, and what the caller knows (the time limit it pushed with, how long it waited).
No message of the kit's own, and no text of the offline stand-in's, is relied on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kaggle_kit.kaggle_platform import KAGGLE_OUTPUT_FILES

__all__ = [
    "QUEUED",
    "RUNNING",
    "STOPPING",
    "SAVED",
    "COMPLETE",
    "KILLED",
    "USER_ERROR",
    "ERROR",
    "UNKNOWN",
    "SessionOutcome",
    "classify",
    "status_name",
]

QUEUED = "queued"
RUNNING = "running"
STOPPING = "stopping"
SAVED = "saved"
COMPLETE = "complete"
KILLED = "killed"
USER_ERROR = "user_error"
ERROR = "error"
UNKNOWN = "unknown"

_TERMINAL = frozenset({SAVED, COMPLETE, KILLED, USER_ERROR, ERROR})
_BY_STATUS = {"QUEUED": QUEUED, "RUNNING": RUNNING, "CANCEL_REQUESTED": STOPPING, "NEW_SCRIPT": SAVED,
              "COMPLETE": COMPLETE, "CANCEL_ACKNOWLEDGED": KILLED, "ERROR": ERROR}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
# The last line of a Python traceback: ``ValueError: boom``, ``KeyboardInterrupt``, ``torch.OutOfMemoryError: ...``.
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)|[A-Z]\w*Error)(?::\s.*)?$")
# A stop at the time limit lands at the limit; the log's own clock may trail it a little.
_LIMIT_SLACK = 0.98


@dataclass(frozen=True)
class SessionOutcome:
    """How a session ended (or that it has not).

    Attributes:
        kind: one of ``queued``, ``running``, ``stopping`` (a cancel is under way), ``saved`` (a quick save that
            never runs), ``complete``, ``killed`` (stopped from outside before it finished), ``user_error`` (the
            notebook raised), ``error`` (Kaggle reported ERROR with no sign of the notebook's own exception) or
            ``unknown`` (a status this kit does not know).
        status: Kaggle's status name (``CANCEL_ACKNOWLEDGED``), or "" when there was none.
        reason: one line for a person: what happened and, where the evidence says, why.
        cause: for ``killed``: ``time_limit`` when the evidence shows the session reached its limit, else
            ``unknown`` (the limit, the quota or a cancel; Kaggle does not say which); for ``user_error``: the
            exception line; else "".
        failure_message: what Kaggle's ``failureMessage`` said, or "".
        output_files: the session's own output file names (not the files Kaggle adds: the executed notebook, the
            rendered results), when the caller listed them (None when not looked at).
    """

    kind: str
    status: str
    reason: str
    cause: str = ""
    failure_message: str = ""
    output_files: tuple[str, ...] | None = None

    @property
    def terminal(self) -> bool:
        """Whether the session has ended (nothing will change without a new push)."""
        return self.kind in _TERMINAL

    @property
    def ok(self) -> bool:
        """Whether it finished as it should (complete, or a quick save)."""
        return self.kind in (COMPLETE, SAVED)

    @property
    def output_kept(self) -> bool | None:
        """Whether the session left output files (None when they were not listed)."""
        return None if self.output_files is None else bool(self.output_files)


def status_name(status_response: Any) -> str:
    """Kaggle's status name from a status reply (the client's object, a dict, an enum or a string)."""
    if isinstance(status_response, Mapping):
        status = status_response.get("status")
    elif isinstance(status_response, str) or status_response is None:
        status = status_response
    else:
        status = getattr(status_response, "status", status_response)
    name = getattr(status, "name", status)
    text = "" if name is None else str(name)
    return text.rsplit(".", 1)[-1].removeprefix("KERNEL_WORKER_STATUS_").upper()


def _failure_message(status_response: Any) -> str:
    if isinstance(status_response, Mapping):
        value = status_response.get("failure_message", status_response.get("failureMessage"))
    else:
        value = getattr(status_response, "failure_message", None)
    return str(value or "").strip()


def _log_records(log_text: str) -> list[tuple[str, float | None, str]]:
    """(stream, seconds since start or None, text) of each record of a session log; plain text is one record."""
    text = log_text.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, list):
            records = []
            for item in parsed:
                if not isinstance(item, Mapping):
                    continue
                when = item.get("time")
                stamp = float(when) if isinstance(when, (int, float)) and not isinstance(when, bool) else None
                records.append((str(item.get("stream_name") or ""), stamp, str(item.get("data") or "")))
            return records
    return [("", None, log_text)]


def _exception_line(records: list[tuple[str, float | None, str]], failure: str) -> str | None:
    """The exception that ended the notebook, from a traceback in the log (or the failure message), or None."""
    found = None
    seen_traceback = False
    for stream, _, data in records:
        if stream == "stdout":
            continue
        clean = _ANSI.sub("", data)
        if _TRACEBACK.search(clean):
            seen_traceback = True
        if seen_traceback:
            for line in clean.splitlines():
                if _EXCEPTION_LINE.match(line.strip()):
                    found = line.strip()
    if found is None and failure:
        first = _ANSI.sub("", failure).strip().splitlines()[0]
        if _EXCEPTION_LINE.match(first):
            found = first
    return found


def classify(status_response: Any, log_text: str | None = None, output_files: Iterable[str] | None = None, *,
             time_limit_s: float | None = None, elapsed_s: float | None = None) -> SessionOutcome:
    """Classify a session from Kaggle's status reply and whatever evidence the caller has.

    Args:
        status_response: the reply of ``GetKernelSessionStatus`` (the client's object, a dict with ``status`` and
            ``failure_message``/``failureMessage``, or the status itself).
        log_text: the session's log as ``ListKernelSessionOutput`` returns it (empty while it runs).
        output_files: the names of its output files.
        time_limit_s: the session limit it was pushed with (``--timeout``), when known.
        elapsed_s: how long it ran, as the caller measured it (from push to the end), when known; the log's last
            time stamp is used otherwise.

    Returns:
        The :class:`SessionOutcome`; never raises for an unknown status (kind ``unknown``).
    """
    status = status_name(status_response)
    failure = _failure_message(status_response)
    files = None if output_files is None else tuple(
        name for name in map(str, output_files) if name not in KAGGLE_OUTPUT_FILES)
    records = _log_records(log_text) if log_text else []
    kind = _BY_STATUS.get(status, UNKNOWN)
    cause = ""
    if kind == KILLED:
        if elapsed_s is None:
            stamps = [t for _, t, _ in records if t is not None]
            elapsed_s = max(stamps) if stamps else None
        reached = time_limit_s is not None and elapsed_s is not None and elapsed_s >= _LIMIT_SLACK * time_limit_s
        cause = "time_limit" if reached else "unknown"
        why = (f"it reached its {time_limit_s:g} s time limit" if reached else
               "at its time limit, by the weekly quota or by a cancel (Kaggle reports all three alike)")
        kept = "" if files is None else (f"; {len(files)} output file(s) kept" if files else "; no output kept")
        reason = f"stopped before it finished: {why}{kept}"
    elif kind == ERROR:
        exception = _exception_line(records, failure)
        if exception is not None:
            kind, cause = USER_ERROR, exception
            reason = f"the notebook raised {exception}"
        else:
            reason = failure or "Kaggle reported ERROR with no exception of the notebook's in its log"
    elif kind == COMPLETE:
        reason = "finished"
    elif kind == UNKNOWN:
        reason = f"Kaggle reported a status this kit does not know: {status or 'none'}"
    else:
        reason = {QUEUED: "waiting for a machine", RUNNING: "running", STOPPING: "a cancel is under way",
                  SAVED: "saved without running (quick save)"}[kind]
    return SessionOutcome(kind=kind, status=status, reason=reason, cause=cause, failure_message=failure,
                          output_files=files)
