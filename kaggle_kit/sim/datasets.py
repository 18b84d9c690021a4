"""The dataset area: ``datasets.DatasetApiService`` (create, version, read, list, download, delete).

A dataset record in the state holds its versions, newest last; a version is READY once ``processing_seconds`` have
passed since it was created, and until then it cannot be read, downloaded or followed by another version.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from kaggle_kit.sim.rpc import WEB_BASE, ApiError, Body, Redirect, iso_time, page, rpc, to_int
from kaggle_kit.sim.state import StateStore
from kaggle_kit.sim.uploads import Uploads


class Datasets:
    """Datasets in the state; files arrive through the upload area's tokens and download as its blobs."""

    def __init__(self, store: StateStore, uploads: Uploads, *, processing_seconds: float = 0.0) -> None:
        self.store = store
        self.uploads = uploads
        self.processing_seconds = float(processing_seconds)

    @rpc("datasets.DatasetApiService/GetDatasetStatus")
    def get_dataset_status(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("ownerSlug"), body.get("datasetSlug"))
            latest = record["versions"][-1]
            return {"status": "READY" if self.ready(latest) else "BLOBS_RECEIVED"}

    @rpc("datasets.DatasetApiService/CreateDataset")
    def create_dataset(self, body: Body, user: str) -> dict[str, Any]:
        owner, slug = str(body.get("ownerSlug") or user), str(body.get("slug") or "")
        if owner.lower() != user.lower():
            raise ApiError(403, f"user {user} cannot create datasets owned by {owner}")
        if not 6 <= len(slug) <= 50 or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", slug):
            return {"status": "error", "error": f"the dataset slug {slug!r} must be 6-50 letters, digits or dashes"}
        files = self.uploads.resolve_tokens(body.get("files") or [])
        key = _key(owner, slug)
        with self.store.lock:
            if key in self.store.data["datasets"]:
                return {"status": "error", "ref": key,
                        "error": f"The requested slug \"{slug}\" is already in use by a dataset."}
            record = {"id": self.store.new_id(), "owner": owner.lower(), "slug": slug.lower(),
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
            if file_name:
                for entry in version["files"]:
                    if entry["name"] == file_name:
                        return Redirect(self.uploads.blob_url(entry["blob"], entry["name"]))
                raise ApiError(404, f"file {file_name!r} not found in version {version['number']} of "
                                    f"{record['owner']}/{record['slug']}")
            files = list(version["files"])
            cached = version.get("zip")
        if cached is None or not self.store.blob_path(cached).exists():
            cached, _ = self.store.build_zip(files)
            with self.store.lock:
                version["zip"] = cached
                self.store.save()
        return Redirect(self.uploads.blob_url(cached, f"{record['slug']}.zip"))

    def find(self, owner: Any, slug: Any) -> dict[str, Any]:
        """The record of dataset ``owner/slug``; ApiError 400 without both, 404 when there is none."""
        record = self.store.data["datasets"].get(_key(owner, slug))
        if record is None:
            raise ApiError(404, f"dataset {owner}/{slug} not found")
        return record

    def ready(self, version: dict[str, Any]) -> bool:
        """Whether a version has finished processing."""
        return time.time() >= version["ready_at"]

    def version(self, record: dict[str, Any], number: Any) -> dict[str, Any]:
        """The requested version, or the newest READY one when ``number`` is empty."""
        versions = record["versions"]
        if number:
            for version in versions:
                if version["number"] == to_int(number):
                    if not self.ready(version):
                        raise ApiError(409, f"version {number} of {record['owner']}/{record['slug']} is still "
                                            "processing: wait until its status is ready")
                    return version
            raise ApiError(404, f"dataset {record['owner']}/{record['slug']} has no version {number}")
        for version in reversed(versions):
            if self.ready(version):
                return version
        raise ApiError(409, f"dataset {record['owner']}/{record['slug']} is still processing its first version")

    def resolve_source(self, source: str) -> tuple[dict[str, Any], int | None]:
        """A kernel's dataset source (``owner/slug``, ``owner/slug/N`` or ``owner/slug/versions/N``): its record and
        version number (None for the newest); ApiError when malformed or unknown."""
        parts = source.strip("/").split("/")
        if len(parts) == 4 and parts[2] == "versions":
            parts = [parts[0], parts[1], parts[3]]
        if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].isdigit()):
            raise ApiError(400, f"dataset source {source!r} is not owner/slug or owner/slug/N")
        with self.store.lock:
            record = self.find(parts[0], parts[1])
            number = int(parts[2]) if len(parts) == 3 else None
            if number is not None and not any(v["number"] == number for v in record["versions"]):
                raise ApiError(404, f"dataset source {source!r}: no such version")
        return record, number

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

    def _add_version(self, record: dict[str, Any], body: Body, user: str) -> dict[str, Any]:
        if record["owner"] != user.lower():
            raise ApiError(403, f"user {user} cannot version {record['owner']}/{record['slug']}")
        files = self.uploads.resolve_tokens(body.get("files") or [])
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


def _key(owner: Any, slug: Any) -> str:
    if not owner or not slug:
        raise ApiError(400, "ownerSlug and datasetSlug are required")
    return f"{str(owner).lower()}/{str(slug).lower()}"
