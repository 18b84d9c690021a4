"""What a run decides from: the mirror's newest checkpoint, a session's output (its progress and history files) and
its log (the tail, the traceback and the cell that raised).

Everything here is read from Kaggle or from files a session wrote, so everything is validated before use.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit.checkpoint.format import MANIFEST_GLOB, MANIFEST_SUFFIX, TENSOR_SUFFIX
from kaggle_kit.errors import MalformedFileError, MirrorError
from kaggle_kit.fileio import read_json

__all__ = ["SessionFiles", "log_text", "log_tail", "mirror_step", "newest_checkpoint", "read_session_files",
           "traceback_of", "weights_digest"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        data = read_json(path, allow_nan=True)
    except MalformedFileError:
        return None
    return data if isinstance(data, dict) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class SessionFiles:
    """What a session left in its output.

    Attributes:
        status: the training loop's completion record: ``finished`` (the run is done), ``stopped`` (a clean stop
            before the session limit), ``running`` (cut off), or None when it wrote none.
        step, resumed_from, steps: where it ended, where it started, steps this session.
        seconds_per_step: its training time per step.
        last_checkpoint_step: its newest saved checkpoint.
        history: the epoch records (``history.json``), best: the best one, monitor: the monitored metric.
        log: the session's log as text.
    """

    status: str | None = None
    step: int | None = None
    resumed_from: int | None = None
    steps: int | None = None
    seconds_per_step: float | None = None
    last_checkpoint_step: int | None = None
    history: tuple[dict[str, Any], ...] = ()
    best: dict[str, Any] | None = None
    monitor: str | None = None
    log: str = ""


def read_session_files(folder: Path) -> SessionFiles:
    """The progress record, history and log a session left in ``folder`` (its downloaded output)."""
    from kaggle_kit.training import HISTORY_FILE, PROGRESS_FILE

    folder = Path(folder)
    progress = _json(next((p for p in sorted(folder.rglob(PROGRESS_FILE)) if p.is_file()), None)) or {}
    history = _json(next((p for p in sorted(folder.rglob(HISTORY_FILE)) if p.is_file()), None)) or {}
    logs = sorted(folder.glob("*.log"))
    text = log_text(logs[0].read_text(errors="replace")) if logs else ""
    status = progress.get("status")
    steps = _int(progress.get("steps_this_session"))
    per_step = None
    started, now = progress.get("session_start_time"), progress.get("time")
    if steps and isinstance(started, (int, float)) and isinstance(now, (int, float)) and now > started:
        per_step = (float(now) - float(started)) / steps
    records = history.get("history")
    return SessionFiles(
        status=status if status in ("finished", "stopped", "running") else None,
        step=_int(progress.get("step")), resumed_from=_int(progress.get("resumed_from_step")), steps=steps,
        seconds_per_step=per_step, last_checkpoint_step=_int(progress.get("last_checkpoint_step")),
        history=tuple(r for r in records if isinstance(r, dict)) if isinstance(records, list) else (),
        best=history.get("best") if isinstance(history.get("best"), dict) else None,
        monitor=history.get("monitor") if isinstance(history.get("monitor"), str) else None,
        log=text)


def log_text(raw: str) -> str:
    """A session log's text: Kaggle's JSON list of stream records joined, or the text as it is."""
    try:
        records = json.loads(raw)
    except (ValueError, RecursionError):
        return _ANSI.sub("", raw)
    if not isinstance(records, list):
        return _ANSI.sub("", raw)
    return _ANSI.sub("", "".join(str(r.get("data", "")) for r in records if isinstance(r, dict)))


def log_tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` non-empty lines of a log."""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def traceback_of(text: str) -> str | None:
    """The last traceback in a log, from its ``Traceback`` line (or the cell IPython names) to the exception."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line
              or re.match(r"^-{10,}$", line.strip())]
    if not starts:
        return None
    block = lines[starts[-1]:]
    end = next((i for i in range(len(block) - 1, 0, -1)
                if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", block[i].strip())), len(block) - 1)
    return "\n".join(block[: end + 1]).strip() or None


def newest_checkpoint(folder: Path) -> Path | None:
    """The tensor file of the newest checkpoint under ``folder`` (by its manifest's name), or None."""
    manifests = sorted(Path(folder).rglob(MANIFEST_GLOB))
    if not manifests:
        return None
    newest = manifests[-1]
    tensors = newest.with_name(newest.name[: -len(MANIFEST_SUFFIX)] + TENSOR_SUFFIX)
    return tensors if tensors.is_file() else None


def weights_digest(checkpoint: Path) -> tuple[str, dict[str, list[int]]]:
    """SHA-256 over the model's tensors of a checkpoint (names and bytes), for bit-identity checks, and their
    shapes."""
    import hashlib

    import torch

    tensors = torch.load(checkpoint, map_location="cpu", weights_only=True)
    digest = hashlib.sha256()
    shapes: dict[str, list[int]] = {}
    for key in sorted(k for k in tensors if k.startswith("model")):
        digest.update(key.encode())
        digest.update(tensors[key].contiguous().numpy().tobytes())
        shapes[key] = list(tensors[key].shape)
    return digest.hexdigest(), shapes


def mirror_step(api: Any, handle: str) -> tuple[int | None, int]:
    """The step of the newest checkpoint in the mirror dataset ``handle`` and the dataset's version count: ``(None,
    0)`` while there is no dataset (the first session creates it).

    The newest version whose ``latest.json`` reads is used; one still processing is passed over.

    Raises:
        MirrorError: the dataset cannot be read for another reason than its absence (a transient failure is a
            :class:`~kaggle_kit.errors.TransientApiError`, which the caller retries).
    """
    from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

    from kaggle_kit.mirror.client import classify_api_error, response_status, unwrap_single_file_zip
    from kaggle_kit.mirror.ledger import POINTER_FILE, parse_pointer

    owner, slug = handle.split("/")
    request = ApiGetDatasetRequest()
    request.owner_slug, request.dataset_slug = owner, slug
    try:
        with api.build_kaggle_client() as kaggle:
            dataset = kaggle.datasets.dataset_api_client.get_dataset(request)
    except Exception as exc:  # noqa: BLE001 - classified: absent, transient or an error
        if response_status(exc) in (403, 404):
            return None, 0
        raise classify_api_error(exc, f"reading the mirror {handle}") from exc
    current = int(getattr(dataset, "current_version_number", 0) or 0)
    numbers = sorted({int(getattr(v, "version_number", 0) or 0) for v in getattr(dataset, "versions", None) or []}
                     | {current}, reverse=True)
    for number in [n for n in numbers if n > 0][:3]:
        with tempfile.TemporaryDirectory(prefix="kaggle-kit-run-") as tmp:
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # the client prints the dataset's URL
                    api.dataset_download_file(f"{handle}/{number}", POINTER_FILE, path=tmp, force=True, quiet=True)
                unwrap_single_file_zip(Path(tmp), POINTER_FILE)
                pointer = parse_pointer((Path(tmp) / POINTER_FILE).read_bytes(), where=f"{POINTER_FILE} of "
                                        f"{handle}/{number}")
            except (MirrorError, OSError):
                continue
            except Exception as exc:  # noqa: BLE001 - a version still processing is passed over
                if response_status(exc) in (403, 404, 409):
                    continue
                raise classify_api_error(exc, f"reading {POINTER_FILE} of {handle}/{number}") from exc
        return int(pointer["step"]), current
    return None, current
