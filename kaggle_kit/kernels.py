"""Kaggle kernels (notebooks) through the API: push a kernel folder, the latest run's status, its output."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from kaggle_kit.errors import KaggleApiError, MetadataError
from kaggle_kit.kaggle_api import check_reply, describe_http_error, make_api
from kaggle_kit.metadata_files import KERNEL_METADATA

__all__ = ["kernel_output", "kernel_status", "push_folder"]


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
