"""The on-disk checkpoint format: file names, the manifest, verification, copying and deleting.

A checkpoint named ``step-0000001234`` is three flat files in one folder (flat, because Kaggle flattens a dataset's
folders):

* ``step-0000001234.pt``: every tensor of the state, as one flat ``{key: tensor}`` dict saved with ``torch.save``
  and loaded with ``torch.load(weights_only=True)``.
* ``step-0000001234.json``: everything else as JSON (see :mod:`kaggle_kit.checkpoint.codec`), each tensor replaced
  by a ``{"__tensor__": key}`` reference into the ``.pt`` file.
* ``step-0000001234.manifest.json``: sizes and SHA-256 of the two files above, and a summary (step, epoch, metric,
  the best so far). It is written last, so a checkpoint without a manifest (or whose files do not match it) was
  never completed and is never loaded.

This module is the one home of those names: the mirror, the rehearsal and the loaders take them from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

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
    "delete_checkpoint",
    "remove_uncommitted",
    "refuse_credentials_in",
]

FORMAT = "kaggle-kit-checkpoint/1"
TENSOR_SUFFIX = ".pt"
STATE_SUFFIX = ".json"
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_GLOB = f"step-*{MANIFEST_SUFFIX}"
CREDENTIAL_FILES = ("kaggle.json", "access_token")
_NAME_RE = re.compile(r"^step-(\d{10})$")


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
        source: "local", "input" or "mirror".
    """

    name: str
    folder: Path
    step: int
    epoch: int
    metric: float | None
    best_name: str | None
    manifest: dict[str, Any]
    source: str = "local"

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


def read_manifest(path: Path) -> dict[str, Any]:
    """Parse and check a manifest file.

    Raises:
        CheckpointError: unreadable, not JSON, or not a manifest of this format for the checkpoint its name says.
    """
    if not path.name.endswith(MANIFEST_SUFFIX):
        raise CheckpointError(f"{path}: a manifest's name ends with {MANIFEST_SUFFIX}")
    try:
        # A diverged run's metric may be NaN, which the writer keeps.
        manifest = read_json(path, allow_nan=True)
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
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or not isinstance(
            entry.get("sha256"), str
        ):
            raise CheckpointError(f"{path}: a file entry lacks bytes or sha256")
    if not isinstance(manifest.get("step"), int) or not isinstance(manifest.get("epoch"), int):
        raise CheckpointError(f"{path}: the manifest lacks an integer step and epoch")
    return manifest


def info_from_manifest(path: Path, source: str) -> CheckpointInfo:
    """The :class:`CheckpointInfo` a manifest describes (its data files are not checked here)."""
    manifest = read_manifest(path)
    metric = manifest.get("metric")
    best = manifest.get("best")
    best_name = best.get("name") if isinstance(best, dict) else None
    return CheckpointInfo(
        name=manifest["name"],
        folder=path.parent,
        step=manifest["step"],
        epoch=manifest["epoch"],
        metric=float(metric) if isinstance(metric, (int, float)) and not isinstance(metric, bool) else None,
        best_name=best_name if isinstance(best_name, str) and step_of(best_name) is not None else None,
        manifest=manifest,
        source=source,
    )


def _read_verified(path: Path, entry: Mapping[str, Any]) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from exc
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
        summary: more manifest fields (monitor, metric, best, config_hash).

    Returns:
        The committed checkpoint.
    """
    import torch

    name = checkpoint_name(step)
    tensor_file, state_file, manifest_file = checkpoint_files(name)
    manifest_path = directory / manifest_file
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


def delete_checkpoint(info: CheckpointInfo) -> None:
    """Remove a checkpoint's files."""
    # The manifest goes first, so an interrupted delete leaves an uncommitted checkpoint, never a broken one.
    info.manifest_path.unlink(missing_ok=True)
    info.tensor_path.unlink(missing_ok=True)
    info.state_path.unlink(missing_ok=True)


def remove_uncommitted(directory: Path) -> None:
    """Remove temporary files and data files whose manifest was never written (a crash mid-save)."""
    committed = {i.name for i in scan_folder(directory, "local")}
    for path in directory.iterdir():
        if not path.is_file():
            continue
        if path.name.startswith(".step-") and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
            continue
        for suffix in (TENSOR_SUFFIX, STATE_SUFFIX):
            stem = path.name[: -len(suffix)] if path.name.endswith(suffix) else None
            if stem and step_of(stem) is not None and stem not in committed:
                path.unlink(missing_ok=True)


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
