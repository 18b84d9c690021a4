"""The code dataset: the project staged without history, environments, build outputs, caches or secrets, and
versioned on Kaggle from the root's ``dataset-metadata.json`` (``kaggle-kit publish-code``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from kaggle_kit.errors import CredentialError, KaggleApiError
from kaggle_kit.kaggle_api import check_reply, describe_http_error, find_credentials, make_api
from kaggle_kit.metadata_files import DATASET_METADATA, checked_handle, read_metadata

__all__ = ["publish_code", "stage_code"]

# Staging the code dataset leaves these out: history, environments, build outputs, caches and secrets.
_SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "env", "__pycache__", ".pytest_cache", ".mypy_cache",
              ".ruff_cache", ".ipynb_checkpoints", "build", "dist", ".kaggle-kit", "kaggle-kit-rehearsal",
              ".kaggle", ".idea", ".vscode", "node_modules"}
_SECRET_NAMES = {"kaggle.json", "access_token", ".env", ".netrc", "credentials", "id_rsa", "id_ed25519"}
_SECRET_SUFFIXES = (".pem", ".key")


def _is_secret(path: Path) -> bool:
    name = path.name
    return name in _SECRET_NAMES or name.startswith(".env") or name.endswith(_SECRET_SUFFIXES)


def stage_code(root: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Copies the project into ``dest`` for the code dataset, leaving out history, environments, build outputs,
    caches and secrets (kaggle.json, access_token, .env files, keys); refuses a file holding the API key or token.

    Returns:
        The staged files, relative to ``dest``.

    Raises:
        CredentialError: a file to be published contains the current Kaggle key or token.
    """
    root, dest = Path(root).resolve(), Path(dest)
    creds = find_credentials()
    secrets = [s.encode() for s in (creds.key, creds.token) if s and len(s) >= 8] if creds else []
    staged: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in _SKIP_DIRS and not d.endswith(".egg-info") and not (here / d / "pyvenv.cfg").exists()
            and (here / d).resolve() != dest.resolve()
        )
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(root)
            if _is_secret(path) or path.is_symlink() or name.endswith(".pyc"):
                continue
            data = path.read_bytes()
            if any(secret in data for secret in secrets):
                raise CredentialError(f"{rel} contains your Kaggle API key or token: remove it before publishing "
                                      "the code (the code dataset may be public or shared)")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            staged.append(rel)
    return staged


def publish_code(
    root: str | os.PathLike[str], *, notes: str = "kaggle-kit publish-code", api: Any = None
) -> dict[str, Any]:
    """Versions the code dataset named by the root's dataset-metadata.json (creating it the first time).

    Sub-folders travel zipped (``dir_mode="zip"``) and Kaggle unpacks them, so the package keeps its layout.

    Returns:
        ``{"ref", "created", "files", "url"}``.

    Raises:
        MetadataError: dataset-metadata.json is missing or malformed.
        KaggleApiError: the server refused the upload.
    """
    root = Path(root)
    meta = read_metadata(root / DATASET_METADATA, "the code dataset's dataset-metadata.json")
    ref = checked_handle(str(meta.get("id", "")), "dataset id", str(root / DATASET_METADATA))
    api = api or make_api()
    with tempfile.TemporaryDirectory(prefix="kaggle-kit-code-") as tmp:
        staged = stage_code(root, Path(tmp) / "code")
        folder = Path(tmp) / "code"
        (folder / DATASET_METADATA).write_text(json.dumps(meta, indent=2))
        created = not _dataset_exists(api, ref)
        try:
            if created:
                response = api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="zip")
            else:
                response = api.dataset_create_version(str(folder), notes, quiet=True, dir_mode="zip")
        except (ValueError, OSError) as exc:
            raise KaggleApiError(f"publishing {ref} failed: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - requests' HTTPError carries the server's message
            raise KaggleApiError(f"publishing {ref} failed: {describe_http_error(exc)}") from exc
    check_reply(response, f"publishing the code dataset {ref}")
    return {"ref": ref, "created": created, "files": [str(p) for p in staged], "url": getattr(response, "url", None)}


def _dataset_exists(api: Any, ref: str) -> bool:
    try:
        api.dataset_status(ref)
    except Exception as exc:  # noqa: BLE001 - a 404 means "not created yet"; anything else is reported
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (403, 404):
            return False
        raise KaggleApiError(f"checking whether {ref} exists failed: {describe_http_error(exc)}") from exc
    return True
