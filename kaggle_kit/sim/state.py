"""The stand-in server's state on disk: one JSON document plus content-addressed blobs.

Layout of ``state_dir``::

    state.json                      datasets, versions, kernels, uploads, quota ledger
    blobs/<sha256>                  every uploaded or unpacked file, stored once
    uploads/<token>.part            bytes of a resumable upload not yet complete
    kernels/<owner>/<slug>/<N>/     a kernel version's source, output/ and log
    mounts/datasets/<id>/<N>/       a copy of a dataset version's files, mounted into sandbox sessions

Every change is written with a temp file and a rename, so a server killed mid-write keeps the previous state.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from kaggle_kit.errors import HandleError
from kaggle_kit.fileio import atomic_write_json, move_into_place, read_json
from kaggle_kit.handles import KernelHandle, parse_kernel

_SCHEMA = 1
# What a name may be (one path component): the longest name Linux file systems take, no control characters.
_NAME_MAX_BYTES = 255
_PATH_MAX_BYTES = 1024
_PATH_MAX_DEPTH = 32


def _empty_state() -> dict[str, Any]:
    return {"schema": _SCHEMA, "next_id": 1, "datasets": {}, "kernels": {}, "uploads": {}, "quota": [], "zips": {}}


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a file name (one path component), or None when it can."""
    if not isinstance(name, str) or not name:
        return "a file name must be a non-empty string"
    if name in (".", ".."):
        return f"{name!r} is not a file name"
    if "/" in name or "\\" in name:
        return f"file name {name!r} contains a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"file name {name!r} contains a control character"
    if len(name.encode("utf-8", "surrogatepass")) > _NAME_MAX_BYTES:
        return f"file name {name[:40]!r}... is longer than {_NAME_MAX_BYTES} bytes"
    return None


def safe_relative_path(name: str) -> str | None:
    """``name`` as a relative path (``/`` or ``\\`` separated) whose every part is a valid name, else None.

    This is the zip-slip guard for archive members and the check of every dataset file name before a path is built.
    """
    if not isinstance(name, str) or len(name.encode("utf-8", "surrogatepass")) > _PATH_MAX_BYTES:
        return None
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or len(parts) > _PATH_MAX_DEPTH or name.startswith(("/", "\\")):
        return None
    if any(name_problem(part) for part in parts):
        return None
    return "/".join(parts)


def kernel_handle(owner: str, slug: str) -> KernelHandle:
    """The validated handle of a kernel record; a record that breaks Kaggle's rules never becomes a path."""
    try:
        return parse_kernel(f"{owner}/{slug}", versioned=False)
    except HandleError as exc:
        raise ValueError(f"kernel {owner}/{slug} in the state is not a valid handle: {exc}") from None


