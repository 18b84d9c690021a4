"""Mirror checkpoints to a private, versioned Kaggle Dataset in the background, and fetch them back.

Every dataset version is a full snapshot (Kaggle keeps no increments and flattens folders), so each version the
mirror creates carries exactly what a resume needs, in a handful of flat files:

* the newest checkpoint's three files (``step-N.pt``, ``step-N.json``, ``step-N.manifest.json``);
* the best checkpoint's three files, when the best is an older checkpoint (so the best model is never lost);
* ``latest.json``, a pointer naming the newest and the best checkpoint of *this* version (a version becomes
  visible only once all its files are in, so the pointer never names a file that is not there);
* ``ledger.json``, the run's history: one record per session (start, end, run type, accelerator, steps).

Uploads run in a child process (``python -m kaggle_kit.mirror``, so the training loop never competes with HTTP
work for the GIL) through the kaggle Python API (never the CLI). The credentials reach it over a pipe, never argv,
the environment or a file; it dies with its parent. It stages each version in a folder under the temp folder (never
the working folder, so nothing staged becomes notebook output; the generated ``dataset-metadata.json`` holds no
credentials). A newer checkpoint submitted while another waits replaces it
(coalescing). Calls are retried with backoff on 429 (honouring Retry-After), 5xx and dropped connections, and a 403
"still processing" waits for the previous version. After each upload the version is verified: status ready, files
and sizes as sent. Only then does the Checkpointer delete local checkpoints the dataset now covers.

Without credentials, or without a route to the API, mirroring is OFF and says so loudly when it is built.
``KAGGLE_KIT_API_ENDPOINT`` points everything at the offline stand-in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import email.utils
import io
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from kaggle_kit.errors import CredentialError, HandleError, MirrorError
from kaggle_kit.handles import parse_dataset

if TYPE_CHECKING:
    from kaggle_kit.checkpoint import CheckpointInfo
    from kaggle_kit.kaggle_api import Credentials

__all__ = ["Confirmed", "DatasetMirror"]

POINTER_FILE = "latest.json"
LEDGER_FILE = "ledger.json"
_METADATA_FILE = "dataset-metadata.json"
_PROD_API = "https://api.kaggle.com"
_MAX_LEDGER_SESSIONS = 500


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


class _Stopped(Exception):
    """The mirror is closing: abandon the current wait."""


class _Retry(Exception):
    """A transient failure of one step of an upload; the whole upload is tried again."""


def loud_warning(message: str) -> None:
    """A line nobody scrolls past, for what must not be discovered after the session died."""
    print(f"[kaggle-kit] {'!' * 8} {message}", file=sys.stderr, flush=True)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _body_of(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    try:
        return str(response.text)[:300] if response is not None else ""
    except Exception:  # noqa: BLE001 - a body that cannot be decoded is simply not shown
        return ""


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def _is_connection_error(exc: BaseException) -> bool:
    import requests
    import urllib3

    return isinstance(
        exc,
        (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError,
            ConnectionError,
            TimeoutError,
        ),
    )


def _accelerator() -> str:
    try:
        from kaggle_kit.guard.accelerator import detect_accelerator

        info = detect_accelerator()
        return info.kind  # already says how many, e.g. "T4x2"
    except Exception:  # noqa: BLE001 - the ledger records "unknown" rather than failing an upload
        return "unknown"


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What the uploader process needs besides the credentials (sent to it as JSON)."""

    handle: str
    title: str
    staging_root: str
    verify_timeout_s: float
    poll_interval_s: float
    backoff_s: float
    max_backoff_s: float
    max_attempts: int
    run_type: str | None
    accelerator: str


