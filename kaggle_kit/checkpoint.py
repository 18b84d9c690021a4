"""Full-state, atomic training checkpoints that survive a killed Kaggle session.

A checkpoint named ``step-0000001234`` is three flat files in the checkpoint folder (flat, because Kaggle
flattens a dataset's folders):

* ``step-0000001234.pt``: every tensor of the state, as one flat ``{key: tensor}`` dict saved with
  ``torch.save`` and loaded with ``torch.load(weights_only=True)``.
* ``step-0000001234.json``: everything else as JSON: step, epoch, metrics, the best metric so far, the data
  order state, caller extras, the config and its hash, versions, the python and numpy RNG states and the
  non-tensor parts of the optimizer, scheduler and GradScaler state dicts, with each tensor replaced by a
  ``{"__tensor__": key}`` reference into the ``.pt`` file.
* ``step-0000001234.manifest.json``: sizes and SHA-256 of the two files above. It is written last, so a
  checkpoint without a manifest (or whose files do not match it) was never completed and is never loaded.

Contract with the training loop:

* ``step`` is the number of optimizer steps completed and ``epoch`` the epoch in progress; ``data_state`` is a
  JSON-able dict that tells the loop where to continue, e.g. ``{"epoch_seed": 7, "position": 120}`` (batches of
  the epoch already consumed). Pass the values a resume should continue from: call ``maybe_save`` right after
  a completed step, never in the middle of one.
* ``restore`` returns None (nothing found) or a :class:`Restored` carrying ``step``, ``epoch``, ``source``,
  ``data_state``, ``extra``, ``metrics``, ``best_metric``; it has already loaded the model, optimizer,
  scheduler, scaler and the python, numpy, torch and CUDA RNG states.
* ``extra`` is caller state that travels along (JSON-able; tensors inside it are stored in the ``.pt`` file).
* ``config`` (a dataclass or a dict) is stored with its hash (``kaggle_kit.config.config_hash``).
* ``request_save()`` (the session guard calls it before the deadline) makes the next ``maybe_save`` save
  whatever the cadence; inside ``save_on_signal()`` SIGTERM and Ctrl-C do the same, then stop the run.

Resume looks in the local folder, in the attached inputs (the mirror dataset, an earlier notebook's output)
and in the mirror dataset's latest version, and loads the newest checkpoint that verifies; on a tie the
nearer source wins.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kaggle_kit.config import config_hash, config_to_dict
from kaggle_kit.errors import CheckpointError, ConfigError, CredentialError
from kaggle_kit.fileio import atomic_writer, fsync_dir
from kaggle_kit.mirror import loud_warning

if TYPE_CHECKING:
    import torch

    from kaggle_kit.mirror import DatasetMirror

__all__ = ["CheckpointInfo", "Checkpointer", "Restored", "verify_checkpoint", "verify_files"]

FORMAT = "kaggle-kit-checkpoint/1"
_NAME_RE = re.compile(r"^step-(\d{10})$")
_MANIFEST_SUFFIX = ".manifest.json"
_CREDENTIAL_FILES = ("kaggle.json", "access_token")
# The search of attached inputs stops this deep: notebook outputs keep their folders, datasets are flat.
_INPUT_SEARCH_DEPTH = 4
_SOURCE_RANK = {"local": 0, "input": 1, "mirror": 2}


def checkpoint_name(step: int) -> str:
    """The file stem of the checkpoint taken after ``step`` optimizer steps."""
    return f"step-{step:010d}"


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
        return self.folder / f"{self.name}.pt"

    @property
    def state_path(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def manifest_path(self) -> Path:
        return self.folder / f"{self.name}{_MANIFEST_SUFFIX}"

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        """The data files first, the manifest last (the order to upload or copy them in)."""
        return (self.tensor_path, self.state_path, self.manifest_path)

    @property
    def total_bytes(self) -> int:
        return sum(int(f["bytes"]) for f in self.manifest["files"].values())


@dataclasses.dataclass(frozen=True)
class Restored:
    """What ``Checkpointer.restore`` loaded.

    Attributes:
        step: optimizer steps completed; continue with step ``step + 1``.
        epoch: the epoch in progress.
        source: "local", "input" or "mirror".
        path: the manifest that was loaded.
        data_state: the data order state saved with it (where in the epoch to continue).
        extra: caller state saved with it.
        metrics: the metrics saved with it.
        best_metric: the best monitored value so far, or None.
        best_step: the step of the best checkpoint so far, or None.
        config_hash: the hash of the config it was trained with.
        versions: torch, timm, kit, numpy and python versions that wrote it.
    """

    step: int
    epoch: int
    source: str
    path: Path
    data_state: dict[str, Any]
    extra: dict[str, Any]
    metrics: dict[str, Any]
    best_metric: float | None
    best_step: int | None
    config_hash: str | None
    versions: dict[str, str]


class _HashingWriter:
    """A write-only file wrapper that counts and hashes what passes through it."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def _atomic_write(path: Path, write: Any) -> tuple[int, str]:
    """Write through ``write(fileobj)`` atomically (see :mod:`kaggle_kit.fileio`).

    Returns:
        The size and SHA-256 of what was written.
    """
    with atomic_writer(path, "wb") as raw:
        writer = _HashingWriter(raw)
        write(writer)
    return writer.bytes, writer.sha256.hexdigest()


