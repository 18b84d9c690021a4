"""A loopback stand-in for Kaggle's API that the real ``kaggle`` client (kaggle 2.2.x, kagglesdk 0.1.x) talks to.

It serves the dataset, blob-upload, kernel and quota RPCs as POST JSON under ``/v1/...`` and ``/api/v1/...`` (also
as absolute-form targets, so ``HTTP_PROXY`` reaches it), resumable upload PUTs and redirected blob downloads, keeps
its state on disk, runs pushed notebooks in the session sandbox when given one, and injects faults on request.

Served RPCs (``<package.Service>/<Method>``):

* ``security.OAuthService/IntrospectToken``
* ``blobs.BlobApiService/StartBlobUpload``
* ``datasets.DatasetApiService/``: ``GetDatasetStatus``, ``CreateDataset``, ``CreateDatasetVersion``,
  ``CreateDatasetVersionById``, ``GetDataset``, ``ListDatasetFiles``, ``ListDatasets``, ``GetDatasetMetadata``,
  ``DeleteDataset``, ``DownloadDataset``
* ``kernels.KernelsApiService/``: ``SaveKernel``, ``GetKernelSessionStatus``, ``ListKernelSessionOutput``,
  ``GetKernel``, ``ListKernels``, ``DeleteKernel``, ``GetAcceleratorQuotaStatistics``

Anything else answers 404 with a message naming the method.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import ipaddress
import logging
import os
import queue
import re
import secrets as _secrets
import shutil
import signal
import sys
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path
from http.server import ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import quote

from kaggle_kit import envvars
from kaggle_kit.errors import ConfigError, KaggleKitError
from kaggle_kit.kaggle_platform import WEEKLY_GPU_QUOTA_S, WEEKLY_TPU_QUOTA_S
from kaggle_kit.sim import _sessions
from kaggle_kit.sim._faults import FAULT_KINDS, Fault, FaultQueue, make_fault, parse_fault_spec
from kaggle_kit.sim._http import ApiError as _ApiError
from kaggle_kit.sim._http import Redirect as _Redirect
from kaggle_kit.sim._http import duration as _duration
from kaggle_kit.sim._http import make_http_server
from kaggle_kit.sim._http import to_int as _int
from kaggle_kit.sim._state import StateStore

__all__ = ["SimServer", "add_serve_arguments", "serve_command", "FAULT_KINDS"]

_log = logging.getLogger(__name__)

# Google's resumable uploads expire after a week; the client keeps its state for six days.
UPLOAD_TTL_S = 7 * 24 * 3600.0
_WEB_BASE = "https://www.kaggle.com"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts % 1 * 1000):03d}Z"


def _week_bounds(now: float) -> tuple[float, float]:
    """Start and end of the quota week (Kaggle resets GPU quota weekly; modelled as Saturday 00:00 UTC)."""
    day = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day - timedelta(days=(day.weekday() - 5) % 7)
    return start.timestamp(), (start + timedelta(days=7)).timestamp()


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of a credential a client sent with the expected one."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _split_version(label: str | None) -> int | None:
    if not label:
        return None
    text = str(label).lstrip("vV")
    if not text.isdigit():
        raise _ApiError(400, f"version label {label!r} is not a version number such as v3")
    return int(text)


class SimServer:
    """The offline Kaggle API, served on loopback from a state folder.

    Args:
        state_dir: folder holding datasets, uploads, kernels and the quota ledger; a restart on it keeps them.
        username: the only user; Basic auth must carry it and ``key``.
        key: the API key that Basic auth must carry.
        token: an access token accepted as ``Bearer`` (and by IntrospectToken); None accepts none.
        processing_seconds: how long a new dataset version stays in processing before READY.
        port: TCP port on ``host``; 0 picks a free one.
        sandbox: a ``kaggle_kit.sim.sandbox.Sandbox`` that runs pushed kernels; without one a push stays QUEUED.
        host: loopback address to bind.
        competitions_dir: folder of ``<competition-slug>/`` folders attached as competition sources.
        models_dir: folder of ``<owner>/<model>/<framework>/<variation>/<N>/`` attached as model sources.
        gpu_quota_s: the weekly GPU allowance reported by GetAcceleratorQuotaStatistics.
        upload_ttl_s: age after which an unfinished upload answers 404 (expired).
        clock_scale: passed to every sandbox session (simulated seconds per real second).
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, username: str, key: str, token: str | None = None,
                 processing_seconds: float = 0.0, port: int = 0, sandbox: Any = None, host: str = "127.0.0.1",
                 competitions_dir: str | os.PathLike[str] | None = None,
                 models_dir: str | os.PathLike[str] | None = None, gpu_quota_s: float = WEEKLY_GPU_QUOTA_S,
                 upload_ttl_s: float = UPLOAD_TTL_S, clock_scale: float = 1.0) -> None:
        if not username or "/" in username or ":" in username:
            raise ConfigError(f"SimServer username {username!r} must be a non-empty name without '/' or ':'")
        if not key:
            raise ConfigError("SimServer key must not be empty: pass the API key clients will send")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(f"SimServer host {host!r} is not a loopback address: the stand-in serves 127.0.0.1 only")
        if processing_seconds < 0 or gpu_quota_s < 0 or upload_ttl_s <= 0:
            raise ConfigError("SimServer processing_seconds and gpu_quota_s must be >= 0 and upload_ttl_s > 0")
        self.username = username
        self._key = key
        self._token = token
        self.processing_seconds = float(processing_seconds)
        self.gpu_quota_s = float(gpu_quota_s)
        self.upload_ttl_s = float(upload_ttl_s)
        self.clock_scale = float(clock_scale)
        self.sandbox = sandbox
        self.competitions_dir = Path(competitions_dir) if competitions_dir else None
        self.models_dir = Path(models_dir) if models_dir else None
        self.store = StateStore(Path(state_dir))
        self._faults = FaultQueue()
        self._host = host
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._jobs: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._busy = threading.Event()
        # (method, path, status) of recent requests, newest last; status 0 when the connection was dropped.
        self.request_log: deque[tuple[str, str, int]] = deque(maxlen=10000)
        self._rpcs: dict[str, Callable[[dict[str, Any], str], Any]] = {
            "blobs.BlobApiService/StartBlobUpload": self._start_blob_upload,
            "datasets.DatasetApiService/GetDatasetStatus": self._get_dataset_status,
            "datasets.DatasetApiService/CreateDataset": self._create_dataset,
            "datasets.DatasetApiService/CreateDatasetVersion": self._create_dataset_version,
            "datasets.DatasetApiService/CreateDatasetVersionById": self._create_dataset_version_by_id,
            "datasets.DatasetApiService/GetDataset": self._get_dataset,
            "datasets.DatasetApiService/ListDatasetFiles": self._list_dataset_files,
            "datasets.DatasetApiService/ListDatasets": self._list_datasets,
            "datasets.DatasetApiService/GetDatasetMetadata": self._get_dataset_metadata,
            "datasets.DatasetApiService/DeleteDataset": self._delete_dataset,
            "datasets.DatasetApiService/DownloadDataset": self._download_dataset,
            "kernels.KernelsApiService/SaveKernel": self._save_kernel,
            "kernels.KernelsApiService/GetKernelSessionStatus": self._get_kernel_session_status,
            "kernels.KernelsApiService/ListKernelSessionOutput": self._list_kernel_session_output,
            "kernels.KernelsApiService/GetKernel": self._get_kernel,
            "kernels.KernelsApiService/ListKernels": self._list_kernels,
            "kernels.KernelsApiService/DeleteKernel": self._delete_kernel,
            "kernels.KernelsApiService/GetAcceleratorQuotaStatistics": self._get_quota,
        }

    # Lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        if self._httpd is None:
            raise KaggleKitError("SimServer.url is known only after start(): use it as a context manager")
        host = self._httpd.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self._httpd.server_address[1]}"

    def start(self) -> "SimServer":
        """Bind and serve in background threads; queued kernel sessions resume."""
        if self._httpd is not None:
            return self
        try:
            self._httpd = make_http_server(self, self._host, self._port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self._host}:{self._port} ({exc.strerror or exc}): pick another port, "
                              "or 0 for a free one") from None
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kaggle-sim-http", daemon=True)
        self._thread.start()
        self._recover_sessions()
        return self

    def stop(self) -> None:
        """Stop serving; a session still running in the sandbox is left to finish in its daemon thread."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(timeout=1)
        self._httpd = None
        self._worker = None
        self._jobs = queue.Queue()

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a real ``kaggle`` CLI subprocess talking to this server (``base`` defaults to os.environ).

        The CLI honours only ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` (``http://localhost/api/v1``); ``HTTP_PROXY``
        sends those requests here, and no ``NO_PROXY`` may exempt localhost.
        """
        env = dict(os.environ if base is None else base)
        for name in ("NO_PROXY", "no_proxy", "http_proxy", envvars.API_TOKEN):
            env.pop(name, None)
        env.update({envvars.API_ENVIRONMENT: "LOCALHOST", "HTTP_PROXY": self.url, envvars.USERNAME: self.username,
                    envvars.KEY: self._key, envvars.KIT_API_ENDPOINT: self.url})
        return env

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Faults

    def inject_fault(self, kind: str, *, count: int = 1, match: str | None = None, retry_after: float | None = None,
                     delay: float | None = None) -> None:
        """Make the next ``count`` requests whose path contains ``match`` fail as ``kind`` (see FAULT_KINDS)."""
        self._faults.add(make_fault(kind, count=count, match=match, retry_after=retry_after, delay=delay))

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        return self._faults.pending()

    # Quota and sessions

    @property
    def quota_used_s(self) -> float:
        """GPU seconds the sandbox's sessions used in the current quota week."""
        start, _ = _week_bounds(time.time())
        with self.store.lock:
            return float(sum(e["gpu_s"] for e in self.store.data["quota"] if e["at"] >= start))

    def record_gpu_use(self, gpu_s: float, *, kernel: str = "") -> None:
        """Add a session's GPU seconds to the quota ledger."""
        if gpu_s <= 0:
            return
        with self.store.lock:
            self.store.data["quota"].append({"at": time.time(), "gpu_s": float(gpu_s), "kernel": kernel})
            self.store.save()

    def wait_for_sessions(self, timeout: float = 60.0) -> bool:
        """Block until no kernel session is queued or running; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._jobs.unfinished_tasks == 0 and not self._busy.is_set():
                return True
            time.sleep(0.05)
        return False

    # Auth

    def _check_auth(self, header: str | None) -> str | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, key = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            if _same(user, self.username) and _same(key, self._key):
                return user
        elif scheme.lower() == "bearer" and self._token:
            if _same(value.strip(), self._token):
                return self.username
        return None

    def _introspect(self, body: dict[str, Any]) -> dict[str, Any]:
        token = str(body.get("token") or "")
        if self._token and _same(token, self._token):
            return {"active": True, "username": self.username, "clientId": "kaggle-kit-sim", "userId": 1}
        return {"active": False}

    # Blob uploads

    def _start_blob_upload(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        name = str(body.get("name") or "")
        # The client leaves out fields equal to their default, so an empty file arrives without contentLength.
        length = _int(body.get("contentLength", 0), -1)
        if not name or "/" in name or length < 0:
            raise _ApiError(400, "StartBlobUpload needs a file name without '/' and a contentLength >= 0")
        token = _secrets.token_hex(16)
        with self.store.lock:
            self.store.data["uploads"][token] = {"name": name, "length": length, "created": time.time(),
                                                 "blob": None, "type": body.get("type") or "DATASET"}
            self.store.save()
        return {"token": token, "createUrl": f"{self.url}/_sim/upload/{token}"}

    def _upload_record(self, token: str) -> dict[str, Any] | None:
        with self.store.lock:
            record = self.store.data["uploads"].get(token)
            if record is None:
                return None
            if record["blob"] is None and time.time() - record["created"] > self.upload_ttl_s:
                del self.store.data["uploads"][token]
                self.store.save()
                self._part_path(token).unlink(missing_ok=True)
                return None
            return record

    def _part_path(self, token: str) -> Path:
        return self.store.root / "uploads" / f"{token}.part"

    def _finish_upload(self, token: str) -> None:
        sha, _ = self.store.add_blob_file(self._part_path(token))
        with self.store.lock:
            self.store.data["uploads"][token]["blob"] = sha
            self.store.save()

    def _resolve_tokens(self, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for entry in files or []:
            token = str(entry.get("token") or "")
            record = self._upload_record(token)
            if record is None or record["blob"] is None:
                raise _ApiError(400, f"upload token {token!r} is unknown, expired or its upload is incomplete: "
                                     "upload the file again")
            for item in self.store.expand_upload(record["name"], record["blob"]):
                item["description"] = entry.get("description") or ""
                out[item["name"]] = item
        return sorted(out.values(), key=lambda e: e["name"])

    # Datasets

    def _dataset_key(self, owner: Any, slug: Any) -> str:
        if not owner or not slug:
            raise _ApiError(400, "ownerSlug and datasetSlug are required")
        return f"{str(owner).lower()}/{str(slug).lower()}"

    def _dataset(self, owner: Any, slug: Any) -> dict[str, Any]:
        record = self.store.data["datasets"].get(self._dataset_key(owner, slug))
        if record is None:
            raise _ApiError(404, f"dataset {owner}/{slug} not found")
        return record

    def _dataset_by_id(self, dataset_id: Any) -> dict[str, Any]:
        for record in self.store.data["datasets"].values():
            if record["id"] == _int(dataset_id, -1):
                return record
        raise _ApiError(404, f"dataset with id {dataset_id} not found")

    def _ready(self, version: dict[str, Any]) -> bool:
        return time.time() >= version["ready_at"]

    def _version(self, record: dict[str, Any], number: Any) -> dict[str, Any]:
        """The requested version, or the newest READY one when ``number`` is empty."""
        versions = record["versions"]
        if number:
            for version in versions:
                if version["number"] == _int(number):
                    if not self._ready(version):
                        raise _ApiError(409, f"version {number} of {record['owner']}/{record['slug']} is still "
                                             "processing: wait until its status is ready")
                    return version
            raise _ApiError(404, f"dataset {record['owner']}/{record['slug']} has no version {number}")
        for version in reversed(versions):
            if self._ready(version):
                return version
        raise _ApiError(409, f"dataset {record['owner']}/{record['slug']} is still processing its first version")

    def _get_dataset_status(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._dataset(body.get("ownerSlug"), body.get("datasetSlug"))
            latest = record["versions"][-1]
            return {"status": "READY" if self._ready(latest) else "BLOBS_RECEIVED"}

    def _new_version(self, record: dict[str, Any], body: dict[str, Any], files: list[dict[str, Any]]) -> None:
        now = time.time()
        number = record["versions"][-1]["number"] + 1 if record["versions"] else 1
        if body.get("deleteOldVersions"):
            record["versions"] = []
        record["versions"].append({"number": number, "created": now, "notes": body.get("versionNotes") or "",
                                   "ready_at": now + self.processing_seconds, "files": files, "zip": None})
        record["updated"] = now
        for field, key in (("subtitle", "subtitle"), ("description", "description")):
            if body.get(field):
                record[key] = body[field]
        if body.get("categoryIds"):
            record["keywords"] = list(body["categoryIds"])

    def _create_dataset(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        owner, slug = str(body.get("ownerSlug") or user), str(body.get("slug") or "")
        if owner.lower() != user.lower():
            raise _ApiError(403, f"user {user} cannot create datasets owned by {owner}")
        if not 6 <= len(slug) <= 50 or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", slug):
            return {"status": "error", "error": f"the dataset slug {slug!r} must be 6-50 letters, digits or dashes"}
        files = self._resolve_tokens(body.get("files") or [])
        key = self._dataset_key(owner, slug)
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
        return {"status": "ok", "ref": key, "url": f"{_WEB_BASE}/datasets/{key}", "error": "", "invalidTags": []}

    def _add_version(self, record: dict[str, Any], body: dict[str, Any], user: str) -> dict[str, Any]:
        if record["owner"] != user.lower():
            raise _ApiError(403, f"user {user} cannot version {record['owner']}/{record['slug']}")
        files = self._resolve_tokens(body.get("files") or [])
        key = f"{record['owner']}/{record['slug']}"
        with self.store.lock:
            if not self._ready(record["versions"][-1]):
                raise _ApiError(403, f"dataset {key} is still processing version {record['versions'][-1]['number']}: "
                                     "wait until its status is ready before creating another version")
            self._new_version(record, body, files)
            self.store.save()
        return {"status": "ok", "ref": key, "url": f"{_WEB_BASE}/datasets/{key}", "error": "", "invalidTags": []}

    def _create_dataset_version(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._dataset(body.get("ownerSlug"), body.get("datasetSlug"))
        return self._add_version(record, body.get("body") or {}, user)

    def _create_dataset_version_by_id(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._dataset_by_id(body.get("id"))
        return self._add_version(record, body.get("body") or {}, user)

    def _file_json(self, record: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        ref = f"{record['owner']}/{record['slug']}"
        return {"ref": f"{ref}/{entry['name']}", "datasetRef": ref, "ownerRef": record["owner"],
                "name": entry["name"], "creationDate": _iso(entry["created"]),
                "description": entry.get("description") or "", "fileType": Path(entry["name"]).suffix.lstrip("."),
                "url": self._blob_url(entry["blob"], entry["name"]), "totalBytes": int(entry["size"])}

    def _dataset_json(self, record: dict[str, Any]) -> dict[str, Any]:
        ref = f"{record['owner']}/{record['slug']}"
        current = record["versions"][-1]
        return {
            "id": record["id"], "ref": ref, "title": record["title"], "subtitle": record["subtitle"],
            "creatorName": record["owner"], "creatorUrl": record["owner"], "ownerName": record["owner"],
            "ownerRef": record["owner"], "url": f"{_WEB_BASE}/datasets/{ref}", "lastUpdated": _iso(record["updated"]),
            "totalBytes": int(sum(f["size"] for f in current["files"])), "isPrivate": record["private"],
            "licenseName": record["license"], "description": record["description"],
            "currentVersionNumber": current["number"], "downloadCount": 0, "voteCount": 0, "viewCount": 0,
            "tags": [{"ref": k, "name": k} for k in record["keywords"]],
            "files": [self._file_json(record, f) for f in current["files"]],
            "versions": [{"versionNumber": v["number"], "creationDate": _iso(v["created"]),
                          "creatorName": record["owner"], "creatorRef": record["owner"],
                          "versionNotes": v["notes"], "status": "ready" if self._ready(v) else "processing"}
                         for v in reversed(record["versions"])],
        }

    def _get_dataset(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            return self._dataset_json(self._dataset(body.get("ownerSlug"), body.get("datasetSlug")))

    @staticmethod
    def _page(items: list[Any], body: dict[str, Any]) -> tuple[list[Any], str]:
        size = _int(body.get("pageSize"), 20) or 20
        if body.get("pageToken"):
            start = _int(body.get("pageToken"), 0)
        else:
            start = (max(_int(body.get("page"), 1), 1) - 1) * size
        chunk = items[start:start + size]
        return chunk, (str(start + size) if start + size < len(items) else "")

    def _list_dataset_files(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._dataset(body.get("ownerSlug"), body.get("datasetSlug"))
            version = self._version(record, body.get("datasetVersionNumber"))
            files, token = self._page([self._file_json(record, f) for f in version["files"]], body)
        return {"datasetFiles": files, "nextPageToken": token}

    def _list_datasets(self, body: dict[str, Any], user: str) -> dict[str, Any]:
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
            page, token = self._page(selected, body)
            return {"datasets": [self._dataset_json(r) for r in page], "nextPageToken": token}

    def _get_dataset_metadata(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._dataset(body.get("ownerSlug"), body.get("datasetSlug"))
            current = record["versions"][-1]
            info = {"datasetId": record["id"], "datasetSlug": record["slug"], "ownerUser": record["owner"],
                    "title": record["title"], "subtitle": record["subtitle"], "description": record["description"],
                    "isPrivate": record["private"], "keywords": list(record["keywords"]),
                    "licenses": [{"name": record["license"]}], "totalViews": 0, "totalVotes": 0, "totalDownloads": 0,
                    "data": [{"name": f["name"], "description": f.get("description") or "", "totalBytes": f["size"]}
                             for f in current["files"]]}
        return {"info": info}

    def _delete_dataset(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._dataset(body.get("ownerSlug"), body.get("datasetSlug"))
            if record["owner"] != user.lower():
                raise _ApiError(403, f"user {user} cannot delete {record['owner']}/{record['slug']}")
            del self.store.data["datasets"][f"{record['owner']}/{record['slug']}"]
            self.store.save()
        shutil.rmtree(self.store.root / "mounts" / "datasets" / str(record["id"]), ignore_errors=True)
        return {}

    def _download_dataset(self, body: dict[str, Any], user: str) -> _Redirect:
        with self.store.lock:
            record = self._dataset(body.get("ownerSlug"), body.get("datasetSlug"))
            version = self._version(record, body.get("datasetVersionNumber"))
            file_name = str(body.get("fileName") or "")
            if file_name:
                for entry in version["files"]:
                    if entry["name"] == file_name:
                        return _Redirect(self._blob_url(entry["blob"], entry["name"]))
                raise _ApiError(404, f"file {file_name!r} not found in version {version['number']} of "
                                     f"{record['owner']}/{record['slug']}")
            files = list(version["files"])
            cached = version.get("zip")
        if cached is None or not self.store.blob_path(cached).exists():
            cached, _ = self.store.build_zip(files)
            with self.store.lock:
                version["zip"] = cached
                self.store.save()
        return _Redirect(self._blob_url(cached, f"{record['slug']}.zip"))

    def _blob_url(self, sha: str, name: str) -> str:
        return f"{self.url}/_sim/blobs/{sha}/{quote(Path(name).name)}"

    def dataset_version_dir(self, owner: str, slug: str, number: int | None = None) -> Path:
        """The files of a dataset version laid out in a folder (for mounting into sessions)."""
        with self.store.lock:
            record = self._dataset(owner, slug)
            version = self._version(record, number)
            files = list(version["files"])
        # Keyed by the dataset's id: a deleted and re-created slug starts its versions at 1 again.
        target = self.store.root / "mounts" / "datasets" / str(record["id"]) / str(version["number"])
        return self.store.materialize(files, target)

    # Kernels

    def _kernel(self, owner: Any, slug: Any) -> dict[str, Any]:
        if not owner or not slug:
            raise _ApiError(400, "userName and kernelSlug are required")
        record = self.store.data["kernels"].get(f"{str(owner).lower()}/{str(slug).lower()}")
        if record is None:
            raise _ApiError(404, f"kernel {owner}/{slug} not found")
        return record

    def _kernel_version(self, record: dict[str, Any], label: Any) -> dict[str, Any]:
        number = _split_version(label)
        if number is None:
            return record["versions"][-1]
        for version in record["versions"]:
            if version["number"] == number:
                return version
        raise _ApiError(404, f"kernel {record['owner']}/{record['slug']} has no version {number}")

    def _kernel_dir(self, record: dict[str, Any], number: int) -> Path:
        return self.store.root / "kernels" / record["owner"] / record["slug"] / str(number)

    def _metadata_json(self, record: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
        meta = {"id": record["id"], "ref": f"{record['owner']}/{record['slug']}", "title": record["title"],
                "author": record["owner"], "slug": record["slug"], "language": version["language"],
                "kernelType": version["kernel_type"], "isPrivate": version["private"],
                "enableGpu": version["enable_gpu"], "enableTpu": version["enable_tpu"],
                "enableInternet": version["enable_internet"], "categoryIds": list(version["keywords"]),
                "datasetDataSources": list(version["dataset_sources"]),
                "kernelDataSources": list(version["kernel_sources"]),
                "competitionDataSources": list(version["competition_sources"]),
                "modelDataSources": list(version["model_sources"]), "totalVotes": 0,
                "currentVersionNumber": record["versions"][-1]["number"],
                "dockerImage": version.get("docker_image") or "", "machineShape": version.get("machine_shape") or ""}
        if version.get("finished") or version.get("started"):
            meta["lastRunTime"] = _iso(version.get("finished") or version.get("started"))
        return meta

    def _check_sources(self, version: dict[str, Any]) -> dict[str, list[str]]:
        invalid: dict[str, list[str]] = {"invalidDatasetSources": [], "invalidKernelSources": [],
                                         "invalidCompetitionSources": [], "invalidModelSources": []}
        for source in version["dataset_sources"]:
            try:
                self._dataset_source(source)
            except _ApiError:
                invalid["invalidDatasetSources"].append(source)
        for source in version["kernel_sources"]:
            owner, _, rest = source.partition("/")
            if f"{owner.lower()}/{rest.split('/')[0].lower()}" not in self.store.data["kernels"]:
                invalid["invalidKernelSources"].append(source)
        for source in version["competition_sources"]:
            if self.competitions_dir is None or not (self.competitions_dir / source).is_dir():
                invalid["invalidCompetitionSources"].append(source)
        for source in version["model_sources"]:
            if self.models_dir is None or not (self.models_dir / source).is_dir():
                invalid["invalidModelSources"].append(source)
        return invalid

    def _dataset_source(self, source: str) -> tuple[dict[str, Any], int | None]:
        parts = source.strip("/").split("/")
        if len(parts) == 4 and parts[2] == "versions":
            parts = [parts[0], parts[1], parts[3]]
        if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].isdigit()):
            raise _ApiError(400, f"dataset source {source!r} is not owner/slug or owner/slug/N")
        record = self._dataset(parts[0], parts[1])
        number = int(parts[2]) if len(parts) == 3 else None
        if number is not None and not any(v["number"] == number for v in record["versions"]):
            raise _ApiError(404, f"dataset source {source!r}: no such version")
        return record, number

    def _save_kernel(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        slug = str(body.get("slug") or "")
        with self.store.lock:
            if slug:
                owner, _, kslug = slug.partition("/") if "/" in slug else (user, "", slug)
                if not kslug or "/" in kslug:
                    raise _ApiError(400, f"kernel slug {slug!r} is not owner/kernel-slug")
                if owner.lower() != user.lower():
                    raise _ApiError(403, f"user {user} cannot push kernels owned by {owner}")
                key = f"{owner.lower()}/{kslug.lower()}"
                record = self.store.data["kernels"].get(key)
            elif body.get("id"):
                record = next((k for k in self.store.data["kernels"].values() if k["id"] == _int(body["id"])), None)
                if record is None:
                    raise _ApiError(404, f"kernel with id {body['id']} not found")
                key = f"{record['owner']}/{record['slug']}"
            else:
                raise _ApiError(400, "SaveKernel needs a slug (owner/kernel-slug) or an id")
            if record is None:
                record = {"id": self.store.new_id(), "owner": owner.lower(), "slug": kslug.lower(),
                          "title": body.get("newTitle") or kslug, "versions": []}
                self.store.data["kernels"][key] = record
            elif body.get("newTitle"):
                record["title"] = body["newTitle"]
            number = record["versions"][-1]["number"] + 1 if record["versions"] else 1
            quick_save = body.get("kernelExecutionType") == "QUICK_SAVE"
            version = {
                "number": number, "created": time.time(), "source": str(body.get("text") or ""),
                "language": str(body.get("language") or "python"),
                "kernel_type": str(body.get("kernelType") or "notebook"),
                "private": bool(body.get("isPrivate", True)), "enable_gpu": bool(body.get("enableGpu", False)),
                "enable_tpu": bool(body.get("enableTpu", False)),
                "enable_internet": bool(body.get("enableInternet", False)),
                "machine_shape": body.get("machineShape") or "", "docker_image": body.get("dockerImage") or "",
                "dataset_sources": list(body.get("datasetDataSources") or []),
                "kernel_sources": list(body.get("kernelDataSources") or []),
                "competition_sources": list(body.get("competitionDataSources") or []),
                "model_sources": list(body.get("modelDataSources") or []),
                "keywords": list(body.get("categoryIds") or []),
                "timeout_s": _int(body.get("sessionTimeoutSeconds"), 0) or None,
                "status": "NEW_SCRIPT" if quick_save else "QUEUED", "failure": "", "started": None, "finished": None,
                "has_output": False, "gpu_s": 0.0,
            }
            try:
                version["accelerator"] = _sessions.accelerator_for(version["machine_shape"] or None,
                                                                   enable_gpu=version["enable_gpu"],
                                                                   enable_tpu=version["enable_tpu"])
            except ValueError as exc:
                raise _ApiError(400, str(exc)) from None
            invalid = self._check_sources(version)
            record["versions"].append(version)
            folder = self._kernel_dir(record, number)
            folder.mkdir(parents=True, exist_ok=True)
            self.store.save()
        if not quick_save:
            self._enqueue(key, number)
        reply: dict[str, Any] = {"ref": key, "url": f"{_WEB_BASE}/code/{key}", "versionNumber": number,
                                 "error": "", "invalidTags": [], "kernelId": record["id"]}
        reply.update(invalid)
        return reply

    def _get_kernel_session_status(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._kernel(body.get("userName"), body.get("kernelSlug"))
            version = self._kernel_version(record, body.get("versionLabel"))
            reply = {"status": version["status"]}
            if version["failure"]:
                reply["failureMessage"] = version["failure"]
            return reply

    def _list_kernel_session_output(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._kernel(body.get("userName"), body.get("kernelSlug"))
            version = self._kernel_version(record, body.get("versionLabel"))
            folder = self._kernel_dir(record, version["number"])
            done = version["status"] in ("COMPLETE", "ERROR")
        files: list[dict[str, str]] = []
        output = folder / "output"
        if done and output.is_dir():
            for path in sorted(p for p in output.rglob("*") if p.is_file()):
                rel = path.relative_to(output).as_posix()
                files.append({"fileName": rel, "url": f"{self.url}/_sim/outputs/{record['owner']}/{record['slug']}/"
                                                      f"{version['number']}/{quote(rel)}"})
        page, token = self._page(files, body)
        log_path = folder / "log.txt"
        log = log_path.read_text(errors="replace") if done and log_path.is_file() else ""
        return {"files": page, "log": log, "nextPageToken": token}

    def _get_kernel(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._kernel(body.get("userName"), body.get("kernelSlug"))
            version = self._kernel_version(record, body.get("versionLabel"))
            return {"metadata": self._metadata_json(record, version),
                    "blob": {"source": version["source"], "language": version["language"],
                             "kernelType": version["kernel_type"], "slug": record["slug"]}}

    def _list_kernels(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        group = str(body.get("group") or "EVERYONE")
        wanted_user = str(body.get("user") or "").lower()
        search = str(body.get("search") or "").lower()
        dataset = str(body.get("dataset") or "").lower()
        with self.store.lock:
            selected = []
            for record in self.store.data["kernels"].values():
                latest = record["versions"][-1]
                mine = record["owner"] == user.lower()
                if (group == "PROFILE" and not mine) or (latest["private"] and not mine):
                    continue
                if wanted_user and record["owner"] != wanted_user:
                    continue
                if search and search not in record["slug"] and search not in record["title"].lower():
                    continue
                if dataset and dataset not in [s.lower() for s in latest["dataset_sources"]]:
                    continue
                selected.append(record)
            selected.sort(key=lambda r: r["versions"][-1]["created"], reverse=True)
            page, token = self._page(selected, body)
            return {"kernels": [self._metadata_json(r, r["versions"][-1]) for r in page], "nextPageToken": token}

    def _delete_kernel(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self._kernel(body.get("userName"), body.get("kernelSlug"))
            if record["owner"] != user.lower():
                raise _ApiError(403, f"user {user} cannot delete {record['owner']}/{record['slug']}")
            del self.store.data["kernels"][f"{record['owner']}/{record['slug']}"]
            self.store.save()
        shutil.rmtree(self.store.root / "kernels" / record["owner"] / record["slug"], ignore_errors=True)
        return {}

    def _get_quota(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        _, refresh = _week_bounds(time.time())
        return {"quotaRefreshTime": _iso(refresh),
                "gpuQuota": {"timeUsed": _duration(self.quota_used_s), "totalTimeAllowed": _duration(self.gpu_quota_s),
                             "timeReserved": "0s", "hasEverRun": bool(self.store.data["quota"])},
                "tpuQuota": {"timeUsed": "0s", "totalTimeAllowed": _duration(WEEKLY_TPU_QUOTA_S), "timeReserved": "0s"}}

    # Sessions in the sandbox

    def _enqueue(self, key: str, number: int) -> None:
        if self.sandbox is None:
            return
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="kaggle-sim-sessions", daemon=True)
            self._worker.start()
        self._jobs.put((key, number))

    def _recover_sessions(self) -> None:
        """After a restart: sessions cut off mid-run end in ERROR, queued ones run now."""
        queued: list[tuple[str, int]] = []
        with self.store.lock:
            for key, record in self.store.data["kernels"].items():
                for version in record["versions"]:
                    if version["status"] == "RUNNING":
                        version["status"] = "ERROR"
                        version["failure"] = "the session was lost when the offline Kaggle server stopped"
                    elif version["status"] == "QUEUED":
                        queued.append((key, version["number"]))
            self.store.save()
        for key, number in queued:
            self._enqueue(key, number)

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                jobs.task_done()
                return
            self._busy.set()
            try:
                self._run_session(*job)
            except Exception:  # a bug must not kill the worker and leave later pushes queued forever
                _log.exception("kernel session %s v%s failed inside the server", *job)
            finally:
                self._busy.clear()
                jobs.task_done()

    def _session_plan(self, key: str, record: dict[str, Any], version: dict[str, Any]) -> _sessions.SessionPlan:
        folder = self._kernel_dir(record, version["number"])
        notebook = _sessions.write_notebook(version["source"], kernel_type=version["kernel_type"],
                                            language=version["language"], folder=folder)
        mounts: list[tuple[Path, tuple[str, ...]]] = []
        for source in version["dataset_sources"]:
            try:
                with self.store.lock:
                    ds, number = self._dataset_source(source)
                path = self.dataset_version_dir(ds["owner"], ds["slug"], number)
            except _ApiError as exc:
                _log.warning("kernel %s: dataset source skipped: %s", key, exc.message)
                continue
            mounts.append((path, (f"datasets/{ds['owner']}/{ds['slug']}", ds["slug"])))
        for source in version["kernel_sources"]:
            parts = source.strip("/").split("/")
            with self.store.lock:
                kernel = (self.store.data["kernels"].get(f"{parts[0].lower()}/{parts[1].lower()}")
                          if len(parts) > 1 else None)
                # A stopped Batch run keeps what its working folder held at the kill, so its output mounts too.
                candidates = [v for v in (kernel or {}).get("versions", [])
                              if v["status"] in ("COMPLETE", "ERROR")
                              and (self._kernel_dir(kernel, v["number"]) / "output").is_dir()]
            if len(parts) > 2 and parts[2].lstrip("v").isdigit():
                candidates = [v for v in candidates if v["number"] == int(parts[2].lstrip("v"))]
            if kernel is None or not candidates:
                _log.warning("kernel %s: kernel source %s has no finished version with an output", key, source)
                continue
            output = self._kernel_dir(kernel, candidates[-1]["number"]) / "output"
            output.mkdir(parents=True, exist_ok=True)
            mounts.append((output, (f"notebooks/{kernel['owner']}/{kernel['slug']}", kernel["slug"])))
        for source in version["competition_sources"]:
            if self.competitions_dir is not None and (self.competitions_dir / source).is_dir():
                mounts.append((self.competitions_dir / source, (f"competitions/{source}", source)))
        for source in version["model_sources"]:
            if self.models_dir is not None and (self.models_dir / source).is_dir():
                mounts.append((self.models_dir / source, (f"models/{source}",)))
        accelerator = version["accelerator"]
        limit = float(version["timeout_s"] or _sessions.session_limit_s(accelerator))
        quota_left = max(0.0, self.gpu_quota_s - self.quota_used_s) if _sessions.uses_gpu_quota(accelerator) else None
        return _sessions.SessionPlan(
            notebook=notebook, mounts=tuple(mounts), internet=version["enable_internet"], accelerator=accelerator,
            time_limit_s=limit, clock_scale=self.clock_scale, quota_left_s=quota_left,
            api_url=self.url if version["enable_internet"] else None,
            secrets={envvars.USERNAME: self.username, envvars.KEY: self._key})

    def _run_session(self, key: str, number: int) -> None:
        with self.store.lock:
            record = self.store.data["kernels"].get(key)
            version = next((v for v in (record or {}).get("versions", []) if v["number"] == number), None)
            if record is None or version is None or version["status"] != "QUEUED":
                return
            version["status"] = "RUNNING"
            version["started"] = time.time()
            self.store.save()
        folder = self._kernel_dir(record, number)
        try:
            plan = self._session_plan(key, record, version)
            outcome = _sessions.run_plan(self.sandbox, plan)
        except KaggleKitError as exc:
            outcome = {"status": "ERROR", "failure": str(exc), "output_dir": None,
                       "log": _sessions.failure_log(str(exc)), "gpu_s": 0.0, "wall_s": 0.0}
        target = folder / "output"
        shutil.rmtree(target, ignore_errors=True)
        if outcome["output_dir"] and Path(outcome["output_dir"]).is_dir():
            shutil.copytree(outcome["output_dir"], target, symlinks=True)
        (folder / "log.txt").write_text(outcome["log"])
        self.record_gpu_use(outcome["gpu_s"], kernel=key)
        with self.store.lock:
            version["status"] = outcome["status"]
            version["failure"] = outcome["failure"]
            version["finished"] = time.time()
            version["gpu_s"] = outcome["gpu_s"]
            version["has_output"] = target.is_dir()
            self.store.save()

    def kernel_output_file(self, owner: str, slug: str, number: int, rel: str) -> Path | None:
        """The saved output file of a kernel version, or None when absent or outside its output folder."""
        with self.store.lock:
            try:
                record = self._kernel(owner, slug)
            except _ApiError:
                return None
            root = (self._kernel_dir(record, number) / "output").resolve()
        path = (root / rel).resolve()
        if root not in path.parents or not path.is_file():
            return None
        return path

    # HTTP dispatch (called by the handler)

    def _call_rpc(self, name: str, body: dict[str, Any], user: str) -> Any:
        handler = self._rpcs.get(name)
        if handler is None:
            raise _ApiError(404, f"{name} is not served by the offline Kaggle stand-in (kaggle_kit.sim.server)")
        return handler(body, user)


# Command line: `kaggle-kit sim serve`

def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "kaggle-kit" / "sim"


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``kaggle-kit sim serve``."""
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--state", type=Path, default=None,
                        help=f"folder for datasets, kernels and quota (default {_default_state_dir()})")
    parser.add_argument("--user", default=None, help="the only user (default $KAGGLE_USERNAME or 'sim-user')")
    parser.add_argument("--key", default=None, help="its API key (default $KAGGLE_KEY, else a random one, printed)")
    parser.add_argument("--token", default=None, help="also accept this access token as Bearer (KAGGLE_API_TOKEN)")
    parser.add_argument("--processing-seconds", type=float, default=0.0,
                        help="how long a new dataset version processes before READY (default 0)")
    parser.add_argument("--competitions", type=Path, default=None,
                        help="folder of <slug>/ folders attached as competition sources")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder of <owner>/<model>/<framework>/<variation>/<N>/ attached as model sources")
    parser.add_argument("--gpu-quota-hours", type=float, default=WEEKLY_GPU_QUOTA_S / 3600,
                        help="weekly GPU quota (default 30)")
    parser.add_argument("--clock-scale", type=float, default=1.0,
                        help="simulated seconds per real second in kernel sessions (default 1)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="store pushed kernels without running them (their status stays QUEUED)")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND[,count=N][,match=TEXT][,...]",
                        help=f"arm a fault at start: KIND in {', '.join(FAULT_KINDS)}; options count=N, match=TEXT "
                             "(substring of the path), retry_after=S, delay=S; repeatable")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")


