"""The training side of checkpoints: :class:`Checkpointer` saves on a cadence, on request and on a signal.

Contract with the training loop:

* ``step`` is the number of optimizer steps completed and ``epoch`` the epoch in progress; ``data_state`` is a
  JSON-able dict that tells the loop where to continue, e.g. ``{"epoch_seed": 7, "position": 120}`` (batches of
  the epoch already consumed). Pass the values a resume should continue from: call ``maybe_save`` right after
  a completed step, never in the middle of one.
* ``restore`` returns None (nothing found) or a :class:`~kaggle_kit.checkpoint.restore.Restored` carrying ``step``,
  ``epoch``, ``source``, ``data_state``, ``extra``, ``metrics``, ``best_metric``; it has already loaded the model,
  optimizer, scheduler, scaler and the python, numpy, torch and CUDA RNG states.
* ``extra`` is caller state that travels along (JSON-able; tensors inside it are stored in the ``.pt`` file).
* ``config`` (a dataclass or a dict) is stored with its hash (``kaggle_kit.config.config_hash``).
* ``request_save()`` (the session guard calls it before the deadline) makes the next ``maybe_save`` save
  whatever the cadence; inside ``save_on_signal()`` SIGTERM and Ctrl-C do the same, then stop the run.

Each save is handed to the mirror (any :class:`~kaggle_kit.checkpoint.mirror_protocol.CheckpointMirror`, e.g. a
``DatasetMirror``); retention deletes local checkpoints beyond the newest ``keep`` and the best only once the mirror
has confirmed a newer copy.

Every checkpoint carries the id of its run (:func:`kaggle_kit.checkpoint.identity.run_id_for`); retention only ever
deletes this run's checkpoints, and ``restore`` resumes only this run (see :mod:`kaggle_kit.checkpoint.restore`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaggle_kit.checkpoint.codec import capture_rng_state, encode, library_versions, tensor_shapes, unwrap_model
from kaggle_kit.checkpoint.format import (
    FORMAT,
    MANIFEST_SUFFIX,
    CheckpointInfo,
    Orphan,
    checkpoint_name,
    delete_checkpoint,
    find_orphans,
    info_from_manifest,
    refuse_credentials_in,
    scan_folder,
    step_of,
    write_checkpoint,
)
from kaggle_kit.checkpoint.identity import check_run_id, run_id_for
from kaggle_kit.checkpoint.mirror_protocol import CheckpointMirror
from kaggle_kit.checkpoint.restore import Restored, restore_newest
from kaggle_kit.config import config_hash, config_to_dict
from kaggle_kit.errors import CheckpointError, ConfigError, CredentialError
from kaggle_kit.notify import loud_warning

if TYPE_CHECKING:
    import torch

__all__ = ["Checkpointer"]


def _to_jsonable_config(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    try:
        return json.loads(json.dumps(config_to_dict(config), default=str))
    except ConfigError as exc:
        raise CheckpointError(
            f"config must be a dataclass instance or a dict, got {type(config).__name__}; pass the run's config"
        ) from exc


class Checkpointer:
    """Saves full training state on a time cadence and restores it from wherever it survived.

    Args:
        directory: the local checkpoint folder (created).
        mirror: a mirror (e.g. a ``DatasetMirror``) that uploads each checkpoint in the background, or None.
        keep: how many of the newest checkpoints to keep locally (the best is kept besides).
        every_minutes: the cadence of ``maybe_save``; fractions allowed.
        every_seconds: the cadence in seconds; overrides ``every_minutes``.
        monitor: the metric name (a key of ``metrics``) that picks the best checkpoint.
        mode: "min" or "max" for ``monitor``.
        config: the run's config (dataclass or dict), stored with its hash.
        restore_only: it only restores (inference, DDP ranks other than 0): no warning about mirroring, and
            nothing in the folder is deleted.
        run_id: the run's id, as :func:`~kaggle_kit.checkpoint.identity.run_id_for` makes it; wins over the rest.
        run_name: names the run together with the mirror's dataset (or alone, without a mirror).
        resume_inputs: inputs that may hold this run's checkpoints, searched by ``restore``: folders, or handles
            ``owner/slug[/N]`` of attached datasets or notebook outputs (e.g. the earlier session's output). Only
            these are searched, besides the local folder and the mirror's dataset (attached or through the API).
        resume_from: a folder or attached input holding another run's checkpoints, adopted on purpose when this
            run has none of its own yet (its newest checkpoint that verifies continues as this run's).

    Without ``run_id``, ``run_name`` or a mirror, the run is the one whose checkpoints are in ``directory`` (a
    new, unnamed run when there are none): such a run resumes from its own folder only.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        mirror: CheckpointMirror | None = None,
        keep: int = 3,
        every_minutes: float = 10.0,
        every_seconds: float | None = None,
        monitor: str | None = None,
        mode: str = "min",
        config: Any = None,
        restore_only: bool = False,
        run_id: str | None = None,
        run_name: str | None = None,
        resume_inputs: Sequence[str | os.PathLike[str]] = (),
        resume_from: str | os.PathLike[str] | None = None,
    ) -> None:
        if keep < 1:
            raise CheckpointError(f"keep={keep}: keep at least 1 checkpoint")
        if mode not in ("min", "max"):
            raise CheckpointError(f"mode={mode!r}: use 'min' (lower is better) or 'max'")
        interval = float(every_seconds) if every_seconds is not None else float(every_minutes) * 60.0
        if not interval > 0 or not math.isfinite(interval):
            raise CheckpointError(f"checkpoint interval {interval} s: pass a positive every_minutes or every_seconds")
        if isinstance(resume_inputs, (str, os.PathLike)):
            raise CheckpointError(f"resume_inputs={str(resume_inputs)!r}: pass a list of folders or input handles")
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
        self.restore_only = restore_only
        self.resume_inputs = tuple(resume_inputs)
        self.resume_from = resume_from
        self._last_save = time.monotonic()
        self._save_requested = False
        self._stop_signal: int | None = None
        self._flush_timeout = 120.0
        self._lock = threading.Lock()
        local = self._local()
        self.run_id = self._resolve_run_id(run_id, run_name, local)
        own = [i for i in local if i.run_id == self.run_id]
        # The newest manifest knows the best so far, even when that checkpoint is no longer in this folder.
        best = own[0].manifest.get("best") if own else None
        self._best_name: str | None = own[0].best_name if own else None
        value = best.get("value") if isinstance(best, dict) else None
        self._best_value: float | None = float(value) if isinstance(value, (int, float)) else None
        self._handle_orphans(local, report=True)
        # A checkpointer that only restores (inference, a DDP rank other than 0) has nothing to mirror to announce.
        if not restore_only:
            self._report_mirror()

    def _resolve_run_id(self, run_id: str | None, run_name: str | None, local: list[CheckpointInfo]) -> str:
        if run_id is not None:
            checked = check_run_id(run_id, "run_id")
            if checked is None or not checked:
                raise CheckpointError("run_id must be a non-empty string; make it with run_id_for(...)")
            return checked
        if self.mirror is not None:
            try:
                return run_id_for(mirror_handle=self.mirror.handle, run_name=run_name)
            except CheckpointError as exc:
                raise CheckpointError(f"{exc}; with a mirror that is not a Kaggle dataset, pass run_id=") from None
        if run_name is not None:
            return run_id_for(run_name=run_name)
        # Unnamed: the run already in this folder, or a new one.
        named = next((i.run_id for i in local if i.run_id is not None), None)
        return named or f"unnamed:{uuid.uuid4().hex[:12]}"

    def _local(self) -> list[CheckpointInfo]:
        """Every completed checkpoint in the folder, of any run, newest first."""
        return scan_folder(self.directory, "local")

    def _handle_orphans(self, local: list[CheckpointInfo], *, report: bool) -> None:
        """Delete orphans older than a completed checkpoint; report (once, at construction) those kept."""
        newest = local[0] if local else None
        kept: list[Orphan] = []
        for orphan in find_orphans(self.directory):
            if not self.restore_only and newest is not None and orphan.older_than(newest):
                orphan.path.unlink(missing_ok=True)
            elif not orphan.temporary:
                kept.append(orphan)
        if report and kept:
            names = ", ".join(o.path.name for o in kept[:6]) + (f" and {len(kept) - 6} more" if len(kept) > 6 else "")
            warnings.warn(
                f"{self.directory}: {names} have no manifest beside them (a save that died midway, or a manifest "
                "deleted by hand): they are not loaded, and are deleted once a newer checkpoint is complete",
                RuntimeWarning, stacklevel=3,
            )

    def _report_mirror(self) -> None:
        from kaggle_kit import env

        if self.mirror is not None:
            self.mirror.report_off(checkpoint_dir=self.directory)
        elif env.in_kaggle():
            loud_warning(
                f"checkpoints in {self.directory} are NOT mirrored (no DatasetMirror given): they survive only "
                "as a Batch run's output; an Interactive session loses /kaggle/working when it ends"
            )

    def checkpoints(self) -> list[CheckpointInfo]:
        """This run's completed local checkpoints (and any written before run ids existed), newest first."""
        return [i for i in self._local() if i.run_id in (self.run_id, None)]

    @property
    def best(self) -> CheckpointInfo | None:
        """The best local checkpoint by ``monitor``, or None."""
        return next((i for i in self.checkpoints() if i.name == self._best_name), None)

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

        Raises:
            CheckpointError: the checkpoint could not be written (a full disk names the folder and the bytes needed;
                the earlier checkpoints stay), or the folder holds another run's checkpoint at this step.
        """
        if not isinstance(step, int) or step < 0 or not isinstance(epoch, int) or epoch < 0:
            raise CheckpointError(f"step={step!r}, epoch={epoch!r}: both must be non-negative integers")
        with self._lock:
            self._refuse_other_run_at(step)
            best_before = (self._best_name, self._best_value)
            try:
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
            except BaseException:
                # A save that did not complete is not the best.
                self._best_name, self._best_value = best_before
                raise
            self._last_save = time.monotonic()
            self._save_requested = False
            if self.mirror is not None and self.mirror.enabled:
                own = [i for i in self._local() if i.run_id == self.run_id]
                best = None
                if self._best_name and self._best_name != info.name:
                    best = next((i for i in own if i.name == self._best_name), None)
                self.mirror.submit(info, best, recent=tuple(i for i in own if i.step < info.step))
            self._apply_retention()
        return info

    def _refuse_other_run_at(self, step: int) -> None:
        """A checkpoint of another run is never overwritten by a save at the same step."""
        manifest = self.directory / f"{checkpoint_name(step)}{MANIFEST_SUFFIX}"
        if not manifest.exists():
            return
        try:
            other = info_from_manifest(manifest, "local").run_id
        except CheckpointError:
            return  # a broken manifest is no checkpoint; the save replaces it
        if other not in (self.run_id, None):
            raise CheckpointError(
                f"{manifest} belongs to run {other!r}, not this run {self.run_id!r}: one folder holds one run's "
                "checkpoints. Give this run another directory, or adopt that run with resume_from="
            )

    def _track_best(self, name: str, metrics: Mapping[str, Any]) -> float | None:
        """Update the best checkpoint with this save's metric; returns the metric recorded for it."""
        if self.monitor is not None and self.monitor in metrics:
            try:
                metric = float(metrics[self.monitor])
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"metrics[{self.monitor!r}]={metrics[self.monitor]!r} is not a number") from exc
            if self._is_better(metric):
                self._best_value, self._best_name = metric, name
            return metric
        # Saving again at the best step without the metric keeps it best.
        return self._best_value if self._best_name == name else None

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
        name = checkpoint_name(step)
        tensors: dict[str, torch.Tensor] = {}
        model_sd = unwrap_model(model).state_dict() if model is not None else None
        metric = self._track_best(name, metrics)
        created = _dt.datetime.now(_dt.timezone.utc).isoformat()
        state = {
            "format": FORMAT,
            "name": name,
            "step": step,
            "epoch": epoch,
            "run_id": self.run_id,
            "created": created,
            "metrics": encode(metrics, "metrics", tensors),
            "best": {
                "monitor": self.monitor,
                "mode": self.mode,
                "value": self._best_value,
                "name": self._best_name,
                "step": step_of(self._best_name) if self._best_name else None,
            },
            "data_state": encode(data_state, "data_state", tensors),
            "extra": encode(extra, "extra", tensors),
            "config": self.config,
            "config_hash": self.config_hash,
            "versions": library_versions(),
            "model": encode(dict(model_sd), "model", tensors) if model_sd is not None else None,
            "model_metadata": encode(dict(getattr(model_sd, "_metadata", {}) or {}), "meta", {}),
            "model_shapes": tensor_shapes(model_sd) if model_sd is not None else None,
            "optimizer": encode(optimizer.state_dict(), "optimizer", tensors) if optimizer is not None else None,
            "scheduler": encode(scheduler.state_dict(), "scheduler", tensors) if scheduler is not None else None,
            "scaler": encode(scaler.state_dict(), "scaler", tensors) if scaler is not None else None,
            "rng": capture_rng_state(tensors),
        }
        state_blob = json.dumps(state, allow_nan=True).encode()
        self._refuse_secret_in(state_blob)
        summary = {
            "monitor": self.monitor,
            "metric": metric,
            "best": {"name": self._best_name, "value": self._best_value},
            "config_hash": self.config_hash,
            "run_id": self.run_id,
        }
        return write_checkpoint(self.directory, step=step, epoch=epoch, tensors=tensors, state_blob=state_blob,
                                created=created, summary=summary)

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
        """Delete this run's checkpoints beyond the newest ``keep`` and the best, once the mirror no longer needs
        them, and the orphans older than the newest checkpoint. Other runs' checkpoints are never deleted."""
        local = self._local()
        own = [i for i in local if i.run_id == self.run_id]
        keep_names = {i.name for i in own[: self.keep]}
        if self._best_name:
            keep_names.add(self._best_name)
        mirroring = self.mirror is not None and self.mirror.enabled
        confirmed = self.mirror.confirmed() if self.mirror is not None and self.mirror.enabled else None
        for info in own[self.keep :]:
            if info.name in keep_names:
                continue
            # A checkpoint may go once the mirror holds a newer one, unless it is the mirror's best.
            if mirroring and (confirmed is None or confirmed.latest_step < info.step
                              or confirmed.best_name == info.name):
                continue
            delete_checkpoint(info)
        self._handle_orphans(local, report=False)

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
        """Load this run's newest checkpoint that verifies: all of it, or nothing.

        Searched, nearest first on a tie: the local folder; ``resume_inputs`` and the mirror's dataset when it is
        attached; the mirror's newest version through the API. A bad checkpoint is skipped with a warning naming
        it. Without one of this run's, ``resume_from`` is adopted, or else a checkpoint written before run ids
        existed when it is the only kind found; other runs' checkpoints are listed in a warning, never loaded.

        Args:
            model, optimizer, scheduler, scaler: the objects to load into (any may be None).
            force: load even when the model's parameter shapes differ (matching tensors only).
            search_inputs: look in ``resume_inputs`` and the attached mirror dataset.
            search_mirror: look in the mirror's latest remote copy.

        Returns:
            None when the run has no usable checkpoint (a fresh start), else what was restored.

        Raises:
            CheckpointError: the newest usable checkpoint does not fit the model (unless ``force``).
        """
        restored = restore_newest(
            self.directory, run_id=self.run_id, mirror=self.mirror, resume_inputs=self.resume_inputs,
            resume_from=self.resume_from, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
            force=force, search_inputs=search_inputs, search_mirror=search_mirror, config=self.config,
            config_hash=self.config_hash,
        )
        if restored is None:
            return None
        if restored.best_name and (self._best_value is None or self._best_name is None):
            self._best_name, self._best_value = restored.best_name, restored.best_metric
        self._last_save = time.monotonic()
        return restored

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
        self.flush(timeout=self._flush_timeout)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + int(signal.SIGTERM))
