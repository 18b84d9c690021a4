"""The dataset area: ``datasets.DatasetApiService`` (create, version, read, list, download, delete).

A dataset record in the state holds its versions, newest last; a version is READY once ``processing_seconds`` have
passed since it was created, and until then it cannot be followed by another version (403), and its files cannot be
listed or downloaded (``settings.files_refusal_status``, also for ``settings.files_delay_s`` after it is READY).
Every owner and slug is checked with Kaggle's rules (:mod:`kaggle_kit.handles`) before it is used.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path, PurePosixPath
from typing import Any

from kaggle_kit.errors import HandleError
from kaggle_kit.handles import DatasetHandle, parse_dataset
from kaggle_kit.sim.rpc import WEB_BASE, ApiError, Body, Redirect, iso_time, page, rpc, to_int
from kaggle_kit.sim.settings import SimSettings
from kaggle_kit.sim.state import StateStore
from kaggle_kit.sim.uploads import Uploads

# A title's length, as the client checks it before CreateDataset.
_TITLE_LENGTH = (6, 50)


class Datasets:
    """Datasets in the state; files arrive through the upload area's tokens and download as its blobs."""

    def __init__(self, store: StateStore, uploads: Uploads, *, settings: SimSettings,
                 processing_seconds: float = 0.0) -> None:
        self.store = store
        self.uploads = uploads
        self.settings = settings
        self.processing_seconds = float(processing_seconds)

    @rpc("datasets.DatasetApiService/GetDatasetStatus")
    def get_dataset_status(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("ownerSlug"), body.get("datasetSlug"))
            latest = record["versions"][-1]
            return {"status": "READY" if self.ready(latest) else "BLOBS_RECEIVED"}

    @rpc("datasets.DatasetApiService/CreateDataset")
    def create_dataset(self, body: Body, user: str) -> dict[str, Any]:
        try:
            handle = parse_dataset(f"{body.get('ownerSlug') or user}/{body.get('slug') or ''}", versioned=False)
        except HandleError as exc:
            return {"status": "error", "error": str(exc)}
        owner, slug = handle.owner, handle.slug
        if owner != user.lower():
            raise ApiError(403, f"user {user} cannot create datasets owned by {owner}")
        title = body.get("title")
        if title is not None and (not isinstance(title, str) or not _TITLE_LENGTH[0] <= len(title) <= _TITLE_LENGTH[1]):
            return {"status": "error", "error": "The dataset title must be between 6 and 50 characters"}
        files = self._files(body.get("files"))
        if isinstance(files, str):
            return {"status": "error", "error": files}
        key = handle.ref
        with self.store.lock:
            if key in self.store.data["datasets"]:
                return {"status": "error", "ref": key,
                        "error": f"The requested slug \"{slug}\" is already in use by a dataset."}
            record = {"id": self.store.new_id(), "owner": owner, "slug": slug,
                      "title": body.get("title") or slug, "subtitle": body.get("subtitle") or "",
                      "description": body.get("description") or "", "license": body.get("licenseName") or "unknown",
                      "private": bool(body.get("isPrivate", False)), "keywords": list(body.get("categoryIds") or []),
                      "created": time.time(), "updated": time.time(), "versions": []}
            self._new_version(record, {"versionNotes": "Initial release"}, files)
            self.store.data["datasets"][key] = record
            self.store.save()
        return {"status": "ok", "ref": key, "url": f"{WEB_BASE}/datasets/{key}", "error": "", "invalidTags": []}

    @rpc("datasets.DatasetApiService/CreateDatasetVersion")
    def create_dataset_version(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("ownerSlug"), body.get("datasetSlug"))
        return self._add_version(record, body.get("body") or {}, user)

    @rpc("datasets.DatasetApiService/CreateDatasetVersionById")
    def create_dataset_version_by_id(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._find_by_id(body.get("id"))
        return self._add_version(record, body.get("body") or {}, user)

    @rpc("datasets.DatasetApiService/GetDataset")
    def get_dataset(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            return self._dataset_json(self.find(body.get("ownerSlug"), body.get("datasetSlug")))

    @rpc("datasets.DatasetApiService/ListDatasetFiles")
    def list_dataset_files(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("ownerSlug"), body.get("datasetSlug"))
            version = self.version(record, body.get("datasetVersionNumber"))
            files, token = page([self._file_json(record, f) for f in version["files"]], body)
        return {"datasetFiles": files, "nextPageToken": token}

    @rpc("datasets.DatasetApiService/ListDatasets")
    def list_datasets(self, body: Body, user: str) -> dict[str, Any]:
        group = str(body.get("group") or "DATASET_SELECTION_GROUP_PUBLIC")
        wanted_user = str(body.get("user") or "").lower()
        search = str(body.get("search") or "").lower()
        with self.store.lock:
            records = list(self.store.data["datasets"].values())
            selected = []
            for record in records:
                mine = record["owner"] == user.lower()
                if group.endswith("_MY") or group.endswith("_MY_PRIVATE") or group.endswith("_MY_PUBLIC"):
                    if not mine or (group.endswith("_MY_PRIVATE") and not record["private"]) or (
                            group.endswith("_MY_PUBLIC") and record["private"]):
                        continue
                elif record["private"] and not mine:
                    continue
                if wanted_user and record["owner"] != wanted_user:
                    continue
                if search and search not in record["slug"] and search not in record["title"].lower():
                    continue
                selected.append(record)
            selected.sort(key=lambda r: r["updated"], reverse=True)
            chunk, token = page(selected, body)
            return {"datasets": [self._dataset_json(r) for r in chunk], "nextPageToken": token}

    @rpc("datasets.DatasetApiService/GetDatasetMetadata")
    def get_dataset_metadata(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("ownerSlug"), body.get("datasetSlug"))
            current = record["versions"][-1]
            info = {"datasetId": record["id"], "datasetSlug": record["slug"], "ownerUser": record["owner"],
                    "title": record["title"], "subtitle": record["subtitle"], "description": record["description"],
                    "isPrivate": record["private"], "keywords": list(record["keywords"]),
                    "licenses": [{"name": record["license"]}], "totalViews": 0, "totalVotes": 0, "totalDownloads": 0,
                    "data": [{"name": f["name"], "description": f.get("description") or "", "totalBytes": f["size"]}
                             for f in current["files"]]}
        return {"info": info}

    @rpc("datasets.DatasetApiService/DeleteDataset")
    def delete_dataset(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("ownerSlug"), body.get("datasetSlug"))
            if record["owner"] != user.lower():
                raise ApiError(403, f"user {user} cannot delete {record['owner']}/{record['slug']}")
            del self.store.data["datasets"][f"{record['owner']}/{record['slug']}"]
            self.store.save()
        shutil.rmtree(self.store.dataset_mount_dir(record["id"]), ignore_errors=True)
        return {}

    @rpc("datasets.DatasetApiService/DownloadDataset")
    def download_dataset(self, body: Body, user: str) -> Redirect:
        with self.store.lock:
            record = self.find(body.get("ownerSlug"), body.get("datasetSlug"))
            version = self.version(record, body.get("datasetVersionNumber"))
            file_name = str(body.get("fileName") or "")
            entry = next((e for e in version["files"] if e["name"] == file_name), None) if file_name else None
            if file_name and entry is None:
                raise ApiError(404, f"file {file_name!r} not found in version {version['number']} of "
                                    f"{record['owner']}/{record['slug']}")
            files = list(version["files"])
        if entry is not None:
            if int(entry["size"]) <= self.settings.zip_single_files_over_bytes:
                return Redirect(self.uploads.blob_url(entry["blob"], entry["name"]))
            # As Kaggle does, a large single file arrives compressed: <name>.zip holding the one file.
            base = PurePosixPath(entry["name"]).name
            zipped = self.store.single_file_zip(entry["blob"], base, entry["created"])
            return Redirect(self.uploads.blob_url(zipped, f"{base}.zip"))
        with self.store.lock:
            cached = version.get("zip")
        if cached is None or not self.store.blob_path(cached).exists():
            cached, _ = self.store.build_zip(files)
            with self.store.lock:
                version["zip"] = cached
                self.store.save()
        return Redirect(self.uploads.blob_url(cached, f"{record['slug']}.zip"))

    def find(self, owner: Any, slug: Any) -> dict[str, Any]:
        """The record of dataset ``owner/slug``; ApiError 400 for a handle Kaggle refuses, 404 when there is none."""
        handle = _handle(owner, slug)
        record = self.store.data["datasets"].get(handle.ref)
        if record is None:
            raise ApiError(404, f"dataset {handle.ref} not found")
        return record

    def ready(self, version: dict[str, Any]) -> bool:
        """Whether a version has finished processing."""
        return time.time() >= version["ready_at"]

    def files_ready(self, version: dict[str, Any]) -> bool:
        """Whether a version's files can be listed and downloaded (``files_delay_s`` after it is READY)."""
        return time.time() >= version["ready_at"] + self.settings.files_delay_s

    def version(self, record: dict[str, Any], number: Any) -> dict[str, Any]:
        """The requested version, or the newest one whose files can be read when ``number`` is empty.

        A version still processing answers ``settings.files_refusal_status`` (Kaggle: 409, or 404 for a while).
        """
        versions = record["versions"]
        ref = f"{record['owner']}/{record['slug']}"
        if number:
            for version in versions:
                if version["number"] == to_int(number):
                    if not self.files_ready(version):
                        raise ApiError(self.settings.files_refusal_status,
                                       f"version {number} of {ref} is still processing: wait until its status is "
                                       "ready")
                    return version
            raise ApiError(404, f"dataset {ref} has no version {number}")
        for version in reversed(versions):
            if self.files_ready(version):
                return version
        raise ApiError(self.settings.files_refusal_status, f"dataset {ref} is still processing its first version")

    def resolve_source(self, source: str) -> tuple[dict[str, Any], int | None]:
        """A kernel's dataset source (``owner/slug``, ``owner/slug/N`` or ``owner/slug/versions/N``): its record and
        version number (None for the newest); ApiError when malformed or unknown."""
        try:
            handle = parse_dataset(source, what="dataset source")
        except HandleError as exc:
            raise ApiError(400, str(exc)) from None
        with self.store.lock:
            record = self.find(handle.owner, handle.slug)
            if handle.version is not None and not any(v["number"] == handle.version for v in record["versions"]):
                raise ApiError(404, f"dataset source {source!r}: no such version")
        return record, handle.version

    def version_dir(self, owner: str, slug: str, number: int | None = None) -> Path:
        """The files of a dataset version laid out in a folder (for mounting into sessions)."""
        with self.store.lock:
            record = self.find(owner, slug)
            version = self.version(record, number)
            files = list(version["files"])
        return self.store.materialize(files, self.store.dataset_mount_dir(record["id"], version["number"]))

    def _find_by_id(self, dataset_id: Any) -> dict[str, Any]:
        for record in self.store.data["datasets"].values():
            if record["id"] == to_int(dataset_id, -1):
                return record
        raise ApiError(404, f"dataset with id {dataset_id} not found")

    def _new_version(self, record: dict[str, Any], body: Body, files: list[dict[str, Any]]) -> None:
        now = time.time()
        number = record["versions"][-1]["number"] + 1 if record["versions"] else 1
        if body.get("deleteOldVersions"):
            record["versions"] = []
        record["versions"].append({"number": number, "created": now, "notes": body.get("versionNotes") or "",
                                   "ready_at": now + self.processing_seconds, "files": files, "zip": None})
        record["updated"] = now
        for field in ("subtitle", "description"):
            if body.get(field):
                record[field] = body[field]
        if body.get("categoryIds"):
            record["keywords"] = list(body["categoryIds"])

    def _files(self, tokens: Any) -> list[dict[str, Any]] | str:
        """The files a Create call's upload tokens stand for, or Kaggle's error when there are too many."""
        files = self.uploads.resolve_tokens(tokens if isinstance(tokens, list) else [])
        limit = self.settings.max_dataset_files
        if len(files) > limit:
            return f"The file count exceeds the maximum of {limit}"
        return files

    def _add_version(self, record: dict[str, Any], body: Body, user: str) -> dict[str, Any]:
        if record["owner"] != user.lower():
            raise ApiError(403, f"user {user} cannot version {record['owner']}/{record['slug']}")
        files = self._files(body.get("files"))
        if isinstance(files, str):
            return {"status": "error", "error": files}
        key = f"{record['owner']}/{record['slug']}"
        with self.store.lock:
            if not self.ready(record["versions"][-1]):
                raise ApiError(403, f"dataset {key} is still processing version {record['versions'][-1]['number']}: "
                                    "wait until its status is ready before creating another version")
            self._new_version(record, body, files)
            self.store.save()
        return {"status": "ok", "ref": key, "url": f"{WEB_BASE}/datasets/{key}", "error": "", "invalidTags": []}

    def _file_json(self, record: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        ref = f"{record['owner']}/{record['slug']}"
        return {"ref": f"{ref}/{entry['name']}", "datasetRef": ref, "ownerRef": record["owner"],
                "name": entry["name"], "creationDate": iso_time(entry["created"]),
                "description": entry.get("description") or "", "fileType": Path(entry["name"]).suffix.lstrip("."),
                "url": self.uploads.blob_url(entry["blob"], entry["name"]), "totalBytes": int(entry["size"])}

    def _dataset_json(self, record: dict[str, Any]) -> dict[str, Any]:
        ref = f"{record['owner']}/{record['slug']}"
        current = record["versions"][-1]
        return {
            "id": record["id"], "ref": ref, "title": record["title"], "subtitle": record["subtitle"],
            "creatorName": record["owner"], "creatorUrl": record["owner"], "ownerName": record["owner"],
            "ownerRef": record["owner"], "url": f"{WEB_BASE}/datasets/{ref}",
            "lastUpdated": iso_time(record["updated"]), "totalBytes": int(sum(f["size"] for f in current["files"])),
            "isPrivate": record["private"],
            "licenseName": record["license"], "description": record["description"],
            "currentVersionNumber": current["number"], "downloadCount": 0, "voteCount": 0, "viewCount": 0,
            "tags": [{"ref": k, "name": k} for k in record["keywords"]],
            "files": [self._file_json(record, f) for f in current["files"]],
            "versions": [{"versionNumber": v["number"], "creationDate": iso_time(v["created"]),
                          "creatorName": record["owner"], "creatorRef": record["owner"],
                          "versionNotes": v["notes"], "status": "ready" if self.ready(v) else "processing"}
                         for v in reversed(record["versions"])],
        }


def _handle(owner: Any, slug: Any) -> DatasetHandle:
    if not owner or not slug:
        raise ApiError(400, "ownerSlug and datasetSlug are required")
    try:
        return parse_dataset(f"{owner}/{slug}", versioned=False)
    except HandleError as exc:
        raise ApiError(400, str(exc)) from None
