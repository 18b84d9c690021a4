"""What the checkpointer needs from a mirror, as a protocol: the checkpoint package never imports the mirror.

:class:`kaggle_kit.mirror.DatasetMirror` satisfies :class:`CheckpointMirror`; a test double or another backend
(a bucket, a second disk) can too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kaggle_kit.checkpoint.format import CheckpointInfo

__all__ = ["CheckpointMirror", "MirroredVersion"]


class MirroredVersion(Protocol):
    """The newest remote copy the mirror has confirmed."""

    @property
    def latest_step(self) -> int:
        """The step of the newest checkpoint in it."""

    @property
    def best_name(self) -> str | None:
        """The best checkpoint in it, or None."""


class CheckpointMirror(Protocol):
    """A remote copy of the checkpoint folder that uploads in the background.

    Attributes:
        handle: what the mirror writes to (e.g. a dataset ``owner/slug``), for messages.
        enabled: False when mirroring is off (no credentials, no internet); every other call is then a no-op.
    """

    handle: str
    enabled: bool

    def report_off(self, *, checkpoint_dir: str | os.PathLike[str] | None = None) -> None:
        """Warn once, loudly, when mirroring is off."""

    def secrets(self) -> tuple[str, ...]:
        """The secret strings in use, which must never be written into a checkpoint."""

    def submit(self, latest: CheckpointInfo, best: CheckpointInfo | None = None,
               recent: Sequence[CheckpointInfo] = ()) -> None:
        """Queue a completed checkpoint (and the best, if older) for upload; returns at once.

        ``recent`` are the run's older local checkpoints, newest first, for a mirror that keeps a few besides.
        """

    def flush(self, timeout: float | None = 600.0) -> bool:
        """Wait until everything submitted is confirmed; False on timeout or failure."""

    def confirmed(self) -> MirroredVersion | None:
        """The newest confirmed remote copy, or None."""

    def remote_pointer(self) -> dict[str, Any] | None:
        """The remote copy's pointer, or None when there is none.

        Keys: ``step``, ``latest``, ``best``, ``version``, ``run_id`` (None when unknown) and ``checkpoints`` (the
        names it holds, newest first).
        """

    def download_checkpoint(self, name: str, dest: str | os.PathLike[str], *, version: int | None = None) -> Path:
        """Fetch one checkpoint's files into ``dest``; returns its manifest path (not yet verified)."""

    def seed_ledger(self, path: str | os.PathLike[str]) -> None:
        """Continue the run's ledger from the one in ``path`` (a ledger file, or a folder holding one)."""
