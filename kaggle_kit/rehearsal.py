"""`kaggle-kit rehearse`: a whole Kaggle training run, offline, kills included.

The rehearsal starts the API stand-in with its session sandbox, makes a small synthetic competition, publishes the
code, pushes the training notebook, lets its first session be killed by the (scaled) time limit mid-epoch, pushes it
again so a second session resumes from the mirrored checkpoint and finishes, runs the inference notebook with internet
off, and scores its submission. The last thing it prints is a summary: sessions, steps, work lost at the kill,
dataset versions, the final validation score against the trivial baseline, and whether the submission is valid.

The workload (what competition to fake, how to score) comes from the ``kaggle_kit.workloads`` entry-point group, so
this module never imports one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from kaggle_kit import envvars
from kaggle_kit.checkpoint.format import MANIFEST_GLOB, MANIFEST_SUFFIX, STATE_SUFFIX, TENSOR_SUFFIX
from kaggle_kit.errors import KaggleKitError
from kaggle_kit.kaggle_platform import shape_for
from kaggle_kit.mirror.ledger import LEDGER_FILE
from kaggle_kit.session_outcome import KILLED

__all__ = ["RehearsalOptions", "RehearsalReport", "RehearsalWorkload", "SessionRow", "format_report", "load_workload",
           "rehearse"]

DEFAULT_WORKDIR = "kaggle-kit-rehearsal"
# The simulated accelerators a rehearsal offers, each with the machine shape that gives it.
ACCELERATOR_SHAPES = {name: shape_for(name) for name in ("none", "T4x2", "L4")}


@dataclass(frozen=True)
class RehearsalWorkload:
    """What a workload gives the rehearsal.

    Attributes:
        name: The workload's name (its entry point).
        competition: The competition slug the notebooks expect.
        config: The workload config the notebooks load (a small, fast one).
        make_competition: ``(dest, seed) -> solution_csv``: writes a synthetic competition folder at ``dest`` and
            its test labels (outside ``dest``).
        score: ``(solution_csv, submission_csv) -> float``; raises a KaggleKitError on a malformed submission.
        baseline: ``(competition_dir, solution_csv) -> float``: the score of the trivial submission.
        baseline_name: What the trivial submission predicts.
        overrides: Config overrides for the rehearsal.
    """

    name: str
    competition: str
    config: str
    make_competition: Callable[[Path, int], Path]
    score: Callable[[Path, Path], float]
    baseline: Callable[[Path, Path], float]
    baseline_name: str = "trivial"
    overrides: tuple[str, ...] = ()


@dataclass
class RehearsalOptions:
    """How to rehearse.

    Attributes:
        kill_after_s: Real seconds the first training session may run before it is killed; 0 for no kill.
        run_type: ``Batch`` (pushed kernels; the output survives) or ``Interactive`` (sessions run directly;
            working is wiped at the end, so only the mirror carries the run over).
        accelerator: The simulated accelerator: ``none``, ``T4x2`` (the DDP path, on CPU with gloo) or ``L4``.
        internet: Internet for training; off means no mirroring, and the second session resumes from the first
            one's Batch output instead.
        workdir: Where the stand-in's state, the sandbox and the outputs go.
        keep: Leave ``workdir`` behind for inspection.
        deadline_stop: Let the kit see the session limit and stop cleanly before it (else a hard kill, as when
            Kaggle ends a session without warning).
        checkpoint_every_s: The checkpoint cadence inside the sessions.
        seed: Seeds the synthetic competition.
        workload: The workload's entry-point name.
        overrides: More config overrides on top of the workload's (e.g. ``train.epochs=4``).
        infer: Run the inference notebook and score its submission.
        session_timeout_s: Real-time cap of every session that is not meant to be killed.
    """

    kill_after_s: float = 40.0
    run_type: str = "Batch"
    accelerator: str = "none"
    internet: bool = True
    workdir: Path = Path(DEFAULT_WORKDIR)
    keep: bool = False
    deadline_stop: bool = False
    checkpoint_every_s: float = 6.0
    seed: int = 0
    workload: str = "cmfd"
    overrides: tuple[str, ...] = ()
    infer: bool = True
    session_timeout_s: float = 600.0


@dataclass
class SessionRow:
    """One session of the rehearsal, as the summary shows it."""

    name: str
    status: str
    wall_s: float = 0.0
    steps: int | None = None
    step_end: int | None = None
    lost_steps: int | None = None
    lost_minutes: float | None = None
    resumed_from: int | None = None
    seconds_per_step: float | None = None
    note: str = ""


@dataclass
class RehearsalReport:
    """What the rehearsal measured."""

    sessions: list[SessionRow] = field(default_factory=list)
    dataset_versions: dict[str, int] = field(default_factory=dict)
    final_score: float | None = None
    submission_score: float | None = None
    baseline_score: float | None = None
    submission_valid: bool = False
    submission_problem: str = ""
    weights_sha256: str | None = None
    gpu_quota_used_h: float | None = None
    gpu_quota_total_h: float | None = None
    wall_s: float = 0.0
    workdir: Path | None = None

    inferred: bool = True

    @property
    def ok(self) -> bool:
        sessions_ok = all(s.status in ("COMPLETE", "KILLED") for s in self.sessions)
        return sessions_ok and (self.submission_valid or not self.inferred)


def load_workload(name: str) -> RehearsalWorkload:
    """The workload registered under ``name`` in the ``kaggle_kit.workloads`` entry-point group."""
    found = {ep.name: ep for ep in entry_points(group="kaggle_kit.workloads")}
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise KaggleKitError(f"no workload {name!r} for the rehearsal (known: {known}); reinstall the kit with "
                             "`pip install -e .` so its entry points are registered")
    workload = found[name].load()
    return workload() if callable(workload) and not isinstance(workload, RehearsalWorkload) else workload


def _say(message: str) -> None:
    print(f"[rehearse] {message}", flush=True)


def _project_owner(root: Path) -> str:
    meta = json.loads((root / "kernel-metadata.json").read_text())
    kernel_id = str(meta.get("id", ""))
    if "/" not in kernel_id:
        raise KaggleKitError(f"{root / 'kernel-metadata.json'}: id {kernel_id!r} is not 'owner/slug'")
    return kernel_id.split("/")[0]


@contextlib.contextmanager
def _client_sandboxed(workdir: Path) -> Iterator[None]:
    """Keep the Kaggle client's files (config dir, resumable-upload state) inside the rehearsal's folder."""
    saved_env = {k: os.environ.get(k) for k in (envvars.CONFIG_DIR, envvars.KIT_API_ENDPOINT)}
    saved_tmp = tempfile.tempdir
    client_tmp = workdir / "client" / "tmp"
    client_tmp.mkdir(parents=True, exist_ok=True)
    os.environ[envvars.CONFIG_DIR] = str(workdir / "client" / "config")
    tempfile.tempdir = str(client_tmp)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tmp
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        from kaggle_kit.kaggle_api import restore_default_endpoints

        restore_default_endpoints()


def _wait(api: Any, ref: str, *, timeout_s: float, time_limit_s: float | None = None) -> dict[str, Any]:
    from kaggle_kit.kernels import kernel_status

    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        status = kernel_status(ref, api=api, time_limit_s=time_limit_s, elapsed_s=time.monotonic() - started)
        if status["outcome"].terminal:
            return status
        if time.monotonic() > deadline:
            raise KaggleKitError(f"{ref} did not finish within {timeout_s:.0f} s (last status {status['status']})")
        time.sleep(0.5)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _weights_digest(checkpoint_pt: Path) -> str:
    """SHA-256 over the model's tensors in a checkpoint (names and bytes), for bit-identity checks."""
    import torch

    tensors = torch.load(checkpoint_pt, map_location="cpu", weights_only=True)
    digest = hashlib.sha256()
    for key in sorted(k for k in tensors if k.startswith("model")):
        digest.update(key.encode())
        digest.update(tensors[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


def _newest_checkpoint(folder: Path) -> Path | None:
    manifests = sorted(folder.rglob(MANIFEST_GLOB))
    if not manifests:
        return None
    newest = manifests[-1]
    return newest.with_name(newest.name[: -len(MANIFEST_SUFFIX)] + TENSOR_SUFFIX)


class _Rehearsal:
    def __init__(self, root: Path, options: RehearsalOptions, workload: RehearsalWorkload) -> None:
        self.root = root
        self.options = options
        self.workload = workload
        self.workdir = options.workdir.resolve()
        self.report = RehearsalReport(workdir=self.workdir, inferred=options.infer)
        self.owner = _project_owner(root)
        self.key = secrets.token_hex(16)
        self.mirroring = options.internet
        self.train_ref = ""
        self.checkpoint_dataset: str | None = ""

    def run(self) -> RehearsalReport:
        from kaggle_kit.kaggle_api import Credentials, make_api, point_client_at
        from kaggle_kit.sim.sandbox import Sandbox
        from kaggle_kit.sim.server import SimServer

        started = time.monotonic()
        competitions = self.workdir / "competitions"
        competition_dir = competitions / self.workload.competition
        competitions.mkdir(parents=True, exist_ok=True)
        _say(f"synthetic competition {self.workload.competition} in {competition_dir}")
        solution = self.workload.make_competition(competition_dir, self.options.seed)
        self.report.baseline_score = self.workload.baseline(competition_dir, solution)

        sandbox = Sandbox(self.workdir / "sandbox")
        with SimServer(self.workdir / "state", username=self.owner, key=self.key, sandbox=sandbox,
                       competitions_dir=competitions, processing_seconds=0.2) as server:
            _say(f"Kaggle stand-in at {server.url} (user {self.owner})")
            point_client_at(server.url)
            os.environ[envvars.KIT_API_ENDPOINT] = server.url
            creds = Credentials(username=self.owner, key=self.key, source="rehearsal")
            self.api = make_api(creds)
            self.server = server
            self._publish_code()
            if self.options.run_type == "Interactive":
                self._train_interactive(sandbox, competition_dir)
            else:
                self._train_batch()
            if self.options.infer and self.options.run_type == "Interactive" and not self.mirroring:
                self.report.submission_problem = ("nothing survived the Interactive sessions without a mirror: "
                                                  "no checkpoint to predict with")
            elif self.options.infer:
                self._infer(solution)
            self._versions()
            self._quota()
        self.report.wall_s = time.monotonic() - started
        return self.report

    def _render_options(self, kernel: str, *, attach_training_output: bool = False) -> Any:
        from kaggle_kit.notebooks import RenderOptions

        train_options: dict[str, Any] = {}
        if not self.options.deadline_stop:
            # Real Kaggle says nothing before the kill: no clean stop, only what was checkpointed survives.
            train_options["deadline_margin_s"] = 0.0
        return RenderOptions(
            config=self.workload.config,
            overrides=(*self.workload.overrides, *self.options.overrides),
            competition=self.workload.competition,
            checkpoint_dataset=self.checkpoint_dataset,
            # Without a mirror, the training run's Batch output is what carries the checkpoints over.
            kernels=(self.train_ref,) if attach_training_output and not self.mirroring else (),
            internet=self.options.internet if kernel == "train" else False,
            accelerator="cpu" if self.options.accelerator == "none" else "auto",
            machine_shape=ACCELERATOR_SHAPES[self.options.accelerator],
            extra={"checkpoint_every_minutes": self.options.checkpoint_every_s / 60.0,
                   "train_options": train_options} if kernel == "train" else {},
            models=(),
        )

    def _publish_code(self) -> None:
        from kaggle_kit.code_dataset import publish_code

        published = publish_code(self.root, api=self.api, notes="rehearsal")
        _say(f"code published as {published['ref']} ({len(published['files'])} files)")
        # A dataset still processing is not attached to a kernel pushed meanwhile: wait, as a user would.
        deadline = time.monotonic() + 120.0
        while str(self.api.dataset_status(published["ref"])).lower() != "ready":
            if time.monotonic() > deadline:
                raise KaggleKitError(f"the code dataset {published['ref']} did not become ready within 120 s")
            time.sleep(0.2)

    def _push(self, kernel: str, *, timeout_s: float | None, attach_training_output: bool = False) -> str:
        from kaggle_kit.notebooks import push

        options = self._render_options(kernel, attach_training_output=attach_training_output)
        pushed = push(self.root, kernel, options, api=self.api,
                      out_dir=self.workdir / "build" / kernel, timeout_s=timeout_s)
        _say(f"pushed {pushed['ref']} version {pushed['version']}")
        return str(pushed["ref"])

    def _resolve_datasets(self) -> None:
        """The training kernel's id and its checkpoint dataset (the render's default), or none without a mirror."""
        from kaggle_kit.notebooks import render

        self.train_ref = str(json.loads((self.root / "kernel-metadata.json").read_text())["id"])
        self.checkpoint_dataset = None if self.mirroring else ""
        probe = self.workdir / "build" / "probe"
        rendered = render(self.root, "train", self._render_options("train"), out_dir=probe)
        self.checkpoint_dataset = str(rendered.parameters.get("checkpoint_dataset") or "")
        shutil.rmtree(probe, ignore_errors=True)

    def _train_batch(self) -> None:
        from kaggle_kit.kernels import kernel_output

        self._resolve_datasets()
        if not self.mirroring:
            _say("internet off: no mirror; the next session resumes from this one's Batch output")

        def run_one(index: int, limit: float) -> SessionRow:
            started = time.monotonic()
            ref = self._push("train", timeout_s=limit, attach_training_output=index > 1)
            status = _wait(self.api, ref, timeout_s=limit + 120.0, time_limit_s=limit)
            out = self.workdir / "outputs" / f"train-{index}"
            kernel_output(ref, out, api=self.api)
            return self._session_row(f"train #{index} (Batch)", status, time.monotonic() - started, out)

        self._train_sessions(run_one)
        self._account_losses()
        self._final_state(self.workdir / "outputs" / f"train-{len(self.report.sessions)}")

    def _train_sessions(self, run_one: Callable[[int, float], SessionRow]) -> None:
        """The first session, killed at its time limit; then the second, which must resume and finish."""
        kill = self.options.kill_after_s
        for index in (1, 2):
            limit = kill if (index == 1 and kill > 0) else self.options.session_timeout_s
            row = run_one(index, limit)
            self.report.sessions.append(row)
            _say(f"session {index}: {row.status} after {row.wall_s:.0f} s, step {row.step_end} ({row.note})")
            if row.status == "COMPLETE":
                return
            if row.status != "KILLED":
                raise KaggleKitError(f"training session {index} failed: {row.note}")
        raise KaggleKitError("the resumed training session did not finish: raise the session limit "
                             f"({self.options.session_timeout_s:.0f} s) or train for fewer epochs")

    def _session_row(self, name: str, status: dict[str, Any], wall: float, out: Path) -> SessionRow:
        from kaggle_kit.training import PROGRESS_FILE

        progress = next((p for p in [out / PROGRESS_FILE, *out.rglob(PROGRESS_FILE)] if p.is_file()), None)
        data = _read_json(progress) if progress else None
        outcome = status["outcome"]
        row = SessionRow(name=name, status="KILLED" if outcome.kind == KILLED else outcome.status, wall_s=wall,
                         note=outcome.reason)
        if data:
            row.step_end = data.get("step")
            row.steps = data.get("steps_this_session")
            row.resumed_from = data.get("resumed_from_step")
            if row.steps and data.get("time") and data.get("session_start_time"):
                row.seconds_per_step = (float(data["time"]) - float(data["session_start_time"])) / row.steps
        return row

    def _account_losses(self) -> None:
        """Work lost at each kill: the steps between where a session died and where the next one resumed."""
        train = [s for s in self.report.sessions if s.name.startswith("train")]
        for killed, after in zip(train, train[1:]):
            if killed.status != "KILLED" or killed.step_end is None:
                continue
            resumed = after.resumed_from or 0
            killed.lost_steps = max(0, int(killed.step_end) - int(resumed))
            if killed.seconds_per_step is not None:
                killed.lost_minutes = killed.lost_steps * killed.seconds_per_step / 60.0

    def _final_state(self, out: Path) -> None:
        from kaggle_kit.training import HISTORY_FILE

        history = next((p for p in [out / HISTORY_FILE, *out.rglob(HISTORY_FILE)] if p.is_file()), None)
        data = _read_json(history) if history else None
        if data and isinstance(data.get("best"), dict):
            value = data["best"].get(data.get("monitor") or "score")
            self.report.final_score = float(value) if value is not None else None
        newest = _newest_checkpoint(out)
        if newest is not None and newest.is_file():
            self.report.weights_sha256 = _weights_digest(newest)

    def _train_interactive(self, sandbox: Any, competition_dir: Path) -> None:
        from kaggle_kit.code_dataset import stage_code
        from kaggle_kit.notebooks import render
        from kaggle_kit.sim.sandbox import InputMount, SessionSpec

        self._resolve_datasets()
        rendered = render(self.root, "train", self._render_options("train"), out_dir=self.workdir / "build" / "train")
        if not self.mirroring:
            _say("WARNING: Interactive with internet off: nothing survives the session; the second one starts over")
        # The code dataset, attached as a user would attach it to an interactive notebook.
        code = self.workdir / "code"
        stage_code(self.root, code)
        owner, slug = str(rendered.parameters["code_dataset"]).split("/")
        mounts = (InputMount(competition_dir, (f"competitions/{competition_dir.name}", competition_dir.name)),
                  InputMount(code, (f"datasets/{owner}/{slug}", slug)))
        def run_one(index: int, limit: float) -> SessionRow:
            spec = SessionSpec(rendered.notebook, run_type="Interactive", mounts=mounts,
                               internet=self.options.internet, accelerator=self.options.accelerator,
                               time_limit_s=limit, api_url=self.server.url if self.options.internet else None,
                               secrets={envvars.USERNAME: self.owner, envvars.KEY: self.key})
            started = time.monotonic()
            result = sandbox.run(spec)
            return self._interactive_row(f"train #{index} (Interactive)", time.monotonic() - started, result)

        self._train_sessions(run_one)
        if self.mirroring:
            self._final_from_mirror()

    def _interactive_row(self, name: str, wall: float, result: Any) -> SessionRow:
        # An Interactive session's working folder is gone with it; what it did is read from its log.
        if result.killed_by:
            status, note = "KILLED", f"killed: the {result.killed_by} limit was reached"
        else:
            status, note = str(result.status), result.failure_message or "finished"
        row = SessionRow(name=name, status=status, wall_s=wall, note=f"{note}; working folder wiped")
        log = Path(result.log_path).read_text(errors="replace") if result.log_path else ""
        resumed = re.search(r"resuming at step (\d+)", log)
        row.resumed_from = int(resumed.group(1)) if resumed else (0 if "fresh start" in log else None)
        finished = re.search(r"(\w+): step (\d+), (\d+) steps this session", log)
        if finished:
            row.step_end, row.steps = int(finished.group(2)), int(finished.group(3))
        return row

    def _final_from_mirror(self) -> None:
        dest = self.workdir / "outputs" / "mirror"
        dest.mkdir(parents=True, exist_ok=True)
        self.api.dataset_download_files(self.checkpoint_dataset, path=str(dest), unzip=True, quiet=True)
        newest = _newest_checkpoint(dest)
        if newest is not None:
            self.report.weights_sha256 = _weights_digest(newest)
        info = _read_json(newest.with_name(newest.name[: -len(TENSOR_SUFFIX)] + STATE_SUFFIX)) if newest else None
        if info and isinstance(info.get("best"), dict) and info["best"].get("value") is not None:
            self.report.final_score = float(info["best"]["value"])
        # The working folders are gone; the mirror's ledger says how far each session got into the dataset.
        ledger = _read_json(dest / LEDGER_FILE) or {}
        mirrored = [s for s in ledger.get("sessions", []) if isinstance(s, dict)]
        train = [s for s in self.report.sessions if s.name.startswith("train")]
        for row, entry in zip(train, mirrored[-len(train):]):
            row.note += f"; mirrored steps {entry.get('first_step')}-{entry.get('last_step')}"
        for row, previous in zip(train[1:], mirrored[-len(train):]):
            if row.resumed_from is None:
                row.resumed_from = previous.get("last_step")

    def _infer(self, solution: Path) -> None:
        from kaggle_kit.kernels import kernel_output

        if not self.checkpoint_dataset:
            _say("no checkpoint dataset (mirroring off): the inference notebook reads the training run's output")
        started = time.monotonic()
        ref = self._push("infer", timeout_s=self.options.session_timeout_s, attach_training_output=True)
        status = _wait(self.api, ref, timeout_s=self.options.session_timeout_s + 120.0)
        wall = time.monotonic() - started
        out = self.workdir / "outputs" / "infer"
        kernel_output(ref, out, api=self.api)
        row = SessionRow(name="infer (Batch, internet off)", status=str(status["status"]), wall_s=wall,
                         note=str(status.get("failure_message") or "finished"))
        self.report.sessions.append(row)
        submission = out / "submission.csv"
        if status["status"] != "COMPLETE" or not submission.is_file():
            self.report.submission_problem = f"inference did not write submission.csv: {row.note}"
            return
        try:
            self.report.submission_score = self.workload.score(solution, submission)
            self.report.submission_valid = True
        except KaggleKitError as exc:
            self.report.submission_problem = str(exc)

    def _quota(self) -> None:
        try:
            quota = self.api.quota_view().gpu_quota
        except Exception:  # noqa: BLE001 - a summary row, not a failure
            return
        if quota is not None:
            self.report.gpu_quota_used_h = quota.time_used.total_seconds() / 3600
            self.report.gpu_quota_total_h = quota.total_time_allowed.total_seconds() / 3600

    def _versions(self) -> None:
        for ref in filter(None, [self.checkpoint_dataset]):
            try:
                reply = json.loads(self.api.dataset_status(ref, format="json(status,current_version_number)"))
            except Exception:  # noqa: BLE001 - a missing dataset is a summary row, not a failure
                continue
            self.report.dataset_versions[ref] = int(reply.get("current_version_number") or 0)


def rehearse(root: str | os.PathLike[str] | None = None, options: RehearsalOptions | None = None) -> RehearsalReport:
    """Rehearse a whole Kaggle training run offline (see the module docstring)."""
    from kaggle_kit.root import find_root

    options = options or RehearsalOptions()
    if options.run_type not in ("Batch", "Interactive"):
        raise KaggleKitError(f"run type {options.run_type!r}: use Batch or Interactive")
    if options.accelerator not in ACCELERATOR_SHAPES:
        raise KaggleKitError(f"accelerator {options.accelerator!r}: use one of {', '.join(ACCELERATOR_SHAPES)}")
    if options.kill_after_s < 0:
        raise KaggleKitError("--kill-after must be 0 (no kill) or more seconds")
    project = Path(root) if root is not None else find_root().path
    workdir = options.workdir.resolve()
    if workdir.exists() and any(workdir.iterdir()):
        raise KaggleKitError(f"{workdir} is not empty: remove it or pass another --workdir")
    workload = load_workload(options.workload)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with _client_sandboxed(workdir):
            return _Rehearsal(project, options, workload).run()
    finally:
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def format_report(report: RehearsalReport, workload_baseline: str = "trivial") -> str:
    """The summary table."""
    lines = ["", "Rehearsal summary", ""]
    header = f"{'session':<30} {'status':<10} {'wall':>7} {'steps':>6} {'at step':>8} {'lost at kill':>22}"
    lines += [header, "-" * len(header)]
    for s in report.sessions:
        lost = "-"
        if s.lost_steps is not None:
            minutes = f"{s.lost_minutes:.2f} min" if s.lost_minutes is not None else "? min"
            lost = f"{s.lost_steps} steps, {minutes}"
        lines.append(f"{s.name:<30} {s.status:<10} {s.wall_s:>6.0f}s {str(s.steps if s.steps is not None else '-'):>6}"
                     f" {str(s.step_end if s.step_end is not None else '-'):>8} {lost:>22}")
    lines.append("")
    for ref, number in report.dataset_versions.items():
        lines.append(f"checkpoint dataset {ref}: {number} version(s)")
    if report.final_score is not None:
        lines.append(f"final validation score: {report.final_score:.4f} "
                     f"(baseline, predicting {workload_baseline}: {report.baseline_score:.4f})")
    if not report.inferred:
        lines.append("submission: not rehearsed (--no-infer)")
    elif report.submission_valid:
        lines.append(f"submission: valid, test score {report.submission_score:.4f} "
                     f"(baseline {report.baseline_score:.4f})")
    else:
        lines.append(f"submission: NOT valid: {report.submission_problem}")
    if report.gpu_quota_used_h is not None:
        lines.append(f"weekly GPU quota (kaggle quota): {report.gpu_quota_used_h:.3f} h used of "
                     f"{report.gpu_quota_total_h:.0f} h")
    if report.weights_sha256:
        lines.append(f"final weights sha256: {report.weights_sha256}")
    lines.append(f"wall time: {report.wall_s:.0f} s")
    return "\n".join(lines)
