"""The training side of the mirror: :class:`DatasetMirror` hands checkpoints to the uploader process.

Every dataset version is a full snapshot (Kaggle keeps no increments and flattens folders), so each version the
mirror creates carries exactly what a resume needs: the newest ``keep`` checkpoints, the best one when it is older,
and the pointer and ledger of :mod:`kaggle_kit.mirror.ledger`; the versions before it are deleted as it is created,
so the dataset holds one version and its size stays bounded. Uploads run in :mod:`kaggle_kit.mirror.worker`; only
once a version is verified does the Checkpointer delete the local checkpoints it covers.

Without credentials, or without a route to the API, mirroring is OFF and says so loudly when it is built.
``KAGGLE_KIT_API_ENDPOINT`` points everything at the offline stand-in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from kaggle_kit import envvars
from kaggle_kit.checkpoint.format import CheckpointInfo, checkpoint_files
from kaggle_kit.errors import CredentialError, HandleError, MirrorError
from kaggle_kit.handles import parse_dataset
from kaggle_kit.mirror import worker
from kaggle_kit.mirror.client import PROD_API, ApiClient, MirrorSettings, response_status
from kaggle_kit.mirror.ledger import LEDGER_FILE, MAX_FILE_BYTES, POINTER_FILE, Confirmed, parse_ledger, \
    parse_pointer, pointer_from_names
from kaggle_kit.notify import loud_warning
from kaggle_kit.spawn import kit_python_env

if TYPE_CHECKING:
    from kaggle_kit.kaggle_api import Credentials

__all__ = ["DatasetMirror"]


def _accelerator() -> str:
    try:
        from kaggle_kit.guard.accelerator import detect_accelerator

        return detect_accelerator().kind  # already says how many, e.g. "T4x2"
    except Exception:  # noqa: BLE001 - the ledger records "unknown" rather than failing an upload
        return "unknown"


def _unreachable(url: str, timeout: float = 4.0) -> str | None:
    """None when a TCP connection to the API host opens, else what went wrong."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot reach {host}:{port} ({exc.strerror or exc})"