def _to_jsonable_config(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    try:
        return json.loads(json.dumps(config_to_dict(config), default=str))
    except ConfigError as exc:
        raise CheckpointError(
            f"config must be a dataclass instance or a dict, got {type(config).__name__}; pass the run's config"
        ) from exc


def _versions() -> dict[str, str]:
    import torch

    from importlib import metadata

    found = {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    for dist in ("timm", "kaggle-kit"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "absent"
    return found


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Turn ``obj`` into JSON-able data, moving every tensor into ``tensors`` under its path."""
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": path}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        return {
            "__items__": [
                [_encode(k, f"{path}/key{i}", tensors), _encode(v, f"{path}/{k}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    raise CheckpointError(
        f"cannot store {type(obj).__name__} at {path!r} in a checkpoint: only tensors, numpy arrays, numbers, "
        "strings, lists, tuples and dicts travel (no pickled objects); convert it or leave it out of the state"
    )


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor], where: str) -> Any:
    """Inverse of :func:`_encode`; a reference to a missing tensor is an error naming the checkpoint."""
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        ((tag, value),) = obj.items()
        if tag in ("__tensor__", "__ndarray__"):
            if not isinstance(value, str) or value not in tensors:
                raise CheckpointError(f"{where}: the state refers to a tensor {value!r} missing from the .pt file")
            return tensors[value] if tag == "__tensor__" else tensors[value].numpy()
        if tag == "__tuple__" and isinstance(value, list):
            return tuple(_decode(v, tensors, where) for v in value)
        if tag == "__items__" and isinstance(value, list):
            return {_freeze(_decode(k, tensors, where)): _decode(v, tensors, where) for k, v in value}
    return {k: _decode(v, tensors, where) for k, v in obj.items()}


def _freeze(key: Any) -> Any:
    return tuple(_freeze(k) for k in key) if isinstance(key, list) else key


def _rng_state(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng/torch"] = torch.get_rng_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": kind,
            "keys": base64.b64encode(np.asarray(keys, dtype="<u4").tobytes()).decode(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": {"__tensor__": "rng/torch"},
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = cuda_state
            state["cuda"].append({"__tensor__": f"rng/cuda/{i}"})
    return state


def _set_rng_state(state: Mapping[str, Any], where: str) -> None:
    import torch

    try:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(x) for x in internal), gauss))
        np_state = state["numpy"]
        keys = np.frombuffer(base64.b64decode(np_state["keys"]), dtype="<u4").astype(np.uint32)
        np.random.set_state(
            (
                str(np_state["kind"]),
                keys,
                int(np_state["pos"]),
                int(np_state["has_gauss"]),
                float(np_state["cached_gaussian"]),
            )
        )
        torch.set_rng_state(state["torch"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: the RNG state is malformed ({exc})") from exc
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        count = min(len(cuda_states), torch.cuda.device_count())
        for i in range(count):
            torch.cuda.set_rng_state(cuda_states[i], i)
        if len(cuda_states) != torch.cuda.device_count():
            warnings.warn(
                f"{where}: saved with {len(cuda_states)} CUDA RNG states, this machine has "
                f"{torch.cuda.device_count()} GPUs; restored the first {count}",
                stacklevel=3,
            )


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose state dict keys carry no DataParallel/DDP/compile prefix."""
    import torch

    inner = getattr(model, "_orig_mod", model)
    if isinstance(inner, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        inner = inner.module
    return getattr(inner, "_orig_mod", inner)


def _shapes(state_dict: Mapping[str, Any]) -> dict[str, list[int]]:
    import torch

    return {k: list(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


def _shape_differences(saved: Mapping[str, Any], current: Mapping[str, list[int]]) -> list[str]:
    diffs = []
    for key, shape in current.items():
        if key not in saved:
            diffs.append(f"{key} missing from the checkpoint")
        elif list(saved[key]) != list(shape):
            diffs.append(f"{key}: checkpoint {list(saved[key])} vs model {list(shape)}")
    diffs.extend(f"{key} in the checkpoint but not in the model" for key in saved if key not in current)
    return diffs


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc})") from exc
    name = path.name[: -len(_MANIFEST_SUFFIX)]
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("name") != name:
        raise CheckpointError(f"{path}: not a {FORMAT} manifest for {name}")
    files = manifest.get("files")
    expected = {f"{name}.pt", f"{name}.json"}
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


def _info_from_manifest(path: Path, source: str) -> CheckpointInfo:
    manifest = _read_manifest(path)
    metric = manifest.get("metric")
    best = manifest.get("best") or {}
    return CheckpointInfo(
        name=manifest["name"],
        folder=path.parent,
        step=manifest["step"],
        epoch=manifest["epoch"],
        metric=float(metric) if isinstance(metric, (int, float)) else None,
        best_name=best.get("name") if isinstance(best.get("name"), str) else None,
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


def _load_verified(info: CheckpointInfo) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read, verify against the manifest and parse a checkpoint without unpickling anything."""
    import torch

    files = info.manifest["files"]
    state_bytes = _read_verified(info.state_path, files[info.state_path.name])
    tensor_bytes = _read_verified(info.tensor_path, files[info.tensor_path.name])
    try:
        state = json.loads(state_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{info.state_path}: not JSON ({exc})") from exc
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
    info = _info_from_manifest(Path(manifest_path), "local")
    _load_verified(info)
    return info


def verify_files(manifest_path: str | os.PathLike[str]) -> CheckpointInfo:
    """Check sizes and SHA-256 of a checkpoint's files against its manifest, reading them in chunks.

    Cheaper than :func:`verify_checkpoint` (nothing is parsed), for the mirror's staging.

    Raises:
        CheckpointError: naming the file that is missing, truncated or altered.
    """
    info = _info_from_manifest(Path(manifest_path), "local")
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


def _scan(folder: Path, source: str, *, depth: int = 0) -> list[CheckpointInfo]:
    """Completed checkpoints under ``folder`` (``depth`` levels of sub-folders), newest first.

    Manifests that cannot be parsed are reported and left out.
    """
    found: list[CheckpointInfo] = []
    if not folder.is_dir():
        return found
    candidates: list[Path] = []
    for level in range(depth + 1):
        candidates.extend(sorted(folder.glob("*/" * level + f"step-*{_MANIFEST_SUFFIX}")))
    for path in candidates:
        stem = path.name[: -len(_MANIFEST_SUFFIX)]
        if not _NAME_RE.match(stem) or path.is_symlink():
            continue
        try:
            found.append(_info_from_manifest(path, source))
        except CheckpointError as exc:
            warnings.warn(f"skipping checkpoint: {exc}", stacklevel=3)
    found.sort(key=lambda i: i.step, reverse=True)
    return found


class Checkpointer:
    """Saves full training state on a time cadence and restores it from wherever it survived.

    Args:
        directory: the local checkpoint folder (created).
        mirror: a DatasetMirror that uploads each checkpoint in the background, or None.
        keep: how many of the newest checkpoints to keep locally (the best is kept besides).
        every_minutes: the cadence of ``maybe_save``; fractions allowed.
        every_seconds: the cadence in seconds; overrides ``every_minutes``.
        monitor: the metric name (a key of ``metrics``) that picks the best checkpoint.
        mode: "min" or "max" for ``monitor``.
        config: the run's config (dataclass or dict), stored with its hash.
        restore_only: it only restores (inference, DDP ranks other than 0): no warning about mirroring.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        mirror: DatasetMirror | None = None,
        keep: int = 3,
        every_minutes: float = 10.0,
        every_seconds: float | None = None,
        monitor: str | None = None,
        mode: str = "min",
        config: Any = None,
        restore_only: bool = False,
    ) -> None:
        if keep < 1:
            raise CheckpointError(f"keep={keep}: keep at least 1 checkpoint")
        if mode not in ("min", "max"):
            raise CheckpointError(f"mode={mode!r}: use 'min' (lower is better) or 'max'")
        interval = float(every_seconds) if every_seconds is not None else float(every_minutes) * 60.0
        if not interval > 0 or not math.isfinite(interval):
            raise CheckpointError(f"checkpoint interval {interval} s: pass a positive every_minutes or every_seconds")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        refuse_credentials_in(self.directory)
        self.mirror = mirror
        self.keep = keep
        self.interval_s = interval
        self.monitor = monitor
        self.mode = mode
        self.config = _to_jsonable_config(config)
        self.config_hash = config_hash(config) if config is not None else None
        self._last_save = time.monotonic()
        self._save_requested = False
        self._stop_signal: int | None = None
        self._lock = threading.Lock()
        newest = self._local()
        # The newest manifest knows the best so far, even when that checkpoint is no longer in this folder.
        best = newest[0].manifest.get("best") if newest else None
        self._best_name: str | None = newest[0].best_name if newest else None
        value = best.get("value") if isinstance(best, dict) else None
        self._best_value: float | None = float(value) if isinstance(value, (int, float)) else None
        self._clean_orphans()
        # A checkpointer that only restores (inference, a DDP rank other than 0) has nothing to mirror to announce.
        if not restore_only:
            self._report_mirror()

    def _report_mirror(self) -> None:
        from kaggle_kit import env

        if self.mirror is not None:
            self.mirror.report_off(checkpoint_dir=self.directory)
        elif env.in_kaggle():
            loud_warning(
                f"checkpoints in {self.directory} are NOT mirrored (no DatasetMirror given): they survive only "
                "as a Batch run's output; an Interactive session loses /kaggle/working when it ends"
            )

    def _local(self) -> list[CheckpointInfo]:
        return _scan(self.directory, "local")

    def _is_better(self, value: float) -> bool:
        if self._best_value is None or math.isnan(self._best_value):
            return not math.isnan(value)
        return value < self._best_value if self.mode == "min" else value > self._best_value

    def request_save(self) -> None:
        """Make the next ``maybe_save`` save, whatever the cadence (e.g. before the session deadline)."""
        self._save_requested = True

    @property
    def due(self) -> bool:
        """Whether ``maybe_save`` would save now."""
        return (
            self._save_requested
            or self._stop_signal is not None
            or time.monotonic() - self._last_save >= self.interval_s
        )

    def maybe_save(self, **kwargs: Any) -> CheckpointInfo | None:
        """Save if the cadence says so, a save was requested, or a signal asked to stop; else do nothing.

        Takes the arguments of :meth:`save`. After a save caused by SIGTERM or Ctrl-C inside
        ``save_on_signal()``, waits for the mirror and raises SystemExit (SIGTERM) or KeyboardInterrupt.
        """
        if not self.due:
            return None
        info = self.save(**kwargs)
        if self._stop_signal is not None:
            self._finish_after_signal()
        return info

    def save(
        self,
        *,
        step: int,
        epoch: int = 0,
        model: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        scaler: Any = None,
        metrics: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        data_state: Mapping[str, Any] | None = None,
    ) -> CheckpointInfo:
        """Write a checkpoint now, atomically, then hand it to the mirror and apply retention.

        Args:
            step: optimizer steps completed.
            epoch: the epoch in progress.
            model, optimizer, scheduler, scaler: objects with ``state_dict()``; any may be None.
            metrics: this step's metrics; ``metrics[monitor]`` decides the best checkpoint.
            extra: caller state (JSON-able; tensors allowed).
            data_state: where the data order continues (e.g. ``{"epoch_seed": 7, "position": 120}``).

        Returns:
            The completed checkpoint.
        """
        if not isinstance(step, int) or step < 0 or not isinstance(epoch, int) or epoch < 0:
            raise CheckpointError(f"step={step!r}, epoch={epoch!r}: both must be non-negative integers")
        with self._lock:
            info = self._write(
                step=step,
                epoch=epoch,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                metrics=dict(metrics or {}),
                extra=dict(extra or {}),
                data_state=dict(data_state or {}),
            )
            self._last_save = time.monotonic()
            self._save_requested = False
            if self.mirror is not None and self.mirror.enabled:
                best = None
                if self._best_name and self._best_name != info.name:
                    best = next((i for i in self._local() if i.name == self._best_name), None)
                self.mirror.submit(info, best)
            self._apply_retention()
        return info

    def _write(
        self,
        *,
        step: int,
        epoch: int,
        model: torch.nn.Module | None,
        optimizer: Any,
        scheduler: Any,
        scaler: Any,
        metrics: dict[str, Any],
        extra: dict[str, Any],
        data_state: dict[str, Any],
    ) -> CheckpointInfo:
        import torch

        name = checkpoint_name(step)
        tensors: dict[str, torch.Tensor] = {}
        model_sd = _unwrap(model).state_dict() if model is not None else None
        metric = None
        if self.monitor is not None and self.monitor in metrics:
            try:
                metric = float(metrics[self.monitor])
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"metrics[{self.monitor!r}]={metrics[self.monitor]!r} is not a number") from exc
            if self._is_better(metric):
                self._best_value, self._best_name = metric, name
        elif self._best_name == name:
            # Saving again at the best step without the metric keeps it best.
            metric = self._best_value
        state = {
            "format": FORMAT,
            "name": name,
            "step": step,
            "epoch": epoch,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "metrics": _encode(metrics, "metrics", tensors),
            "best": {
                "monitor": self.monitor,
                "mode": self.mode,
                "value": self._best_value,
                "name": self._best_name,
                "step": int(_NAME_RE.match(self._best_name).group(1)) if self._best_name else None,
            },
            "data_state": _encode(data_state, "data_state", tensors),
            "extra": _encode(extra, "extra", tensors),
            "config": self.config,
            "config_hash": self.config_hash,
            "versions": _versions(),
            "model": _encode(dict(model_sd), "model", tensors) if model_sd is not None else None,
            "model_metadata": _encode(dict(getattr(model_sd, "_metadata", {}) or {}), "meta", {}),
            "model_shapes": _shapes(model_sd) if model_sd is not None else None,
            "optimizer": _encode(optimizer.state_dict(), "optimizer", tensors) if optimizer is not None else None,
            "scheduler": _encode(scheduler.state_dict(), "scheduler", tensors) if scheduler is not None else None,
            "scaler": _encode(scaler.state_dict(), "scaler", tensors) if scaler is not None else None,
            "rng": _rng_state(tensors),
        }
        state_blob = json.dumps(state, allow_nan=True).encode()
        self._refuse_secret_in(state_blob)
        manifest_path = self.directory / f"{name}{_MANIFEST_SUFFIX}"
        # Saving twice at one step replaces the checkpoint: uncommit it first so a crash midway leaves no
        # manifest pointing at mixed files.
        if manifest_path.exists():
            manifest_path.unlink()
            fsync_dir(self.directory)
        pt_bytes, pt_sha = _atomic_write(self.directory / f"{name}.pt", lambda f: torch.save(tensors, f))
        js_bytes, js_sha = _atomic_write(self.directory / f"{name}.json", lambda f: f.write(state_blob))
        manifest = {
            "format": FORMAT,
            "name": name,
            "step": step,
            "epoch": epoch,
            "monitor": self.monitor,
            "metric": metric,
            "best": {"name": self._best_name, "value": self._best_value},
            "config_hash": self.config_hash,
            "created": state["created"],
            "files": {
                f"{name}.pt": {"bytes": pt_bytes, "sha256": pt_sha},
                f"{name}.json": {"bytes": js_bytes, "sha256": js_sha},
            },
        }
        _atomic_write(manifest_path, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
        fsync_dir(self.directory)
        return _info_from_manifest(manifest_path, "local")

    def _refuse_secret_in(self, blob: bytes) -> None:
        """Credentials never travel inside a checkpoint (it may end up in a public output or dataset)."""
        secrets = self.mirror.secrets() if self.mirror is not None else ()
        for secret in secrets:
            if secret and len(secret) >= 8 and secret.encode() in blob:
                raise CredentialError(
                    "the checkpoint state contains the Kaggle API key or token (in config, metrics or extra); "
                    "remove it from what you pass to save() so it is not written to disk or uploaded"
                )

    def _apply_retention(self) -> None:
        """Delete checkpoints beyond the newest ``keep`` and the best, once the mirror no longer needs them."""
        local = self._local()
        keep_names = {i.name for i in local[: self.keep]}
        if self._best_name:
            keep_names.add(self._best_name)
        confirmed = self.mirror.confirmed() if self.mirror is not None and self.mirror.enabled else None
        for info in local[self.keep :]:
            if info.name in keep_names:
                continue
            if self.mirror is not None and self.mirror.enabled:
                # A checkpoint may go once the dataset holds a newer one, unless it is the dataset's best.
                if confirmed is None or confirmed.latest_step < info.step or confirmed.best_name == info.name:
                    continue
            _delete_checkpoint(info)

    def _clean_orphans(self) -> None:
        """Remove temporary files and data files whose manifest was never written (a crash mid-save)."""
        committed = {i.name for i in self._local()}
        for path in self.directory.iterdir():
            if not path.is_file():
                continue
            if path.name.startswith(".step-") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
                continue
            for suffix in (".pt", ".json"):
                stem = path.name[: -len(suffix)] if path.name.endswith(suffix) else None
                if stem and _NAME_RE.match(stem) and stem not in committed:
                    path.unlink(missing_ok=True)

    def checkpoints(self) -> list[CheckpointInfo]:
        """The completed local checkpoints, newest first."""
        return self._local()

    @property
    def best(self) -> CheckpointInfo | None:
        """The best local checkpoint by ``monitor``, or None."""
        return next((i for i in self._local() if i.name == self._best_name), None)

    def restore(
        self,
        *,
        model: torch.nn.Module | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
        scaler: Any = None,
        force: bool = False,
        search_inputs: bool = True,
        search_mirror: bool = True,
    ) -> Restored | None:
        """Load the newest checkpoint that verifies, from the local folder, attached inputs or the mirror.

        Args:
            model, optimizer, scheduler, scaler: the objects to load into (any may be None).
            force: load even when the model's parameter shapes differ (matching tensors only).
            search_inputs: look in ``/kaggle/input`` (attached datasets and notebook outputs).
            search_mirror: look in the mirror dataset's latest version through the API.

        Returns:
            None when no usable checkpoint exists, else what was restored.

        Raises:
            CheckpointError: the newest usable checkpoint does not fit the model (unless ``force``).
        """
        candidates = list(self._local())
        if search_inputs:
            candidates.extend(self._input_candidates())
        remote: dict[str, Any] | None = None
        if search_mirror and self.mirror is not None and self.mirror.enabled:
            remote = self.mirror.remote_pointer()
        newest_local = max((c.step for c in candidates), default=-1)
        tried: set[tuple[str, int]] = set()
        with tempfile.TemporaryDirectory(prefix="kaggle-kit-restore-") as tmp:
            if remote is not None and int(remote.get("step", -1)) > newest_local:
                candidates.extend(self._mirror_candidates(remote, Path(tmp)))
            candidates.sort(key=lambda c: (-c.step, _SOURCE_RANK[c.source]))
            for info in candidates:
                if (info.source, info.step) in tried:
                    continue
                tried.add((info.source, info.step))
                try:
                    state, tensors = _load_verified(info)
                except CheckpointError as exc:
                    warnings.warn(f"skipping checkpoint {info.manifest_path}: {exc}", stacklevel=2)
                    continue
                restored = self._apply(info, state, tensors, model, optimizer, scheduler, scaler, force=force)
                if info.source != "local":
                    self._adopt(info, candidates)
                return restored
        return None

    def _input_candidates(self) -> list[CheckpointInfo]:
        from kaggle_kit import env

        roots: list[Path] = []
        if self.mirror is not None:
            try:
                roots.append(env.find_input(self.mirror.handle, kind="dataset"))
            except Exception:  # noqa: BLE001 - not attached is the common case; attached_inputs() covers the rest
                pass
        try:
            # Competition data never holds checkpoints; skipping it spares a walk over thousands of images.
            roots.extend(Path(i.path) for i in env.attached_inputs() if i.kind != "competition")
        except Exception as exc:  # noqa: BLE001 - a broken input folder must not stop a resume
            warnings.warn(f"could not list attached inputs: {exc}", stacklevel=3)
        seen: set[Path] = set()
        found: list[CheckpointInfo] = []
        for root in roots:
            resolved = root.resolve()
            if resolved in seen or resolved == self.directory.resolve():
                continue
            seen.add(resolved)
            found.extend(_scan(root, "input", depth=_INPUT_SEARCH_DEPTH))
        return found

    def _mirror_candidates(self, pointer: Mapping[str, Any], dest: Path) -> list[CheckpointInfo]:
        assert self.mirror is not None
        names = [n for n in (pointer.get("latest"), pointer.get("best")) if isinstance(n, str) and _NAME_RE.match(n)]
        found: list[CheckpointInfo] = []
        for name in dict.fromkeys(names):
            try:
                version = pointer.get("version") if isinstance(pointer.get("version"), int) else None
                self.mirror.download_checkpoint(name, dest, version=version)
                found.append(_info_from_manifest(dest / f"{name}{_MANIFEST_SUFFIX}", "mirror"))
            except Exception as exc:  # noqa: BLE001 - a failed download means "not available", never a crash
                warnings.warn(f"could not fetch checkpoint {name} from {self.mirror.handle}: {exc}", stacklevel=3)
        return found

    def _adopt(self, info: CheckpointInfo, candidates: list[CheckpointInfo]) -> None:
        """Copy a restored checkpoint (and the best one beside it) into the local folder.

        So the next session still finds it if this one dies before its next save, and so every version the
        mirror uploads still carries the best checkpoint.
        """
        wanted = [info]
        if info.best_name and info.best_name != info.name:
            best = next((c for c in candidates if c.name == info.best_name and c.folder == info.folder), None)
            if best is not None:
                wanted.append(best)
        for item in wanted:
            if (self.directory / item.manifest_path.name).exists():
                continue
            try:
                _load_verified(item)
                for path in item.paths:
                    _atomic_write(self.directory / path.name, lambda f, p=path: f.write(p.read_bytes()))
                fsync_dir(self.directory)
            except (CheckpointError, OSError) as exc:
                warnings.warn(f"could not copy {item.name} into {self.directory}: {exc}", stacklevel=3)
        if self.mirror is not None:
            self.mirror.seed_ledger(info.folder / "ledger.json")

    def _apply(
        self,
        info: CheckpointInfo,
        state: dict[str, Any],
        tensors: dict[str, torch.Tensor],
        model: torch.nn.Module | None,
        optimizer: Any,
        scheduler: Any,
        scaler: Any,
        *,
        force: bool,
    ) -> Restored:
        where = str(info.manifest_path)
        model_changed = False
        if state.get("config_hash") and self.config_hash and state["config_hash"] != self.config_hash:
            changed = _config_changes(state.get("config"), self.config)
            warnings.warn(
                f"{where}: written with a different config (hash {state['config_hash']} vs {self.config_hash}"
                f"{'; changed: ' + changed if changed else ''}); resuming anyway",
                stacklevel=3,
            )
        if model is not None:
            saved = _decode(state.get("model"), tensors, where)
            if not isinstance(saved, dict):
                raise CheckpointError(f"{where}: holds no model state; pass model=None or use another checkpoint")
            target = _unwrap(model)
            diffs = _shape_differences(state.get("model_shapes") or _shapes(saved), _shapes(target.state_dict()))
            if diffs and not force:
                shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
                raise CheckpointError(
                    f"{where} does not fit this model: {shown}. The config changed the architecture; start a "
                    "fresh run in another checkpoint folder, or pass force=True to load the matching tensors only"
                )
            own = target.state_dict()
            model_changed = bool(diffs)
            if diffs:
                saved = {k: v for k, v in saved.items() if k in own and list(v.shape) == list(own[k].shape)}
                warnings.warn(f"{where}: force=True, skipped {len(diffs)} mismatched tensors", stacklevel=3)
            ordered: Any = type(own)(saved) if hasattr(own, "_metadata") else saved
            metadata = state.get("model_metadata")
            if isinstance(metadata, dict) and metadata:
                ordered._metadata = _decode(metadata, {}, where)
            target.load_state_dict(ordered, strict=not diffs)
        for label, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
            if obj is None:
                continue
            saved = state.get(label)
            if saved is None:
                raise CheckpointError(
                    f"{where}: has no {label} state but a {label} was passed; pass {label}=None to skip it"
                )
            if label == "optimizer" and model_changed:
                # Optimizer state is indexed by parameter: after a forced load of a changed model it no longer lines up.
                warnings.warn(f"{where}: force=True with a changed model, optimizer state left fresh", stacklevel=3)
                continue
            try:
                obj.load_state_dict(_decode(saved, tensors, where))
            except (KeyError, ValueError, RuntimeError, TypeError) as exc:
                raise CheckpointError(f"{where}: the {label} state does not fit ({exc})") from exc
        rng = state.get("rng")
        if isinstance(rng, dict):
            _set_rng_state(_decode(rng, tensors, where), where)
        best = state.get("best") or {}
        if best.get("name") and (self._best_value is None or self._best_name is None):
            self._best_name, self._best_value = best["name"], best.get("value")
        self._last_save = time.monotonic()
        metrics = _decode(state.get("metrics") or {}, tensors, where)
        return Restored(
            step=int(state["step"]),
            epoch=int(state.get("epoch", 0)),
            source=info.source,
            path=info.manifest_path,
            data_state=_decode(state.get("data_state") or {}, tensors, where),
            extra=_decode(state.get("extra") or {}, tensors, where),
            metrics=metrics if isinstance(metrics, dict) else {},
            best_metric=best.get("value"),
            best_step=best.get("step"),
            config_hash=state.get("config_hash"),
            versions=dict(state.get("versions") or {}),
        )

    def flush(self, timeout: float | None = 600.0) -> bool:
        """Wait for the mirror to upload and confirm the newest checkpoint, then apply retention.

        Returns:
            True when nothing is left to upload (or there is no mirror), False on timeout or failure.
        """
        if self.mirror is None or not self.mirror.enabled:
            return True
        done = self.mirror.flush(timeout=timeout)
        with self._lock:
            self._apply_retention()
        return done

    @contextlib.contextmanager
    def save_on_signal(self, *, flush_timeout: float = 120.0) -> Iterator[Checkpointer]:
        """Turn SIGTERM and Ctrl-C into a final save at the next step boundary, a flush, and a stop.

        A signal only sets a flag: the save happens in the next ``maybe_save`` call (so the state is that of
        a completed step), which then flushes the mirror and raises SystemExit(143) for SIGTERM or
        KeyboardInterrupt for Ctrl-C. A second Ctrl-C interrupts at once. Handlers are installed only in
        the main thread and restored on exit.
        """
        if threading.current_thread() is not threading.main_thread():
            warnings.warn("save_on_signal() outside the main thread: no signal handlers installed", stacklevel=3)
            yield self
            return
        self._flush_timeout = flush_timeout
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def _handler(signum: int, frame: Any) -> None:
            if signum == signal.SIGINT and self._stop_signal == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signum

        for sig in previous:
            signal.signal(sig, _handler)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._stop_signal is not None:
                warnings.warn(
                    f"signal {self._stop_signal} arrived after the last maybe_save(); nothing was saved for it: "
                    "save() after the loop if the run should be resumable from its very end",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._stop_signal = None

    def _finish_after_signal(self) -> None:
        signum = self._stop_signal
        self._stop_signal = None
        self.flush(timeout=getattr(self, "_flush_timeout", 120.0))
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + int(signal.SIGTERM))


def _config_changes(old: Any, new: Any, prefix: str = "") -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "" if old == new else (prefix or "config")
    changes = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in old or key not in new:
            changes.append(path)
        elif old[key] != new[key]:
            changes.append(_config_changes(old[key], new[key], path) or path)
    return ", ".join(c for c in changes if c)[:400]


def _delete_checkpoint(info: CheckpointInfo) -> None:
    # The manifest goes first, so an interrupted delete leaves an uncommitted checkpoint, never a broken one.
    info.manifest_path.unlink(missing_ok=True)
    info.tensor_path.unlink(missing_ok=True)
    info.state_path.unlink(missing_ok=True)


def refuse_credentials_in(folder: Path) -> None:
    for name in _CREDENTIAL_FILES:
        if (folder / name).exists():
            raise CredentialError(
                f"{folder / name} holds Kaggle credentials inside the checkpoint folder, which becomes notebook "
                "output and may be uploaded; move it to ~/.kaggle (or use Kaggle Secrets) and delete it here"
            )


def copy_checkpoint(info: CheckpointInfo, dest: Path) -> None:
    """Copy a checkpoint's three files into ``dest`` (manifest last), hard-linking where possible."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in info.paths:
        target = dest / path.name
        if target.exists():
            target.unlink()
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
