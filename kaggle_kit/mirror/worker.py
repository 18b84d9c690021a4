"""The uploader process: ``python -m kaggle_kit.mirror.worker``, started and fed by a ``DatasetMirror``.

It runs apart from the training process, so the loop never competes with HTTP work for the GIL. The parent writes
JSON lines to its stdin: first ``{"settings", "credentials"}`` (credentials travel over this pipe, never argv, the
environment or a file), then ``["job", {"latest", "best"}]``, ``["ledger", sessions]`` and ``["stop"]``. It answers on
stdout with ``["started", manifest]``, ``["skipped", manifest]``, ``["done", confirmed, sessions, retries]`` and
``["failed", manifest, message, retries]``. It dies with its parent, ignores SIGTERM/Ctrl-C (the parent turns those
into a final save and flush, which needs it alive) and runs at a lower CPU priority.

Each upload stages one dataset version in a folder under the temp folder (never the working folder, so nothing
staged becomes notebook output): the newest ``keep`` checkpoints, the best one when it is older, ``latest.json`` and
``ledger.json``. Since every version holds all a resume needs, it is created with ``deleteOldVersions`` (the only
deletion Kaggle's API offers), so the dataset keeps one version and its size stays bounded. A dataset whose
``latest.json`` names another run is never written over. A newer job submitted while another waits replaces it
(coalescing). After each upload the version is verified (status ready, files and sizes as sent) before it is
reported done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaggle_kit.checkpoint.format import CheckpointInfo, copy_checkpoint, info_from_manifest, refuse_credentials_in, \
    step_of, verify_files
from kaggle_kit.errors import CheckpointError, MirrorError, MirrorStopped, TransientApiError
from kaggle_kit.mirror.client import ApiClient, MirrorSettings, response_status
from kaggle_kit.mirror.ledger import LEDGER_FILE, POINTER_FILE, Confirmed, ledger_document, new_session, now_iso, \
    parse_ledger, parse_pointer, pointer_document

if TYPE_CHECKING:
    from kaggle_kit.kaggle_api import Credentials

__all__ = ["Uploader", "main", "JOB", "LEDGER", "STOP", "STARTED", "SKIPPED", "DONE", "FAILED"]

# Parent to uploader.
JOB = "job"
LEDGER = "ledger"
STOP = "stop"
# Uploader to parent.
STARTED = "started"
SKIPPED = "skipped"
DONE = "done"
FAILED = "failed"

_METADATA_FILE = "dataset-metadata.json"
_STAGING_PREFIX = "v-"


class Uploader(ApiClient):
    """One upload at a time, the newest job waiting, results sent to the parent through ``send``."""

    def __init__(self, settings: MirrorSettings, credentials: Credentials, send: Callable[..., None]) -> None:
        super().__init__(settings, credentials)
        self.send = send
        self.staging_root = Path(settings.staging_root)
        self._clean_stale_staging()
        self.uploads = 0
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._exists: bool | None = None
        self._ledger_sessions: list[dict[str, Any]] | None = None
        self._session = new_session(run_type=settings.run_type, accelerator=settings.accelerator)
        self._dataset_run_checked = False

    def _clean_stale_staging(self, older_than_s: float = 600.0) -> None:
        """Remove version folders an uploader killed mid-upload left behind."""
        if not self.staging_root.is_dir():
            return
        for folder in self.staging_root.glob(f"{_STAGING_PREFIX}*"):
            if step_of(folder.name[len(_STAGING_PREFIX):].rpartition("-")[0]) is None:
                continue
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > older_than_s:
                    shutil.rmtree(folder, ignore_errors=True)

    def submit(self, job: dict[str, Any]) -> None:
        """Queue a job; one still waiting is dropped (reported ``skipped``): the new version covers it."""
        with self._cond:
            if self._pending is not None:
                self.send(SKIPPED, self._pending["latest"])
            self._pending = job
            self._cond.notify_all()

    def seed_ledger(self, sessions: list[dict[str, Any]]) -> None:
        """Continue from earlier sessions' records, unless a ledger is already loaded."""
        with self._cond:
            if self._ledger_sessions is None:
                self._ledger_sessions = sessions

    def finish(self) -> None:
        """Stop: the upload in flight abandons its next wait, a waiting job is dropped."""
        self.stop.set()
        with self._cond:
            self._cond.notify_all()

    def run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self.stop.is_set():
                    self._cond.wait()
                job = self._pending
                if self.stop.is_set() or job is None:
                    return
                self._pending = None
            self.send(STARTED, job["latest"])
            try:
                confirmed = self._upload(job)
            except MirrorStopped:
                return
            except Exception as exc:  # noqa: BLE001 - the process must survive to upload the next checkpoint
                self.send(FAILED, job["latest"], f"mirroring {Path(job['latest']).name} to {self.handle} "
                          f"failed: {exc}", self.retries)
                continue
            self.uploads += 1
            self.send(DONE, dataclasses.asdict(confirmed), self._ledger_sessions or [], self.retries)

    def _upload(self, job: dict[str, Any]) -> Confirmed:
        latest = info_from_manifest(Path(job["latest"]), "local")
        best = info_from_manifest(Path(job["best"]), "local") if job.get("best") else None
        recent: list[CheckpointInfo] = []
        for path in job.get("recent") or []:
            if len(recent) + 1 >= self.settings.keep:
                break
            try:
                recent.append(info_from_manifest(Path(path), "local"))
            except CheckpointError:
                continue  # deleted by retention meanwhile: the version carries one checkpoint fewer
        if self._session["first_step"] is None:
            self._session["first_step"] = latest.step
        attempt = 0
        while True:
            try:
                return self._upload_once(latest, best, recent)
            except TransientApiError as exc:
                attempt += 1
                if attempt >= self.settings.max_attempts:
                    raise MirrorError(f"{exc} (gave up after {attempt} attempts)") from exc
                self.retries += 1
                self.wait(self.backoff(attempt))

    def _upload_once(self, latest: CheckpointInfo, best: CheckpointInfo | None,
                     recent: list[CheckpointInfo]) -> Confirmed:
        api = self.api()
        folder = self.staging_root / f"{_STAGING_PREFIX}{latest.name}-{uuid.uuid4().hex[:6]}"
        try:
            sent, best_name = self._stage(latest, best, recent, folder)
            if self._exists is None:
                self._exists = self._dataset_exists(api)
            if self._exists and not self._dataset_run_checked:
                self._refuse_another_run(api, latest)
            if self._ledger_sessions is None:
                self._seed_ledger_from_dataset(api)
            self._write_ledger(folder, latest.step)
            sent[LEDGER_FILE] = (folder / LEDGER_FILE).stat().st_size
            previous = self._current_version(api) if self._exists else 0
            if not self._exists:
                response = self.call(
                    f"creating dataset {self.handle}",
                    lambda: api.dataset_create_new(str(folder), public=False, quiet=True, convert_to_csv=False),
                )
                error = getattr(response, "error", None)
                if error and "already in use" in str(error):
                    self._exists = True
                    self._refuse_another_run(api, latest)
                    previous = self._current_version(api)
                elif error:
                    raise MirrorError(f"creating dataset {self.handle} was refused: {error}")
                else:
                    self._exists = self._dataset_run_checked = True
                    self.note_created()
            if previous:
                notes = _version_notes(latest)
                response = self.call(
                    f"adding a version to {self.handle}",
                    lambda: api.dataset_create_version(
                        str(folder), notes, quiet=True, convert_to_csv=False,
                        delete_old_versions=self.settings.delete_old_versions,
                    ),
                )
                error = getattr(response, "error", None)
                if error:
                    raise MirrorError(f"the new version of {self.handle} was refused: {error}")
                self.note_created()
            version = self._verify(api, previous, sent)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return Confirmed(version, latest.step, latest.name, best_name)

    def _stage(
        self, latest: CheckpointInfo, best: CheckpointInfo | None, recent: list[CheckpointInfo], folder: Path
    ) -> tuple[dict[str, int], str | None]:
        """Assemble one version's files; returns {name: bytes} of what will be sent, and the best's name."""
        folder.mkdir(parents=True, exist_ok=True)
        items = [latest]
        for item in [*recent, *([best] if best is not None else [])]:
            if item.name in {i.name for i in items}:
                continue
            try:
                copy_checkpoint(item, folder)
            except OSError:
                if item is best:
                    raise
                continue  # an older checkpoint deleted meanwhile: the version carries one fewer
            items.append(item)
        copy_checkpoint(latest, folder)
        for item in items:
            try:
                # The staged copies must match their manifest: a checkpoint replaced meanwhile is not sent half-old.
                verify_files(folder / item.manifest_path.name)
            except CheckpointError as exc:
                raise TransientApiError(f"staged {item.name} does not verify ({exc})") from exc
        pointer = pointer_document(self.handle, latest, items)
        (folder / POINTER_FILE).write_text(json.dumps(pointer, indent=1))
        metadata = {
            "id": self.handle,
            "title": self.settings.title,
            "licenses": [{"name": "unknown"}],
            "description": f"Training checkpoints mirrored by kaggle-kit ({POINTER_FILE} names the newest and the "
                           "best).",
        }
        (folder / _METADATA_FILE).write_text(json.dumps(metadata, indent=1))
        refuse_credentials_in(folder)
        sent = {p.name: p.stat().st_size for p in folder.iterdir() if p.name != _METADATA_FILE}
        return sent, pointer["best"]

    def _refuse_another_run(self, api: Any, latest: CheckpointInfo) -> None:
        """Never write over another run's checkpoints: each version replaces the dataset's content.

        Raises:
            MirrorError: the dataset's ``latest.json`` names another run.
        """
        with tempfile.TemporaryDirectory(prefix="kaggle-kit-pointer-") as tmp:
            try:
                self.download_file(api, self.handle, POINTER_FILE, tmp, attempts=3)
                pointer = parse_pointer((Path(tmp) / POINTER_FILE).read_bytes(), where=f"{POINTER_FILE} of "
                                        f"{self.handle}")
            except (MirrorError, OSError):
                pointer = None  # no pointer yet, or unreadable: nothing says the dataset is another run's
        other = pointer.get("run_id") if pointer is not None else None
        if other is not None and other != latest.run_id:
            raise MirrorError(
                f"dataset {self.handle} holds the checkpoints of run {other!r} (step {pointer['step']}), not of this "
                f"run {latest.run_id!r}: each version replaces the dataset's content, so nothing is uploaded there. "
                "Name another dataset for this run, or continue that run under its own name"
            )
        self._dataset_run_checked = True

    def _dataset_exists(self, api: Any) -> bool:
        try:
            self.call(f"looking up {self.handle}", lambda: api.dataset_status(self.handle))
            return True
        except MirrorError as exc:
            if response_status(exc) in (403, 404):
                return False
            raise

    def _current_version(self, api: Any) -> int:
        return int(getattr(self.get_dataset(api), "current_version_number", 0) or 0)

    def _verify(self, api: Any, previous: int, sent: dict[str, int]) -> int:
        """Wait for the new version to be ready, then check its files and sizes against what was sent."""
        deadline = time.monotonic() + self.settings.verify_timeout_s
        while True:
            version = self._current_version(api)
            status = self.call(f"reading the status of {self.handle}", lambda: api.dataset_status(self.handle))
            if version > previous and str(status).lower() == "ready":
                break
            if time.monotonic() > deadline:
                raise TransientApiError(
                    f"version {previous + 1} of {self.handle} was not ready after {self.settings.verify_timeout_s:.0f}s"
                )
            self.wait(self.settings.poll_interval_s)
        listed: dict[str, int] = {}
        token: str | None = None
        ref = f"{self.handle}/{version}"

        def list_page(page: str | None) -> Any:
            return api.dataset_list_files(ref, page_token=page, page_size=100)

        while True:
            response = self.call(f"listing the files of {ref}", functools.partial(list_page, token))
            for item in getattr(response, "dataset_files", None) or []:
                listed[str(item.name)] = int(item.total_bytes or 0)
            token = getattr(response, "next_page_token", None)
            if not token:
                break
        if listed != sent:
            missing = sorted(set(sent) - set(listed))
            wrong = sorted(n for n in sent if n in listed and listed[n] != sent[n])
            raise TransientApiError(
                f"version {version} of {self.handle} does not hold what was sent (missing {missing}, "
                f"wrong size {wrong}, extra {sorted(set(listed) - set(sent))})"
            )
        return version

    def _seed_ledger_from_dataset(self, api: Any) -> None:
        sessions: list[dict[str, Any]] = []
        if self._exists:
            with tempfile.TemporaryDirectory(prefix="kaggle-kit-ledger-") as tmp:
                try:
                    self.download_file(api, self.handle, LEDGER_FILE, tmp, attempts=3)
                    path = Path(tmp) / LEDGER_FILE
                    sessions = parse_ledger(path.read_bytes(), where=f"{LEDGER_FILE} of {self.handle}")
                except (MirrorError, OSError):
                    sessions = []
        self.seed_ledger(sessions)

    def _write_ledger(self, folder: Path, step: int) -> None:
        with self._cond:
            self._session["ended"] = now_iso()
            self._session["last_step"] = step
            self._session["versions"] = self.uploads + 1
            sessions = [s for s in (self._ledger_sessions or []) if s.get("id") != self._session["id"]]
            sessions.append(dict(self._session))
            ledger = ledger_document(self.handle, sessions)
            self._ledger_sessions = ledger["sessions"]
        (folder / LEDGER_FILE).write_text(json.dumps(ledger, indent=1))


