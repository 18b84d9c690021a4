"""How a pushed kernel version becomes a sandbox session, and how the session's result is read back.

This is the only place the stand-in server touches :mod:`kaggle_kit.sim.sandbox`; it uses just its documented
interface (``SessionSpec``, ``InputMount``, ``Sandbox.run`` and the fields of ``SessionResult``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit.kaggle_platform import SESSION_LIMIT_S, TPU_SESSION_LIMIT_S, burn_rate, is_tpu, machine_for

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
    mounts: tuple[tuple[Path, tuple[str, ...]], ...]
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

    from kaggle_kit.errors import SandboxError

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
        mounts=tuple(InputMount(source, targets) for source, targets in plan.mounts),
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