class _Retrying:
    """Kaggle API calls with the mirror's retry policy."""

    def __init__(self, settings: _Settings, credentials: Credentials | None) -> None:
        self.settings = settings
        self.handle = settings.handle
        self.owner, self.slug = settings.handle.split("/")
        self.credentials = credentials
        self.retries = 0
        self.stop = threading.Event()

    def api(self) -> Any:
        from kaggle_kit.kaggle_api import make_api

        return make_api(self.credentials)

    def wait(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise _Stopped

    def backoff(self, attempt: int) -> float:
        delay = min(self.settings.max_backoff_s, self.settings.backoff_s * (2**attempt))
        return delay * (0.75 + 0.5 * random.random())

    def call(self, what: str, fn: Callable[[], Any], *, attempts: int | None = None) -> Any:
        """Call the API, retrying what is transient; raise MirrorError for what is not."""
        attempt = 0
        limit = attempts or self.settings.max_attempts
        processing_deadline = time.monotonic() + self.settings.verify_timeout_s
        while True:
            try:
                return fn()
            except _Stopped:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below; unknown failures are not retried
                status = _status_of(exc)
                if status == 403 and "processing" in _body_of(exc).lower() and time.monotonic() < processing_deadline:
                    # The previous version is still being processed: wait for it instead of failing.
                    self.wait(self.settings.poll_interval_s)
                    continue
                if status == 429:
                    delay = _retry_after(exc)
                    delay = self.backoff(attempt) if delay is None else delay
                elif (status is not None and status >= 500) or _is_connection_error(exc) or _is_upload_failure(exc):
                    delay = self.backoff(attempt)
                elif status == 401:
                    raise MirrorError(
                        f"{what}: the Kaggle API refused the credentials (401); check KAGGLE_USERNAME/KAGGLE_KEY "
                        "or the Secrets"
                    ) from exc
                else:
                    detail = _body_of(exc) or str(exc)
                    raise MirrorError(f"{what} failed ({status or type(exc).__name__}): {detail}") from exc
                attempt += 1
                if attempt >= limit:
                    raise MirrorError(f"{what} still failing after {attempt} attempts: {exc}") from exc
                self.retries += 1
                self.wait(delay)

    def quiet_call(self, what: str, fn: Callable[[], Any], *, attempts: int | None = None) -> Any:
        """``call`` without the client's "Dataset URL" line on stdout."""
        with contextlib.redirect_stdout(io.StringIO()):
            return self.call(what, fn, attempts=attempts)

    def get_dataset(self, api: Any, *, attempts: int | None = None) -> Any:
        from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

        def call() -> Any:
            request = ApiGetDatasetRequest()
            request.owner_slug, request.dataset_slug = self.owner, self.slug
            with api.build_kaggle_client() as kaggle:
                return kaggle.datasets.dataset_api_client.get_dataset(request)

        return self.call(f"reading {self.handle}", call, attempts=attempts)


class _Uploader(_Retrying):
    """The uploader process's work: one upload at a time, the newest job waiting, results sent to the parent."""

    def __init__(self, settings: _Settings, credentials: Credentials, send: Callable[..., None]) -> None:
        super().__init__(settings, credentials)
        self.send = send
        self.staging_root = Path(settings.staging_root)
        self._clean_stale_staging()
        self.uploads = 0
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._exists: bool | None = None
        self._ledger_sessions: list[dict[str, Any]] | None = None
        self._session: dict[str, Any] = {
            "id": uuid.uuid4().hex[:12],
            "started": _now_iso(),
            "ended": _now_iso(),
            "run_type": settings.run_type,
            "accelerator": settings.accelerator,
            "first_step": None,
            "last_step": None,
            "versions": 0,
        }

    def _clean_stale_staging(self, older_than_s: float = 600.0) -> None:
        """Remove version folders an uploader killed mid-upload left behind."""
        if not self.staging_root.is_dir():
            return
        for folder in self.staging_root.glob("v-step-*"):
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > older_than_s:
                    shutil.rmtree(folder, ignore_errors=True)

    def submit(self, job: dict[str, Any]) -> None:
        with self._cond:
            if self._pending is not None:
                self.send("skipped", self._pending["latest"])
            self._pending = job
            self._cond.notify_all()

    def seed_ledger(self, sessions: list[dict[str, Any]]) -> None:
        with self._cond:
            if self._ledger_sessions is None:
                self._ledger_sessions = sessions

    def run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self.stop.is_set():
                    self._cond.wait()
                if self.stop.is_set():
                    return
                job, self._pending = self._pending, None
            self.send("started", job["latest"])
            try:
                confirmed = self._upload(job)
            except _Stopped:
                return
            except Exception as exc:  # noqa: BLE001 - the process must survive to upload the next checkpoint
                self.send("failed", job["latest"], f"mirroring {Path(job['latest']).name} to {self.handle} "
                          f"failed: {exc}", self.retries)
                continue
            self.uploads += 1
            self.send("done", dataclasses.asdict(confirmed), self._ledger_sessions or [], self.retries)

    def _upload(self, job: dict[str, Any]) -> Confirmed:
        from kaggle_kit.checkpoint import _info_from_manifest

        latest = _info_from_manifest(Path(job["latest"]), "local")
        best = _info_from_manifest(Path(job["best"]), "local") if job.get("best") else None
        if self._session["first_step"] is None:
            self._session["first_step"] = latest.step
        attempt = 0
        while True:
            try:
                return self._upload_once(latest, best)
            except _Retry as exc:
                attempt += 1
                if attempt >= self.settings.max_attempts:
                    raise MirrorError(f"{exc} (gave up after {attempt} attempts)") from exc
                self.retries += 1
                self.wait(self.backoff(attempt))

    def _upload_once(self, latest: CheckpointInfo, best: CheckpointInfo | None) -> Confirmed:
        api = self.api()
        folder = self.staging_root / f"v-{latest.name}-{uuid.uuid4().hex[:6]}"
        try:
            sent, best_name = self._stage(latest, best, folder)
            if self._exists is None:
                self._exists = self._dataset_exists(api)
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
                    previous = self._current_version(api)
                elif error:
                    raise MirrorError(f"creating dataset {self.handle} was refused: {error}")
                else:
                    self._exists = True
            if previous:
                notes = _version_notes(latest)
                response = self.call(
                    f"adding a version to {self.handle}",
                    lambda: api.dataset_create_version(
                        str(folder), notes, quiet=True, convert_to_csv=False, delete_old_versions=False
                    ),
                )
                error = getattr(response, "error", None)
                if error:
                    raise MirrorError(f"the new version of {self.handle} was refused: {error}")
            version = self._verify(api, previous, sent)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return Confirmed(version, latest.step, latest.name, best_name)

    def _stage(
        self, latest: CheckpointInfo, best: CheckpointInfo | None, folder: Path
    ) -> tuple[dict[str, int], str | None]:
        """Assemble one version's files; returns {name: bytes} of what will be sent, and the best's name."""
        from kaggle_kit.checkpoint import copy_checkpoint, refuse_credentials_in, verify_files

        folder.mkdir(parents=True, exist_ok=True)
        items = [latest] + ([best] if best is not None and best.name != latest.name else [])
        for item in items:
            copy_checkpoint(item, folder)
            try:
                # The staged copies must match their manifest: a checkpoint replaced meanwhile is not sent half-old.
                verify_files(folder / item.manifest_path.name)
            except Exception as exc:  # noqa: BLE001 - try again; a newer checkpoint may replace this job
                raise _Retry(f"staged {item.name} does not verify ({exc})") from exc
        pointer = {
            "format": "kaggle-kit-pointer/1",
            "dataset": self.handle,
            "latest": latest.name,
            "best": latest.best_name if latest.best_name in {i.name for i in items} else None,
            "step": latest.step,
            "epoch": latest.epoch,
            "monitor": latest.manifest.get("monitor"),
            "metric": latest.metric,
            "files": {i.name: i.manifest["files"] for i in items},
            "uploaded": _now_iso(),
        }
        (folder / POINTER_FILE).write_text(json.dumps(pointer, indent=1))
        metadata = {
            "id": self.handle,
            "title": self.settings.title,
            "licenses": [{"name": "unknown"}],
            "description": "Training checkpoints mirrored by kaggle-kit (latest.json names the newest and the best).",
        }
        (folder / _METADATA_FILE).write_text(json.dumps(metadata, indent=1))
        refuse_credentials_in(folder)
        sent = {p.name: p.stat().st_size for p in folder.iterdir() if p.name != _METADATA_FILE}
        return sent, pointer["best"]

    def _dataset_exists(self, api: Any) -> bool:
        try:
            self.call(f"looking up {self.handle}", lambda: api.dataset_status(self.handle))
            return True
        except MirrorError as exc:
            if isinstance(exc.__cause__, Exception) and _status_of(exc.__cause__) in (403, 404):
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
                raise _Retry(
                    f"version {previous + 1} of {self.handle} was not ready after {self.settings.verify_timeout_s:.0f}s"
                )
            self.wait(self.settings.poll_interval_s)
        listed: dict[str, int] = {}
        token: str | None = None
        while True:
            response = self.call(
                f"listing the files of {self.handle}/{version}",
                lambda t=token: api.dataset_list_files(f"{self.handle}/{version}", page_token=t, page_size=100),
            )
            for item in getattr(response, "dataset_files", None) or []:
                listed[str(item.name)] = int(item.total_bytes or 0)
            token = getattr(response, "next_page_token", None)
            if not token:
                break
        if listed != sent:
            missing = sorted(set(sent) - set(listed))
            wrong = sorted(n for n in sent if n in listed and listed[n] != sent[n])
            raise _Retry(
                f"version {version} of {self.handle} does not hold what was sent (missing {missing}, "
                f"wrong size {wrong}, extra {sorted(set(listed) - set(sent))})"
            )
        return version

    def _seed_ledger_from_dataset(self, api: Any) -> None:
        sessions: list[dict[str, Any]] = []
        if self._exists:
            with tempfile.TemporaryDirectory(prefix="kaggle-kit-ledger-") as tmp:
                try:
                    self.quiet_call(
                        f"downloading {LEDGER_FILE} of {self.handle}",
                        lambda: api.dataset_download_file(self.handle, LEDGER_FILE, path=tmp, force=True,
                                                          quiet=True),
                        attempts=3,
                    )
                    sessions = _parse_ledger((Path(tmp) / LEDGER_FILE).read_bytes())
                except (MirrorError, OSError):
                    sessions = []
        self.seed_ledger(sessions)

    def _write_ledger(self, folder: Path, step: int) -> None:
        with self._cond:
            self._session["ended"] = _now_iso()
            self._session["last_step"] = step
            self._session["versions"] = self.uploads + 1
            sessions = [s for s in (self._ledger_sessions or []) if s.get("id") != self._session["id"]]
            sessions.append(dict(self._session))
            self._ledger_sessions = sessions[-_MAX_LEDGER_SESSIONS:]
            ledger = {"format": "kaggle-kit-ledger/1", "dataset": self.handle, "sessions": self._ledger_sessions}
        (folder / LEDGER_FILE).write_text(json.dumps(ledger, indent=1))


def _release(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except OSError:
            pass


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a killed session takes its uploader along)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_main() -> None:
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
    uploader = _Uploader(_Settings(**init["settings"]), Credentials(**init["credentials"]), send)
    worker = threading.Thread(target=uploader.run, name="kaggle-kit-uploader", daemon=True)
    worker.start()
    for line in sys.stdin:
        kind, *args = json.loads(line)
        if kind == "job":
            uploader.submit(args[0])
        elif kind == "ledger":
            uploader.seed_ledger(args[0])
        elif kind == "stop":
            break
    # stdin closed without "stop" means the parent is gone: nothing is waiting for the upload in flight.
    if kind != "stop" or os.getppid() != parent:
        os._exit(0)
    uploader.stop.set()
    with uploader._cond:
        uploader._cond.notify_all()
    worker.join(timeout=5)


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
    ) -> None:
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

        self._settings = _Settings(
            handle=handle,
            title=title,
            staging_root=str(staging_root),
            verify_timeout_s=float(verify_timeout_s),
            poll_interval_s=float(poll_interval_s),
            backoff_s=float(backoff_s),
            max_backoff_s=float(max_backoff_s),
            max_attempts=int(max_attempts),
            run_type=env.run_type(),
            accelerator=_accelerator() if self.enabled else "unknown",
        )
        self._client = _Retrying(self._settings, self._credentials)
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
            problem = _unreachable(os.environ.get(kaggle_api.ENDPOINT_ENV) or _PROD_API)
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
            [sys.executable, "-m", "kaggle_kit.mirror"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            close_fds=True,
        )
        init = {"settings": dataclasses.asdict(self._settings), "credentials": dataclasses.asdict(self._credentials)}
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(init) + "\n").encode())
        if self._ledger is not None:
            proc.stdin.write((json.dumps(["ledger", self._ledger]) + "\n").encode())
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
        if kind == "started":
            self.started += 1
            self.in_flight = Path(args[0]).name
        elif kind == "skipped":
            self.skipped += 1
            self._outstanding -= 1
        elif kind == "done":
            confirmed, self._ledger, self.retries = args
            self._confirmed = Confirmed(**confirmed)
            self.uploads += 1
            self._outstanding -= 1
            self.last_error, self.in_flight = None, None
        elif kind == "failed":
            _, message, self.retries = args
            self._outstanding -= 1
            self.in_flight = None
            self._fail(message)

    def submit(self, latest: CheckpointInfo, best: CheckpointInfo | None = None) -> None:
        """Queue a checkpoint (and the best one, if older) for upload; returns at once.

        A job still waiting is replaced (its checkpoint is older, and the new version covers it).
        """
        if not self.enabled:
            return
        self._drain()
        job = {"latest": str(latest.manifest_path), "best": str(best.manifest_path) if best else None}
        self._outstanding += 1
        self._send("job", job)

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
                proc.stdin.write(b'["stop"]\n')
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
        """Start from an earlier ledger (found next to a restored checkpoint), unless one is already loaded."""
        path = Path(path)
        if self._ledger is not None or not path.is_file():
            return
        self._ledger = _parse_ledger(path.read_bytes())
        if self._proc is not None:
            self._send("ledger", self._ledger)

    def ledger(self) -> list[dict[str, Any]]:
        """The sessions recorded so far (earlier sessions' once seeded, this session's once uploaded)."""
        self._drain()
        return [dict(s) for s in self._ledger or []]

    def remote_pointer(self) -> dict[str, Any] | None:
        """The newest ready version's ``latest.json`` (with its ``version``), or None when there is none."""
        if not self.enabled:
            return None
        client = self._client
        api = client.api()
        try:
            dataset = client.get_dataset(api, attempts=3)
        except MirrorError as exc:
            if _status_of(exc.__cause__) not in (403, 404):
                warnings.warn(f"could not read {self.handle} to look for checkpoints: {exc}", RuntimeWarning,
                              stacklevel=2)
            return None
        version = int(getattr(dataset, "current_version_number", 0) or 0)
        ref = f"{self.handle}/{version}" if version else self.handle
        with tempfile.TemporaryDirectory(prefix="kaggle-kit-pointer-") as tmp:
            for name in (POINTER_FILE, LEDGER_FILE):
                try:
                    client.quiet_call(
                        f"downloading {name} of {ref}",
                        lambda n=name: api.dataset_download_file(ref, n, path=tmp, force=True, quiet=True,
                                                                 unzip=True),
                        attempts=3,
                    )
                except MirrorError as exc:
                    if name == POINTER_FILE:
                        warnings.warn(f"{self.handle} has no readable {POINTER_FILE}: {exc}", RuntimeWarning,
                                      stacklevel=2)
                        return None
            try:
                pointer = json.loads((Path(tmp) / POINTER_FILE).read_text())
            except (OSError, ValueError) as exc:
                warnings.warn(f"{POINTER_FILE} of {self.handle} is unreadable: {exc}", RuntimeWarning, stacklevel=2)
                return None
            self.seed_ledger(Path(tmp) / LEDGER_FILE)
        if not isinstance(pointer, dict) or not isinstance(pointer.get("step"), int):
            warnings.warn(f"{POINTER_FILE} of {self.handle} is not a kaggle-kit pointer", RuntimeWarning, stacklevel=2)
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
        for file_name in (f"{name}.manifest.json", f"{name}.json", f"{name}.pt"):
            self._client.quiet_call(
                f"downloading {file_name} of {ref}",
                lambda f=file_name: api.dataset_download_file(ref, f, path=str(dest), force=True, quiet=True,
                                                              unzip=True),
                attempts=4,
            )
            if not (dest / file_name).is_file():
                raise MirrorError(f"downloading {file_name} of {ref} produced no file {dest / file_name}")
        return dest / f"{name}.manifest.json"

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


def _is_upload_failure(exc: BaseException) -> bool:
    # The client raises ValueError("Upload unsuccessful: NAME") when a file's PUT never completed.
    return isinstance(exc, ValueError) and "Upload unsuccessful" in str(exc)


def _version_notes(info: CheckpointInfo) -> str:
    notes = f"step {info.step} epoch {info.epoch}"
    monitor = info.manifest.get("monitor")
    if info.metric is not None:
        notes += f" {monitor or 'metric'} {info.metric:.6g}"
    return notes


def _parse_ledger(data: bytes) -> list[dict[str, Any]]:
    try:
        ledger = json.loads(data)
    except ValueError:
        return []
    sessions = ledger.get("sessions") if isinstance(ledger, dict) else None
    if not isinstance(sessions, list):
        return []
    return [s for s in sessions if isinstance(s, dict)][-_MAX_LEDGER_SESSIONS:]


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


if __name__ == "__main__":
    _worker_main()
