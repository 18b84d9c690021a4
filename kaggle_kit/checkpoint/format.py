"""The on-disk checkpoint format: file names, the manifest, verification, copying and deleting.

A checkpoint named ``step-0000001234`` is three flat files in one folder (flat, because Kaggle flattens a dataset's
folders):

* ``step-0000001234.pt``: every tensor of the state, as one flat ``{key: tensor}`` dict saved with ``torch.save``
  and loaded with ``torch.load(weights_only=True)``.
* ``step-0000001234.json``: everything else as JSON (see :mod:`kaggle_kit.checkpoint.codec`), each tensor replaced
  by a ``{"__tensor__": key}`` reference into the ``.pt`` file.
* ``step-0000001234.manifest.json``: sizes and SHA-256 of the two files above, and a summary (step, epoch, metric,
  the best so far, the run id of :mod:`kaggle_kit.checkpoint.identity`). It is written last, so a checkpoint without
  a manifest (or whose files do not match it) was never completed and is never loaded.

Everything read back is checked before use: a manifest of the wrong shape or types is refused whole
(:func:`read_manifest`), a data file is checked against the manifest's size before it is read and its SHA-256 after.

This module is the one home of those names: the mirror, the rehearsal and the loaders take them from here.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from kaggle_kit.checkpoint.identity import check_run_id
from kaggle_kit.errors import CheckpointError, CredentialError, MalformedFileError
from kaggle_kit.fileio import atomic_writer, fsync_dir, loads_json, read_json

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMAT",
    "TENSOR_SUFFIX",
    "STATE_SUFFIX",
    "MANIFEST_SUFFIX",
    "MANIFEST_GLOB",
    "CREDENTIAL_FILES",
    "CheckpointInfo",
    "checkpoint_name",
    "step_of",
    "checkpoint_files",
    "read_manifest",
    "info_from_manifest",
    "read_checkpoint",
    "verify_checkpoint",
    "verify_files",
    "scan_folder",
    "write_checkpoint",
    "copy_checkpoint",
    "copy_checkpoint_as",
    "delete_checkpoint",
    "Orphan",
    "find_orphans",
    "refuse_credentials_in",
    "MAX_MANIFEST_BYTES",
]

FORMAT = "kaggle-kit-checkpoint/1"
TENSOR_SUFFIX = ".pt"
STATE_SUFFIX = ".json"
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_GLOB = f"step-*{MANIFEST_SUFFIX}"
CREDENTIAL_FILES = ("kaggle.json", "access_token")
# A manifest the kit writes is about 1 KB; anything far larger was not written by it.
MAX_MANIFEST_BYTES = 1 << 20
_NAME_RE = re.compile(r"^step-(\d{10})$")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# The temporary files fileio.atomic_writer leaves when a process dies mid-write: ".<name>.<pid>.tmp".
_TEMPORARY_RE = re.compile(r"^\.(step-\d{10})(?:\.pt|\.json|\.manifest\.json)\.\d+\.tmp$")


def checkpoint_name(step: int) -> str:
    """The file stem of the checkpoint taken after ``step`` optimizer steps."""
    return f"step-{step:010d}"


def step_of(name: str) -> int | None:
    """The step a checkpoint name carries, or None when ``name`` is not a checkpoint name."""
    match = _NAME_RE.match(name)
    return int(match.group(1)) if match else None


def checkpoint_files(name: str) -> tuple[str, str, str]:
    """The three file names of a checkpoint: the data files first, the manifest last (the order to copy them in)."""
    return (f"{name}{TENSOR_SUFFIX}", f"{name}{STATE_SUFFIX}", f"{name}{MANIFEST_SUFFIX}")


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """One completed checkpoint on disk, described by its manifest.

    Attributes:
        name: the stem shared by its files, ``step-NNNNNNNNNN``.
        folder: the folder holding its three files.
        step: optimizer steps completed.
        epoch: the epoch in progress.
        metric: the monitored metric's value at this checkpoint, or None.
        best_name: the best checkpoint so far when this one was written (itself included).
        manifest: the parsed manifest.
        source: "local", "input", "mirror" or "adopted" (named by ``resume_from``).
        run_id: the run it belongs to; None when written before run ids existed.
    """

    name: str
    folder: Path
    step: int
    epoch: int
    metric: float | None
    best_name: str | None
    manifest: dict[str, Any]
    source: str = "local"
    run_id: str | None = None

    @property
    def tensor_path(self) -> Path:
        return self.folder / f"{self.name}{TENSOR_SUFFIX}"

    @property
    def state_path(self) -> Path:
        return self.folder / f"{self.name}{STATE_SUFFIX}"

    @property
    def manifest_path(self) -> Path:
        return self.folder / f"{self.name}{MANIFEST_SUFFIX}"

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        """The data files first, the manifest last (the order to upload or copy them in)."""
        return (self.tensor_path, self.state_path, self.manifest_path)

    @property
    def total_bytes(self) -> int:
        return sum(int(f["bytes"]) for f in self.manifest["files"].values())


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_manifest(path: Path) -> dict[str, Any]:
    """Parse and check a manifest file: its shape and the type of every field the kit reads.

    Raises:
        CheckpointError: unreadable, oversize, too deep, not JSON, not a manifest of this format for the checkpoint
            its name says, or a field of the wrong type (each named).
    """
    if not path.name.endswith(MANIFEST_SUFFIX):
        raise CheckpointError(f"{path}: a manifest's name ends with {MANIFEST_SUFFIX}")
    try:
        # A diverged run's metric may be NaN, which the writer keeps.
        manifest = read_json(path, allow_nan=True, max_bytes=MAX_MANIFEST_BYTES)
    except MalformedFileError as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc})") from exc
    name = path.name[: -len(MANIFEST_SUFFIX)]
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("name") != name:
        raise CheckpointError(f"{path}: not a {FORMAT} manifest for {name}")
    files = manifest.get("files")
    expected = set(checkpoint_files(name)[:2])
    if not isinstance(files, dict) or set(files) != expected:
        raise CheckpointError(f"{path}: the manifest must list exactly {sorted(expected)}")
    for entry in files.values():
        if not isinstance(entry, dict) or not _is_count(entry.get("bytes")) or not isinstance(
            entry.get("sha256"), str
        ) or not _SHA256_RE.fullmatch(entry["sha256"]):
            raise CheckpointError(f"{path}: a file entry lacks a byte count or a SHA-256")
    if not _is_count(manifest.get("step")) or not _is_count(manifest.get("epoch")):
        raise CheckpointError(f"{path}: the manifest lacks a non-negative integer step and epoch")
    if manifest["step"] != step_of(name):
        raise CheckpointError(f"{path}: step {manifest['step']} does not match the name {name}")
    for key in ("monitor", "config_hash", "created"):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            raise CheckpointError(f"{path}: {key}={str(manifest[key])[:60]!r} is not a string")
    if manifest.get("metric") is not None and not _is_number(manifest["metric"]):
        raise CheckpointError(f"{path}: metric={str(manifest['metric'])[:60]!r} is not a number")
    best = manifest.get("best")
    if best is not None:
        if not isinstance(best, dict):
            raise CheckpointError(f"{path}: best={str(best)[:60]!r} is not an object with name and value")
        best_name, value = best.get("name"), best.get("value")
        if best_name is not None and (not isinstance(best_name, str) or step_of(best_name) is None):
            raise CheckpointError(f"{path}: best name {str(best_name)[:60]!r} is not a checkpoint name")
        if value is not None and not _is_number(value):
            raise CheckpointError(f"{path}: best value {str(value)[:60]!r} is not a number")
    check_run_id(manifest.get("run_id"), str(path))
    return manifest


def info_from_manifest(path: Path, source: str) -> CheckpointInfo:
    """The :class:`CheckpointInfo` a manifest describes (its data files are not checked here).

    Raises:
        CheckpointError: the manifest is malformed (see :func:`read_manifest`).
    """
    manifest = read_manifest(path)
    metric = manifest.get("metric")
    best = manifest.get("best") or {}
    return CheckpointInfo(
        name=manifest["name"],
        folder=path.parent,
        step=manifest["step"],
        epoch=manifest["epoch"],
        metric=float(metric) if metric is not None else None,
        best_name=best.get("name"),
        manifest=manifest,
        source=source,
        run_id=manifest.get("run_id"),
    )


def _read_verified(path: Path, entry: Mapping[str, Any]) -> bytes:
    try:
        # The size first: a file far larger than the manifest says is never read into memory.
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise CheckpointError(f"{path}: {size} bytes, the manifest says {entry['bytes']} (truncated or replaced?)")
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    if len(data) != entry["bytes"]:
        raise CheckpointError(f"{path}: {len(data)} bytes, the manifest says {entry['bytes']} (truncated?)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CheckpointError(f"{path}: SHA-256 differs from the manifest (corrupt or altered)")
    return data


def read_checkpoint(info: CheckpointInfo) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read, verify against the manifest and parse a checkpoint without unpickling anything.

    Returns:
        The state JSON and the flat tensor dict it refers into.

    Raises:
        CheckpointError: naming the file that is missing, truncated, altered or unparsable.
    """
    import torch

    files = info.manifest["files"]
    state_bytes = _read_verified(info.state_path, files[info.state_path.name])
    tensor_bytes = _read_verified(info.tensor_path, files[info.tensor_path.name])
    try:
        state = loads_json(state_bytes, where=str(info.state_path), allow_nan=True)
    except MalformedFileError as exc:
        raise CheckpointError(str(exc)) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("step") != info.step:
        raise CheckpointError(f"{info.state_path}: not the state of {info.name}")
    if state.get("run_id") != info.run_id:
        raise CheckpointError(f"{info.state_path}: run_id {str(state.get('run_id'))[:60]!r} differs from the "
                              f"manifest's {info.run_id!r}")
    try:
        tensors = torch.load(io.BytesIO(tensor_bytes), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted bytes means "skip this file"
        raise CheckpointError(f"{info.tensor_path}: refused by torch.load(weights_only=True) ({exc})") from exc
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise CheckpointError(f"{info.tensor_path}: not a flat dict of tensors")
    return state, tensors


def verify_checkpoint(manifest_path: str | os.PathLike[str]) -> CheckpointInfo:
    """Check a checkpoint's files against its manifest without loading it into anything.

    Raises:
        CheckpointError: naming the file that is missing, truncated, corrupt or unparsable.
    """
    info = info_from_manifest(Path(manifest_path), "local")
    read_checkpoint(info)
    return info


def verify_files(manifest_path: str | os.PathLike[str]) -> CheckpointInfo:
    """Check sizes and SHA-256 of a checkpoint's files against its manifest, reading them in chunks.

    Cheaper than :func:`verify_checkpoint` (nothing is parsed), for the mirror's staging.

    Raises:
        CheckpointError: naming the file that is missing, truncated or altered.
    """
    info = info_from_manifest(Path(manifest_path), "local")
    for name, entry in info.manifest["files"].items():
        path = info.folder / name
        try:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            size = path.stat().st_size
        except OSError as exc:
            raise CheckpointError(f"{path}: unreadable ({exc})") from exc
        if size != entry["bytes"] or digest != entry["sha256"]:
            raise CheckpointError(f"{path}: does not match its manifest ({size} bytes, {entry['bytes']} expected)")
    return info


def scan_folder(folder: Path, source: str, *, depth: int = 0) -> list[CheckpointInfo]:
    """Completed checkpoints under ``folder`` (``depth`` levels of sub-folders), newest first.

    Manifests that cannot be parsed are reported as warnings and left out; nothing is verified here.
    """
    found: list[CheckpointInfo] = []
    if not folder.is_dir():
        return found
    candidates: list[Path] = []
    for level in range(depth + 1):
        candidates.extend(sorted(folder.glob("*/" * level + MANIFEST_GLOB)))
    for path in candidates:
        if step_of(path.name[: -len(MANIFEST_SUFFIX)]) is None or path.is_symlink():
            continue
        try:
            found.append(info_from_manifest(path, source))
        except CheckpointError as exc:
            warnings.warn(f"skipping checkpoint: {exc}", stacklevel=3)
    found.sort(key=lambda i: i.step, reverse=True)
    return found


class _HashingWriter:
    """A write-only file wrapper that counts and hashes what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def _write_hashed(path: Path, write: Callable[[Any], Any]) -> dict[str, Any]:
    """Write through ``write(fileobj)`` atomically; returns the manifest entry (size and SHA-256) of the file."""
    with atomic_writer(path, "wb") as raw:
        writer = _HashingWriter(raw)
        write(writer)
    return {"bytes": writer.bytes, "sha256": writer.sha256.hexdigest()}


def _bytes_needed(tensors: Mapping[str, torch.Tensor], state_blob: bytes) -> int:
    """About what a checkpoint takes on disk: the tensor data, the zip records around it, the state and manifest."""
    data = sum(t.numel() * t.element_size() for t in tensors.values())
    return data + 1024 * len(tensors) + len(state_blob) + (64 << 10)


def _is_write_failure(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    # torch.save reports a failed write as RuntimeError("[enforce fail at inline_container.cc:...] ... file write
    # failed"), without the errno.
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("write" in text or "inline_container" in text)


def _write_error(directory: Path, name: str, exc: BaseException, needed: int) -> CheckpointError:
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        free = None
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if full or (free is not None and free < needed):
        shown = f"{free} bytes are free" if free is not None else "the free space is unknown"
        return CheckpointError(
            f"no space left in {directory} to save {name}: it needs about {needed} bytes and {shown} "
            f"({type(exc).__name__}: {str(exc)[:200]}). The earlier checkpoints there are untouched; free space "
            "(a lower keep=, other files in that disk) or give the Checkpointer a folder on a larger disk"
        )
    return CheckpointError(f"writing {name} into {directory} failed ({type(exc).__name__}: {str(exc)[:200]}); the "
                           "earlier checkpoints there are untouched")


def write_checkpoint(
    directory: Path,
    *,
    step: int,
    epoch: int,
    tensors: Mapping[str, torch.Tensor],
    state_blob: bytes,
    created: str,
    summary: Mapping[str, Any],
) -> CheckpointInfo:
    """Commit a checkpoint: the tensor file, the state file, then the manifest, each written atomically.

    Args:
        directory: the checkpoint folder.
        step, epoch: as in the state.
        tensors: the flat tensor dict the state refers into.
        state_blob: the state JSON, already encoded.
        created: the ISO time of the save.
        summary: more manifest fields (monitor, metric, best, config_hash, run_id).

    Returns:
        The committed checkpoint.

    Raises:
        CheckpointError: the write failed (a full disk names the folder and the bytes needed); what was written of
            this checkpoint is removed, earlier checkpoints stay.
    """
    import torch

    name = checkpoint_name(step)
    tensor_file, state_file, manifest_file = checkpoint_files(name)
    manifest_path = directory / manifest_file
    try:
        # Saving twice at one step replaces the checkpoint: uncommit it first so a crash midway leaves no manifest
        # pointing at mixed files.
        if manifest_path.exists():
            manifest_path.unlink()
            fsync_dir(directory)
        files = {
            tensor_file: _write_hashed(directory / tensor_file, lambda f: torch.save(dict(tensors), f)),
            state_file: _write_hashed(directory / state_file, lambda f: f.write(state_blob)),
        }
        manifest = {"format": FORMAT, "name": name, "step": step, "epoch": epoch, **summary, "created": created,
                    "files": files}
        _write_hashed(manifest_path, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    except (OSError, RuntimeError) as exc:
        if not _is_write_failure(exc):
            raise
        for path in (manifest_path, directory / tensor_file, directory / state_file):
            path.unlink(missing_ok=True)
        raise _write_error(directory, name, exc, _bytes_needed(tensors, state_blob)) from exc
    return info_from_manifest(manifest_path, "local")


def copy_checkpoint(info: CheckpointInfo, dest: Path, *, durable: bool = False) -> None:
    """Copy a checkpoint's three files into ``dest``, the manifest last.

    Args:
        durable: write each file atomically and fsync (a copy that must survive a crash, e.g. into the working
            folder); otherwise hard-link where possible (staging, scratch).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for path in info.paths:
        target = dest / path.name
        if durable:
            with open(path, "rb") as source, atomic_writer(target, "wb") as out:
                shutil.copyfileobj(source, out)
            continue
        if target.exists():
            target.unlink()
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)


