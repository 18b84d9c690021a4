"""`kaggle-kit rehearse`: a whole Kaggle training run of a declared project, offline, kills included.

The rehearsal starts the API stand-in with its session sandbox, writes the project's synthetic data (its declared
``rehearse.data`` factory) where the notebook reads it (its competition, else its first dataset), publishes the kit
(when the project attaches it as a dataset) and the project's code, pushes the training notebook, lets its first
session be killed by the (scaled) time limit mid-training, pushes it again so a second session resumes from the
mirrored checkpoint and finishes, runs the inference notebook with internet off when one is declared, and scores its
submission. The last thing it prints is a summary: sessions, steps, work lost at the kill, dataset versions, the final
validation score against the trivial baseline, whether the submission is valid, and where the sessions imported the
kit from.

Everything project-specific comes from the declaration (:mod:`kaggle_kit.project`), so this module imports no
workload. The engine takes its credentials and client from the stand-in it starts and never from the caller's
environment: the caller's Kaggle variables and proxies are set aside while it runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaggle_kit import envvars
from kaggle_kit.checkpoint.format import STATE_SUFFIX, TENSOR_SUFFIX
from kaggle_kit.errors import DeclarationError, KaggleKitError
from kaggle_kit.kaggle_platform import shape_for
from kaggle_kit.mirror.ledger import LEDGER_FILE
from kaggle_kit.project import REHEARSAL_DIR, NotebookSpec, Project, RehearseSpec, import_object, load_project
from kaggle_kit.root import KIT_ORIGIN_PREFIX
from kaggle_kit.runs.evidence import log_text, newest_checkpoint, weights_digest
from kaggle_kit.runs.summary import SessionRow, outcome_lines, session_table

__all__ = ["RehearsalHooks", "RehearsalOptions", "RehearsalReport", "SessionRow", "format_report", "kit_origin_in",
           "load_hooks", "rehearse"]

DEFAULT_WORKDIR = REHEARSAL_DIR
# The simulated accelerators a rehearsal offers, each with the machine shape that gives it.
ACCELERATOR_SHAPES = {name: shape_for(name) for name in ("none", "T4x2", "L4")}
# The caller's variables that would point the rehearsal's clients (or its sessions) elsewhere: set aside while it runs.
_CALLER_VARIABLES = (envvars.USERNAME, envvars.KEY, envvars.API_TOKEN, envvars.API_ENVIRONMENT, envvars.CONFIG_DIR,
                     envvars.KIT_API_ENDPOINT, envvars.KIT_ROOT, envvars.KIT_PROJECT, "HTTP_PROXY", "HTTPS_PROXY",
                     "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "NO_PROXY", "no_proxy")


@dataclass(frozen=True)
class RehearsalHooks:
    """The project's rehearsal functions, imported from the declaration's ``rehearse`` table.

    Attributes:
        data: ``(dest, seed) -> labels or None``: writes the synthetic data the notebook reads.
        score: ``(labels, submission) -> float``.
        baseline: ``(data folder, labels) -> float``: the trivial submission's score.
        baseline_name: What the trivial submission predicts.
    """

    data: Callable[[Path, int], Path | None] | None = None
    score: Callable[[Path, Path], float] | None = None
    baseline: Callable[[Path, Path], float] | None = None
    baseline_name: str = "trivial"


def load_hooks(project: Project) -> RehearsalHooks:
    """The functions ``project`` declares for the rehearsal.

    Raises:
        DeclarationError: a declared function cannot be imported or is not callable.
    """
    spec = project.rehearse or RehearseSpec(notebook=_default_notebook(project))
    found: dict[str, Any] = {}
    for key in ("data", "score", "baseline"):
        path = getattr(spec, key)
        if path is None:
            continue
        where = f"{project.file}: {project.table}.rehearse.{key}"
        obj = import_object(path, project.root, where=where)
        if not callable(obj):
            raise DeclarationError(f"{where} = {path!r} is not a function")
        found[key] = obj
    return RehearsalHooks(baseline_name=spec.baseline_name, **found)


def _default_notebook(project: Project) -> str:
    return "train" if "train" in project.notebooks else next(iter(project.notebooks))


@dataclass
class RehearsalOptions:
    """How to rehearse.

    Attributes:
        kill_after_s: Real seconds the first training session may run before it is killed; 0 for no kill; ``"auto"``
            for a kill placed from a measured run: an uninterrupted reference run first, then a run killed
            half-way through its training, resumed in a new session and compared with the reference bit for bit
            (a time limit is the only kill the sandbox has, so measuring first makes it land whatever the
            machine's speed). Default: the declaration's ``rehearse.kill-after``, else auto.
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
        seed: Seeds the synthetic data.
        notebook: The training notebook (default: the declared ``rehearse.notebook``).
        overrides: More config overrides on top of the declared ones (e.g. ``train.epochs=4``).
        infer: Run the declared inference notebook (if any) and score its submission.
        session_timeout_s: Real-time cap of every session that is not meant to be killed; None: four times the
            measured reference session (at least 120 s), or Kaggle's own limit when nothing was measured.
        input_layout: Where the sessions find their inputs: ``current`` (``/kaggle/input/datasets/<owner>/<slug>``,
            ...) or ``legacy`` (``/kaggle/input/<slug>``); Kaggle uses one or the other.
        kill_at_step: Kill the first training session once its training loop reaches this optimizer step (the
            stand-in stops it as its time limit does), with no reference run: the same point of the training on any
            machine. Overrides ``kill_after_s``. Without a mirror the automatic kill is placed this way too (at
            half the reference run's steps); with one it stays a time limit, so that the mirror has had time to
            upload a checkpoint before the kill.
    """

    kill_after_s: float | str | None = None
    kill_at_step: int | None = None
    run_type: str = "Batch"
    accelerator: str = "none"
    internet: bool = True
    workdir: Path = Path(DEFAULT_WORKDIR)
    keep: bool = False
    deadline_stop: bool = False
    checkpoint_every_s: float = 6.0
    seed: int = 0
    notebook: str | None = None
    overrides: tuple[str, ...] = ()
    infer: bool = True
    session_timeout_s: float | None = None
    input_layout: str = "current"


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
    reference_sha256: str | None = None
    resume_missed: bool = False  # a session was killed but the next one found nothing to resume from
    kill_after_s: float | None = None  # the first session's limit in the run that was killed and resumed
    kill_step: int | None = None  # or the step it was killed at, for a kill placed by progress
    gpu_quota_used_h: float | None = None
    gpu_quota_total_h: float | None = None
    wall_s: float = 0.0
    workdir: Path | None = None
    isolation_note: str | None = None  # why the sessions ran NOT isolated from this machine, or None
    input_layout: str = "current"
    model_shapes: dict[str, list[int]] = field(default_factory=dict)
    kit_origin: str | None = None
    notes: list[str] = field(default_factory=list)
    baseline_name: str = "trivial"

    inferred: bool = True

    @property
    def bit_identical(self) -> bool | None:
        """Whether the resumed run ended with the uninterrupted reference run's weights (None: no reference)."""
        if self.reference_sha256 is None or self.weights_sha256 is None:
            return None
        return self.reference_sha256 == self.weights_sha256

    @property
    def ok(self) -> bool:
        sessions_ok = all(s.status in ("COMPLETE", "KILLED") for s in self.sessions)
        return (sessions_ok and (self.submission_valid or not self.inferred) and self.bit_identical is not False
                and not self.resume_missed)


def _say(message: str) -> None:
    print(f"[rehearse] {message}", flush=True)


@contextlib.contextmanager
def _client_sandboxed(workdir: Path) -> Iterator[None]:
    """Keep the Kaggle client's files inside the rehearsal's folder, and the caller's Kaggle variables and proxies
    (a shell still holding ``sim serve``'s exports, a real key) out of the rehearsal."""
    saved_env = {k: os.environ.get(k) for k in _CALLER_VARIABLES}
    saved_tmp = tempfile.tempdir
    client_tmp = workdir / "client" / "tmp"
    client_tmp.mkdir(parents=True, exist_ok=True)
    for key in _CALLER_VARIABLES:
        os.environ.pop(key, None)
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


def _log_span(path: Path) -> float | None:
    """Seconds from a session log's first record to its last (Kaggle's JSON log), or None."""
    try:
        records = json.loads(path.read_text(errors="replace"))
        times = [float(r["time"]) for r in records if isinstance(r, dict) and "time" in r]
    except (ValueError, TypeError, KeyError):
        return None
    return max(times) - min(times) if times else None


def _training_bounds(path: Path) -> tuple[float, float] | None:
    """When the training started ("fresh start" or "resuming at step", printed just before it) and ended ("steps
    this session"), in seconds from the session's start, from its log; None when the log does not say."""
    try:
        records = [r for r in json.loads(path.read_text(errors="replace")) if isinstance(r, dict)]
        start = next((float(r.get("time", 0)) for r in records
                      if "fresh start" in str(r.get("data")) or "resuming at step" in str(r.get("data"))), None)
        end = next((float(r.get("time", 0)) for r in records if "steps this session" in str(r.get("data"))), None)
    except (ValueError, TypeError):
        return None
    return (start, end) if start is not None and end is not None and end >= start else None


def kit_origin_in(log: str) -> str | None:
    """The folder a session imported the kit from, from the line its bootstrap prints (None if not there)."""
    found = re.search(re.escape(KIT_ORIGIN_PREFIX) + r"(\S+)", log)
    return found.group(1) if found else None


class _Rehearsal:
    def __init__(self, project: Project, options: RehearsalOptions, hooks: RehearsalHooks) -> None:
        self.project = project
        self.root = project.root
        self.options = options
        self.hooks = hooks
        self.spec = project.rehearse or RehearseSpec(notebook=_default_notebook(project))
        self.train_nb = project.notebook(options.notebook or self.spec.notebook)
        self.infer_nb = project.notebook(self.spec.infer) if self.spec.infer and options.infer else None
        self.workdir = options.workdir.resolve()
        self.report = RehearsalReport(workdir=self.workdir, inferred=self.infer_nb is not None,
                                      baseline_name=hooks.baseline_name)
        self.owner = project.owner
        self.key = secrets.token_hex(16)
        self.mirroring = options.internet
        self.train_ref = self.train_nb.kernel
        self.checkpoint_dataset: str | None = ""
        self.labels: Path | None = None
        dropped = sorted({m for nb in filter(None, (self.train_nb, self.infer_nb)) for m in nb.models})
        if dropped:
            self.report.notes.append(f"not attached in the rehearsal (the offline Kaggle has no models): "
                                     f"{', '.join(dropped)}; the notebooks must run without them")
        chosen = options.kill_after_s if options.kill_after_s is not None else self.spec.kill_after
        self.kill: float | None = None if chosen == "auto" else float(chosen)
        # A kill placed by progress: the caller's step, or half the reference run's steps without a mirror.
        self.kill_step: int | None = options.kill_at_step
        if self.kill_step is not None:
            self.kill = 1.0  # a kill is rehearsed, without a reference run; the step places it, not this limit
        self.session_cap: float | None = options.session_timeout_s
        self.chains = 0
        self.run_name = ""
        self.competitions: Path | None = None

    def run(self) -> RehearsalReport:
        from kaggle_kit.kaggle_api import Credentials, make_api, point_client_at
        from kaggle_kit.sim.sandbox import Sandbox, choose_isolation
        from kaggle_kit.sim.server import SimServer

        started = time.monotonic()
        self.report.input_layout = self.options.input_layout
        isolation, note = choose_isolation("auto")
        if isolation != "namespace":
            self.report.isolation_note = note
            _say(f"WARNING: the sandbox CANNOT isolate the sessions here ({note}): they run with this machine's "
                 "files in view; a run that passes here may still fail on Kaggle")
        competitions = self.workdir / "competitions"
        competitions.mkdir(parents=True, exist_ok=True)
        self.competitions = competitions
        data_dir = self._make_data(competitions)

        sandbox = Sandbox(self.workdir / "sandbox")
        with SimServer(self.workdir / "state", username=self.owner, key=self.key, sandbox=sandbox,
                       competitions_dir=competitions, processing_seconds=0.2,
                       input_layout=self.options.input_layout) as server:
            _say(f"Kaggle stand-in at {server.url} (user {self.owner})")
            point_client_at(server.url)
            os.environ[envvars.KIT_API_ENDPOINT] = server.url
            self.credentials = Credentials(username=self.owner, key=self.key, source="rehearsal")
            self.api = make_api(self.credentials)
            self.server = server
            self._publish(data_dir)
            if self.options.run_type == "Interactive":
                self._train_interactive(sandbox, data_dir)
            else:
                self._train_batch()
            if self.infer_nb is not None and self.options.run_type == "Interactive" and not self.mirroring:
                self.report.submission_problem = ("nothing survived the Interactive sessions without a mirror: "
                                                  "no checkpoint to predict with")
            elif self.infer_nb is not None and self.options.run_type == "Batch":
                self._infer_with_the_run()
            elif self.infer_nb is not None:
                self._infer()
            self._versions()
            self._quota()
        self.report.wall_s = time.monotonic() - started
        return self.report

    def _make_data(self, competitions: Path) -> Path | None:
        """Writes the project's synthetic data where the training notebook reads it; returns its folder."""
        nb = self.train_nb
        if self.hooks.data is None:
            if nb.competition:
                raise DeclarationError(f"{self.project.file}: notebook {nb.name!r} reads the competition "
                                       f"{nb.competition}, which the offline Kaggle cannot have: declare "
                                       f"[{self.project.table}.rehearse] data = \"package.module:function\" that "
                                       "writes a synthetic one")
            return None
        if nb.competition:
            dest = competitions / nb.competition
        elif nb.datasets:
            handle = nb.datasets[0].split("/")
            if handle[0] != self.owner:
                raise DeclarationError(f"{self.project.file}: the rehearsal attaches its data as {nb.datasets[0]}, "
                                       f"but the offline Kaggle holds only datasets of {self.owner}: put a dataset "
                                       f"of {self.owner} first in notebook {nb.name!r}'s datasets")
            dest = self.workdir / "data" / handle[1]
        else:
            raise DeclarationError(f"{self.project.file}: rehearse.data writes data, but notebook {nb.name!r} "
                                   "declares neither a competition nor a dataset to attach it as")
        dest.mkdir(parents=True, exist_ok=True)
        _say(f"synthetic data for {nb.competition or nb.datasets[0]} in {dest}")
        self.labels = self.hooks.data(dest, self.options.seed)
        if self.hooks.baseline is not None and self.labels is not None:
            self.report.baseline_score = float(self.hooks.baseline(dest, self.labels))
        return dest

    def _declared(self, nb: NotebookSpec) -> set[str]:
        import jupytext

        from kaggle_kit.notebooks import declared_parameters

        source = self.root / nb.source
        return declared_parameters(jupytext.read(source, fmt="py:percent"), source=str(source))[1]

    def _render_options(self, nb: NotebookSpec, *, attach_training_output: bool = False) -> Any:
        from kaggle_kit.notebooks import RenderOptions

        training = nb.name == self.train_nb.name
        declared = self._declared(nb)
        carry_output = attach_training_output and not self.mirroring
        resumes_from_output = training and "previous_output" in declared
        params: dict[str, Any] = {}
        if training and "checkpoint_every_minutes" in declared:
            params["checkpoint_every_minutes"] = self.options.checkpoint_every_s / 60.0
        if training and not self.options.deadline_stop and "train_options" in declared:
            # Real Kaggle says nothing before the kill: no clean stop, only what was checkpointed survives.
            params["train_options"] = {**dict(nb.parameters.get("train_options") or {}), "deadline_margin_s": 0.0}
        overrides = (*self.spec.overrides, *self.options.overrides)
        return RenderOptions(
            config=self.spec.config if "config" in declared else None,
            overrides=overrides if "overrides" in declared else (),
            checkpoint_dataset=self.checkpoint_dataset if (training or not self.mirroring) else None,
            # Without a mirror, the training run's Batch output is what carries the checkpoints over: the next
            # training session names it as its previous output (searched by restore), the inference one attaches it.
            kernels=(self.train_ref,) if carry_output and not resumes_from_output else (),
            previous_output=self.train_ref if carry_output and resumes_from_output else None,
            internet=self.options.internet if training else False,
            accelerator=ACCELERATOR_SHAPES[self.options.accelerator] or "none",
            params=params,
            models=(),
        )

    def _publish(self, data_dir: Path | None) -> None:
        from kaggle_kit.code_dataset import publish_code, publish_kit

        ready: list[str] = []
        if self.project.kit_dataset:
            if self.project.kit_dataset.split("/")[0] != self.owner:
                raise DeclarationError(f"{self.project.file}: kit-dataset {self.project.kit_dataset} is not "
                                       f"{self.owner}'s; the offline Kaggle holds only {self.owner}'s datasets")
            kit = publish_kit(self.project.kit_dataset, api=self.api, credentials=self.credentials,
                              notes="rehearsal")
            _say(f"kit published as {kit['ref']} ({len(kit['files'])} files, {kit['bytes']} bytes)")
            ready.append(kit["ref"])
        code = publish_code(self.project, api=self.api, credentials=self.credentials, notes="rehearsal")
        for warning in code["warnings"]:
            _say(f"warning: {warning}")
        _say(f"code published as {code['ref']} ({len(code['files'])} files, {code['bytes']} bytes)")
        ready.append(code["ref"])
        if data_dir is not None and not self.train_nb.competition:
            ready.append(self._publish_data(data_dir))
        # A dataset still processing is not attached to a kernel pushed meanwhile: wait, as a user would.
        for ref in ready:
            deadline = time.monotonic() + 120.0
            while str(self.api.dataset_status(ref)).lower() != "ready":
                if time.monotonic() > deadline:
                    raise KaggleKitError(f"the dataset {ref} did not become ready within 120 s")
                time.sleep(0.2)

    def _publish_data(self, data_dir: Path) -> str:
        ref = self.train_nb.datasets[0]
        owner_slug = "/".join(ref.split("/")[:2])
        meta = {"id": owner_slug, "title": f"{self.project.name} rehearsal data"[:50],
                "licenses": [{"name": "other"}]}
        with tempfile.TemporaryDirectory(prefix="kaggle-kit-data-") as tmp:
            folder = Path(tmp) / "data"
            shutil.copytree(data_dir, folder)
            (folder / "dataset-metadata.json").write_text(json.dumps(meta))
            self.api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="zip")
        _say(f"data published as {owner_slug}")
        return owner_slug

    def _push(self, nb: NotebookSpec, *, timeout_s: float | None, attach_training_output: bool = False) -> str:
        from kaggle_kit.notebooks import push

        options = self._render_options(nb, attach_training_output=attach_training_output)
        pushed = push(self.project, nb.name, options, api=self.api, out_dir=self.workdir / "build" / nb.name,
                      timeout_s=timeout_s)
        if pushed.problems:
            raise KaggleKitError(pushed.describe())
        _say(f"pushed {pushed.ref} version {pushed.version}")
        return pushed.ref

    def _resolve_datasets(self) -> None:
        """The training notebook's checkpoint dataset (as rendered), or none without a mirror."""
        from kaggle_kit.notebooks import render

        self.checkpoint_dataset = None if self.mirroring else ""
        probe = self.workdir / "build" / "probe"
        rendered = render(self.project, self.train_nb.name, self._render_options(self.train_nb), out_dir=probe)
        self.checkpoint_dataset = rendered.checkpoint_dataset if rendered.checkpoints == "mirror" else ""
        if self.mirroring and not self.checkpoint_dataset:
            _say(f"WARNING: notebook {self.train_nb.name!r} does not mirror its checkpoints (checkpoints = "
                 f"{rendered.checkpoints!r}): a killed session can resume only from its Batch output")
        shutil.rmtree(probe, ignore_errors=True)

    def _train_batch(self) -> None:
        """Batch training is ``kaggle-kit run`` against the stand-in: each attempt is one run of the engine, its
        first session's limit the kill, the next ones resuming until the training loop records that it finished."""
        self._resolve_datasets()
        if not self.mirroring:
            _say("internet off: no mirror; the next session resumes from this one's Batch output")
        self._train_sessions(self._run_chain)
        self._account_losses()
        last = next((s.output for s in reversed(self._train_rows()) if s.output is not None), None)
        if last is not None:
            self._final_state(last)

    def _run_options(self, run: str, *, first_limit: float | None, infer: bool = False) -> Any:
        from kaggle_kit.runs import RunOptions

        cap = self.session_cap
        safety = (cap or 3600.0) + 300.0
        return RunOptions(run=run, render=self._render_options(self.train_nb), session_timeout_s=cap,
                          first_session_timeout_s=first_limit, max_sessions=4, quota_reserve_s=0.0,
                          then_infer=infer, infer_notebook=self.infer_nb.name if self.infer_nb else None,
                          submit=infer and self._submittable(), poll_s=0.3, max_poll_s=2.0, mirror_every_s=5.0,
                          score_timeout_s=120.0, stall_timeout_s=safety, home=self.workdir / "runs")

    def _run_chain(self, first_limit: float | None) -> list[SessionRow]:
        """One run of the engine (a new run name per attempt); its training sessions as rows.

        Raises:
            RunError: the engine stopped the run (``cause`` says why: ``no_progress`` for a kill before the first
                checkpoint).
        """
        from kaggle_kit.runs import carry_run

        if first_limit is not None and self.kill_step is not None:
            self.server.sessions.kill_at_step(self.train_ref, self.kill_step)
            first_limit = None
        self.chains += 1
        self.run_name = f"rehearsal-{self.chains}"
        outcome = carry_run(self.project, self.train_nb.name, self._run_options(self.run_name,
                            first_limit=first_limit), api=self.api, say=lambda m: _say(f"run: {m}"))
        rows = []
        for session in outcome.state.training_sessions():
            index = len(self._train_rows()) + len(rows) + 1
            out = None
            if session.output and (outcome.folder / str(session.output)).is_dir():
                # The rehearsal's own layout: each training session's output in outputs/train-N.
                out = self.workdir / "outputs" / f"train-{index}"
                shutil.rmtree(out, ignore_errors=True)
                shutil.copytree(outcome.folder / str(session.output), out, symlinks=True)
            rows.append(self._engine_row(f"train #{index} (Batch)", session, out))
        return rows

    def _engine_row(self, name: str, session: Any, out: Path | None) -> SessionRow:
        status = "KILLED" if session.status == "CANCEL_ACKNOWLEDGED" else session.status
        row = SessionRow(name=name, status=status, wall_s=(session.ended_at or 0.0) - session.pushed_at,
                         note=session.reason, step_end=session.step, resumed_from=session.resumed_from,
                         seconds_per_step=session.seconds_per_step, output=out)
        if out is not None and out.is_dir():
            self._note_kit_origin(out)
            data = _read_json(next(iter(sorted(out.rglob("progress.json"))), out / "progress.json"))
            if data:
                row.steps = data.get("steps_this_session")
            logs = sorted(out.glob("*.log"))
            row.session_s = _log_span(logs[0]) if logs else None
            row.training_bounds = _training_bounds(logs[0]) if logs else None
        return row

    def _train_rows(self) -> list[SessionRow]:
        return [s for s in self.report.sessions if s.name.startswith("train")]

    def _train_sessions(self, run_chain: Callable[[float | None], list[SessionRow]]) -> None:
        """A reference run first when the kill is placed automatically, then a run whose first session is killed at
        its time limit and whose next one must resume and finish; a kill that missed the training is moved once."""
        from kaggle_kit.errors import RunError

        kill = self.kill
        if kill is None:
            kill = self._reference_run(run_chain)
            if kill is None:
                return
        for attempt in range(2):
            try:
                rows = run_chain(kill if kill > 0 else None)
            except RunError as exc:
                if exc.cause != "no_progress" or kill <= 0:
                    raise KaggleKitError(f"the rehearsed run stopped: {exc}") from None
                if attempt == 0:
                    # A slower machine than the kill was placed for: the same kill later, once.
                    kill = self._retry(kill, 1.6, "the kill came before the first checkpoint")
                    continue
                self.report.resume_missed = True
                self.report.notes.append(f"the kill at {self._kill_text(kill)} came before the first checkpoint: no "
                                         "resume was rehearsed (kill later, or --kill-after auto)")
                return
            self.report.sessions.extend(rows)
            self.report.kill_after_s = kill if kill > 0 and self.kill_step is None else None
            self.report.kill_step = self.kill_step if kill > 0 else None
            for row in rows:
                _say(f"session {row.name}: {row.status} after {row.wall_s:.0f} s, step {row.step_end} ({row.note})")
            if kill > 0 and len(rows) == 1:
                rows[0].name = rows[0].name.replace("(Batch)", "(Batch, kill missed)")
                if attempt == 0:
                    kill = self._retry(kill, 0.6, "the training finished before the kill")
                    continue
                self.report.notes.append(f"the first session finished before the kill at {self._kill_text(kill)}: no "
                                         "kill was rehearsed (kill earlier, or train longer)")
            if kill > 0 and len(rows) > 1 and not rows[1].resumed_from:
                self.report.resume_missed = True
                self.report.notes.append("the second session did not resume from the first one's checkpoint")
            return

    def _reference_run(self, run_chain: Callable[[float | None], list[SessionRow]]) -> float | None:
        """Trains once without a kill and returns where to kill the next run: half-way through its training (None
        when the run cannot be repeated: an Interactive session without a mirror keeps nothing). Sessions that are
        not meant to be killed are then capped from what the reference measured, not from fixed seconds."""
        if self.options.run_type == "Interactive" and not self.mirroring:
            self.report.notes.append("no reference run: an Interactive session without a mirror keeps nothing")
            return 0.0
        (row, *more) = run_chain(None)
        row.name = "train #1 (reference)"
        self.report.sessions.append(row)
        _say(f"reference run: {row.status} after {row.wall_s:.0f} s, step {row.step_end}")
        if row.status != "COMPLETE" or more:
            raise KaggleKitError(f"the reference training session failed: {row.note}")
        self.report.reference_sha256 = self._digest_of(row)
        if row.training_bounds is None:
            raise KaggleKitError("the reference session's log does not say when training started and ended (the "
                                 "notebook prints \"fresh start\" before training and \"N steps this session\" "
                                 "after it): pass --kill-after SECONDS")
        if self.options.session_timeout_s is None:
            # A resumed session does less than the whole reference one; four times it absorbs a busier machine.
            self.session_cap = max(120.0, 4.0 * row.wall_s)
            _say(f"sessions that are not killed are capped at {self.session_cap:.0f} s (4 x the reference session)")
        start, end = row.training_bounds
        cadence = self.options.checkpoint_every_s
        if end - start < 2.5 * cadence:
            self.report.notes.append(f"training takes {end - start:.0f} s, too short for a kill after a checkpoint "
                                     f"every {cadence:.0f} s: lower --checkpoint-every or train longer")
        kill = start + max((end - start) / 2, 1.5 * cadence)
        steps = row.step_end or 0
        if not self.mirroring and steps > 1:
            # The output keeps what the session wrote until the kill, so a kill by progress cannot outrun an upload.
            self.kill_step = steps // 2
            _say(f"training ran {steps} steps: the next run is killed at step {self.kill_step}, on any machine")
        else:
            _say(f"training ran from {start:.0f} s to {end:.0f} s of the session: the next run is killed at "
                 f"{kill:.0f} s")
        self._reset_run()
        return kill

    def _kill_text(self, kill: float) -> str:
        return f"step {self.kill_step}" if self.kill_step is not None else f"{kill:.0f} s"

    def _retry(self, kill: float, factor: float, why: str) -> float:
        if self.kill_step is not None:
            step = max(1, round(self.kill_step * factor))
            _say(f"{why} (kill at step {self.kill_step}): trying again with the kill at step {step}")
            self.report.notes.append(f"{why} at step {self.kill_step}; rehearsed again with the kill at step {step}")
            self.kill_step = step
            self._reset_run()
            return kill * factor
        later = kill * factor
        _say(f"{why} (kill at {kill:.0f} s): trying again with the kill at {later:.0f} s")
        self.report.notes.append(f"{why} at {kill:.0f} s; rehearsed again with the kill at {later:.0f} s")
        self._reset_run()
        return later

    def _digest_of(self, row: SessionRow) -> str | None:
        if row.output is not None:
            newest = newest_checkpoint(row.output)
            return weights_digest(newest)[0] if newest is not None and newest.is_file() else None
        if self.checkpoint_dataset:
            return self._mirror_digest()
        return None

    def _mirror_digest(self) -> str | None:
        dest = self.workdir / "outputs" / f"mirror-{len(self._train_rows())}"
        dest.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the client prints the dataset's URL even when quiet
            self.api.dataset_download_files(self.checkpoint_dataset, path=str(dest), unzip=True, quiet=True)
        newest = newest_checkpoint(dest)
        return weights_digest(newest)[0] if newest is not None else None

    def _reset_run(self) -> None:
        """A clean slate for the next run: the mirror dataset deleted (the next session starts fresh)."""
        if self.checkpoint_dataset:
            owner, slug = self.checkpoint_dataset.split("/")
            self.api.dataset_delete(owner, slug, no_confirm=True)

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
        newest = newest_checkpoint(out)
        if newest is not None and newest.is_file():
            self.report.weights_sha256, self.report.model_shapes = weights_digest(newest)

    def _note_kit_origin(self, out: Path) -> None:
        """Where the session imported the kit from, as its bootstrap printed it."""
        for log in sorted(out.glob("*.log")):
            origin = kit_origin_in(log_text(log.read_text(errors="replace")))
            if origin and self.report.kit_origin is None:
                self.report.kit_origin = origin

    def _train_interactive(self, sandbox: Any, data_dir: Path | None) -> None:
        from kaggle_kit.code_dataset import stage_code, stage_kit
        from kaggle_kit.notebooks import render
        from kaggle_kit.sim.sandbox import InputMount, SessionSpec

        self._resolve_datasets()
        rendered = render(self.project, self.train_nb.name, self._render_options(self.train_nb),
                          out_dir=self.workdir / "build" / self.train_nb.name)
        if not self.mirroring:
            _say("WARNING: Interactive with internet off: nothing survives the session; the second one starts over")
        # The datasets, attached as a user would attach them to an interactive notebook.
        mounts: list[Any] = []
        code = self.workdir / "code"
        stage_code(self.root, code, rules=self.project.publish, secrets=[self.key])
        attached = [(code, self.project.code_dataset)]
        if self.project.kit_dataset:
            stage_kit(self.workdir / "kit")
            attached.append((self.workdir / "kit", self.project.kit_dataset))
        if data_dir is not None and self.train_nb.competition:
            slug = self.train_nb.competition
            mounts.append(InputMount(data_dir, "competition", slug))
        elif data_dir is not None:
            attached.append((data_dir, "/".join(self.train_nb.datasets[0].split("/")[:2])))
        for folder, handle in attached:
            mounts.append(InputMount(folder, "dataset", handle))

        def run_one(index: int, limit: float, resume: bool, *, kill_at_step: int | None = None) -> SessionRow:
            spec = SessionSpec(rendered.notebook, run_type="Interactive", mounts=tuple(mounts),
                               kill_at_step=kill_at_step,
                               input_layout=self.options.input_layout,
                               internet=self.options.internet, accelerator=self.options.accelerator,
                               time_limit_s=limit, api_url=self.server.url if self.options.internet else None,
                               secrets={envvars.USERNAME: self.owner, envvars.KEY: self.key})
            started = time.monotonic()
            result = sandbox.run(spec)
            return self._interactive_row(f"train #{index} (Interactive)", time.monotonic() - started, result)

        def run_chain(first_limit: float | None) -> list[SessionRow]:
            # Kaggle's API cannot start an Interactive session, so the engine of `kaggle-kit run` cannot carry one:
            # the same decisions, made here on the sandbox's sessions.
            from kaggle_kit.errors import RunError

            cap = self.session_cap or 3600.0
            index = len(self._train_rows()) + 1
            by_step = first_limit is not None and self.kill_step is not None
            rows = [run_one(index, cap if by_step else (first_limit or cap), False,
                            kill_at_step=self.kill_step if by_step else None)]
            if rows[0].status == "KILLED":
                rows.append(run_one(index + 1, cap, True))
                if not rows[1].resumed_from and self.mirroring:
                    raise RunError("the second session did not resume: the kill came before the first checkpoint",
                                   cause="no_progress")
            return rows

        self._train_sessions(run_chain)
        if self.mirroring:
            self._final_from_mirror()

    def _interactive_row(self, name: str, wall: float, result: Any) -> SessionRow:
        # An Interactive session's working folder is gone with it; what it did is read from its log.
        if result.killed_by:
            status, note = "KILLED", f"killed: the {result.killed_by} limit was reached"
        else:
            status, note = str(result.status), result.failure_message or "finished"
        row = SessionRow(name=name, status=status, wall_s=wall, note=f"{note}; working folder wiped")
        log_path = Path(result.log_path) if result.log_path else None
        log = log_text(log_path.read_text(errors="replace")) if log_path and log_path.is_file() else ""
        row.session_s = float(result.wall_s) if result.wall_s else None
        if log_path is not None and log_path.is_file():
            row.training_bounds = _training_bounds(log_path)
        origin = kit_origin_in(log)
        if origin and self.report.kit_origin is None:
            self.report.kit_origin = origin
        resumed = re.search(r"resuming at step (\d+)", log)
        row.resumed_from = int(resumed.group(1)) if resumed else (0 if "fresh start" in log else None)
        finished = re.search(r"(\w+): step (\d+), (\d+) steps this session", log)
        if finished:
            row.step_end, row.steps = int(finished.group(2)), int(finished.group(3))
        return row

    def _final_from_mirror(self) -> None:
        dest = self.workdir / "outputs" / "mirror"
        dest.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the client prints the dataset's URL even when quiet
            self.api.dataset_download_files(self.checkpoint_dataset, path=str(dest), unzip=True, quiet=True)
        newest = newest_checkpoint(dest)
        if newest is not None:
            self.report.weights_sha256, self.report.model_shapes = weights_digest(newest)
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

    def _submittable(self) -> bool:
        """Whether the stand-in can score a submission: a competition to submit to, the labels and the scorer
        (then they are given to its competition folder, where no session sees them)."""
        from kaggle_kit.sim.competitions import write_scoring

        nb = self.infer_nb
        competition = (nb.competition if nb else None) or self.train_nb.competition
        if not (competition and self.labels is not None and self.spec.score and self.competitions is not None):
            return False
        if (self.competitions / competition).is_dir():
            write_scoring(self.competitions, competition, labels=self.labels, score=self.spec.score, root=self.root)
            return True
        return False

    def _infer_with_the_run(self) -> None:
        """Inference (and the submission, where the stand-in can score one) by ``kaggle-kit run --then infer
        --submit`` on the rehearsed run."""
        from kaggle_kit.errors import RunError
        from kaggle_kit.runs import carry_run

        assert self.infer_nb is not None
        started = time.monotonic()
        submit = self._submittable()
        try:
            outcome = carry_run(self.project, self.train_nb.name, self._run_options(self.run_name, first_limit=None,
                                infer=True), api=self.api, say=lambda m: _say(f"run: {m}"))
        except RunError as exc:
            self.report.sessions.append(SessionRow(name=f"{self.infer_nb.name} (Batch, internet off)",
                                                   status="ERROR", wall_s=time.monotonic() - started,
                                                   note=str(exc).splitlines()[0]))
            self.report.submission_problem = str(exc)
            return
        self.report.sessions.append(SessionRow(name=f"{self.infer_nb.name} (Batch, internet off)", status="COMPLETE",
                                               wall_s=time.monotonic() - started, note="finished"))
        submission = outcome.submission
        assert submission is not None
        scored = outcome.state.submission or {}
        if submit and scored.get("status") == "COMPLETE":
            self.report.submission_score = float(scored["score"])
            self.report.submission_valid = True
            self.report.notes.append(f"submitted to the stand-in's {scored['competition']} and scored there")
            return
        self._score(submission)

    def _score(self, submission: Path) -> None:
        if self.hooks.score is None or self.labels is None:
            self.report.submission_valid = True
            self.report.notes.append("submission written but not scored: declare rehearse.data returning the "
                                     "labels and rehearse.score")
            return
        try:
            self.report.submission_score = float(self.hooks.score(self.labels, submission))
            self.report.submission_valid = True
        except KaggleKitError as exc:
            self.report.submission_problem = str(exc)

    def _infer(self) -> None:
        from kaggle_kit.kernels import kernel_output

        assert self.infer_nb is not None
        if not self.checkpoint_dataset:
            _say("no checkpoint dataset (mirroring off): the inference notebook reads the training run's output")
        started = time.monotonic()
        cap = self.session_cap or 3600.0
        ref = self._push(self.infer_nb, timeout_s=cap, attach_training_output=True)
        status = _wait(self.api, ref, timeout_s=cap + 120.0)
        wall = time.monotonic() - started
        out = self.workdir / "outputs" / "infer"
        kernel_output(ref, out, api=self.api)
        row = SessionRow(name=f"{self.infer_nb.name} (Batch, internet off)", status=str(status["status"]), wall_s=wall,
                         note=str(status.get("failure_message") or "finished"))
        self.report.sessions.append(row)
        submission = out / "submission.csv"
        if status["status"] != "COMPLETE" or not submission.is_file():
            self.report.submission_problem = f"inference did not write submission.csv: {row.note}"
            return
        self._score(submission)

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


def rehearse(root: str | os.PathLike[str] | Project, options: RehearsalOptions | None = None) -> RehearsalReport:
    """Rehearse a whole Kaggle training run of the project declared at ``root`` offline (see the module docstring).

    Raises:
        DeclarationError: no declaration, or one the rehearsal cannot follow.
        KaggleKitError: bad options, a busy work folder, a session that failed.
    """
    options = options or RehearsalOptions()
    if options.run_type not in ("Batch", "Interactive"):
        raise KaggleKitError(f"run type {options.run_type!r}: use Batch or Interactive")
    if options.accelerator not in ACCELERATOR_SHAPES:
        raise KaggleKitError(f"accelerator {options.accelerator!r}: use one of {', '.join(ACCELERATOR_SHAPES)}")
    kill = options.kill_after_s
    if kill is not None and kill != "auto" and (isinstance(kill, str) or kill < 0):
        raise KaggleKitError(f"--kill-after {kill!r}: write auto, 0 (no kill) or more seconds")
    step = options.kill_at_step
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise KaggleKitError(f"--kill-at-step {step!r}: write an optimizer step, 1 or more")
    if options.input_layout not in ("current", "legacy"):
        raise KaggleKitError(f"input layout {options.input_layout!r}: use current or legacy")
    project = root if isinstance(root, Project) else load_project(Path(root))
    workdir = options.workdir.resolve()
    if workdir.exists() and any(workdir.iterdir()):
        raise KaggleKitError(f"{workdir} is not empty: remove it or pass another --workdir")
    hooks = load_hooks(project)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with _client_sandboxed(workdir):
            return _Rehearsal(project, options, hooks).run()
    finally:
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def format_report(report: RehearsalReport) -> str:
    """The summary table."""
    lines = ["", "Rehearsal summary", ""]
    if report.isolation_note:
        lines += [f"SANDBOX NOT ISOLATED: {report.isolation_note}. The sessions saw this machine's files (the kit's "
                  "installation included) and, without internet, its network: what passed here may fail on Kaggle.",
                  ""]
    lines += [*session_table(report.sessions, lost_header="lost at kill"), ""]
    if report.kill_step is not None:
        lines.append(f"the first session was killed at step {report.kill_step} (placed by progress: the same step "
                     "on any machine)")
    lines += outcome_lines(report, not_inferred="submission: not rehearsed (no inference notebook declared, or "
                                                "--no-infer)")
    lines.append(f"inputs under the {report.input_layout} layout (/kaggle/input/"
                 f"{'datasets/<owner>/<slug>' if report.input_layout == 'current' else '<slug>'})")
    if report.kit_origin:
        lines.append(f"the sessions imported the kit from {report.kit_origin}")
    lines += [f"note: {note}" for note in report.notes]
    lines.append(f"wall time: {report.wall_s:.0f} s")
    return "\n".join(lines)
