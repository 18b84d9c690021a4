"""Kaggle kernels (notebooks) through the API: push a kernel folder, the latest run's status, its output."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from kaggle_kit.errors import KaggleApiError, MetadataError
from kaggle_kit.kaggle_api import describe_http_error, make_api, reply_problems
from kaggle_kit.metadata_files import KERNEL_METADATA

__all__ = ["PushResult", "kernel_output", "kernel_status", "push_folder"]


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    Attributes:
        ref: The kernel's ``owner/slug``.
        version: The version the server created, or None when it created none.
        url: The kernel's page.
        folder: The folder that was pushed.
        problems: What the server reported (an error field, invalid sources); a version may exist anyway.
        status: The new version's status right after the push (``QUEUED``, ``RUNNING``, ...) when the server
            reported problems, else None (not asked).
        tolerated_invalid: Sources reported invalid that were expected to be (a mirror dataset the first run creates).
    """

    ref: str
    version: int | None
    url: str | None
    folder: Path
    problems: tuple[str, ...] = ()
    status: str | None = None
    tolerated_invalid: tuple[str, ...] = ()

    @property
    def created(self) -> bool:
        return self.version is not None

    def describe(self) -> str:
        """One paragraph: what was created, what the server reported, and what to do."""
        if not self.problems:
            return f"pushed {self.ref} version {self.version}: {self.url}"
        reported = "; ".join(self.problems)
        running = self.status in ("QUEUED", "RUNNING", "NEW_SCRIPT")
        state = f"is {self.status}" if self.status else "has an unknown status"
        advice = ("it runs without what the server refused and burns quota: stop it on the kernel's page (or let it "
                  "fail), fix the declaration, and push again") if running else "fix the declaration and push again"
        return (f"pushed {self.ref} with problems: version {self.version} was created and {state}, but the server "
                f"reported {reported}. {advice[0].upper()}{advice[1:]}. {self.url or ''}").rstrip()


def push_folder(
    folder: str | os.PathLike[str],
    ref: str,
    *,
    api: Any = None,
    timeout_s: float | None = None,
    tolerated: Sequence[str] = (),
) -> PushResult:
    """Pushes the kernel in ``folder`` (its kernel-metadata.json names ``ref``) and reads the reply's error fields.

    ``timeout_s`` caps the run's time (Kaggle's ``sessionTimeoutSeconds``); ``tolerated`` sources may be reported
    invalid without counting as problems (a mirror dataset the first run creates). The server may create and start
    a version although it reports an error (an invalid source): then the result says so, with the version's status.

    Raises:
        MetadataError: the client refused the folder's metadata.
        KaggleApiError: the server created no version.
    """
    folder = Path(folder)
    api = api or make_api()
    try:
        response = api.kernels_push(str(folder), timeout=str(int(timeout_s)) if timeout_s else None)
    except ValueError as exc:
        raise MetadataError(f"{folder / KERNEL_METADATA}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - requests' HTTPError carries the server's message
        raise KaggleApiError(f"pushing {ref} failed, nothing was created or started: "
                             f"{describe_http_error(exc)}") from exc
    if response is None:
        raise KaggleApiError(f"pushing {ref} failed: the server sent no reply")
    invalid = getattr(response, "invalid_dataset_sources", None) or []
    tolerated_invalid = tuple(source for source in tolerated if source in invalid)
    problems = tuple(reply_problems(response, tolerated=tolerated))
    version = getattr(response, "version_number", None) or None
    ref = getattr(response, "ref", None) or ref
    url = getattr(response, "url", None)
    if problems and version is None:
        raise KaggleApiError(f"pushing {ref} failed, nothing was created or started: " + "; ".join(problems))
    status = None
    if problems:
        try:
            status = kernel_status(str(ref), api=api)["status"]
        except KaggleApiError as exc:
            status = f"unknown ({exc})"
    return PushResult(ref=str(ref), version=int(version) if version is not None else None, url=url, folder=folder,
                      problems=problems, status=status, tolerated_invalid=tolerated_invalid)


def kernel_status(ref: str, *, api: Any = None) -> dict[str, Any]:
    """The latest run's status of a kernel: ``{"ref", "status", "failure_message"}``.

    Raises:
        KaggleApiError: the server refused the call (a wrong slug, a private kernel of someone else).
    """
    api = api or make_api()
    try:
        response = api.kernels_status(ref)
    except Exception as exc:  # noqa: BLE001 - requests' HTTPError and the client's ValueError
        raise KaggleApiError(f"status of {ref} failed: {describe_http_error(exc)}") from exc
    status = getattr(response, "status", None)
    name = getattr(status, "name", status)
    return {"ref": ref, "status": str(name).removeprefix("KERNEL_WORKER_STATUS_") if name is not None else None,
            "failure_message": getattr(response, "failure_message", None) or None}


def kernel_output(ref: str, dest: str | os.PathLike[str], *, api: Any = None) -> list[Path]:
    """Downloads a kernel's latest output files and log into ``dest``.

    Raises:
        KaggleApiError: the server refused the call.
    """
    api = api or make_api()
    Path(dest).mkdir(parents=True, exist_ok=True)
    try:
        files, _ = api.kernels_output(ref, str(dest), force=True, quiet=True)
    except Exception as exc:  # noqa: BLE001 - requests' HTTPError and the client's ValueError
        raise KaggleApiError(f"output of {ref} failed: {describe_http_error(exc)}") from exc
    return [Path(f) for f in files]