def copy_checkpoint_as(info: CheckpointInfo, dest: Path, *, run_id: str) -> CheckpointInfo:
    """Copy a checkpoint into ``dest`` as a checkpoint of run ``run_id``: the run adopts it.

    The tensor file is copied as it is; the state and the manifest carry the new run id, and the manifest records
    where the checkpoint came from (``adopted_from``). Each file is written atomically, the manifest last.

    Raises:
        CheckpointError: the checkpoint does not verify, or the copy could not be written.
    """
    verify_files(info.manifest_path)
    tensor_file, state_file, manifest_file = checkpoint_files(info.name)
    try:
        state = loads_json(info.state_path.read_bytes(), where=str(info.state_path), allow_nan=True)
    except (OSError, MalformedFileError) as exc:
        raise CheckpointError(f"{info.state_path}: unreadable ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{info.state_path}: not the state of {info.name}")
    state["run_id"] = run_id
    state_blob = json.dumps(state, allow_nan=True).encode()
    dest.mkdir(parents=True, exist_ok=True)
    manifest = dict(info.manifest)
    manifest["run_id"] = run_id
    manifest["adopted_from"] = {"run_id": info.run_id, "path": str(info.manifest_path)}
    try:
        (dest / manifest_file).unlink(missing_ok=True)
        with open(info.tensor_path, "rb") as source, atomic_writer(dest / tensor_file, "wb") as out:
            shutil.copyfileobj(source, out)
        manifest["files"] = {
            tensor_file: info.manifest["files"][tensor_file],
            state_file: _write_hashed(dest / state_file, lambda f: f.write(state_blob)),
        }
        _write_hashed(dest / manifest_file, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    except OSError as exc:
        raise _write_error(dest, info.name, exc, info.total_bytes + len(state_blob)) from exc
    return info_from_manifest(dest / manifest_file, "local")


def delete_checkpoint(info: CheckpointInfo) -> None:
    """Remove a checkpoint's files."""
    # The manifest goes first, so an interrupted delete leaves an uncommitted checkpoint, never a broken one.
    info.manifest_path.unlink(missing_ok=True)
    info.tensor_path.unlink(missing_ok=True)
    info.state_path.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class Orphan:
    """A checkpoint file without its manifest: a save that died midway, or a manifest deleted by hand.

    Attributes:
        path: the file.
        step: the step its name carries.
        temporary: a temporary file of an unfinished write (``.step-N.pt.<pid>.tmp``), not a data file.
    """

    path: Path
    step: int
    temporary: bool

    def older_than(self, completed: CheckpointInfo) -> bool:
        """Whether ``completed`` was finished after this file: a later step, or the same step committed after it."""
        if completed.step != self.step:
            return completed.step > self.step
        try:
            return self.temporary and self.path.stat().st_mtime < completed.manifest_path.stat().st_mtime
        except OSError:
            return False


def find_orphans(directory: Path) -> Iterator[Orphan]:
    """Data files with no manifest beside them, and temporary files of unfinished writes, in ``directory``."""
    try:
        paths = sorted(p for p in directory.iterdir() if p.is_file() and not p.is_symlink())
    except OSError:
        return
    for path in paths:
        temporary = _TEMPORARY_RE.match(path.name)
        if temporary:
            yield Orphan(path, step_of(temporary.group(1)) or 0, True)
            continue
        for suffix in (TENSOR_SUFFIX, STATE_SUFFIX):
            if not path.name.endswith(suffix) or path.name.endswith(MANIFEST_SUFFIX):
                continue
            stem = path.name[: -len(suffix)]
            step = step_of(stem)
            if step is not None and not (directory / f"{stem}{MANIFEST_SUFFIX}").exists():
                yield Orphan(path, step, False)


def refuse_credentials_in(folder: Path) -> None:
    """Refuse a folder that holds Kaggle credential files (it becomes output, or is uploaded).

    Raises:
        CredentialError: naming the file and where it belongs.
    """
    for name in CREDENTIAL_FILES:
        if (folder / name).exists():
            raise CredentialError(
                f"{folder / name} holds Kaggle credentials inside the checkpoint folder, which becomes notebook "
                "output and may be uploaded; move it to ~/.kaggle (or use Kaggle Secrets) and delete it here"
            )
