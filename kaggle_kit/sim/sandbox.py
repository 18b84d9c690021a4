"""The session sandbox: run a notebook as Kaggle would, offline.

Each session gets a fresh tree ``<workdir>/sessions/<id>/kaggle/{input,working,temp}``. On Linux the kernel runs
isolated (see :mod:`kaggle_kit.sim.sandbox_isolation`): root inside its own user namespace and an unprivileged id
outside, in its own PID, mount and IPC namespaces (and, without the internet, network namespace), seeing the Python
runtime read-only, that tree at ``/kaggle`` with ``/kaggle/input`` (and every input under it) read-only, and nothing
else of the host: not the project's checkout, not the kit (a session imports only what it attached). Code with
literal ``/kaggle/...`` paths runs unchanged. Where isolation cannot be had, the session falls back to pointing the
kit at the tree through ``KAGGLE_KIT_KAGGLE_ROOT`` and says so loudly in its log and result.

Inputs are mounted under one layout per session, the current one by default (``datasets/<owner>/<slug>``,
``competitions/<slug>``, ``notebooks/<owner>/<slug>``, ``models/<owner>/<model>/<framework>/<variation>/<N>``), or
the legacy one (``<slug>``), as Kaggle does one or the other.

The notebook runs cell by cell in a real ipykernel (nbclient); the kernel sees Kaggle's environment variables, the
user's secrets only through the ``kaggle_secrets`` stand-in, and the sandbox's own variables (the simulated
accelerator, the scaled session limit, the GPU quota left). At the session limit, or when the weekly GPU quota runs
out, every process of the session is SIGKILLed without warning, as on Kaggle (and so, for tests, at a training step:
``SessionSpec.kill_at_step``, a kill placed by progress rather than seconds); only then is ``/kaggle/working`` saved
(Batch, with the files Kaggle adds: see :mod:`kaggle_kit.sim.sandbox_outputs`) or dropped (Interactive).

Session folder layout::

    <workdir>/sessions/<id>/__notebook__.ipynb   the executed notebook, with its outputs
    <workdir>/sessions/<id>/session.log          Kaggle's log: what the notebook printed (a JSON list of records)
    <workdir>/sessions/<id>/sandbox.log          the sandbox's own messages: set-up, isolation, how the session ended
    <workdir>/sessions/<id>/notebook.ipynb       the notebook as submitted
    <workdir>/outputs/<id>/                      a Batch session's /kaggle/working (the version's output)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets as _secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping

import nbformat

from kaggle_kit import envvars
from kaggle_kit.env import KINDS, LAYOUTS, mount_target
from kaggle_kit.errors import SandboxError
from kaggle_kit.fileio import move_into_place
from kaggle_kit.kaggle_platform import SESSION_LIMIT_S, burn_rate
from kaggle_kit.sim.sandbox_isolation import (
    INSIDE_PRIVATE,
    INSIDE_STANDINS,
    STANDINS,
    SessionPaths,
    hand_over,
    launch_config,
    launch_prefix,
    namespace_problem,
    outside_ids,
    unreadable_inputs,
)
from kaggle_kit.sim.sandbox_kernel import (
    Deadline,
    InsideConnection,
    SessionClient,
    SessionKernelManager,
    SessionLog,
    StepWatch,
    kill_session,
    session_namespace,
)
from kaggle_kit.sim.sandbox_outputs import write_kaggle_files

__all__ = ["InputMount", "SessionSpec", "SessionResult", "Sandbox", "namespace_problem", "choose_isolation",
           "INPUT_LAYOUTS", "KERNEL_TYPES"]

ISOLATION_ENV = envvars.SIM_ISOLATION
SECRETS_FILE_ENV = envvars.SIM_SECRETS_FILE
RUN_TYPES = ("Batch", "Interactive")
ISOLATIONS = ("auto", "namespace", "env")
INPUT_LAYOUTS = LAYOUTS
KERNEL_TYPES = ("notebook", "script")
# Host variables a kernel inherits; everything else (credentials above all) stays out.
_PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")
# A proxy address that refuses connections: HTTP clients fail fast when the internet is off but cannot be cut.
_DEAD_PROXY = "http://127.0.0.1:9"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_UNIX_SOCKET_MAX = 100  # sun_path holds 108 bytes; leave room for the "-NNNNN" port suffix
_INSIDE_IPC = "/run/kaggle-kit-ipc"  # the kernel's sockets, when the private folder's host path is too long for them


@dataclass(frozen=True)
class InputMount:
    """A folder attached read-only under ``/kaggle/input``.

    ``kind`` is ``"dataset"`` (``ref`` ``owner/slug``), ``"competition"`` (``slug``), ``"notebook"`` (a notebook's
    output, ``owner/slug``) or ``"model"`` (``owner/model/framework/variation/N``), placed where the session's input
    layout puts it; or ``"path"``: at ``ref`` itself (a path relative to ``/kaggle/input``) under either layout.
    """

    source: Path
    kind: str
    ref: str

    def target(self, layout: str) -> str:
        """The path under ``/kaggle/input`` for ``layout``.

        Raises:
            SandboxError: an unknown kind, or a ref that does not fit it.
        """
        if self.kind == "path":
            rel = PurePosixPath(self.ref)
            if not self.ref or rel.is_absolute() or ".." in rel.parts or str(rel) == ".":
                raise SandboxError(
                    f"input target {self.ref!r} must be a relative path inside /kaggle/input, like 'datasets/a/ckpt'"
                )
            return rel.as_posix()
        if self.kind not in KINDS:
            raise SandboxError(f"input {self.source}: kind {self.kind!r} is not one of {', '.join((*KINDS, 'path'))}")
        try:
            return mount_target(self.kind, self.ref, layout)
        except ValueError as exc:
            raise SandboxError(f"input {self.source}: {exc}") from None


@dataclass(frozen=True)
class SessionSpec:
    """What to run and under which conditions.

    Attributes:
        notebook: an ``.ipynb``, a jupytext-readable ``.py``, or an in-memory notebook.
        run_type: "Batch" (a saved version: ``/kaggle/working`` is kept as the output) or "Interactive" (lost).
        mounts: inputs to attach under ``/kaggle/input``.
        input_layout: "current" (``datasets/<owner>/<slug>``, ...) or "legacy" (``<slug>``): where inputs go.
        kernel_type: "notebook" or "script": which copy of the code the output holds (``__notebook__.ipynb``, or
            ``__script__.py`` and ``__script__.ipynb``).
        internet: off puts the kernel in a network namespace with nothing but its own loopback.
        accelerator: the simulated accelerator (``none``, ``T4``, ``T4x2``, ``P100``, ``L4``, ...).
        time_limit_s: the session limit in Kaggle seconds (12 h by default).
        clock_scale: Kaggle seconds per real second: limits and quota are divided by it (3600 makes 12 h last 12 s).
        quota_left_s: weekly GPU quota left, in Kaggle seconds; None for unlimited.
        api_url: URL of the API stand-in, given to the kernel when the internet is on.
        secrets: label -> value, readable only through ``kaggle_secrets.UserSecretsClient``.
        env: extra environment variables for the kernel (applied last; ``PYTHONPATH`` is appended to the sandbox's).
        cwd_files: files placed in ``/kaggle/working`` before the run: relative name -> source path or bytes.
        session_id: the session's folder name; a fresh one when None.
        isolation: "namespace", "env" (the ``KAGGLE_KIT_KAGGLE_ROOT`` fallback), or "auto" (namespace where
            possible; ``KAGGLE_KIT_SIM_ISOLATION`` can force either).
        project_root: given to the kernel as ``KAGGLE_KIT_ROOT`` (a path as the kernel sees it); unset when None.
        kill_at_step: for tests: kill the session as the time limit does (every process SIGKILLed, the output kept
            as it was) once a training loop's ``progress.json`` under ``/kaggle/working`` reports this optimizer
            step or a later one. A kill placed by progress, not by seconds, lands at the same point of the training
            on a slow machine; it lands at that step or a few steps later (the session runs on while it is read), so
            place it just after a checkpoint for a resume step that does not move. None: no such kill.
    """

    notebook: Path | nbformat.NotebookNode
    run_type: str = "Batch"
    mounts: tuple[InputMount, ...] = ()
    input_layout: str = "current"
    kernel_type: str = "notebook"
    internet: bool = True
    accelerator: str = "none"
    time_limit_s: float = SESSION_LIMIT_S
    clock_scale: float = 1.0
    quota_left_s: float | None = None
    api_url: str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    env: Mapping[str, str] = field(default_factory=dict)
    cwd_files: Mapping[str, Path | bytes] | None = None
    session_id: str | None = None
    isolation: str = "auto"
    project_root: str | None = None
    kill_at_step: int | None = None


@dataclass(frozen=True)
class SessionResult:
    """How a session ended and where its traces are.

    Attributes:
        status: "COMPLETE", "ERROR" (a cell raised, or the kernel died) or "KILLED" (limit, quota or kill at a step).
        killed_by: "time", "quota" or "step" (``SessionSpec.kill_at_step``) when KILLED, else None.
        output_dir: Batch: ``/kaggle/working`` as it was when the session ended, with Kaggle's own files added;
            Interactive: None.
        executed_notebook: the notebook with the outputs of every cell that ran.
        log_path: Kaggle's log (a JSON list of ``{stream_name, time, data}``): what the notebook printed.
        sandbox_log_path: the sandbox's own messages (plain lines): set-up, isolation, how the session ended.
        wall_s: real seconds from the kernel's start to the end of the session.
        gpu_s: GPU quota consumed, in Kaggle seconds (wall time x clock scale x burn rate; 0 without a GPU).
        failure_message: what failed, for ERROR and KILLED.
        session_id: the session's folder name under ``<workdir>/sessions``.
        isolation: "namespace" or "env" (the ``KAGGLE_KIT_KAGGLE_ROOT`` fallback).
        isolation_note: why the session fell back to "env", or None.
        internet_blocked: whether the kernel was cut off from the network (internet off, in its own network
            namespace); False when the internet was on, or off but not enforceable in the fallback.
        failed_cell: index (in the notebook's cells) of the cell that raised, or None.
        killed_at: epoch seconds when the kill was done (every process of the session dead), or None.
        session_dir: the session's folder.
        input_layout: the layout the inputs were mounted under.
        killed_at_step: for a kill at a step, the step the progress file reported when the kill was decided (the
            session may have gone a little further), else None.
    """

    status: str
    killed_by: str | None
    output_dir: Path | None
    executed_notebook: Path
    log_path: Path
    sandbox_log_path: Path
    wall_s: float
    gpu_s: float
    failure_message: str | None
    session_id: str
    isolation: str
    isolation_note: str | None
    internet_blocked: bool
    failed_cell: int | None
    killed_at: float | None
    session_dir: Path
    input_layout: str
    killed_at_step: int | None = None


@dataclass
class _Session:
    """A session's folders and settings while it runs."""

    spec: SessionSpec
    session_id: str
    folder: Path
    paths: SessionPaths
    log_path: Path
    sandbox_log_path: Path
    executed: Path
    output_dir: Path
    isolation: str
    isolation_note: str | None
    internet_blocked: bool
    limit_s: float
    quota_s: float | None
    nb: nbformat.NotebookNode
    inputs: tuple[tuple[Path, str], ...]  # (host folder, path under /kaggle/input)
    interrupted: bool = False
    ipc_dir: Path | None = None  # a short folder for the kernel's sockets when the private one's path is too long

    @property
    def tree(self) -> Path:
        return self.paths.tree


class Sandbox:
    """Runs notebooks in Kaggle-like sessions under ``workdir``; sessions may run concurrently from several threads.

    ``echo``, when given, receives every log record as it is written (stream name, text), e.g. to show it live.
    """

    def __init__(self, workdir: Path | str, *, echo: Callable[[str, str], None] | None = None) -> None:
        self.echo = echo
        self.workdir = Path(workdir).expanduser().resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)

    def run(self, spec: SessionSpec) -> SessionResult:
        """Run one session to its end (complete, failed or killed) and return its result.

        Raises:
            SandboxError: the spec is invalid, or the session could not be set up.
        """
        session = self._prepare(spec)
        outcome: dict[str, Any] = {}
        log = SessionLog(session.log_path, session.sandbox_log_path, time.monotonic(), echo=self.echo)
        done = threading.Event()

        def work() -> None:
            try:
                outcome.update(asyncio.run(self._execute(session, log)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
                outcome["crash"] = exc
            finally:
                done.set()

        # The session's event loop gets a thread of its own, so run() also works where a loop is already running.
        worker = threading.Thread(target=work, name=f"kaggle-kit-session-{session.session_id}", daemon=True)
        interrupted = False
        try:
            worker.start()
            try:
                while not done.wait(0.5):
                    pass
            except BaseException:
                # Ctrl-C (or SIGTERM in the CLI): end the session as a kill would, then let the interrupt through.
                interrupted = session.interrupted = True
                log.sandbox("interrupted by the caller: killing the session")
                pid = _running_pids.get(str(session.folder))
                if pid:
                    kill_session(pid)
                while not done.wait(0.5):
                    pass
                raise
            finally:
                output_dir = self._finish(session, log, outcome,
                                          keep_output=spec.run_type == "Batch" and not interrupted)
        finally:
            log.close()
        if "status" not in outcome:
            crash = outcome.get("crash")
            raise SandboxError(
                f"session {session.session_id} ended without a result ({crash!r}); see {session.log_path}"
            ) from crash
        wall_s = float(outcome.get("wall_s", 0.0))
        used = wall_s * spec.clock_scale * burn_rate(spec.accelerator)
        if spec.quota_left_s is not None:
            used = min(used, spec.quota_left_s)
        return SessionResult(
            status=outcome["status"],
            killed_by=outcome.get("killed_by"),
            output_dir=output_dir,
            executed_notebook=session.executed,
            log_path=session.log_path,
            sandbox_log_path=session.sandbox_log_path,
            wall_s=wall_s,
            gpu_s=used,
            failure_message=outcome.get("failure"),
            session_id=session.session_id,
            isolation=session.isolation,
            isolation_note=session.isolation_note,
            internet_blocked=session.internet_blocked,
            failed_cell=outcome.get("failed_cell"),
            killed_at=outcome.get("killed_at"),
            session_dir=session.folder,
            input_layout=spec.input_layout,
            killed_at_step=outcome.get("killed_at_step"),
        )

    def _prepare(self, spec: SessionSpec) -> _Session:
        inputs = _validate(spec)
        nb = _load_notebook(spec.notebook)
        isolation, note = choose_isolation(spec.isolation)
        session_id = spec.session_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        folder = self.workdir / "sessions" / session_id
        output_dir = self.workdir / "outputs" / session_id
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            if output_dir.exists():
                raise FileExistsError(output_dir)
            folder.mkdir()  # atomic: two sessions can never share a folder
        except FileExistsError:
            raise SandboxError(
                f"session {session_id!r} already exists under {self.workdir}: pick another session_id"
            ) from None
        try:
            return self._populate(spec, nb, inputs, session_id, folder, output_dir, isolation, note)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def _populate(self, spec: SessionSpec, nb: nbformat.NotebookNode, inputs: tuple[tuple[Path, str], ...],
                  session_id: str, folder: Path, output_dir: Path, isolation: str, note: str | None) -> _Session:
        paths = SessionPaths(tree=folder / "kaggle", home=folder / "home", tmp=folder / "tmp",
                             private=folder / "private", mounts=folder / "mnt")
        nbformat.write(nb, str(folder / "notebook.ipynb"))
        internet_blocked = not spec.internet and isolation == "namespace"
        for source, target in inputs:
            place = paths.tree / "input" / target
            if isolation == "namespace":
                place.mkdir(parents=True, exist_ok=True)  # the mount point; the launcher binds over it
            else:
                place.parent.mkdir(parents=True, exist_ok=True)
                place.symlink_to(source, target_is_directory=True)
        for name, content in (spec.cwd_files or {}).items():
            dest = paths.tree / "working" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                dest.write_bytes(content)
            else:
                shutil.copy2(content, dest)
        if isolation == "namespace":
            paths.make()  # after the files above: the session's root owns its working folder and all in it
        else:
            for path in (paths.tree / "working", paths.tree / "temp", paths.home, paths.tmp):
                path.mkdir(parents=True, exist_ok=True)
            paths.private.mkdir(mode=0o700)

        limit_s = spec.time_limit_s / spec.clock_scale
        burn = burn_rate(spec.accelerator)
        quota_s = None
        if burn and spec.quota_left_s is not None:
            quota_s = spec.quota_left_s / spec.clock_scale / burn
        return _Session(
            spec=spec, session_id=session_id, folder=folder, paths=paths,
            log_path=folder / "session.log", sandbox_log_path=folder / "sandbox.log",
            executed=folder / "__notebook__.ipynb", output_dir=output_dir,
            isolation=isolation, isolation_note=note, internet_blocked=internet_blocked,
            limit_s=limit_s, quota_s=quota_s, nb=nb, inputs=inputs,
        )

    async def _execute(self, session: _Session, log: SessionLog) -> dict[str, Any]:
        """Start the kernel, run the cells under the deadline, and kill everything at the end."""
        spec = session.spec
        _announce(session, log)
        token = _secrets.token_hex(16)
        _write_private_json(session.paths.private / "secrets.json", {"token": token, "secrets": dict(spec.secrets)},
                            owner=outside_ids() if session.isolation == "namespace" else None)
        km = SessionKernelManager(
            kernel_name="python3",
            transport="ipc" if os.name == "posix" else "tcp",
            connection_file=str(session.folder / "kernel.json"),
        )
        if km.transport == "ipc":
            km.ip = _ipc_prefix(session)
        if session.isolation == "namespace":
            inputs = list(session.inputs)
            config = session.folder / "launch.json"
            launch = launch_config(session.paths, internet=spec.internet, inputs=inputs)
            if session.ipc_dir is not None:
                launch["steps"].insert(-2, {"op": "bind", "source": str(session.ipc_dir), "target": _INSIDE_IPC,
                                            "read_only": False, "recursive": False})
            _write_private_json(config, launch)
            km.launch_prefix = launch_prefix(config)
            km.inside = InsideConnection(
                host_path=session.paths.private / "kernel.json", inside_path=f"{INSIDE_PRIVATE}/kernel.json",
                ip=f"{_INSIDE_IPC if session.ipc_dir is not None else INSIDE_PRIVATE}/k", owner=outside_ids())

        start_epoch = time.time()
        start = time.monotonic()
        env = _kernel_env(session, token=token, start_epoch=start_epoch)
        cwd = str(session.tree / "working") if session.isolation == "env" else str(session.folder)
        stderr_path = session.folder / "kernel.stderr"
        outcome: dict[str, Any] = {}
        deadline: Deadline | None = None
        watch: StepWatch | None = None
        client: SessionClient | None = None
        namespace: str | None = None
        loop = asyncio.get_running_loop()
        task: asyncio.Future[Any] | None = None
        try:
            with stderr_path.open("wb") as stderr:
                await km.start_kernel(env=env, cwd=cwd, stdout=stderr, stderr=stderr)
                pid = int(getattr(km.provisioner, "pid"))  # the local provisioner's kernel process
                _running_pids[str(session.folder)] = pid
                outcome["pid"] = pid
                reason, delay = ("quota", session.quota_s) if (
                    session.quota_s is not None and session.quota_s < session.limit_s
                ) else ("time", session.limit_s)

                def kill() -> None:
                    kill_session(pid, namespace=namespace)
                    if task is not None:
                        loop.call_soon_threadsafe(task.cancel)

                deadline = Deadline(delay - (time.monotonic() - start), reason, kill)
                deadline.start()
                if spec.kill_at_step is not None:
                    watch = StepWatch(session.tree / "working", spec.kill_at_step,
                                      lambda step: deadline is not None and deadline.fire_now("step"))
                    watch.start()
                client = SessionClient(
                    session.nb, km=km, log=log, timeout=None, startup_timeout=120, allow_errors=False,
                    record_timing=True, kernel_name="python3",
                )
                await client.async_start_new_kernel_client()
                namespace = session_namespace(pid) if session.isolation == "namespace" else None
                task = asyncio.ensure_future(client.async_execute())
                try:
                    await task
                    outcome["status"] = "COMPLETE"
                except asyncio.CancelledError:
                    pass
                except Exception as exc:  # noqa: BLE001 - every failure of the notebook becomes the session's status
                    outcome.update(_failure(exc, client))
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - a kernel that never started is the session's failure too
            outcome.update(_failure(exc, client))
        finally:
            if deadline is not None:
                deadline.disarm()
            if watch is not None:
                watch.stop()
            kernel_pid: int | None = outcome.get("pid")
            if kernel_pid:
                # Kaggle ends the whole container with the session: nothing the notebook started outlives it.
                survivors = kill_session(kernel_pid, namespace=namespace)
                if survivors:
                    log.sandbox(f"processes {survivors} survived SIGKILL; the output may still change")
            outcome["wall_s"] = time.monotonic() - start
            await _shutdown(km, client)
            _running_pids.pop(str(session.folder), None)
        if deadline is not None and deadline.fired and outcome.get("status") != "COMPLETE":
            outcome.update(_killed(deadline, session, step=watch.seen_step if watch is not None else None))
        outcome.setdefault("status", "ERROR")
        if session.interrupted and outcome["status"] != "COMPLETE":
            outcome["failure"] = "The session was interrupted by the caller."
        if outcome["status"] == "ERROR" and not outcome.get("failure"):
            outcome["failure"] = "The kernel died unexpectedly."
        launch_failure = _record_kernel_stderr(stderr_path, log)
        if launch_failure and outcome["status"] == "ERROR":
            outcome["failure"] = f"{outcome['failure']} ({launch_failure})"
        if client is not None:
            nbformat.write(client.nb, str(session.executed))
        else:
            nbformat.write(session.nb, str(session.executed))
        outcome["status_line"] = _status_line(outcome)
        log.sandbox(outcome["status_line"])
        return outcome

    def _finish(self, session: _Session, log: SessionLog, outcome: Mapping[str, Any], *,
                keep_output: bool) -> Path | None:
        """Save or drop ``/kaggle/working`` (after every process is dead), and remove what must not persist."""
        output_dir: Path | None = None
        try:
            if keep_output:
                session.output_dir.parent.mkdir(parents=True, exist_ok=True)
                move_into_place(session.tree / "working", session.output_dir)
                output_dir = session.output_dir
                for dropped in _drop_escaping_links(output_dir):
                    log.sandbox(f"output: dropped {dropped}, a symbolic link to outside /kaggle/working")
                if session.executed.is_file():
                    executed = nbformat.read(str(session.executed), as_version=4)
                    write_kaggle_files(output_dir, executed, kernel_type=session.spec.kernel_type, summary={
                        "status": outcome.get("status"), "failureMessage": outcome.get("failure") or "",
                        "runType": session.spec.run_type, "kernelType": session.spec.kernel_type,
                    })
            elif session.spec.run_type == "Interactive":
                log.sandbox("Interactive session: /kaggle/working is discarded, as on Kaggle")
            else:
                log.sandbox("interrupted session: /kaggle/working is discarded")
        finally:
            paths = session.paths
            for folder in (paths.tree, paths.home, paths.tmp, paths.private, paths.mounts, session.ipc_dir):
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
            for leftover in ("launch.json", "kernel.json"):
                (session.folder / leftover).unlink(missing_ok=True)
        return output_dir


_running_pids: dict[str, int] = {}


def _drop_escaping_links(folder: Path) -> list[str]:
    """Remove links that point outside ``folder``: whoever serves the output must never follow one to the host."""
    dropped: list[str] = []
    base = folder.resolve()
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            target = path.resolve()
            if target != base and base not in target.parents:
                path.unlink()
                dropped.append(path.relative_to(folder).as_posix())
    return dropped


def _validate(spec: SessionSpec) -> tuple[tuple[Path, str], ...]:
    """Refuse a bad spec before anything is created; returns the inputs as (host folder, path under input)."""
    if spec.run_type not in RUN_TYPES:
        raise SandboxError(f"run_type {spec.run_type!r} is not one of {', '.join(RUN_TYPES)}")
    if spec.isolation not in ISOLATIONS:
        raise SandboxError(f"isolation {spec.isolation!r} is not one of {', '.join(ISOLATIONS)}")
    if spec.input_layout not in INPUT_LAYOUTS:
        raise SandboxError(f"input_layout {spec.input_layout!r} is not one of {', '.join(INPUT_LAYOUTS)}")
    if spec.kernel_type not in KERNEL_TYPES:
        raise SandboxError(f"kernel_type {spec.kernel_type!r} is not one of {', '.join(KERNEL_TYPES)}")
    if not spec.clock_scale > 0:
        raise SandboxError(f"clock_scale must be positive (Kaggle seconds per real second), got {spec.clock_scale}")
    if not spec.time_limit_s > 0:
        raise SandboxError(f"time_limit_s must be positive, got {spec.time_limit_s}")
    if spec.kill_at_step is not None and (isinstance(spec.kill_at_step, bool) or not isinstance(spec.kill_at_step, int)
                                          or spec.kill_at_step < 0):
        raise SandboxError(f"kill_at_step must be an optimizer step (a whole number, 0 or more), "
                           f"got {spec.kill_at_step!r}")
    if spec.quota_left_s is not None and spec.quota_left_s < 0:
        raise SandboxError(f"quota_left_s must be zero or more, got {spec.quota_left_s}")
    if not spec.accelerator:
        raise SandboxError("accelerator is empty: pass 'none' for a CPU session")
    if spec.session_id is not None and not _SESSION_ID.match(spec.session_id):
        raise SandboxError(f"session_id {spec.session_id!r} must be letters, digits, '.', '_' or '-' (64 at most)")
    for label in spec.secrets:
        if not label:
            raise SandboxError("a secret has an empty label")
    inputs: list[tuple[Path, str]] = []
    for mount in spec.mounts:
        if not isinstance(mount, InputMount):
            raise SandboxError(f"mounts holds {mount!r}: each input is an InputMount(source, kind, ref)")
        source = Path(mount.source)
        if not source.is_dir():
            raise SandboxError(f"input {source} is not a folder: mount the folder that holds the files")
        target = mount.target(spec.input_layout)
        rel = PurePosixPath(target)
        for _, other in inputs:
            known = PurePosixPath(other)
            if rel == known or known in rel.parents or rel in known.parents:
                raise SandboxError(f"input targets {other!r} and {target!r} overlap under the {spec.input_layout} "
                                   "layout: mount them apart")
        inputs.append((source.resolve(), target))
    for name, content in (spec.cwd_files or {}).items():
        rel = PurePosixPath(name)
        if not name or rel.is_absolute() or ".." in rel.parts:
            raise SandboxError(f"cwd_files name {name!r} must be a relative path inside /kaggle/working")
        if not isinstance(content, bytes) and not Path(content).is_file():
            raise SandboxError(f"cwd_files[{name!r}]: {content} is not a file; pass a file's path or its bytes")
    return tuple(inputs)


def _load_notebook(notebook: Path | nbformat.NotebookNode) -> nbformat.NotebookNode:
    if isinstance(notebook, nbformat.NotebookNode):
        nb = nbformat.from_dict(json.loads(json.dumps(notebook)))
    else:
        path = Path(notebook)
        if not path.is_file():
            raise SandboxError(f"notebook {path} does not exist")
        try:
            if path.suffix == ".ipynb":
                nb = nbformat.read(str(path), as_version=4)
            elif path.suffix == ".py":
                import jupytext

                nb = jupytext.read(str(path))
            else:
                raise SandboxError(f"notebook {path} is neither an .ipynb nor a jupytext .py script")
        except SandboxError:
            raise
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file, reported as such
            raise SandboxError(f"notebook {path} cannot be read: {exc}") from None
    language = nb.metadata.get("kernelspec", {}).get("language") or nb.metadata.get("language_info", {}).get("name")
    if language and language.lower() != "python":
        raise SandboxError(f"the notebook's language is {language!r}: the sandbox runs Python notebooks only")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def choose_isolation(asked: str = "auto") -> tuple[str, str | None]:
    """The isolation a session asking for ``asked`` gets here, and why it is the fallback when it is."""
    if asked == "auto":
        forced = os.environ.get(ISOLATION_ENV, "").strip()
        if forced and forced not in ("namespace", "env"):
            raise SandboxError(f"{ISOLATION_ENV}={forced!r} must be 'namespace' or 'env'")
        asked = forced or "auto"
    if asked == "env":
        return "env", "isolation 'env' was asked for"
    problem = namespace_problem()
    if problem is None:
        return "namespace", None
    if asked == "namespace":
        raise SandboxError(f"the kernel cannot get namespaces of its own here ({problem}); use isolation 'env'")
    return "env", problem


def _ipc_prefix(session: _Session) -> str:
    """Where the kernel's Unix sockets go: the private folder, unless that path is too long for a socket."""
    prefix = session.paths.private / "k"
    if len(str(prefix)) + 6 <= _UNIX_SOCKET_MAX:
        return str(prefix)
    session.ipc_dir = Path(tempfile.mkdtemp(prefix="kk-", dir="/tmp" if os.path.isdir("/tmp") else None))
    if session.isolation == "namespace":
        hand_over([session.ipc_dir])
    return str(session.ipc_dir / "k")


def _write_private_json(path: Path, data: Any, *, owner: tuple[int, int] | None = None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    if owner is not None and os.geteuid() == 0:
        os.chown(path, *owner)


def _kernel_env(session: _Session, *, token: str, start_epoch: float) -> dict[str, str]:
    """The kernel's whole environment: Kaggle's variables and the sandbox's, never the host's credentials, and no
    path to anything the notebook did not attach (the kit included)."""
    spec = session.spec
    isolated = session.isolation == "namespace"
    env = {name: os.environ[name] for name in _PASSTHROUGH_ENV if name in os.environ}
    bin_dir = os.path.dirname(sys.executable)  # the runtime's python and console scripts (kaggle) first
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", os.defpath)])
    private = INSIDE_PRIVATE if isolated else str(session.paths.private)
    env.update({
        "HOME": "/root" if isolated else str(session.paths.home),
        "JUPYTER_RUNTIME_DIR": private,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "PYTHONPATH": INSIDE_STANDINS if isolated else str(STANDINS),
        envvars.KERNEL_RUN_TYPE: spec.run_type,
        envvars.URL_BASE: spec.api_url if (spec.internet and spec.api_url) else "https://www.kaggle.com",
        envvars.DATA_PROXY_URL: "https://dp.kaggle.net",
        envvars.DATA_PROXY_TOKEN: _secrets.token_hex(16),
        envvars.DATA_PROXY_PROJECT: "kaggle-kit-sim",
        envvars.USER_SECRETS_TOKEN: token,
        envvars.KERNEL_INTEGRATIONS: "",
        SECRETS_FILE_ENV: f"{private}/secrets.json",
        envvars.SIM_ACCELERATOR: spec.accelerator,
        envvars.SIM_SESSION_LIMIT_S: _number(session.limit_s),
        envvars.SIM_SESSION_START: f"{start_epoch:.3f}",
    })
    if not isolated:
        env["TMPDIR"] = str(session.paths.tmp)
        env[envvars.KIT_KAGGLE_ROOT] = str(session.tree)
    if session.quota_s is not None and spec.quota_left_s is not None:
        env[envvars.SIM_QUOTA_LEFT_S] = _number(spec.quota_left_s / spec.clock_scale)
    if spec.project_root:
        env[envvars.KIT_ROOT] = str(spec.project_root)
    if spec.internet and spec.api_url:
        env.update({
            envvars.KIT_API_ENDPOINT: spec.api_url,
            envvars.API_ENVIRONMENT: "LOCALHOST",
            "HTTP_PROXY": spec.api_url,
        })
    if not spec.internet and not session.internet_blocked:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env[name] = _DEAD_PROXY
    for name, value in spec.env.items():
        if name == "PYTHONPATH":
            env[name] = os.pathsep.join([env[name], value])
        else:
            env[name] = value
    return env


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _announce(session: _Session, log: SessionLog) -> None:
    spec = session.spec
    quota = "unlimited" if session.quota_s is None else f"{session.quota_s:g} s of GPU quota"
    log.sandbox(
        f"session {session.session_id}: {spec.run_type}, accelerator {spec.accelerator}, "
        f"internet {'on' if spec.internet else 'off'}, limit {session.limit_s:g} s real "
        f"({spec.time_limit_s:g} s at clock scale {spec.clock_scale:g}), {quota}, "
        f"inputs under the {spec.input_layout} layout"
    )
    for source, target in session.inputs:
        log.sandbox(f"input: {source} at /kaggle/input/{target}")
    if session.isolation == "namespace":
        uid, _ = outside_ids()
        log.sandbox(
            f"isolation: root inside its own user namespace (uid {uid} outside), own PID, mount and IPC namespaces"
            f"{', own network namespace' if session.internet_blocked else ''}; it sees the runtime read-only, the "
            "session tree at /kaggle (/kaggle/input read-only) and nothing else of this machine"
        )
        unreadable = unreadable_inputs(source for source, _ in session.inputs)
        if unreadable:
            log.warn(f"inputs the session cannot read (readable only by their owner on this machine; the session "
                     f"runs as uid {uid} outside): {', '.join(unreadable)}; make them world-readable (chmod -R o+rX)")
    else:
        log.warn(
            f"isolation: FALLBACK, NOT isolated ({session.isolation_note}): the kernel runs as this user in this "
            f"machine's namespaces and sees all its files (the kit's installation included); the tree is at "
            f"{session.tree} and KAGGLE_KIT_KAGGLE_ROOT points there: literal /kaggle paths do not work and inputs "
            "are not read-only"
        )
        if not spec.internet:
            log.warn("internet off is NOT enforced without a network namespace: proxies point nowhere, sockets work")


def _failure(exc: BaseException, client: SessionClient | None) -> dict[str, Any]:
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    if isinstance(exc, CellExecutionError):
        index = client.running_cell if client is not None else None
        where = f" (cell {index + 1} of {len(client.nb.cells)})" if client is not None and index is not None else ""
        return {"status": "ERROR", "failure": f"{exc.ename}: {exc.evalue}{where}", "failed_cell": index}
    if isinstance(exc, DeadKernelError):
        return {"status": "ERROR", "failure": "The kernel died unexpectedly."}
    return {"status": "ERROR", "failure": f"The kernel could not run: {type(exc).__name__}: {exc}"}


def _killed(deadline: Deadline, session: _Session, *, step: int | None) -> dict[str, Any]:
    spec = session.spec
    killed_at_step = None
    if deadline.reason == "quota":
        why = (f"the weekly GPU quota ran out ({spec.quota_left_s:g} s at burn rate "
               f"{burn_rate(spec.accelerator):g} for {spec.accelerator})")
    elif deadline.reason == "step":
        killed_at_step = step
        why = f"the kill at step {spec.kill_at_step} (progress.json reported step {step})"
    else:
        why = f"the session reached its time limit ({spec.time_limit_s:g} s)"
    return {
        "status": "KILLED", "killed_by": deadline.reason, "killed_at": deadline.fired_at,
        "failure": f"Session killed: {why}.", "failed_cell": None, "killed_at_step": killed_at_step,
    }


def _status_line(outcome: Mapping[str, Any]) -> str:
    line = f"session {outcome['status']} after {outcome.get('wall_s', 0.0):.2f} s"
    return line + (f": {outcome['failure']}" if outcome.get("failure") else "")


def _record_kernel_stderr(path: Path, log: SessionLog) -> str | None:
    """Put what the kernel's process wrote outside Jupyter's channels (the launcher's errors, the kernel's start-up)
    in the sandbox's log; returns the launcher's error, if it failed."""
    try:
        text = path.read_text(errors="replace")
        path.unlink()
    except OSError:
        return None
    failure = None
    for line in text.splitlines():
        if line.strip():
            log.sandbox(f"kernel process: {line}")
        if line.startswith("kaggle-kit sandbox:"):
            failure = line
    return failure


async def _shutdown(km: SessionKernelManager, client: SessionClient | None) -> None:
    """Reap the (already killed) kernel and release its sockets, connection file and ZMQ context."""
    try:
        if client is not None and client.kc is not None:
            client.kc.stop_channels()
        if km.has_kernel:
            await km.shutdown_kernel(now=True)
        else:
            km.cleanup_resources()
    except Exception:  # noqa: BLE001 - the session is over either way; leftovers are removed with its folder
        pass
    finally:
        km.context.destroy(linger=0)