class StateStore:
    """Thread-safe access to the server's state; callers hold ``lock`` around read-modify-write sequences."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir)
        self.lock = threading.RLock()
        for sub in ("blobs", "uploads", "kernels", "mounts"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._path = self.root / "state.json"
        if self._path.exists():
            self.data: dict[str, Any] = read_json(self._path, max_bytes=1 << 30)
        else:
            self.data = _empty_state()
            self.save()

    def save(self) -> None:
        """Write the state atomically."""
        with self.lock:
            atomic_write_json(self._path, self.data, indent=1, sort_keys=True)

    def new_id(self) -> int:
        with self.lock:
            value = int(self.data["next_id"])
            self.data["next_id"] = value + 1
            return value

    def blob_path(self, sha: str) -> Path:
        return self.root / "blobs" / sha

    def part_path(self, token: str) -> Path:
        """Where the bytes of resumable upload ``token`` collect until it completes."""
        return self.root / "uploads" / f"{token}.part"

    def kernel_dir(self, handle: KernelHandle, number: int | None = None) -> Path:
        """A kernel's folder, or one version's (its source, ``output/`` and ``log.txt``).

        Only a validated handle names a folder (:func:`kernel_handle`): ``alice/..`` never reaches the file system.
        """
        checked = kernel_handle(handle.owner, handle.slug)
        folder = self.root / "kernels" / checked.owner / checked.slug
        return folder if number is None else folder / str(int(number))

    def dataset_mount_dir(self, dataset_id: int, number: int | None = None) -> Path:
        """A dataset's mount copies, or one version's.

        Keyed by the dataset's id: a deleted and re-created slug starts its versions at 1 again.
        """
        folder = self.root / "mounts" / "datasets" / str(dataset_id)
        return folder if number is None else folder / str(number)

    def add_blob_file(self, path: Path) -> tuple[str, int]:
        """Move ``path`` into the blob store; returns (sha256, size)."""
        sha = _sha256_file(path)
        size = path.stat().st_size
        target = self.blob_path(sha)
        if target.exists():
            path.unlink()
        else:
            move_into_place(path, target)
        return sha, size

    def add_blob_stream(self, stream: BinaryIO) -> tuple[str, int]:
        fd, tmp = tempfile.mkstemp(dir=self.root / "blobs", prefix=".in-")
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        return self.add_blob_file(Path(tmp))

    def expand_upload(self, name: str, sha: str) -> list[dict[str, Any]]:
        """The dataset files an uploaded blob becomes: itself, or a .zip/.tar unpacked into a folder of its stem.

        Kaggle unpacks uploaded archives, which is how ``--dir-mode zip|tar`` sends sub-folders.
        """
        path = self.blob_path(sha)
        now = time.time()
        stem, _, ext = name.rpartition(".")
        files: list[dict[str, Any]] = []
        # An archive unpacks into a folder named by its stem, so a stem that is no folder name ("..." + "zip")
        # keeps the file as uploaded.
        if ext in ("zip", "tar") and stem and name_problem(stem) is None:
            try:
                for member, stream in _archive_members(path, ext):
                    with stream:
                        msha, msize = self.add_blob_stream(stream)
                    files.append({"name": f"{stem}/{member}", "blob": msha, "size": msize, "created": now})
                return files
            except (zipfile.BadZipFile, tarfile.TarError):
                files = []  # not really an archive: keep the file as uploaded
        return [{"name": name, "blob": sha, "size": path.stat().st_size, "created": now}]

    def materialize(self, files: list[dict[str, Any]], target: Path) -> Path:
        """Lay a file list out under ``target``, once per target.

        Copies, not hard links: where the sandbox cannot mount inputs read-only, a session writing into its input
        must not be able to change the stored blobs that downloads serve.
        """
        if target.exists():
            return target
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for entry in files:
            rel = safe_relative_path(entry["name"])
            if rel is None:
                raise ValueError(f"dataset file name {entry['name']!r} is not a relative path inside its folder")
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.blob_path(entry["blob"]), dest)
        tmp.mkdir(parents=True, exist_ok=True)
        move_into_place(tmp, target)
        return target

    def build_zip(self, files: list[dict[str, Any]]) -> tuple[str, int]:
        """A zip of ``files`` (paths kept) in the blob store; the same file list yields the same blob."""
        fd, tmp = tempfile.mkstemp(dir=self.root / "blobs", prefix=".zip-")
        os.close(fd)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for entry in sorted(files, key=lambda e: e["name"]):
                info = zipfile.ZipInfo(entry["name"], date_time=time.gmtime(entry["created"])[:6])
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(self.blob_path(entry["blob"]), "rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        return self.add_blob_file(Path(tmp))


    def single_file_zip(self, sha: str, name: str, created: float) -> str:
        """The blob of a zip holding blob ``sha`` as its one member ``name`` (made once, then remembered)."""
        key = f"{sha}:{name}"
        with self.lock:
            cached = self.data.setdefault("zips", {}).get(key)
        if cached and self.blob_path(cached).exists():
            return str(cached)
        zipped, _ = self.build_zip([{"name": name, "blob": sha, "created": created}])
        with self.lock:
            self.data["zips"][key] = zipped
            self.save()
        return zipped


def _archive_members(path: Path, ext: str) -> Iterator[tuple[str, BinaryIO]]:
    """The members of an archive that are regular files with a safe relative path; the rest is left out."""
    if ext == "zip":
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                member = safe_relative_path(info.filename)
                if member and not info.is_dir():
                    yield member, zf.open(info)
    else:
        with tarfile.open(path) as tf:
            for info in tf.getmembers():
                member = safe_relative_path(info.name)
                stream = tf.extractfile(info) if info.isfile() else None
                if member and stream is not None:
                    yield member, stream


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
