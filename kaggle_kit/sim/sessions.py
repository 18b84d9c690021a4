"""Kernel sessions: how a pushed kernel version becomes a sandbox session, the queue that runs them one at a time,
and how a session's result is read back into the kernel's version.

This is the only place the stand-in server touches :mod:`kaggle_kit.sim.sandbox`; it uses just its documented
interface (``SessionSpec``, ``InputMount``, ``Sandbox.run`` and the fields of ``SessionResult``).
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kaggle_kit.errors import KaggleKitError, SandboxError
from kaggle_kit.kaggle_platform import SESSION_LIMIT_S, TPU_SESSION_LIMIT_S, burn_rate, is_tpu, machine_for
from kaggle_kit.sim.datasets import Datasets
from kaggle_kit.sim.quota import Quota
from kaggle_kit.sim.rpc import ApiError
from kaggle_kit.sim.state import StateStore

_log = logging.getLogger(__name__)


def accelerator_for(machine_shape: str | None, *, enable_gpu: bool, enable_tpu: bool) -> str:
    """The simulated accelerator for a push's machine shape and GPU/TPU flags ("none" without either).

    Raises:
        ValueError: an unknown machine shape, naming Kaggle's shapes.
    """
    return machine_for(machine_shape, enable_gpu=enable_gpu, enable_tpu=enable_tpu).accelerator


def uses_gpu_quota(accelerator: str) -> bool:
    return burn_rate(accelerator) > 0


def session_limit_s(accelerator: str) -> float:
    return TPU_SESSION_LIMIT_S if is_tpu(accelerator) else SESSION_LIMIT_S


@dataclass(frozen=True)
class SessionPlan:
    """Everything the sandbox needs for one kernel version, independent of the sandbox's own types."""

    notebook: Path
    mounts: tuple[tuple[Path, str, str], ...]  # (folder, kind, ref): "dataset" "owner/slug", "competition" "slug", ...
    input_layout: str  # "current" or "legacy": where the sandbox mounts the inputs
    kernel_type: str  # "notebook" or "script"
    internet: bool
    accelerator: str
    time_limit_s: float
    clock_scale: float
    quota_left_s: float | None
    api_url: str | None
    secrets: dict[str, str]


def write_notebook(source: str, *, kernel_type: str, language: str, folder: Path) -> Path:
    """Write the pushed source as a notebook the sandbox can run (a script becomes a one-cell notebook)."""
    import nbformat

    if language.lower() not in ("python", ""):
        raise SandboxError(f"kernel language {language!r} cannot run offline: the sandbox runs Python notebooks only")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "notebook.ipynb"
    if kernel_type == "notebook":
        nb = nbformat.reads(source, as_version=4)
    else:
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_code_cell(source))
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    nbformat.write(nb, str(path))
    return path


def run_plan(sandbox: Any, plan: SessionPlan) -> dict[str, Any]:
    """Run ``plan`` as a Batch session; returns the outcome as plain data for the server's state.

    Keys: status ("COMPLETE" or "ERROR"), failure (message or ""), output_dir (str or None), log (text),
    gpu_s, wall_s.
    """
    from kaggle_kit.sim.sandbox import InputMount, SessionSpec

    spec = SessionSpec(
        plan.notebook,
        run_type="Batch",
        mounts=tuple(InputMount(source, kind, ref) for source, kind, ref in plan.mounts),
        input_layout=plan.input_layout,
        kernel_type=plan.kernel_type,
        internet=plan.internet,
        accelerator=plan.accelerator,
        time_limit_s=plan.time_limit_s,
        clock_scale=plan.clock_scale,
        quota_left_s=plan.quota_left_s,
        api_url=plan.api_url,
        secrets=dict(plan.secrets),
    )
    result = sandbox.run(spec)
    status = str(result.status)
    failure = result.failure_message or ""
    if status == "KILLED":
        reason = {"time": "the session ran past its time limit",
                  "quota": "the weekly GPU quota ran out"}.get(result.killed_by or "", "the session was killed")
        failure = failure or f"Kernel stopped: {reason}"
        status = "ERROR"
    elif status != "COMPLETE":
        status = "ERROR"
    log = ""
    if result.log_path and Path(result.log_path).is_file():
        log = Path(result.log_path).read_text(errors="replace")
    return {
        "status": status,
        "failure": failure,
        "output_dir": str(result.output_dir) if result.output_dir else None,
        "log": log,
        "gpu_s": float(result.gpu_s or 0.0),
        "wall_s": float(result.wall_s or 0.0),
    }


def failure_log(message: str) -> str:
    """A session log in Kaggle's shape (a JSON list of stream records) holding one error line."""
    return json.dumps([{"stream_name": "stderr", "time": 0.0, "data": message + "\n"}])


