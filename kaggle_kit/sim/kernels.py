"""The kernel area: ``kernels.KernelsApiService`` (push, session status and output, read, list, delete).

A pushed version is queued with the session runner (a ``QUICK_SAVE`` is stored without running); its source,
output and log live in the state's kernel folder.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from kaggle_kit.sim.datasets import Datasets
from kaggle_kit.sim.rpc import OUTPUT_PATH, WEB_BASE, ApiError, Body, iso_time, page, rpc, to_int, version_number
from kaggle_kit.sim.sessions import SessionRunner, accelerator_for
from kaggle_kit.sim.state import StateStore


class Kernels:
    """Kernels in the state; their sources are checked against the dataset area and the folders ``sessions`` mounts
    from, their runs queued with ``sessions``."""

    def __init__(self, store: StateStore, datasets: Datasets, sessions: SessionRunner, *,
                 base_url: Callable[[], str]) -> None:
        self.store = store
        self.datasets = datasets
        self.sessions = sessions
        self.base_url = base_url

    @rpc("kernels.KernelsApiService/SaveKernel")
    def save_kernel(self, body: Body, user: str) -> dict[str, Any]:
        slug = str(body.get("slug") or "")
        with self.store.lock:
            if slug:
                owner, _, kslug = slug.partition("/") if "/" in slug else (user, "", slug)
                if not kslug or "/" in kslug:
                    raise ApiError(400, f"kernel slug {slug!r} is not owner/kernel-slug")
                if owner.lower() != user.lower():
                    raise ApiError(403, f"user {user} cannot push kernels owned by {owner}")
                key = f"{owner.lower()}/{kslug.lower()}"
                record = self.store.data["kernels"].get(key)
            elif body.get("id"):
                record = next((k for k in self.store.data["kernels"].values() if k["id"] == to_int(body["id"])), None)
                if record is None:
                    raise ApiError(404, f"kernel with id {body['id']} not found")
                key = f"{record['owner']}/{record['slug']}"
            else:
                raise ApiError(400, "SaveKernel needs a slug (owner/kernel-slug) or an id")
            if record is None:
                record = {"id": self.store.new_id(), "owner": owner.lower(), "slug": kslug.lower(),
                          "title": body.get("newTitle") or kslug, "versions": []}
                self.store.data["kernels"][key] = record
            elif body.get("newTitle"):
                record["title"] = body["newTitle"]
            number = record["versions"][-1]["number"] + 1 if record["versions"] else 1
            quick_save = body.get("kernelExecutionType") == "QUICK_SAVE"
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
                "has_output": False, "gpu_s": 0.0,
            }
            try:
                version["accelerator"] = accelerator_for(version["machine_shape"] or None,
                                                         enable_gpu=version["enable_gpu"],
                                                         enable_tpu=version["enable_tpu"])
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
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
            record = self.find(body.get("userName"), body.get("kernelSlug"))
            version = self.version(record, body.get("versionLabel"))
            reply = {"status": version["status"]}
            if version["failure"]:
                reply["failureMessage"] = version["failure"]
            return reply

    @rpc("kernels.KernelsApiService/ListKernelSessionOutput")
    def list_kernel_session_output(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("userName"), body.get("kernelSlug"))
            version = self.version(record, body.get("versionLabel"))
            folder = self._version_dir(record, version["number"])
            done = version["status"] in ("COMPLETE", "ERROR")
        files: list[dict[str, str]] = []
        output = folder / "output"
        if done and output.is_dir():
            base = f"{self.base_url()}{OUTPUT_PATH}{record['owner']}/{record['slug']}/{version['number']}"
            for path in sorted(p for p in output.rglob("*") if p.is_file()):
                rel = path.relative_to(output).as_posix()
                files.append({"fileName": rel, "url": f"{base}/{quote(rel)}"})
        chunk, token = page(files, body)
        log_path = folder / "log.txt"
        log = log_path.read_text(errors="replace") if done and log_path.is_file() else ""
        return {"files": chunk, "log": log, "nextPageToken": token}

    @rpc("kernels.KernelsApiService/GetKernel")
    def get_kernel(self, body: Body, user: str) -> dict[str, Any]:
        with self.store.lock:
            record = self.find(body.get("userName"), body.get("kernelSlug"))
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
            record = self.find(body.get("userName"), body.get("kernelSlug"))
            if record["owner"] != user.lower():
                raise ApiError(403, f"user {user} cannot delete {record['owner']}/{record['slug']}")
            del self.store.data["kernels"][f"{record['owner']}/{record['slug']}"]
            self.store.save()
        shutil.rmtree(self.store.kernel_dir(record["owner"], record["slug"]), ignore_errors=True)
        return {}

    def find(self, owner: Any, slug: Any) -> dict[str, Any]:
        """The record of kernel ``owner/slug``; ApiError 400 without both, 404 when there is none."""
        if not owner or not slug:
            raise ApiError(400, "userName and kernelSlug are required")
        record = self.store.data["kernels"].get(f"{str(owner).lower()}/{str(slug).lower()}")
        if record is None:
            raise ApiError(404, f"kernel {owner}/{slug} not found")
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
            except ApiError:
                return None
            root = (self._version_dir(record, number) / "output").resolve()
        path = (root / rel).resolve()
        if root not in path.parents or not path.is_file():
            return None
        return path

    def _version_dir(self, record: dict[str, Any], number: int) -> Path:
        return self.store.kernel_dir(record["owner"], record["slug"], number)

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
        invalid: dict[str, list[str]] = {"invalidDatasetSources": [], "invalidKernelSources": [],
                                         "invalidCompetitionSources": [], "invalidModelSources": []}
        for source in version["dataset_sources"]:
            try:
                self.datasets.resolve_source(source)
            except ApiError:
                invalid["invalidDatasetSources"].append(source)
        for source in version["kernel_sources"]:
            owner, _, rest = source.partition("/")
            if f"{owner.lower()}/{rest.split('/')[0].lower()}" not in self.store.data["kernels"]:
                invalid["invalidKernelSources"].append(source)
        competitions, models = self.sessions.competitions_dir, self.sessions.models_dir
        for source in version["competition_sources"]:
            if competitions is None or not (competitions / source).is_dir():
                invalid["invalidCompetitionSources"].append(source)
        for source in version["model_sources"]:
            if models is None or not (models / source).is_dir():
                invalid["invalidModelSources"].append(source)
        return invalid
