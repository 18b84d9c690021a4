"""The two small files each mirrored dataset version carries besides its checkpoints.

* ``latest.json``, the pointer: names the run, the newest and the best checkpoint of *this* version and every
  checkpoint it holds (a version becomes visible only once all its files are in, so the pointer never names a file
  that is not there).
* ``ledger.json``, the run's history: one record per session (start, end, run type, accelerator, steps, versions).

Both are written here and read back here (validated: they come from a dataset).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

from kaggle_kit.checkpoint.format import MANIFEST_SUFFIX, CheckpointInfo, step_of
from kaggle_kit.checkpoint.identity import check_run_id
from kaggle_kit.errors import CheckpointError, MalformedFileError, MirrorError
from kaggle_kit.fileio import loads_json

__all__ = [
    "POINTER_FILE",
    "LEDGER_FILE",
    "POINTER_FORMAT",
    "LEDGER_FORMAT",
    "MAX_LEDGER_SESSIONS",
    "Confirmed",
    "now_iso",
    "pointer_document",
    "parse_pointer",
    "pointer_from_names",
    "new_session",
    "ledger_document",
    "parse_ledger",
]

POINTER_FILE = "latest.json"
LEDGER_FILE = "ledger.json"
POINTER_FORMAT = "kaggle-kit-pointer/1"
LEDGER_FORMAT = "kaggle-kit-ledger/1"
MAX_LEDGER_SESSIONS = 500
# Both files are a few KB; a ledger of MAX_LEDGER_SESSIONS sessions stays well under this.
MAX_FILE_BYTES = 4 << 20


@dataclasses.dataclass(frozen=True)
class Confirmed:
    """The newest dataset version the mirror uploaded and verified.

    Attributes:
        version: the dataset version number.
        latest_step: the step of the newest checkpoint in it.
        latest_name: that checkpoint's name.
        best_name: the best checkpoint in it (may equal ``latest_name``), or None.
    """

    version: int
    latest_step: int
    latest_name: str
    best_name: str | None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def pointer_document(handle: str, latest: CheckpointInfo, items: Sequence[CheckpointInfo]) -> dict[str, Any]:
    """The ``latest.json`` of a version holding ``items`` (the newest checkpoint ``latest`` among them)."""
    return {
        "format": POINTER_FORMAT,
        "dataset": handle,
        "run_id": latest.run_id,
        "latest": latest.name,
        "best": latest.best_name if latest.best_name in {i.name for i in items} else None,
        "checkpoints": [i.name for i in sorted(items, key=lambda i: -i.step)],
        "step": latest.step,
        "epoch": latest.epoch,
        "monitor": latest.manifest.get("monitor"),
        "metric": latest.metric,
        "files": {i.name: i.manifest["files"] for i in items},
        "uploaded": now_iso(),
    }


def parse_pointer(data: bytes, *, where: str) -> dict[str, Any]:
    """A ``latest.json`` read back from a dataset, checked (size, depth, and the type of each field read).

    Raises:
        MirrorError: not JSON, or not a kit pointer (no integer step, a checkpoint name that is not one, a run id
            that is not one).
    """
    try:
        pointer = loads_json(data, where=where, allow_nan=True, max_bytes=MAX_FILE_BYTES)
    except MalformedFileError as exc:
        raise MirrorError(str(exc)) from exc
    if not isinstance(pointer, dict) or not isinstance(pointer.get("step"), int) or isinstance(pointer["step"], bool):
        raise MirrorError(f"{where} is not a kaggle-kit pointer (no integer step)")
    for key in ("latest", "best"):
        name = pointer.get(key)
        if name is not None and (not isinstance(name, str) or step_of(name) is None):
            raise MirrorError(f"{where}: {key}={str(name)[:60]!r} is not a checkpoint name")
    names = pointer.get("checkpoints")
    if names is not None and (not isinstance(names, list) or not all(
            isinstance(n, str) and step_of(n) is not None for n in names)):
        raise MirrorError(f"{where}: checkpoints is not a list of checkpoint names")
    try:
        check_run_id(pointer.get("run_id"), where)
    except CheckpointError as exc:
        raise MirrorError(str(exc)) from exc
    return pointer


def pointer_from_names(names: Sequence[str]) -> dict[str, Any] | None:
    """A pointer rebuilt from a version's file names, when its ``latest.json`` is missing or unusable.

    It names the checkpoints whose manifests are there, newest first; whose run they are is left to their
    manifests (``run_id`` None). None when the version holds no checkpoint.
    """
    stems = [n[: -len(MANIFEST_SUFFIX)] for n in names if n.endswith(MANIFEST_SUFFIX)]
    found = sorted((s for s in stems if step_of(s) is not None), key=lambda s: -(step_of(s) or 0))
    if not found:
        return None
    return {"latest": found[0], "best": None, "checkpoints": found, "step": step_of(found[0]), "run_id": None}


def new_session(*, run_type: str | None, accelerator: str) -> dict[str, Any]:
    """This session's ledger record, before its first upload."""
    return {
        "id": uuid.uuid4().hex[:12],
        "started": now_iso(),
        "ended": now_iso(),
        "run_type": run_type,
        "accelerator": accelerator,
        "first_step": None,
        "last_step": None,
        "versions": 0,
    }


def ledger_document(handle: str, sessions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``ledger.json`` holding ``sessions`` (the newest :data:`MAX_LEDGER_SESSIONS` of them)."""
    return {"format": LEDGER_FORMAT, "dataset": handle, "sessions": list(sessions)[-MAX_LEDGER_SESSIONS:]}


def parse_ledger(data: bytes, *, where: str) -> list[dict[str, Any]]:
    """The sessions of a ``ledger.json`` read back; an unreadable ledger is an empty history (with a warning), never
    a failure."""
    try:
        ledger = loads_json(data, where=where, allow_nan=True, max_bytes=MAX_FILE_BYTES)
    except MalformedFileError as exc:
        warnings.warn(f"{exc}: the run's earlier sessions are left out of its ledger", RuntimeWarning, stacklevel=2)
        return []
    sessions = ledger.get("sessions") if isinstance(ledger, dict) else None
    if not isinstance(sessions, list):
        warnings.warn(f"{where} holds no list of sessions: the run's earlier sessions are left out of its ledger",
                      RuntimeWarning, stacklevel=2)
        return []
    return [s for s in sessions if isinstance(s, dict)][-MAX_LEDGER_SESSIONS:]