class SessionRunner:
    """Runs queued kernel versions in the sandbox, one at a time in a daemon thread, and records how each ended.

    Without a sandbox nothing runs: a pushed version stays QUEUED. Each session gets the kernel's sources mounted
    (datasets, finished kernels' outputs, competitions from ``competitions_dir``, models from ``models_dir``), the
    weekly GPU quota left, and, with the internet on, the server's URL and the user's credentials as secrets.
    """

    def __init__(self, store: StateStore, datasets: Datasets, quota: Quota, *, sandbox: Any,
                 base_url: Callable[[], str], secrets: dict[str, str], competitions_dir: Path | None = None,
                 models_dir: Path | None = None, clock_scale: float = 1.0, input_layout: str = "current") -> None:
        self.store = store
        self.datasets = datasets
        self.quota = quota
        self.sandbox = sandbox
        self.base_url = base_url
        self.competitions_dir = competitions_dir
        self.models_dir = models_dir
        self.clock_scale = float(clock_scale)
        self.input_layout = input_layout
        self._secrets = dict(secrets)
        self._jobs: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._busy = threading.Event()

    def enqueue(self, key: str, number: int) -> None:
        """Queue version ``number`` of kernel ``key`` (``owner/slug``) to run."""
        if self.sandbox is None:
            return
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="kaggle-sim-sessions", daemon=True)
            self._worker.start()
        self._jobs.put((key, number))

    def recover(self) -> None:
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
            self.enqueue(key, number)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no session is queued or running; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._jobs.unfinished_tasks == 0 and not self._busy.is_set():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop taking jobs; a session still running is left to finish in its daemon thread."""
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(timeout=1)
        self._worker = None
        self._jobs = queue.Queue()

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                jobs.task_done()
                return
            self._busy.set()
            try:
                self._run(*job)
            except Exception:  # a bug must not kill the worker and leave later pushes queued forever
                _log.exception("kernel session %s v%s failed inside the server", *job)
            finally:
                self._busy.clear()
                jobs.task_done()

    def _plan(self, key: str, record: dict[str, Any], version: dict[str, Any]) -> SessionPlan:
        folder = self.store.kernel_dir(record["owner"], record["slug"], version["number"])
        notebook = write_notebook(version["source"], kernel_type=version["kernel_type"],
                                  language=version["language"], folder=folder)
        mounts: list[tuple[Path, str, str]] = []
        for source in version["dataset_sources"]:
            try:
                ds, number = self.datasets.resolve_source(source)
                path = self.datasets.version_dir(ds["owner"], ds["slug"], number)
            except ApiError as exc:
                _log.warning("kernel %s: dataset source skipped: %s", key, exc.message)
                continue
            mounts.append((path, "dataset", f"{ds['owner']}/{ds['slug']}"))
        for source in version["kernel_sources"]:
            output = self._kernel_output(source)
            if output is None:
                _log.warning("kernel %s: kernel source %s has no finished version with an output", key, source)
                continue
            mounts.append(output)
        for source in version["competition_sources"]:
            if self.competitions_dir is not None and (self.competitions_dir / source).is_dir():
                mounts.append((self.competitions_dir / source, "competition", source))
        for source in version["model_sources"]:
            if self.models_dir is not None and (self.models_dir / source).is_dir():
                mounts.append((self.models_dir / source, "model", source))
        accelerator = version["accelerator"]
        limit = float(version["timeout_s"] or session_limit_s(accelerator))
        quota_left = self.quota.left_s if uses_gpu_quota(accelerator) else None
        return SessionPlan(
            notebook=notebook, mounts=tuple(mounts), input_layout=self.input_layout,
            kernel_type="script" if version["kernel_type"] == "script" else "notebook",
            internet=version["enable_internet"], accelerator=accelerator,
            time_limit_s=limit, clock_scale=self.clock_scale, quota_left_s=quota_left,
            api_url=self.base_url() if version["enable_internet"] else None, secrets=dict(self._secrets))

    def _kernel_output(self, source: str) -> tuple[Path, str, str] | None:
        """The output folder a kernel source (``owner/slug`` or ``owner/slug/vN``) mounts, or None."""
        parts = source.strip("/").split("/")
        with self.store.lock:
            kernel = (self.store.data["kernels"].get(f"{parts[0].lower()}/{parts[1].lower()}")
                      if len(parts) > 1 else None)
            if kernel is None:
                return None
            # A stopped Batch run keeps what its working folder held at the kill, so its output mounts too.
            candidates = [v for v in kernel["versions"] if v["status"] in ("COMPLETE", "ERROR")
                          and (self.store.kernel_dir(kernel["owner"], kernel["slug"], v["number"]) / "output").is_dir()]
        if len(parts) > 2 and parts[2].lstrip("v").isdigit():
            candidates = [v for v in candidates if v["number"] == int(parts[2].lstrip("v"))]
        if not candidates:
            return None
        output = self.store.kernel_dir(kernel["owner"], kernel["slug"], candidates[-1]["number"]) / "output"
        output.mkdir(parents=True, exist_ok=True)
        return output, "notebook", f"{kernel['owner']}/{kernel['slug']}"

    def _run(self, key: str, number: int) -> None:
        with self.store.lock:
            record = self.store.data["kernels"].get(key)
            version = next((v for v in (record or {}).get("versions", []) if v["number"] == number), None)
            if record is None or version is None or version["status"] != "QUEUED":
                return
            version["status"] = "RUNNING"
            version["started"] = time.time()
            self.store.save()
        folder = self.store.kernel_dir(record["owner"], record["slug"], number)
        try:
            plan = self._plan(key, record, version)
            outcome = run_plan(self.sandbox, plan)
        except KaggleKitError as exc:
            outcome = {"status": "ERROR", "failure": str(exc), "output_dir": None,
                       "log": failure_log(str(exc)), "gpu_s": 0.0, "wall_s": 0.0}
        target = folder / "output"
        shutil.rmtree(target, ignore_errors=True)
        if outcome["output_dir"] and Path(outcome["output_dir"]).is_dir():
            shutil.copytree(outcome["output_dir"], target, symlinks=True)
        (folder / "log.txt").write_text(outcome["log"])
        self.quota.record_gpu_use(outcome["gpu_s"], kernel=key)
        with self.store.lock:
            version["status"] = outcome["status"]
            version["failure"] = outcome["failure"]
            version["finished"] = time.time()
            version["gpu_s"] = outcome["gpu_s"]
            version["has_output"] = target.is_dir()
            self.store.save()