def _make_sandbox(state: Path) -> Any:
    try:
        from kaggle_kit.sim.sandbox import Sandbox
    except ImportError as exc:
        print(f"# note: the session sandbox is unavailable ({exc}); pushed kernels stay QUEUED", flush=True)
        return None
    return Sandbox(state / "sandbox")


def serve_command(args: argparse.Namespace) -> int:
    """``kaggle-kit sim serve``: print the URL first, then serve until SIGINT or SIGTERM."""
    faults = [parse_fault_spec(spec) for spec in args.fault]
    state = args.state or _default_state_dir()
    user = args.user or os.environ.get(envvars.USERNAME) or "sim-user"
    key = args.key or os.environ.get(envvars.KEY) or _secrets.token_hex(16)
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    sandbox = None if args.no_sandbox else _make_sandbox(Path(state))
    server = SimServer(state, username=user, key=key, token=args.token, port=args.port,
                       processing_seconds=args.processing_seconds, sandbox=sandbox,
                       competitions_dir=args.competitions, models_dir=args.models,
                       gpu_quota_s=args.gpu_quota_hours * 3600, clock_scale=args.clock_scale)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        for fault in faults:
            server.inject_fault(fault.kind, count=fault.count, match=fault.match, retry_after=fault.retry_after,
                                delay=fault.delay)
        print(server.url, flush=True)
        print(f"# offline Kaggle for user {user}, state in {Path(state).resolve()}", flush=True)
        print("# point the kaggle CLI (in another shell) at it with:", flush=True)
        for name, value in ((envvars.API_ENVIRONMENT, "LOCALHOST"), ("HTTP_PROXY", server.url),
                            (envvars.USERNAME, user), (envvars.KEY, key), (envvars.KIT_API_ENDPOINT, server.url)):
            print(f"export {name}={value}", flush=True)
        print("unset NO_PROXY no_proxy", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