def _version_notes(info: CheckpointInfo) -> str:
    notes = f"step {info.step} epoch {info.epoch}"
    monitor = info.manifest.get("monitor")
    if info.metric is not None:
        notes += f" {monitor or 'metric'} {info.metric:.6g}"
    return notes


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a killed session takes its uploader along)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    """The uploader process: JSON lines in on stdin (first the settings and credentials), results out on fd 1."""
    from kaggle_kit.kaggle_api import Credentials, import_kaggle_api

    _die_with_parent()
    # SIGTERM/Ctrl-C reach the whole process group; the parent turns them into a final save and a flush, which
    # needs this process alive. It ends on EOF from the parent, or with it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Training comes first when CPUs are scarce: uploads can wait, a slowed step cannot be won back.
    with contextlib.suppress(OSError):
        os.nice(10)
    parent = os.getppid()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what the kaggle client prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    lock = threading.Lock()

    def send(*message: Any) -> None:
        with lock:
            protocol.write(json.dumps(message) + "\n")

    import_kaggle_api()  # before the first checkpoint arrives, so its upload starts at once
    init = json.loads(sys.stdin.readline())
    kind = ""
    uploader = Uploader(MirrorSettings(**init["settings"]), Credentials(**init["credentials"]), send)
    thread = threading.Thread(target=uploader.run, name="kaggle-kit-uploader", daemon=True)
    thread.start()
    for line in sys.stdin:
        kind, *args = json.loads(line)
        if kind == JOB:
            uploader.submit(args[0])
        elif kind == LEDGER:
            uploader.seed_ledger(args[0])
        elif kind == STOP:
            break
    # stdin closed without "stop" means the parent is gone: nothing is waiting for the upload in flight.
    if kind != STOP or os.getppid() != parent:
        os._exit(0)
    uploader.finish()
    thread.join(timeout=5)


if __name__ == "__main__":
    main()
