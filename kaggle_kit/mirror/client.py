"""The mirror's Kaggle API calls, retried with backoff where trying again can help.

Whether a failure is retried is decided in one place, :func:`classify_api_error`: it turns what the kaggle client
raised into a :class:`~kaggle_kit.errors.TransientApiError` (429 honouring Retry-After up to the longest backoff,
5xx, a dropped connection, an upload whose PUT never completed, and a version refusal (403, 404 or 409) while a
version this client just created is still processing) or a :class:`~kaggle_kit.errors.MirrorError` (everything
else, e.g. 401, or a 403 on a dataset that is not found or not the caller's). :class:`ApiClient` retries only the
former. The refusal is judged by its status, never by the body's text, which Kaggle does not document.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import io
import random
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaggle_kit.errors import KaggleKitError, MirrorError, MirrorStopped, TransientApiError
from kaggle_kit.fileio import move_into_place

if TYPE_CHECKING:
    from kaggle_kit.kaggle_api import Credentials

__all__ = ["PROD_API", "MirrorSettings", "ApiClient", "classify_api_error", "response_status",
           "unwrap_single_file_zip"]

PROD_API = "https://api.kaggle.com"
# What a dataset answers about a version it is still processing: 409 to listing and download, 404 for a while after
# (users report it), 403 to a new version meanwhile.
PROCESSING_REFUSALS = (403, 404, 409)


@dataclasses.dataclass(frozen=True)
class MirrorSettings:
    """What the uploader needs besides the credentials (sent to the uploader process as JSON)."""

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
    keep: int = 2
    delete_old_versions: bool = True


def response_status(exc: BaseException | None) -> int | None:
    """The HTTP status of a failed call, looking through the causes of a kit error; None when there was none."""
    while exc is not None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            return status
        exc = exc.__cause__
    return None


def _body_of(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    try:
        return str(response.text)[:300] if response is not None else ""
    except Exception:  # noqa: BLE001 - a body that cannot be decoded is simply not shown
        return ""


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


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


def classify_api_error(exc: BaseException, what: str, *, fresh_version: bool = False) -> KaggleKitError:
    """The kit error a failed API call means: :class:`TransientApiError` when trying again can help.

    Args:
        exc: what the kaggle client (or requests underneath it) raised.
        what: the call, for the message (e.g. ``"reading alice/ckpt"``).
        fresh_version: this client created a version of the dataset a moment ago (within its bounded wait): a
            403, 404 or 409 then means that version is still processing, and is worth waiting out. Otherwise
            they are permanent (a 403 on a dataset that is not the caller's is a permission error).
    """
    if isinstance(exc, KaggleKitError):
        return exc
    status = response_status(exc)
    body = _body_of(exc)
    detail = body or str(exc)
    if fresh_version and status in PROCESSING_REFUSALS:
        return TransientApiError(f"{what}: refused ({status}) while the new version is still processing",
                                 status=status, still_processing=True)
    if status == 429:
        return TransientApiError(f"{what}: rate limited (429)", status=status, retry_after_s=_retry_after(exc))
    if status is not None and status >= 500:
        return TransientApiError(f"{what}: server error ({status}): {detail}", status=status)
    # The client raises ValueError("Upload unsuccessful: NAME") when a file's PUT never completed.
    if _is_connection_error(exc) or (isinstance(exc, ValueError) and "Upload unsuccessful" in str(exc)):
        return TransientApiError(f"{what}: {type(exc).__name__}: {exc}")
    if status == 401:
        return MirrorError(
            f"{what}: the Kaggle API refused the credentials (401); check KAGGLE_USERNAME/KAGGLE_KEY or the Secrets"
        )
    if status == 403:
        return MirrorError(f"{what}: permission denied (403): the dataset is not found or not yours ({detail})")
    return MirrorError(f"{what} failed ({status or type(exc).__name__}): {detail}")


def unwrap_single_file_zip(folder: Path, name: str) -> None:
    """Put ``folder/name`` in place when the download arrived as ``<name>.zip`` (Kaggle compresses a large single
    file), or do nothing when the file came as it is.

    Raises:
        MirrorError: the zip is not a zip, or holds anything but the one file.
    """
    target = folder / name
    zipped = target.with_name(target.name + ".zip")
    if target.is_file() or not zipped.is_file():
        return
    try:
        with zipfile.ZipFile(zipped) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                raise MirrorError(f"{zipped} should hold {name} alone, but holds {len(members)} files")
            partial = target.with_name(target.name + ".unzipping")
            with archive.open(members[0]) as source, open(partial, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise MirrorError(f"{zipped} (the compressed download of {name}) cannot be unpacked: {exc}") from exc
    move_into_place(partial, target)
    zipped.unlink()


class ApiClient:
    """Kaggle API calls for one dataset, with the mirror's retry policy; ``stop`` abandons every wait."""

    def __init__(self, settings: MirrorSettings, credentials: Credentials | None) -> None:
        self.settings = settings
        self.handle = settings.handle
        self.owner, self.slug = settings.handle.split("/")
        self.credentials = credentials
        self.retries = 0
        self.stop = threading.Event()
        self.created_at: float | None = None

    def api(self) -> Any:
        from kaggle_kit.kaggle_api import make_api

        return make_api(self.credentials)

    def wait(self, seconds: float) -> None:
        """Sleep, unless the mirror is closing.

        Raises:
            MirrorStopped: ``stop`` was set.
        """
        if self.stop.wait(seconds):
            raise MirrorStopped(f"the mirror of {self.handle} is closing")

    def note_created(self) -> None:
        """This client just created a version of its dataset: for the bounded wait that follows (the verify
        timeout), a refusal of that version by status (403/404/409) means it is still processing."""
        self.created_at = time.monotonic()

    def processing_window_left(self) -> float:
        """Seconds left in which a refusal is taken for the new version's processing (0 when none is open)."""
        if self.created_at is None:
            return 0.0
        return max(0.0, self.created_at + self.settings.verify_timeout_s - time.monotonic())

    def retry_delay(self, error: TransientApiError, attempt: int) -> float:
        """How long to wait before retrying ``error``: its Retry-After, but never longer than the longest backoff
        (a Retry-After can lie), else the backoff."""
        if error.retry_after_s is not None:
            return min(error.retry_after_s, self.settings.max_backoff_s)
        return self.backoff(attempt)

    def backoff(self, attempt: int) -> float:
        """The delay before retry number ``attempt + 1``: doubling from ``backoff_s``, capped, with jitter."""
        delay = min(self.settings.max_backoff_s, self.settings.backoff_s * (2**attempt))
        return delay * (0.75 + 0.5 * random.random())

    def call(self, what: str, fn: Callable[[], Any], *, attempts: int | None = None) -> Any:
        """Call the API, retrying what is transient.

        Raises:
            MirrorError: the failure is not transient, or still there after ``attempts`` tries (the cause is the
                client's exception).
            MirrorStopped: the mirror is closing.
        """
        attempt = 0
        limit = attempts or self.settings.max_attempts
        while True:
            try:
                return fn()
            except MirrorStopped:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below; what is not transient is raised
                error = classify_api_error(exc, what, fresh_version=self.processing_window_left() > 0)
                if not isinstance(error, TransientApiError):
                    raise error from exc
                if error.still_processing:
                    self.wait(min(self.settings.poll_interval_s, self.processing_window_left()))
                    continue
                delay = self.retry_delay(error, attempt)
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
        """The dataset's record (``current_version_number`` among others)."""
        from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

        def call() -> Any:
            request = ApiGetDatasetRequest()
            request.owner_slug, request.dataset_slug = self.owner, self.slug
            with api.build_kaggle_client() as kaggle:
                return kaggle.datasets.dataset_api_client.get_dataset(request)

        return self.call(f"reading {self.handle}", call, attempts=attempts)

    def download_file(self, api: Any, ref: str, name: str, dest: str, *, attempts: int | None = None) -> None:
        """Download one file of a dataset version (``owner/slug[/N]``) into ``dest``, quietly.

        A large file arrives as ``<name>.zip`` (unwrapped here: kaggle 2.2.0's client has no ``unzip``).
        """
        self.quiet_call(
            f"downloading {name} of {ref}",
            lambda: api.dataset_download_file(ref, name, path=dest, force=True, quiet=True),
            attempts=attempts,
        )
        unwrap_single_file_zip(Path(dest), name)
