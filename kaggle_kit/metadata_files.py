"""The project root's Kaggle metadata files: ``kernel-metadata.json`` (the training kernel) and
``dataset-metadata.json`` (the code dataset), read and checked in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from kaggle_kit.errors import HandleError, MalformedFileError, MetadataError
from kaggle_kit.fileio import loads_json
from kaggle_kit.handles import parse_dataset

__all__ = ["DATASET_METADATA", "KERNEL_METADATA", "checked_handle", "read_metadata"]

KERNEL_METADATA = "kernel-metadata.json"
DATASET_METADATA = "dataset-metadata.json"


def read_metadata(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``what`` says what the file is, for the error.

    Raises:
        MetadataError: the file is missing, unreadable, not valid JSON or not a JSON object.
    """
    try:
        data = loads_json(path.read_bytes(), where=str(path))
    except FileNotFoundError:
        raise MetadataError(f"{path} not found: the root needs {what}") from None
    except OSError as exc:
        raise MetadataError(f"cannot read {path} ({what}): {exc.strerror or exc}") from None
    except MalformedFileError as exc:
        raise MetadataError(f"{exc}: fix the file") from None
    if not isinstance(data, dict):
        raise MetadataError(f"{path} must hold a JSON object")
    return data


def checked_handle(value: str, what: str, source: str, parse: Callable[..., Any] = parse_dataset) -> str:
    """``value`` as an unversioned ``owner/slug`` (``parse`` says which kind); ``source`` is where it came from.

    Raises:
        MetadataError: the handle breaks Kaggle's rules, naming ``source`` as the place to fix it.
    """
    try:
        return str(parse(value, what=what, versioned=False))
    except HandleError as exc:
        raise MetadataError(f"{exc} (from {source}): fix it there") from None
