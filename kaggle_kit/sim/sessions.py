"""Kernel sessions: how a pushed kernel version becomes a sandbox session, the queue that runs them one at a time,
and how a session's result is read back into the kernel's version.

A session ends as Kaggle reports it: COMPLETE; ERROR (a cell raised, the kernel died, or anything else went wrong,
the reason in its log); or, stopped from outside at its time limit or when the quota ran out, CANCEL_ACKNOWLEDGED
with the output written until then kept. Kaggle gives no failure message for a stop, so neither does the stand-in.

This is the only place the stand-in server touches :mod:`kaggle_kit.sim.sandbox`; it uses just its documented
interface (``SessionSpec``, ``InputMount``, ``Sandbox.run`` and the fields of ``SessionResult``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kaggle_kit.errors import HandleError, SandboxError
from kaggle_kit.handles import parse_competition, parse_kernel, parse_model
from kaggle_kit.kaggle_platform import SESSION_LIMIT_S, TPU_SESSION_LIMIT_S, burn_rate, is_tpu, machine_for
from kaggle_kit.sim.datasets import Datasets
from kaggle_kit.sim.quota import Quota
from kaggle_kit.sim.rpc import ApiError
from kaggle_kit.sim.settings import SimSettings
from kaggle_kit.sim.state import StateStore, kernel_handle

_log = logging.getLogger(__name__)

# How a session ends (Kaggle's KernelWorkerStatus names); a version in one of these has its output and log.
STOPPED = "CANCEL_ACKNOWLEDGED"
TERMINAL_STATUSES = ("COMPLETE", "ERROR", STOPPED)
ACTIVE_STATUSES = ("QUEUED", "RUNNING")


def accelerator_for(machine_shape: str | None, *, enable_gpu: bool, enable_tpu: bool) -> str:
    """The simulated accelerator for a push's machine shape and GPU/TPU flags ("none" without either).

    Raises:
        ValueError: an unknown machine shape, naming Kaggle's shapes.
    """
    return machine_for(machine_shape, enable_gpu=enable_gpu, enable_tpu=enable_tpu).accelerator


def uses_gpu_quota(accelerator: str) -> bool:
    return burn_rate(accelerator) > 0


def competition_dir(root: Path | None, source: str) -> Path | None:
    """The folder of competition source ``source`` under ``root``, or None when it is not a valid slug or absent."""
    try:
        slug = parse_competition(source)
    except HandleError:
        return None
    folder = root / slug if root is not None else None
    return folder if folder is not None and folder.is_dir() else None


def model_dir(root: Path | None, source: str) -> Path | None:
    """The folder of model source ``owner/model/framework/variation/N`` under ``root``, or None."""
    try:
        model = parse_model(source)
    except HandleError:
        return None
    if root is None or model.version is None:
        return None
    folder = root / model.owner / model.model / model.framework / model.variation / str(model.version)
    return folder if folder.is_dir() else None


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
    kill_at_step: int | None = None  # for tests: stopped once its training reaches this step


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

    Keys: status ("COMPLETE", "ERROR" or "CANCEL_ACKNOWLEDGED"), failure (message or ""), stopped_by ("time",
    "quota", "step" or None), output_dir (str or None), log (text), gpu_s, wall_s.
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
        kill_at_step=plan.kill_at_step,
    )
    result = sandbox.run(spec)
    status = str(result.status)
    failure = result.failure_message or ""
    stopped_by = None
    if status == "KILLED":
        status, failure, stopped_by = STOPPED, "", result.killed_by or "time"
    elif status != "COMPLETE":
        status = "ERROR"
    log = ""
    if result.log_path and Path(result.log_path).is_file():
        log = Path(result.log_path).read_text(errors="replace")
    return {
        "status": status,
        "failure": failure,
        "stopped_by": stopped_by,
        "output_dir": str(result.output_dir) if result.output_dir else None,
        "log": log,
        "gpu_s": float(result.gpu_s or 0.0),
        "wall_s": float(result.wall_s or 0.0),
    }


def failure_log(message: str, log: str = "") -> str:
    """A session log in Kaggle's shape (a JSON list of stream records): ``log`` with one error line added."""
    records: list[Any] = []
    if log.strip():
        try:
            parsed = json.loads(log)
        except ValueError:
            parsed = [{"stream_name": "stdout", "time": 0.0, "data": log}]
        records = parsed if isinstance(parsed, list) else [parsed]
    last = max((float(r.get("time", 0.0)) for r in records if isinstance(r, dict)
                and isinstance(r.get("time"), (int, float))), default=0.0)
    records.append({"stream_name": "stderr", "time": last, "data": message + "\n"})
    return json.dumps(records)