def _release(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except OSError:
            pass


class DatasetMirror:
    """Uploads checkpoints to a private Kaggle Dataset ``owner/slug`` from a background process.

    Use it from one thread (the training loop's); its uploader process does the waiting.

    Args:
        handle: the dataset, ``owner/slug`` (slug 6-50 letters, digits or dashes); created private on first use.
        credentials: Kaggle credentials; found like the kaggle client does, then in Kaggle Secrets, when None.
        secret_labels: Kaggle Secrets labels to read (two for username and key, one for an access token).
        title: the dataset's title on creation (6-50 characters).
        staging_dir: where versions are assembled before upload; under the temp folder by default.
        verify_timeout_s: how long to wait for a new version to become ready before trying again.
        poll_interval_s: how often to poll the version status, and to retry a 403 "still processing".
        backoff_s: the first retry delay; it doubles per attempt (with jitter) up to ``max_backoff_s``.
        max_backoff_s: the longest retry delay.
        max_attempts: attempts per upload before it is reported failed (the next checkpoint tries again).
        check_connection: test at construction that the API host answers (a session without internet).
        keep: the newest checkpoints each version carries (the best comes besides): 2 keeps a fallback should the
            newest prove bad; 1 uploads the least.
        delete_old_versions: create each version with Kaggle's ``deleteOldVersions``, so the dataset keeps only
            the newest version (which holds all a resume needs); False keeps every version (unbounded storage).
    """

    def __init__(
        self,
        handle: str,
        *,
        credentials: Credentials | None = None,
        secret_labels: Sequence[str] | None = None,
        title: str | None = None,
        staging_dir: str | os.PathLike[str] | None = None,
        verify_timeout_s: float = 900.0,
        poll_interval_s: float = 5.0,
        backoff_s: float = 2.0,
        max_backoff_s: float = 300.0,
        max_attempts: int = 8,
        check_connection: bool = True,
        keep: int = 2,
        delete_old_versions: bool = True,
    ) -> None:
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise MirrorError(f"keep={keep!r}: each version carries at least the newest checkpoint (keep >= 1)")
        try:
            parsed = parse_dataset(handle, what="mirror dataset", versioned=False)
        except HandleError as exc:
            raise MirrorError(f"{exc}: pass e.g. DatasetMirror('alice/cmfd-checkpoints')") from None
        self.handle = parsed.ref
        self.owner, self.slug = parsed.owner, parsed.slug
        title = title or f"{self.slug} checkpoints"[:50]
        if not 6 <= len(title) <= 50:
            raise MirrorError(f"title {title!r} must be 6-50 characters long (a Kaggle dataset rule)")
        self.reason: str | None = None
        self.uploads = 0
        self.skipped = 0
        self.started = 0
        self.retries = 0
        self.last_error: str | None = None
        self.in_flight: str | None = None
        self._reported = False
        self._outstanding = 0
        self._confirmed: Confirmed | None = None
        self._ledger: list[dict[str, Any]] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._credentials: Credentials | None = None
        staging_root = self._pick_staging(staging_dir)
        self.enabled = self._connect(credentials, secret_labels, check_connection)
        from kaggle_kit import env

        self._settings = MirrorSettings(
            handle=self.handle,
            title=title,
            staging_root=str(staging_root),
            verify_timeout_s=float(verify_timeout_s),
            poll_interval_s=float(poll_interval_s),
            backoff_s=float(backoff_s),
            max_backoff_s=float(max_backoff_s),
            max_attempts=int(max_attempts),
            run_type=env.run_type(),
            accelerator=_accelerator() if self.enabled else "unknown",
            keep=keep,
            delete_old_versions=bool(delete_old_versions),
        )
        self._client = ApiClient(self._settings, self._credentials)
        self.report_off()
        if self.enabled:
            # Started now, so its imports are done long before the first checkpoint needs uploading.
            self._start()

    def _pick_staging(self, staging_dir: str | os.PathLike[str] | None) -> Path:
        from kaggle_kit import env

        if staging_dir is not None:
            root = Path(staging_dir)
        elif env.temp_dir().is_dir():
            root = env.temp_dir() / "kaggle-kit-mirror" / f"{self.owner}-{self.slug}"
        else:
            root = Path(tempfile.gettempdir()) / "kaggle-kit-mirror" / f"{self.owner}-{self.slug}"
        working = env.working_dir().resolve()
        resolved = root.resolve()
        if resolved == working or working in resolved.parents:
            raise MirrorError(
                f"staging folder {root} is inside {working}, which becomes notebook output: pass a staging_dir "
                "under the temp folder (the default)"
            )
        return root

    def _connect(
        self, credentials: Credentials | None, secret_labels: Sequence[str] | None, check_connection: bool
    ) -> bool:
        from kaggle_kit import env, kaggle_api

        try:
            creds = credentials or kaggle_api.find_credentials(secret_labels=secret_labels)
        except CredentialError as exc:
            self.reason = f"the Kaggle credentials are unusable ({exc})"
            return False
        if creds is None:
            self.reason = (
                "no Kaggle credentials (KAGGLE_USERNAME/KAGGLE_KEY, KAGGLE_API_TOKEN, ~/.kaggle, or Kaggle Secrets "
                f"labelled {', '.join(secret_labels or kaggle_api.DEFAULT_SECRET_LABELS)})"
            )
            return False
        source = Path(creds.source) if creds.source.startswith("/") else None
        working = env.working_dir().resolve()
        if source is not None and (working == source.resolve() or working in source.resolve().parents):
            raise CredentialError(
                f"the Kaggle credentials come from {creds.source}, inside {working}, which becomes notebook output: "
                "delete that file and use Kaggle Secrets (Add-ons > Secrets) or ~/.kaggle instead"
            )
        if creds.username and creds.username.lower() != self.owner.lower():
            raise MirrorError(
                f"dataset {self.handle} belongs to {self.owner}, but the credentials ({creds.source}) are "
                f"{creds.username}'s: use a handle like {creds.username}/{self.slug}"
            )
        self._credentials = creds
        if check_connection:
            problem = _unreachable(os.environ.get(envvars.KIT_API_ENDPOINT) or PROD_API)
            if problem:
                self.reason = f"no internet: {problem}"
                return False
        return True

    def report_off(self, *, checkpoint_dir: str | os.PathLike[str] | None = None) -> None:
        """Warn (once, loudly) when mirroring is off, naming the fallback."""
        if self.enabled or self._reported:
            return
        from kaggle_kit import env

        self._reported = True
        where = str(checkpoint_dir) if checkpoint_dir else str(env.working_dir())
        message = (
            f"checkpoint mirroring to the Kaggle Dataset {self.handle} is OFF: {self.reason}. Checkpoints stay only "
            f"in {where}: a Batch run (Save Version > Save & Run All) keeps /kaggle/working as its output, an "
            "Interactive session loses it when it ends. To mirror, add the credentials as Kaggle Secrets and turn "
            "internet on."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        loud_warning(message)

    def secrets(self) -> tuple[str, ...]:
        """The secret strings of the credentials in use (so callers can refuse to write them anywhere)."""
        creds = self._credentials
        return tuple(s for s in (creds.key, creds.token) if s) if creds else ()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        assert self._credentials is not None
        proc = subprocess.Popen(
            [sys.executable, "-m", worker.__name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            env=kit_python_env(),  # the kit may be an attached dataset on sys.path only
        )
        init = {"settings": dataclasses.asdict(self._settings), "credentials": dataclasses.asdict(self._credentials)}
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(init) + "\n").encode())
        if self._ledger is not None:
            proc.stdin.write((json.dumps([worker.LEDGER, self._ledger]) + "\n").encode())
        proc.stdin.flush()
        self._proc, self._buffer = proc, b""
        # A mirror dropped without close() lets its process go (EOF on its stdin ends it).
        weakref.finalize(self, _release, proc)
        return proc

    def _send(self, *message: Any) -> None:
        proc = self._start()
        assert proc.stdin is not None
        try:
            proc.stdin.write((json.dumps(message) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._lost()

    def _lost(self) -> None:
        if self._outstanding:
            self._fail(f"the uploader process of {self.handle} ended unexpectedly; the next checkpoint restarts it")
        self._outstanding, self.in_flight, self._proc = 0, None, None

    def _fail(self, message: str) -> None:
        self.last_error = message
        warnings.warn(message + "; the next checkpoint will try again", RuntimeWarning, stacklevel=3)
        loud_warning(message)

    def _drain(self, timeout: float = 0.0) -> None:
        """Take in what the uploader process reported, waiting up to ``timeout`` for the first message."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return
            chunk = os.read(fd, 65536)
            if not chunk:
                self._lost()
                return
            self._buffer += chunk
            timeout = 0.0
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._handle(json.loads(line))

    def _handle(self, message: list[Any]) -> None:
        kind, *args = message
        if kind == worker.STARTED:
            self.started += 1
            self.in_flight = Path(args[0]).name
        elif kind == worker.SKIPPED:
            self.skipped += 1
            self._outstanding -= 1
        elif kind == worker.DONE:
            confirmed, self._ledger, self.retries = args
            self._confirmed = Confirmed(**confirmed)
            self.uploads += 1
            self._outstanding -= 1
            self.last_error, self.in_flight = None, None
        elif kind == worker.FAILED:
            _, failure, self.retries = args
            self._outstanding -= 1
            self.in_flight = None
            self._fail(str(failure))

    def submit(self, latest: CheckpointInfo, best: CheckpointInfo | None = None,
               recent: Sequence[CheckpointInfo] = ()) -> None:
        """Queue a checkpoint (the best one, if older, and the ``keep - 1`` newest of ``recent``) for upload; returns
        at once.

        A job still waiting is replaced (its checkpoint is older, and the new version covers it).
        """
        if not self.enabled:
            return
        self._drain()
        job = {"latest": str(latest.manifest_path), "best": str(best.manifest_path) if best else None,
               "recent": [str(i.manifest_path) for i in sorted(recent, key=lambda i: -i.step)
                          if i.step < latest.step][: self._settings.keep - 1]}
        self._outstanding += 1
        self._send(worker.JOB, job)

    def confirmed(self) -> Confirmed | None:
        """The newest version uploaded and verified, or None."""
        self._drain()
        return self._confirmed

    @property
    def idle(self) -> bool:
        """Whether nothing is waiting or uploading."""
        self._drain()
        return self._outstanding == 0

    def flush(self, timeout: float | None = 600.0) -> bool:
        """Wait until everything submitted is uploaded and verified.

        Returns:
            True when nothing is left and the last upload succeeded; False on timeout or failure.
        """
        if not self.enabled:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        self._drain()
        while self._outstanding > 0:
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                return False
            self._drain(timeout=left)
            if self._proc is not None and self._proc.poll() is not None:
                self._drain()
                self._lost()
        return self.last_error is None

    def close(self, timeout: float | None = 600.0) -> bool:
        """Flush, then stop the uploader process."""
        done = self.flush(timeout)
        proc = self._proc
        if proc is not None and proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.write((json.dumps([worker.STOP]) + "\n").encode())
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._proc = None
        return done

    def seed_ledger(self, path: str | os.PathLike[str]) -> None:
        """Start from an earlier ledger, unless one is already loaded.

        Args:
            path: a ``ledger.json``, or the folder holding one (e.g. beside a restored checkpoint).
        """
        path = Path(path)
        if path.is_dir():
            path = path / LEDGER_FILE
        if self._ledger is not None or not path.is_file():
            return
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                warnings.warn(f"{path} is larger than a ledger can be: the run's earlier sessions are left out of "
                              "its ledger", RuntimeWarning, stacklevel=2)
                self._ledger = []
                return
            data = path.read_bytes()
        except OSError:
            return
        self._ledger = parse_ledger(data, where=str(path))
        if self._proc is not None:
            self._send(worker.LEDGER, self._ledger)

    def ledger(self) -> list[dict[str, Any]]:
        """The sessions recorded so far (earlier sessions' once seeded, this session's once uploaded)."""
        self._drain()
        return [dict(s) for s in self._ledger or []]

    def _ready_version(self, api: Any) -> int | None:
        """The newest version that is ready, waiting (up to ``verify_timeout_s``) while the only one processes.

        Returns:
            The version number (0 when the dataset lists no versions), or None when there is no dataset.
        """
        client = self._client
        deadline = time.monotonic() + self._settings.verify_timeout_s
        while True:
            try:
                dataset = client.get_dataset(api, attempts=3)
                status = client.call(f"reading the status of {self.handle}",
                                     lambda: api.dataset_status(self.handle), attempts=3)
            except MirrorError as exc:
                if response_status(exc) not in (403, 404):
                    warnings.warn(f"could not read {self.handle} to look for checkpoints: {exc}", RuntimeWarning,
                                  stacklevel=3)
                return None
            current = int(getattr(dataset, "current_version_number", 0) or 0)
            if not current or str(status).lower() == "ready":
                return current
            # The newest version still processes (it was just uploaded): an older ready one will do, if kept.
            older = [int(getattr(v, "version_number", 0) or 0) for v in getattr(dataset, "versions", None) or []
                     if str(getattr(v, "status", "") or "").lower() == "ready"]
            if older:
                return max(older)
            if time.monotonic() > deadline:
                warnings.warn(f"version {current} of {self.handle} was not ready after "
                              f"{self._settings.verify_timeout_s:.0f} s; not resuming from it", RuntimeWarning,
                              stacklevel=3)
                return None
            client.wait(self._settings.poll_interval_s)

    def _listed_names(self, api: Any, ref: str) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            response = self._client.call(f"listing the files of {ref}", lambda: api.dataset_list_files(
                ref, page_token=token, page_size=200), attempts=3)
            names.extend(str(item.name) for item in getattr(response, "dataset_files", None) or [])
            token = getattr(response, "next_page_token", None)
            if not token:
                return names

    def remote_pointer(self) -> dict[str, Any] | None:
        """The newest ready version's ``latest.json`` (with its ``version``), or None when there is none.

        A version whose ``latest.json`` is missing or unusable is not given up on: its checkpoints are found from
        its file list (with a warning), and their manifests say whose run they are.
        """
        if not self.enabled:
            return None
        client = self._client
        api = client.api()
        version = self._ready_version(api)
        if version is None:
            return None
        ref = f"{self.handle}/{version}" if version else self.handle
        pointer: dict[str, Any] | None = None
        with tempfile.TemporaryDirectory(prefix="kaggle-kit-pointer-") as tmp:
            problem = None
            try:
                client.download_file(api, ref, POINTER_FILE, tmp, attempts=3)
                pointer = parse_pointer((Path(tmp) / POINTER_FILE).read_bytes(), where=f"{POINTER_FILE} of {ref}")
            except (OSError, MirrorError) as exc:
                problem = exc
            try:
                client.download_file(api, ref, LEDGER_FILE, tmp, attempts=3)
                self.seed_ledger(Path(tmp) / LEDGER_FILE)
            except MirrorError:
                pass  # no ledger: the history starts with this session
        if pointer is None:
            try:
                pointer = pointer_from_names(self._listed_names(api, ref))
            except MirrorError as exc:
                warnings.warn(f"could not list the files of {ref}: {exc}", RuntimeWarning, stacklevel=2)
                return None
            if pointer is not None:
                warnings.warn(f"{POINTER_FILE} of {ref} is unusable ({problem}); looking for checkpoints in its file "
                              "list instead", RuntimeWarning, stacklevel=2)
            else:
                if version:
                    warnings.warn(f"{ref} holds no checkpoint (and no usable {POINTER_FILE}: {problem})",
                                  RuntimeWarning, stacklevel=2)
                return None
        pointer["version"] = version
        return pointer

    def download_checkpoint(self, name: str, dest: str | os.PathLike[str], *, version: int | None = None) -> Path:
        """Download one checkpoint's three files into ``dest``; returns its manifest path (not yet verified)."""
        if not self.enabled:
            raise MirrorError(f"mirroring to {self.handle} is off ({self.reason}): cannot download {name}")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        api = self._client.api()
        ref = f"{self.handle}/{version}" if version else self.handle
        files = checkpoint_files(name)
        for file_name in files:
            self._client.download_file(api, ref, file_name, str(dest), attempts=4)
            if not (dest / file_name).is_file():
                raise MirrorError(f"downloading {file_name} of {ref} produced no file {dest / file_name}")
        return dest / files[-1]

    def status(self) -> dict[str, Any]:
        """A summary for logs: enabled, why not, uploads, skipped (coalesced), retries, last error, confirmed."""
        self._drain()
        return {
            "dataset": self.handle,
            "enabled": self.enabled,
            "reason": self.reason,
            "uploads": self.uploads,
            "started": self.started,
            "skipped": self.skipped,
            "retries": self.retries,
            "outstanding": self._outstanding,
            "in_flight": self.in_flight,
            "last_error": self.last_error,
            "confirmed": dataclasses.asdict(self._confirmed) if self._confirmed else None,
        }
