"""Kaggle kernels (notebooks) through the API: push a kernel folder, the latest run's status, its output."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from kaggle_kit.errors import KaggleApiError, MetadataError
from kaggle_kit.kaggle_api import check_reply, describe_http_error, make_api
from kaggle_kit.metadata_files import KERNEL_METADATA
from kaggle_kit.session_outcome import COMPLETE, SessionOutcome, classify

__all__ = ["kernel_outcome", "kernel_output", "kernel_status", "push_folder"]


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
) -> dict[str, Any]:
    """Pushes the kernel in ``folder`` (its kernel-metadata.json names ``ref``) and checks the reply's error fields.

    ``timeout_s`` caps the run's time (Kaggle's ``sessionTimeoutSeconds``); ``tolerated`` sources may be reported
    invalid without failing (a mirror dataset the first run creates).

    Returns:
        ``{"ref", "version", "url", "tolerated_invalid"}``: the last lists the tolerated sources the server
        reported invalid.

    Raises:
        MetadataError: the client refused the folder's metadata.
        KaggleApiError: the server refused the push.
    """
    folder = Path(folder)
    api = api or make_api()
    try:
        response = api.kernels_push(str(folder), timeout=str(int(timeout_s)) if timeout_s else None)
    except ValueError as exc:
        raise MetadataError(f"{folder / KERNEL_METADATA}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - requests' HTTPError carries the server's message
        raise KaggleApiError(f"pushing {ref} failed: {describe_http_error(exc)}") from exc
    invalid = getattr(response, "invalid_dataset_sources", None) or []
    tolerated_invalid = [source for source in tolerated if source in invalid]
    check_reply(response, f"pushing {ref}", tolerated=tolerated)
    return {"ref": getattr(response, "ref", None) or ref, "version": getattr(response, "version_number", None),
            "url": getattr(response, "url", None), "tolerated_invalid": tolerated_invalid}


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
