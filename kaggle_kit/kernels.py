"""Kaggle kernels (notebooks) through the API: push a kernel folder, the latest run's status, its output."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from kaggle_kit.errors import KaggleApiError, MetadataError
from kaggle_kit.kaggle_api import describe_http_error, make_api, reply_problems
from kaggle_kit.metadata_files import KERNEL_METADATA
from kaggle_kit.session_outcome import COMPLETE, SessionOutcome, classify

__all__ = ["PushResult", "kernel_outcome", "kernel_output", "kernel_status", "push_folder"]


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


def _refused(exc: BaseException, what: str, ref: str) -> KaggleApiError:
    """The kit's error for a failed kernel call; a 401/403 means the kernel is not found or not the caller's."""
    cause: BaseException | None = exc
    status = None
    while cause is not None and status is None:
        status = getattr(getattr(cause, "response", None), "status_code", None)
        cause = cause.__cause__ or cause.__context__
    if status in (401, 403) or "Permission 'kernels.get' was denied" in str(exc):
        return KaggleApiError(f"{what} of {ref} failed: kernel {ref} not found or not yours (Kaggle answers both "
                              "with \"Permission 'kernels.get' was denied\"): check the id in kernel-metadata.json "
                              "and the credentials' user")
    return KaggleApiError(f"{what} of {ref} failed: {describe_http_error(exc)}")


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


def kernel_status(ref: str, *, api: Any = None, time_limit_s: float | None = None,
                  elapsed_s: float | None = None) -> dict[str, Any]:
    """The latest run's status of a kernel: ``{"ref", "status", "failure_message", "outcome"}``.

    ``outcome`` is the :class:`~kaggle_kit.session_outcome.SessionOutcome` (see :func:`kernel_outcome`, whose
    arguments the last two are).

    Raises:
        KaggleApiError: the server refused the call; "not found or not yours" for a wrong slug or someone else's
            private kernel.
    """
    api = api or make_api()
    outcome = kernel_outcome(ref, api=api, time_limit_s=time_limit_s, elapsed_s=elapsed_s)
    return {"ref": ref, "status": outcome.status or None, "failure_message": outcome.failure_message or None,
            "outcome": outcome}


def kernel_outcome(ref: str, *, api: Any = None, time_limit_s: float | None = None,
                   elapsed_s: float | None = None) -> SessionOutcome:
    """How the latest run of a kernel ended, classified from its status and, once it has ended other than
    COMPLETE, its log and output file names (listed, not downloaded).

    Args:
        ref: ``owner/slug`` (or ``owner/slug/N`` for a version).
        time_limit_s: the session limit the run was pushed with, when known (tells a stop at the limit apart).
        elapsed_s: how long the run took, as the caller measured it, when known.

    Raises:
        KaggleApiError: the server refused the call; "not found or not yours" for a wrong slug or someone else's
            private kernel.
    """
    api = api or make_api()
    try:
        response = api.kernels_status(ref)
    except Exception as exc:  # noqa: BLE001 - requests' HTTPError and the client's ValueError
        raise _refused(exc, "status", ref) from exc
    outcome = classify(response, time_limit_s=time_limit_s, elapsed_s=elapsed_s)
    if not outcome.terminal or outcome.kind == COMPLETE:
        return outcome
    log, files = _session_evidence(api, ref)
    return classify(response, log, files, time_limit_s=time_limit_s, elapsed_s=elapsed_s)


def _session_evidence(api: Any, ref: str) -> tuple[str, list[str]]:
    """A finished session's log and output file names, from one page of ``ListKernelSessionOutput``."""
    from kagglesdk.kernels.types.kernels_api_service import ApiListKernelSessionOutputRequest

    owner, slug, version = api.parse_kernel_string(ref)
    request = ApiListKernelSessionOutputRequest()
    request.user_name, request.kernel_slug = owner, slug
    if version:
        request.version_label = f"v{version}"
    request.page_size = 100
    try:
        with api.build_kaggle_client() as kaggle:
            response = kaggle.kernels.kernels_api_client.list_kernel_session_output(request)
    except Exception as exc:  # noqa: BLE001 - requests' HTTPError and the client's ValueError
        raise _refused(exc, "output listing", ref) from exc
    files = [str(f.file_name) for f in (getattr(response, "files", None) or []) if getattr(f, "file_name", None)]
    return str(getattr(response, "log", None) or ""), files


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
        raise _refused(exc, "output", ref) from exc
    return [Path(f) for f in files]
