"""The kernel area: ``kernels.KernelsApiService`` (push, session status and output, read, list, delete).

A pushed version is queued with the session runner (a ``QUICK_SAVE`` is stored without running); its source,
output and log live in the state's kernel folder.

As on Kaggle: a kernel that does not exist or is not the caller's answers 403 (``Permission 'kernels.get' was
denied``), never 404; a push that cannot run (a slug or title Kaggle refuses, an unknown machine shape, one GPU
session too many) is refused in the reply's ``error`` with no version created; invalid sources are listed in the
reply and left out of the version, which still runs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

from kaggle_kit.errors import HandleError
from kaggle_kit.handles import KernelHandle, parse_dataset, parse_kernel
from kaggle_kit.sim.datasets import Datasets
from kaggle_kit.sim.rpc import (OUTPUT_PATH, WEB_BASE, ApiError, Body, UrlSigner, iso_time, page, permission_denied,
                                rpc, to_int, version_number)
from kaggle_kit.sim.sessions import (TERMINAL_STATUSES, SessionRunner, accelerator_for, competition_dir, model_dir,
                                     uses_gpu_quota)
from kaggle_kit.sim.state import StateStore, kernel_handle

# A kernel title's shortest length, as the client checks it.
_TITLE_MIN = 5


class Kernels:
    """Kernels in the state; their sources are checked against the dataset area and the folders ``sessions`` mounts
    from, their runs queued with ``sessions``."""

    def __init__(self, store: StateStore, datasets: Datasets, sessions: SessionRunner, *,
                 base_url: Callable[[], str], signer: UrlSigner) -> None:
        self.store = store
        self.datasets = datasets
        self.sessions = sessions
        self.base_url = base_url
        self.signer = signer

    @rpc("kernels.KernelsApiService/SaveKernel")
    def save_kernel(self, body: Body, user: str) -> dict[str, Any]:
        slug = str(body.get("slug") or "")
        title = body.get("newTitle")
        if title is not None and (not isinstance(title, str) or len(title.strip()) < _TITLE_MIN):
            return {"error": "Title must be at least five characters"}
        with self.store.lock:
            if slug:
                try:
                    handle = parse_kernel(slug if "/" in slug else f"{user}/{slug}", what="kernel id",
                                          versioned=False)
                except HandleError as exc:
                    return {"error": str(exc)}
                owner, kslug = handle.owner, handle.slug
                if owner != user.lower():
                    raise ApiError(403, f"user {user} cannot push kernels owned by {owner}")
                key = handle.ref
                record = self.store.data["kernels"].get(key)
            elif body.get("id"):
                record = next((k for k in self.store.data["kernels"].values() if k["id"] == to_int(body["id"])), None)
                if record is None or record["owner"] != user.lower():
                    raise permission_denied()
                key = f"{record['owner']}/{record['slug']}"
            else:
                raise ApiError(400, "SaveKernel needs a slug (owner/kernel-slug) or an id")
            quick_save = body.get("kernelExecutionType") == "QUICK_SAVE"
            try:
                accelerator = accelerator_for(body.get("machineShape") or None,
                                              enable_gpu=bool(body.get("enableGpu", False)),
                                              enable_tpu=bool(body.get("enableTpu", False)))
            except ValueError as exc:
                return {"error": str(exc)}
            limit = self.sessions.settings.max_gpu_sessions
            if not quick_save and uses_gpu_quota(accelerator) and self.sessions.active_gpu_sessions() >= limit:
                return {"error": f"Maximum batch GPU session count of {limit} reached."}
            if record is None:
                record = {"id": self.store.new_id(), "owner": owner, "slug": kslug,
                          "title": title or kslug, "versions": []}
                self.store.data["kernels"][key] = record
            elif title:
                record["title"] = title
            number = record["versions"][-1]["number"] + 1 if record["versions"] else 1
            version: dict[str, Any] = {
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
                "timeout_s": to_int(body.get("sessionTimeoutSeconds"), 0) or None,
                "status": "NEW_SCRIPT" if quick_save else "QUEUED", "failure": "", "started": None, "finished": None,
                "has_output": False, "gpu_s": 0.0, "accelerator": accelerator,
            }
            invalid = self._check_sources(version)
            record["versions"].append(version)
            self._version_dir(record, number).mkdir(parents=True, exist_ok=True)
            self.store.save()
        if not quick_save:
            self.sessions.enqueue(key, number)
        reply: dict[str, Any] = {"ref": key, "url": f"{WEB_BASE}/code/{key}", "versionNumber": number,
                                 "error": "", "invalidTags": [], "kernelId": record["id"]}
        reply.update(invalid)
        return reply

    @rpc("kernels.KernelsApiService/GetKernelSessionStatus")
    def get_kernel_session_status(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("userName"), body.get("kernelSlug"), user)
            version = self.version(record, body.get("versionLabel"))
            reply = {"status": version["status"]}
            if version["failure"]:
                reply["failureMessage"] = version["failure"]
            return reply

    @rpc("kernels.KernelsApiService/ListKernelSessionOutput")
    def list_kernel_session_output(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("userName"), body.get("kernelSlug"), user)
            version = self.version(record, body.get("versionLabel"))
            folder = self._version_dir(record, version["number"])
            done = version["status"] in TERMINAL_STATUSES
        files: list[dict[str, str]] = []
        output = folder / "output"
        if done and output.is_dir():
            prefix = f"{OUTPUT_PATH}{record['owner']}/{record['slug']}/{version['number']}"
            for path in sorted(p for p in output.rglob("*") if p.is_file()):
                rel = path.relative_to(output).as_posix()
                files.append({"fileName": rel, "url": self.signer.url(self.base_url(), f"{prefix}/{rel}")})
        chunk, token = page(files, body)
        log_path = folder / "log.txt"
        log = log_path.read_text(errors="replace") if done and log_path.is_file() else ""
        return {"files": chunk, "log": log, "nextPageToken": token}

    @rpc("kernels.KernelsApiService/GetKernel")
    def get_kernel(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("userName"), body.get("kernelSlug"), user)
            version = self.version(record, body.get("versionLabel"))
            return {"metadata": self._metadata_json(record, version),
                    "blob": {"source": version["source"], "language": version["language"],
                             "kernelType": version["kernel_type"], "slug": record["slug"]}}

    @rpc("kernels.KernelsApiService/ListKernels")
    def list_kernels(self, body: Body, user: str) -> dict[str, Any]:
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
            chunk, token = page(selected, body)
            return {"kernels": [self._metadata_json(r, r["versions"][-1]) for r in chunk], "nextPageToken": token}

    @rpc("kernels.KernelsApiService/DeleteKernel")
    def delete_kernel(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("userName"), body.get("kernelSlug"), user)
            if record["owner"] != user.lower():
                raise ApiError(403, f"user {user} cannot delete {record['owner']}/{record['slug']}")
            folder = self.store.kernel_dir(kernel_handle(record["owner"], record["slug"]))
            del self.store.data["kernels"][f"{record['owner']}/{record['slug']}"]
            self.store.save()
        shutil.rmtree(folder, ignore_errors=True)
        return {}

    def find(self, owner: Any, slug: Any, user: str | None = None) -> dict[str, Any]:
        """The record of kernel ``owner/slug``.

        ApiError 400 without both or for a handle Kaggle refuses; 403 (Kaggle's "Permission 'kernels.get' was
        denied") when there is none, or when it is private and ``user`` is not its owner.
        """
        if not owner or not slug:
            raise ApiError(400, "userName and kernelSlug are required")
        try:
            handle = parse_kernel(f"{owner}/{slug}", versioned=False)
        except HandleError as exc:
            raise ApiError(400, str(exc)) from None
        record = self.store.data["kernels"].get(handle.ref)
        if record is None:
            raise permission_denied()
        if user is not None and record["owner"] != user.lower() and record["versions"][-1]["private"]:
            raise permission_denied()
        return record

    def version(self, record: dict[str, Any], label: Any) -> dict[str, Any]:
        """The version a label such as ``v3`` names, or the newest when the label is empty."""
        number = version_number(label)
        if number is None:
            return record["versions"][-1]
        for version in record["versions"]:
            if version["number"] == number:
                return version
        raise ApiError(404, f"kernel {record['owner']}/{record['slug']} has no version {number}")

    def output_file(self, owner: str, slug: str, number: int, rel: str) -> Path | None:
        """The saved output file of a kernel version, or None when absent or outside its output folder."""
        with self.store.lock:
            try:
                record = self.find(owner, slug)
                root = (self._version_dir(record, number) / "output").resolve()
            except (ApiError, ValueError):
                return None
        path = (root / rel).resolve()
        if root not in path.parents or not path.is_file():
            return None
        return path

    def version_status(self, owner: str, slug: str, number: int | None) -> str | None:
        """The status of version ``number`` (None: the newest) of kernel ``owner/slug``, or None when there is none."""
        with self.store.lock:
            try:
                return str(self.version(self.find(owner, slug), number)["status"])
            except ApiError:
                return None

    def latest_output_file(self, owner: str, slug: str, number: int, rel: str) -> Path | None:
        """Like :meth:`output_file`, with ``number`` 0 for the newest version."""
        if not number:
            with self.store.lock:
                try:
                    number = int(self.find(owner, slug)["versions"][-1]["number"])
                except ApiError:
                    return None
        return self.output_file(owner, slug, number, rel)

    def _version_dir(self, record: dict[str, Any], number: int) -> Path:
        return self.store.kernel_dir(kernel_handle(record["owner"], record["slug"]), number)

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
            meta["lastRunTime"] = iso_time(version.get("finished") or version.get("started"))
        return meta

    def _check_sources(self, version: dict[str, Any]) -> dict[str, list[str]]:
        """List the invalid sources of a new version and leave them out of it, as Kaggle does."""
        checks: dict[str, tuple[str, Callable[[str], bool]]] = {
            "dataset_sources": ("invalidDatasetSources", self._dataset_source_ok),
            "kernel_sources": ("invalidKernelSources", self._kernel_source_ok),
            "competition_sources": ("invalidCompetitionSources",
                                    lambda s: competition_dir(self.sessions.competitions_dir, s) is not None),
            "model_sources": ("invalidModelSources", lambda s: model_dir(self.sessions.models_dir, s) is not None),
        }
        invalid: dict[str, list[str]] = {}
        for field, (reply_name, ok) in checks.items():
            sources = [str(s) for s in version[field]]
            invalid[reply_name] = [s for s in sources if not ok(s)]
            version[field] = [s for s in sources if s not in invalid[reply_name]]
        return invalid

    def _dataset_source_ok(self, source: str) -> bool:
        try:
            parse_dataset(source, what="dataset source")
            self.datasets.resolve_source(source)
        except (HandleError, ApiError):
            return False
        return True

    def _kernel_source_ok(self, source: str) -> bool:
        try:
            handle: KernelHandle = parse_kernel(source, what="kernel source")
        except HandleError:
            return False
        return handle.ref in self.store.data["kernels"]