def folder_bytes(folder: Path) -> int:
    """Bytes held by the files under ``folder`` (links not followed)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


class SessionRunner:
    """Runs queued kernel versions in the sandbox, one at a time in a daemon thread, and records how each ended.

    Without a sandbox nothing runs: a pushed version stays QUEUED. Each session gets the kernel's sources mounted
    (datasets, finished kernels' outputs, competitions from ``competitions_dir``, models from ``models_dir``), the
    weekly GPU quota left, and, with the internet on, the server's URL and the user's credentials as secrets.
    """

    def __init__(self, store: StateStore, datasets: Datasets, quota: Quota, *, sandbox: Any,
                 base_url: Callable[[], str], secrets: dict[str, str], settings: SimSettings,
                 competitions_dir: Path | None = None, models_dir: Path | None = None,
                 clock_scale: float = 1.0, input_layout: str = "current") -> None:
        self.store = store
        self.datasets = datasets
        self.quota = quota
        self.settings = settings
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
        self._kill_steps: dict[str, int] = {}
        self._kill_lock = threading.Lock()

    def kill_at_step(self, kernel: str, step: int) -> None:
        """For tests: stop the next session of ``kernel`` (``owner/slug``) once its training loop's progress file
        reports ``step`` (see ``SessionSpec.kill_at_step``). It ends as a stop at the time limit does on Kaggle:
        CANCEL_ACKNOWLEDGED, no failure message, the log and ``/kaggle/working`` as they were, so a test kills
        "mid-training" at the same point however slow the machine is.

        Raises:
            HandleError: ``kernel`` is not ``owner/slug``.
            SandboxError: ``step`` is not a whole number of 0 or more.
        """
        handle = parse_kernel(kernel, what="kernel", versioned=False)
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise SandboxError(f"kill_at_step for {handle.ref}: the step must be a whole number, 0 or more; got "
                               f"{step!r}")
        with self._kill_lock:
            self._kill_steps[handle.ref] = step

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

    def active_gpu_sessions(self) -> int:
        """GPU Batch sessions queued or running now (Kaggle counts both against its concurrency limit)."""
        with self.store.lock:
            return sum(1 for record in self.store.data["kernels"].values() for v in record["versions"]
                       if v["status"] in ACTIVE_STATUSES and uses_gpu_quota(v.get("accelerator", "none")))

    def _plan(self, key: str, record: dict[str, Any], version: dict[str, Any]) -> SessionPlan:
        folder = self.store.kernel_dir(kernel_handle(record["owner"], record["slug"]), version["number"])
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
            folder = competition_dir(self.competitions_dir, source)
            if folder is not None:
                mounts.append((folder, "competition", folder.name))
        for source in version["model_sources"]:
            folder = model_dir(self.models_dir, source)
            if folder is not None:
                mounts.append((folder, "model", folder.relative_to(self.models_dir).as_posix()))
        accelerator = version["accelerator"]
        limit = float(version["timeout_s"] or session_limit_s(accelerator))
        quota_left = self.quota.left_s if uses_gpu_quota(accelerator) else None
        return SessionPlan(
            notebook=notebook, mounts=tuple(mounts), input_layout=self.input_layout,
            kernel_type="script" if version["kernel_type"] == "script" else "notebook",
            internet=version["enable_internet"], accelerator=accelerator,
            time_limit_s=limit, clock_scale=self.clock_scale, quota_left_s=quota_left,
            api_url=self.base_url() if version["enable_internet"] else None, secrets=dict(self._secrets),
            kill_at_step=self._take_kill_step(key))

    def _take_kill_step(self, key: str) -> int | None:
        with self._kill_lock:
            return self._kill_steps.pop(key, None)

    def _kernel_output(self, source: str) -> tuple[Path, str, str] | None:
        """The output folder a kernel source (``owner/slug`` or ``owner/slug/N``) mounts, or None."""
        try:
            handle = parse_kernel(source, what="kernel source")
        except HandleError:
            return None
        with self.store.lock:
            kernel = self.store.data["kernels"].get(handle.ref)
            if kernel is None:
                return None
            # A stopped Batch run keeps what its working folder held at the kill, so its output mounts too.
            candidates = [v for v in kernel["versions"] if v["status"] in TERMINAL_STATUSES
                          and (self.store.kernel_dir(handle, v["number"]) / "output").is_dir()]
        if handle.version is not None:
            candidates = [v for v in candidates if v["number"] == handle.version]
        if not candidates:
            return None
        output = self.store.kernel_dir(handle, candidates[-1]["number"]) / "output"
        output.mkdir(parents=True, exist_ok=True)
        return output, "notebook", handle.ref

    def _run(self, key: str, number: int) -> None:
        with self.store.lock:
            record = self.store.data["kernels"].get(key)
            version = next((v for v in (record or {}).get("versions", []) if v["number"] == number), None)
            if record is None or version is None or version["status"] != "QUEUED":
                return
            version["status"] = "RUNNING"
            version["started"] = time.time()
            self.store.save()
        session = f"{key}/{number}"
        self.quota.start_session(session, accelerator=version["accelerator"], clock_scale=self.clock_scale)
        outcome: dict[str, Any] = {"status": "ERROR", "failure": "", "stopped_by": None, "output_dir": None,
                                   "log": "", "has_output": False}
        folder: Path | None = None
        try:
            folder = self.store.kernel_dir(kernel_handle(record["owner"], record["slug"]), number)
            outcome = run_plan(self.sandbox, self._plan(key, record, version))
            outcome["has_output"] = self._keep_output(outcome, folder / "output")
            (folder / "log.txt").write_text(outcome["log"])
        except Exception as exc:  # noqa: BLE001 - whatever fails, the session ends in ERROR with the reason logged
            _log.exception("kernel session %s failed inside the offline server", session)
            message = f"the session failed: {type(exc).__name__}: {exc}"
            outcome.update(status="ERROR", failure=message, stopped_by=None, log=failure_log(message, outcome["log"]))
            if folder is not None:
                with contextlib.suppress(OSError):
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / "log.txt").write_text(outcome["log"])
        finally:
            gpu_s, tpu_s = self.quota.end_session(session, kernel=key)
            with self.store.lock:
                version["status"] = outcome["status"]
                version["failure"] = outcome["failure"]
                version["stopped_by"] = outcome.get("stopped_by")
                version["finished"] = time.time()
                version["gpu_s"], version["tpu_s"] = gpu_s, tpu_s
                version["has_output"] = bool(outcome.get("has_output"))
                self.store.save()

    def _keep_output(self, outcome: dict[str, Any], target: Path) -> bool:
        """Save a Batch session's working folder as the version's output; over Kaggle's limit, the session fails."""
        shutil.rmtree(target, ignore_errors=True)
        source = Path(outcome["output_dir"]) if outcome["output_dir"] else None
        if source is None or not source.is_dir():
            return False
        size, limit = folder_bytes(source), self.settings.working_dir_limit_bytes
        if size > limit:
            message = (f"/kaggle/working held {size} bytes at the end of the session, more than the {limit} bytes "
                       "Kaggle keeps: the output was not saved")
            outcome.update(status="ERROR", failure=message, stopped_by=None,
                           log=failure_log(message, outcome["log"]))
            return False
        shutil.copytree(source, target, symlinks=True)
        return True
