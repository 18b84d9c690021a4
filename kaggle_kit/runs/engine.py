"""``kaggle-kit run``: carry one training run across as many Kaggle sessions as it takes, then (if asked) infer and
submit.

The loop: push the training notebook (the code dataset's version pinned for the whole run), poll its status with
backoff (a 429 or a transient failure is waited out, the interval grows while nothing changes), and when the session
ends decide from evidence (:func:`kaggle_kit.session_outcome.classify`, the session's output and the mirror):

- finished: the training loop's completion record (``progress.json``, status ``finished``) is in its output;
- stopped (the kit's clean stop before the limit, the time limit, the quota, a platform error): the mirror's newest
  checkpoint (or, without a mirror, the output's) must have advanced during the session; then the next session is
  pushed and resumes from it;
- no progress, an error in the user's code, quota below the reserve, the session budget spent: the run stops with
  the reason and what to do (:class:`~kaggle_kit.errors.RunError`).

The run's state is a small JSON file in the project (:mod:`kaggle_kit.runs.state`), written before every push, so a
``kaggle-kit run`` killed at any point re-attaches to the session it left running instead of pushing a second one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kaggle_kit.errors import KaggleKitError, RunError, TransientApiError
from kaggle_kit.kaggle_platform import SESSION_LIMIT_S
from kaggle_kit.project import NotebookSpec, Project
from kaggle_kit.runs.evidence import SessionFiles, log_tail, mirror_step, read_session_files, traceback_of
from kaggle_kit.runs.state import (RunLock, RunState, SessionRecord, check_run_name, load_state, run_folder, runs_dir,
                                   save_state)
from kaggle_kit.session_outcome import COMPLETE, KILLED, USER_ERROR, SessionOutcome

__all__ = ["DEFAULT_QUOTA_RESERVE_S", "Poller", "RunOptions", "RunOutcome", "carry_run"]

DEFAULT_QUOTA_RESERVE_S = 2 * 3600.0
_SUBMISSION = "submission.csv"


@dataclass
class RunOptions:
    """How to carry the run.

    Attributes:
        run: The run's name (its state file); default: the notebook's name.
        render: The render options every session is pushed with (the config, overrides, parameters, ...).
        session_timeout_s: Each session's time limit (Kaggle's ``sessionTimeoutSeconds``); None: Kaggle's own.
        first_session_timeout_s: The first session's limit, when it differs (the rehearsal's measured kill).
        max_sessions: Training sessions the run may push in all (the ones before a restart included).
        quota_reserve_s: Stop (or wait) before a push when less weekly accelerator quota than this is left.
        wait_for_quota: Sleep until the quota refreshes instead of stopping.
        then_infer: After training, run the project's inference notebook with the final checkpoint attached.
        infer_notebook: Which declared notebook infers (default: the declaration's ``rehearse.infer``, else
            ``infer``).
        submit: Submit the inference output to the competition (implies ``then_infer``).
        competition: The competition (default: the inference notebook's, else the training notebook's).
        code_submission: Submit in the notebook-version form (code competitions) instead of uploading the file.
        poll_s: The first poll interval; it grows by half while nothing changes, up to ``max_poll_s``.
        mirror_every_s: How often the live line reads the mirror's newest step while a session runs.
        score_timeout_s: How long to wait for the public score after submitting.
        stall_timeout_s: A safety net: give up waiting on a session that shows no change for this long (None: never).
        home: The runs folder (state files, outputs); default ``<project root>/kaggle-kit-runs``.
    """

    run: str | None = None
    render: Any = None
    session_timeout_s: float | None = None
    first_session_timeout_s: float | None = None
    max_sessions: int = 10
    quota_reserve_s: float = DEFAULT_QUOTA_RESERVE_S
    wait_for_quota: bool = False
    then_infer: bool = False
    infer_notebook: str | None = None
    submit: bool = False
    competition: str | None = None
    code_submission: bool = False
    poll_s: float = 10.0
    max_poll_s: float = 120.0
    mirror_every_s: float = 60.0
    score_timeout_s: float = 1800.0
    stall_timeout_s: float | None = None
    home: Path | None = None


@dataclass
class RunOutcome:
    """What the run did: its state (sessions, phase, submission) and the files it left."""

    state: RunState
    folder: Path
    checkpoint_dataset: str | None = None
    final_output: Path | None = None
    submission: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)


class Poller:
    """Polling with backoff: the interval grows by half while nothing changes (bounded), goes back to the first
    one on a change, and a transient API failure (429, 5xx, a dropped connection) waits as the server asks."""

    def __init__(self, first_s: float, max_s: float, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.first_s, self.max_s = max(0.05, first_s), max(first_s, max_s)
        self.interval = self.first_s
        self.sleep = sleep
        self.transient_failures = 0

    def changed(self) -> None:
        self.interval = self.first_s

    def wait(self) -> None:
        self.sleep(self.interval)
        self.interval = min(self.max_s, self.interval * 1.5)

    def ride_out(self, error: TransientApiError) -> None:
        """Wait after a transient failure: its Retry-After (bounded), else the backoff, with jitter."""
        self.transient_failures += 1
        delay = error.retry_after_s if error.retry_after_s is not None else self.interval
        self.sleep(min(self.max_s, max(0.05, delay)) * (0.75 + 0.5 * random.random()))
        self.interval = min(self.max_s, self.interval * 1.5)


def _transient(exc: BaseException) -> TransientApiError | None:
    from kaggle_kit.mirror.client import classify_api_error

    error = classify_api_error(exc.__cause__ or exc, "polling") if not isinstance(exc, TransientApiError) else exc
    return error if isinstance(error, TransientApiError) else None


class _Carrier:
    """One ``kaggle-kit run``: the state, the API, the decisions."""

    def __init__(self, project: Project, notebook: str, options: RunOptions, *, api: Any,
                 say: Callable[[str], None]) -> None:
        self.project = project
        self.train_nb = project.notebook(notebook)
        self.options = options
        self.api = api
        self.say = say
        self.run_name = options.run or notebook
        self.home = Path(options.home) if options.home is not None else runs_dir(project.root)
        self.folder = run_folder(self.home, self.run_name)
        self.poller = Poller(options.poll_s, options.max_poll_s)
        self.state: RunState

    # The run -------------------------------------------------------------------------------------------------

    def carry(self) -> RunOutcome:
        with RunLock(self.home, self.run_name):
            state = load_state(self.home, self.run_name)
            if state is None:
                state = RunState(run=self.run_name, notebook=self.train_nb.name, kernel=self.train_nb.kernel)
            elif state.notebook != self.train_nb.name:
                raise RunError(f"run {self.run_name!r} trains notebook {state.notebook!r}, not "
                               f"{self.train_nb.name!r}: pass --run with another name")
            self.state = state
            if state.stop_reason:
                self.say(f"run {self.run_name!r} stopped before: {state.stop_reason.splitlines()[0]}; carrying on")
                state.stop_reason = ""
            if state.code_version is None:
                state.code_version = self._code_version()
                self.say(f"code dataset {self.project.code_dataset} pinned at version {state.code_version} for the "
                         "whole run")
            self._save()
            try:
                outcome = self._carry()
            except RunError as exc:
                state.stop_reason = str(exc)
                self._save()
                raise
            return outcome

    def _carry(self) -> RunOutcome:
        """Phases: training, trained, inferring, inferred, submitting, done; each saved as it is reached, so a run
        started again goes on from where it was (``--then infer`` given later infers a finished run)."""
        state = self.state
        if state.phase == "training":
            self._train()
            state.phase = "trained"
            self._save()
        if state.phase == "trained" and (self.options.then_infer or self.options.submit):
            state.phase = "inferring"
        outcome = RunOutcome(state=state, folder=self.folder,
                             checkpoint_dataset=self._checkpoint_dataset() if self._mirroring(self.train_nb) else None)
        finals = [s for s in state.training_sessions() if s.output]
        if finals:
            outcome.final_output = self.folder / str(finals[-1].output)
        if state.phase == "inferring":
            outcome.submission = self._infer()
            state.phase = "inferred"
            self._save()
        elif (self.folder / "infer" / _SUBMISSION).is_file():
            outcome.submission = self.folder / "infer" / _SUBMISSION
        if state.phase == "inferred" and self.options.submit:
            state.phase = "submitting"
        if state.phase == "submitting":
            assert outcome.submission is not None
            self._submit(outcome.submission)
            state.phase = "done"
        self._save()
        return outcome

    def _save(self) -> None:
        save_state(self.home, self.state)

    # Training ------------------------------------------------------------------------------------------------

    def _train(self) -> None:
        while True:
            session = self.state.active()
            if session is not None and session.version is None and not self._adopt_cut_off_push(session):
                continue
            if session is None or session.notebook != self.train_nb.name:
                session = self._next_training_session()
                if session is None:
                    return
            else:
                self.say(f"re-attaching to session {session.index} ({self._ref(session)}), pushed "
                         f"{_ago(session.pushed_at)} ago")
            outcome, files = self._follow(session)
            if self._decide(session, outcome, files):
                return

    def _next_training_session(self) -> SessionRecord | None:
        """The next session pushed, or None when the last one finished the run."""
        sessions = self.state.training_sessions()
        if sessions and sessions[-1].kind == "finished":
            return None
        if len(sessions) >= self.options.max_sessions:
            raise RunError(f"the session budget is spent: {len(sessions)} session(s) pushed and the run has not "
                           f"finished; pass a larger --max-sessions to carry on (the next session resumes from "
                           f"step {sessions[-1].mirror_step_after or sessions[-1].step})", cause="budget")
        self._check_quota(self.train_nb)
        first = not sessions
        limit = self.options.first_session_timeout_s if first and self.options.first_session_timeout_s else \
            self.options.session_timeout_s
        before = self._mirror_step()[0] if self._mirroring(self.train_nb) else None
        return self._push(self.train_nb, limit=limit, mirror_before=before,
                          render=self._render_options(self.train_nb, resume=not first))

    def _decide(self, session: SessionRecord, outcome: SessionOutcome, files: SessionFiles) -> bool:
        """Record how ``session`` ended; True when the run is finished. Raises RunError to stop the chain."""
        ref = self._ref(session)
        if outcome.kind == USER_ERROR:
            where = traceback_of(files.log) or log_tail(files.log)
            raise RunError(f"session {session.index} ({ref}) failed with an error in the notebook's code: "
                           f"{outcome.cause}\n{where}\nFix the code, publish it (kaggle-kit publish-code), and run "
                           "again with a new --run name (this run pins the code it started with)", cause="user_error")
        if outcome.kind == COMPLETE and files.status == "finished":
            session.kind = "finished"
            self._save()
            self.say(f"session {session.index} finished the run at step {files.step}")
            return True
        if outcome.kind == COMPLETE and files.status is None:
            raise RunError(f"session {session.index} ({ref}) completed but left no completion record "
                           "(progress.json from kaggle_kit.training.train) in its output, so whether the run "
                           f"finished is unknown; its log ends:\n{log_tail(files.log)}", cause="failed")
        if outcome.kind not in (COMPLETE, KILLED, "error"):
            raise RunError(f"session {session.index} ({ref}) ended {outcome.status or 'without a status'}: "
                           f"{outcome.reason}; look at the kernel's page, then run again to carry on", cause="failed")
        # A stop: the clean one before the limit, the time limit, the quota, a platform error. It counts only if
        # the checkpoints advanced.
        if not self._mirroring(self.train_nb):
            # Without a mirror the output carries the checkpoints: its newest one is what the next session resumes.
            earlier = [s.mirror_step_after for s in self.state.training_sessions()
                       if s.index < session.index and s.mirror_step_after is not None]
            session.mirror_step_before = max(earlier) if earlier else None
            session.mirror_step_after = files.last_checkpoint_step
        after = session.mirror_step_after
        before = session.mirror_step_before
        advanced = after is not None and (before is None or after > before)
        if not advanced:
            raise RunError(f"session {session.index} ({ref}) was stopped ({outcome.reason}) without saving a "
                           f"new checkpoint (mirror at step {before} before and {after} after), so another session "
                           f"would start from the same point; its log ends:\n{log_tail(files.log)}\nGive sessions "
                           "more time or checkpoint more often, then run again", cause="no_progress")
        session.kind = "stopped"
        self._save()
        self.say(f"session {session.index} stopped ({outcome.reason}); the mirror advanced to step {after}: the "
                 "next session resumes from it")
        return False

    # Sessions ------------------------------------------------------------------------------------------------

    def _ref(self, session: SessionRecord) -> str:
        kernel = self.project.notebook(session.notebook).kernel
        return f"{kernel}/{session.version}" if session.version else kernel

    def _push(self, nb: NotebookSpec, *, limit: float | None, mirror_before: int | None,
              render: Any = None) -> SessionRecord:
        from kaggle_kit.kernels import push_folder
        from kaggle_kit.lint import lint_kernel_metadata
        from kaggle_kit.metadata_files import KERNEL_METADATA
        from kaggle_kit.notebooks import render as render_notebook

        rendered = render_notebook(self.project, nb.name, render or self._render_options(nb),
                                   out_dir=self.folder / "build" / nb.name)
        meta_path = rendered.folder / KERNEL_METADATA
        meta = json.loads(meta_path.read_text())
        pinned = f"{self.project.code_dataset}/{self.state.code_version}"
        meta["dataset_sources"] = [pinned if s == self.project.code_dataset else s for s in meta["dataset_sources"]]
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        blocking = [f for f in lint_kernel_metadata(rendered.folder, mirroring=rendered.checkpoints == "mirror",
                                                    checkpoint_dataset=rendered.checkpoint_dataset)
                    if f.severity == "error"]
        if blocking:
            raise RunError(f"{meta_path} failed the lint:\n  " + "\n  ".join(map(str, blocking)))
        session = SessionRecord(index=len(self.state.sessions) + 1, notebook=nb.name,
                                versions_before=self._kernel_version(nb.kernel), time_limit_s=limit,
                                mirror_step_before=mirror_before)
        self.state.sessions.append(session)
        self._save()  # before the push: a run killed during it finds the version it created
        tolerated = [rendered.checkpoint_dataset] if rendered.checkpoints == "mirror" and rendered.checkpoint_dataset \
            else []
        with contextlib.redirect_stdout(io.StringIO()):
            pushed = push_folder(rendered.folder, rendered.ref, api=self.api, timeout_s=limit, tolerated=tolerated)
        if pushed.problems:
            self.say(f"warning: {pushed.describe()}")
        session.version, session.pushed_at = pushed.version, time.time()
        self._save()
        self.say(f"session {session.index}: pushed {rendered.ref} version {pushed.version}"
                 + (f" with a {limit:g} s limit" if limit else ""))
        return session

    def _render_options(self, nb: NotebookSpec, *, resume: bool = False) -> Any:
        """What ``nb`` is rendered with: the run's options for training (a resumed session without a mirror also
        attaches the previous session's output, which holds its checkpoints), the config alone for inference."""
        from kaggle_kit.notebooks import RenderOptions

        base = self.options.render if self.options.render is not None else RenderOptions()
        if nb.name == self.train_nb.name and resume and not self._mirroring(nb):
            if "previous_output" in self._declared(nb):
                base = replace(base, previous_output=self.train_nb.kernel)
            else:
                base = replace(base, kernels=(*base.kernels, self.train_nb.kernel))
        if nb.name != self.train_nb.name:
            # The inference notebook keeps its declared internet and sources; the run's config, checkpoints and
            # an explicit accelerator or model choice apply to it too.
            base = RenderOptions(config=base.config, overrides=base.overrides, accelerator=base.accelerator,
                                 models=base.models, checkpoint_dataset=base.checkpoint_dataset)
            if not self._mirroring(self.train_nb):
                base.kernels = (self.train_nb.kernel,)
        return base

    def _declared(self, nb: NotebookSpec) -> set[str]:
        """The names the notebook's parameters cell assigns."""
        import jupytext

        from kaggle_kit.notebooks import declared_parameters

        source = self.project.root / nb.source
        return declared_parameters(jupytext.read(source, fmt="py:percent"), source=str(source))[1]

    def _mirroring(self, nb: NotebookSpec) -> bool:
        render = self.options.render
        if render is not None and render.checkpoint_dataset == "":
            return False
        internet = nb.internet if render is None or render.internet is None else render.internet
        return nb.checkpoints == "mirror" and internet

    def _checkpoint_dataset(self) -> str:
        render = self.options.render
        chosen = render.checkpoint_dataset if render is not None and render.checkpoint_dataset else None
        if chosen:
            return chosen if "/" in chosen else f"{self.project.owner}/{chosen}"
        return self.project.checkpoint_dataset

    def _kernel_version(self, kernel: str) -> int:
        """The kernel's newest version number, 0 when it has none yet."""
        from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

        owner, slug = kernel.split("/")
        try:
            request = ApiGetKernelRequest()
            request.user_name, request.kernel_slug = owner, slug
            with self.api.build_kaggle_client() as kaggle:
                reply = kaggle.kernels.kernels_api_client.get_kernel(request)
            return int(getattr(reply.metadata, "current_version_number", 0) or 0)
        except Exception:  # noqa: BLE001 - a kernel not pushed yet answers 403 (Kaggle's "not found")
            return 0

    def _adopt_cut_off_push(self, session: SessionRecord) -> bool:
        """A push whose reply was never saved: the version it created is the first above ``versions_before``.
        False (and the session forgotten) when the push never reached Kaggle."""
        kernel = self.project.notebook(session.notebook).kernel
        newest = self._kernel_version(kernel)
        if newest > session.versions_before:
            session.version, session.pushed_at = session.versions_before + 1, session.pushed_at or time.time()
            self.say(f"session {session.index}: the push before the restart created version {session.version}")
        else:
            self.state.sessions.remove(session)
            self.say(f"session {session.index}: the push before the restart never reached Kaggle; pushing again")
        self._save()
        return session.version is not None

    def _follow(self, session: SessionRecord) -> tuple[SessionOutcome, SessionFiles]:
        """Poll ``session`` until it ends; record its outcome, output and the mirror's step after it."""
        from kaggle_kit.kernels import kernel_outcome, kernel_output

        ref = self._ref(session)
        last_status, last_change, last_mirror, last_line = "", time.monotonic(), 0.0, ("", 0.0)
        mirror_now: int | None = session.mirror_step_before
        while True:
            try:
                elapsed = time.time() - session.pushed_at if session.pushed_at else None
                outcome = kernel_outcome(ref, api=self.api, time_limit_s=session.time_limit_s or SESSION_LIMIT_S,
                                         elapsed_s=elapsed)
            except KaggleKitError as exc:
                transient = _transient(exc)
                if transient is None:
                    raise
                self.say(f"session {session.index}: {transient} (waiting it out, {self.poller.transient_failures + 1}"
                         " so far)")
                self.poller.ride_out(transient)
                continue
            if outcome.terminal:
                break
            if self._mirroring(self.train_nb) and session.notebook == self.train_nb.name and (
                    time.monotonic() - last_mirror >= self.options.mirror_every_s):
                last_mirror = time.monotonic()
                with contextlib.suppress(KaggleKitError):
                    mirror_now = self._mirror_step()[0]
            if outcome.status != last_status:
                last_status, last_change = outcome.status, time.monotonic()
                self.poller.changed()
            # A line when something changed, else one a minute: the run can take hours.
            key = f"{outcome.status} {mirror_now}"
            if key != last_line[0] or time.monotonic() - last_line[1] >= 60.0:
                self.say(self._live_line(session, outcome, mirror_now))
                last_line = (key, time.monotonic())
            stall = self.options.stall_timeout_s
            if stall is not None and time.monotonic() - last_change > stall:
                raise RunError(f"session {session.index} ({ref}) has been {outcome.status} for more than {stall:.0f} s "
                               "without a change; it is left running on Kaggle: run again to re-attach")
            self.poller.wait()
        session.ended_at, session.status, session.reason = time.time(), outcome.status, outcome.reason
        session.kind = session.kind or outcome.kind
        out = self.folder / f"session-{session.index}"
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                kernel_output(ref, out, api=self.api)
        except KaggleKitError as exc:
            self.say(f"warning: the output of {ref} could not be downloaded: {exc}")
        session.output = out.relative_to(self.folder).as_posix()
        files = read_session_files(out)
        session.step, session.resumed_from, session.seconds_per_step = (files.step, files.resumed_from,
                                                                          files.seconds_per_step)
        if session.notebook == self.train_nb.name and self._mirroring(self.train_nb):
            session.mirror_step_after = self._mirror_step_settled(session)
        self._save()
        self.say(f"session {session.index} ({ref}): {outcome.status} after "
                 f"{_duration(session.ended_at - session.pushed_at)}, step {files.step}")
        return outcome, files

    def _mirror_step_settled(self, session: SessionRecord) -> int | None:
        """The mirror's step after a session; while its newest version is still processing, read again until it is
        ready (bounded), so an upload that landed at the end of the session counts."""
        deadline = time.monotonic() + 120.0
        while True:
            try:
                step, _ = self._mirror_step()
                before = session.mirror_step_before
                if step is not None and (before is None or step > before):
                    return step
                status = str(self.api.dataset_status(self._checkpoint_dataset()) or "").lower() if step is not None \
                    else "ready"
            except KaggleKitError as exc:
                transient = _transient(exc)
                if transient is None or time.monotonic() > deadline:
                    raise RunError(f"the mirror {self._checkpoint_dataset()} cannot be read: {exc}") from None
                self.poller.ride_out(transient)
                continue
            except Exception:  # noqa: BLE001 - the status call of a dataset that does not exist
                return step
            if status == "ready" or time.monotonic() > deadline:
                return step
            time.sleep(min(2.0, self.options.poll_s))

    def _mirror_step(self) -> tuple[int | None, int]:
        return mirror_step(self.api, self._checkpoint_dataset())

    def _live_line(self, session: SessionRecord, outcome: SessionOutcome, mirror: int | None) -> str:
        quota = self._quota_text()
        elapsed = _duration(time.time() - session.pushed_at) if session.pushed_at else "-"
        return (f"session {session.index} ({self._ref(session)}): {outcome.status}, {elapsed}, mirror step "
                f"{mirror if mirror is not None else '-'}" + (f", {quota}" if quota else ""))

    # Quota ---------------------------------------------------------------------------------------------------

    def _uses_quota(self, nb: NotebookSpec) -> str | None:
        render = self.options.render if nb.name == self.train_nb.name else None
        accelerator = (render.accelerator if render is not None and render.accelerator else None) or \
            nb.machine_shape or nb.accelerator
        name = str(accelerator).lower()
        if name in ("none", "cpu", ""):
            return None
        return "tpu" if name.startswith("tpu") else "gpu"

    def _quota(self, kind: str) -> tuple[float, float, datetime | None] | None:
        try:
            reply = self.api.quota_view()
        except Exception:  # noqa: BLE001 - a quota that cannot be read is reported, not fatal
            return None
        quota = getattr(reply, f"{kind}_quota", None)
        if quota is None:
            return None
        refresh = getattr(reply, "quota_refresh_time", None)
        if refresh is not None and refresh.tzinfo is None:
            refresh = refresh.replace(tzinfo=timezone.utc)
        return quota.time_used.total_seconds(), quota.total_time_allowed.total_seconds(), refresh

    def _quota_text(self) -> str:
        kind = self._uses_quota(self.train_nb)
        found = self._quota(kind) if kind else None
        return f"{kind.upper()} quota {found[0] / 3600:.1f}/{found[1] / 3600:.0f} h" if found else ""

    def _check_quota(self, nb: NotebookSpec) -> None:
        kind = self._uses_quota(nb)
        if kind is None:
            return
        while True:
            found = self._quota(kind)
            if found is None:
                self.say(f"warning: the weekly {kind.upper()} quota could not be read; pushing anyway")
                return
            used, total, refresh = found
            left = total - used
            if left >= self.options.quota_reserve_s:
                return
            when = refresh.isoformat(timespec="minutes") if refresh else "unknown"
            message = (f"the weekly {kind.upper()} quota left ({left / 3600:.2f} h of {total / 3600:.0f} h) is below "
                       f"the reserve of {self.options.quota_reserve_s / 3600:.2f} h; it refreshes at {when}")
            if not self.options.wait_for_quota or refresh is None:
                raise RunError(f"{message}. Run again after the refresh, pass --wait-for-quota to sleep until "
                               "then, or lower --quota-reserve", cause="quota")
            wait = max(60.0, (refresh - datetime.now(timezone.utc)).total_seconds() + 60.0)
            self.say(f"{message}: sleeping {_duration(wait)} until it refreshes (--wait-for-quota)")
            time.sleep(wait)

    # Code ----------------------------------------------------------------------------------------------------

    def _code_version(self) -> int:
        from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

        owner, slug = self.project.code_dataset.split("/")
        request = ApiGetDatasetRequest()
        request.owner_slug, request.dataset_slug = owner, slug
        try:
            with self.api.build_kaggle_client() as kaggle:
                dataset = kaggle.datasets.dataset_api_client.get_dataset(request)
        except Exception as exc:  # noqa: BLE001 - the client's HTTPError
            from kaggle_kit.kaggle_api import describe_http_error

            raise RunError(f"the code dataset {self.project.code_dataset} cannot be read "
                           f"({describe_http_error(exc)}): publish it first with `kaggle-kit publish-code`") from None
        version = int(getattr(dataset, "current_version_number", 0) or 0)
        if version < 1:
            raise RunError(f"the code dataset {self.project.code_dataset} has no version: publish it with "
                           "`kaggle-kit publish-code`")
        return version

    # Inference and submission --------------------------------------------------------------------------------

    def _infer_nb(self) -> NotebookSpec:
        name = self.options.infer_notebook or (self.project.rehearse.infer if self.project.rehearse else None) or \
            ("infer" if "infer" in self.project.notebooks else None)
        if name is None:
            raise RunError(f"--then infer: no inference notebook is declared in {self.project.file}; declare "
                           "[notebooks.infer] or pass --infer-notebook NAME")
        return self.project.notebook(name)

    def _infer(self) -> Path:
        nb = self._infer_nb()
        session = self.state.active()
        if session is not None and session.version is None and not self._adopt_cut_off_push(session):
            session = None
        if session is None or session.notebook != nb.name:
            self._check_quota(nb)
            session = self._push(nb, limit=self.options.session_timeout_s, mirror_before=None)
        outcome, files = self._follow(session)
        out = self.folder / str(session.output)
        if outcome.kind != COMPLETE:
            where = traceback_of(files.log) or log_tail(files.log)
            raise RunError(f"the inference session ({self._ref(session)}) ended {outcome.status}: {outcome.reason}\n"
                           f"{where}", cause="failed")
        found = next(iter(sorted(out.rglob(_SUBMISSION))), None)
        if found is None:
            raise RunError(f"the inference session ({self._ref(session)}) wrote no {_SUBMISSION} to "
                           "/kaggle/working; its log ends:\n" + log_tail(files.log), cause="failed")
        target = self.folder / "infer" / _SUBMISSION
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(found.read_bytes())
        problem = self._validate(target)
        if problem:
            raise RunError(f"{target} is not a valid submission: {problem}", cause="submission")
        self.say(f"submission written by {self._ref(session)}: {target}")
        return target

    def _competition(self) -> str:
        nb = self._infer_nb()
        name = self.options.competition or nb.competition or self.train_nb.competition
        if not name:
            raise RunError("--submit: no competition: declare competition = \"slug\" for the notebook or pass "
                           "--competition SLUG")
        return name

    def _validate(self, path: Path) -> str | None:
        """What is wrong with a submission file (None when nothing): readable CSV, a header, rows, and the sample
        submission's header and row count when the competition has one."""
        try:
            with path.open(newline="") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            return f"not a readable CSV ({exc})"
        if len(rows) < 2:
            return "no rows below the header"
        widths = {len(r) for r in rows}
        if len(widths) != 1:
            return f"rows of different lengths ({sorted(widths)})"
        sample = self._sample_submission()
        if sample is not None:
            if rows[0] != sample[0]:
                return f"header {rows[0]} differs from the sample submission's {sample[0]}"
            if len(rows) != len(sample):
                return f"{len(rows) - 1} rows, the sample submission has {len(sample) - 1}"
        return None

    def _sample_submission(self) -> list[list[str]] | None:
        if not (self.options.submit and (self.options.competition or self._infer_nb().competition
                                         or self.train_nb.competition)):
            return None
        competition = self._competition()
        try:
            names = [str(f.name) for f in self.api.competition_list_files(competition, page_size=200).files or []]
        except Exception:  # noqa: BLE001 - no listing, no comparison
            return None
        name = next((n for n in names if n.rsplit("/", 1)[-1].startswith("sample_submission")), None)
        if name is None:
            return None
        folder = self.folder / "competition"
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()):
            self.api.competition_download_file(competition, name, path=str(folder), force=True, quiet=True,
                                               unzip=True)
        path = folder / name.rsplit("/", 1)[-1]
        try:
            with path.open(newline="") as fh:
                return list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error):
            return None

    def _submit(self, submission: Path) -> None:
        competition = self._competition()
        message = f"kaggle-kit run {self.run_name}"
        done = self.state.submission or {}
        if not done.get("ref"):
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    if self.options.code_submission:
                        infer = [s for s in self.state.sessions if s.notebook == self._infer_nb().name][-1]
                        reply = self.api.competition_submit_code(_SUBMISSION, message, competition,
                                                                 kernel=self._infer_nb().kernel,
                                                                 kernel_version=infer.version, quiet=True)
                    else:
                        reply = self.api.competition_submit(str(submission), message, competition, quiet=True)
            except Exception as exc:  # noqa: BLE001 - the client's HTTPError
                from kaggle_kit.kaggle_api import describe_http_error

                raise RunError(f"submitting to {competition} failed: {describe_http_error(exc)}",
                               cause="submission") from None
            ref = int(getattr(reply, "ref", 0) or 0)
            if not ref:
                raise RunError(f"submitting to {competition} failed: {getattr(reply, 'message', '') or 'no reply'}")
            self.state.submission = {"competition": competition, "ref": ref, "score": None, "status": "PENDING",
                                     "form": "notebook" if self.options.code_submission else "file"}
            self._save()
            self.say(f"submitted to {competition} (submission {ref}); waiting for the public score")
        self._await_score()

    def _await_score(self) -> None:
        assert self.state.submission is not None
        wanted = self.state.submission
        deadline = time.monotonic() + self.options.score_timeout_s
        poller = Poller(min(self.options.poll_s, 2.0), self.options.max_poll_s)
        while time.monotonic() < deadline:
            try:
                rows = self.api.competition_submissions(wanted["competition"]) or []
            except Exception as exc:  # noqa: BLE001 - transient failures are waited out
                transient = _transient(exc)
                if transient is None:
                    raise RunError(f"listing the submissions of {wanted['competition']} failed: {exc}") from None
                poller.ride_out(transient)
                continue
            row = next((r for r in rows if r is not None and int(getattr(r, "ref", 0) or 0) == wanted["ref"]), None)
            status = str(getattr(getattr(row, "status", None), "name", "") or "") if row is not None else ""
            if status == "COMPLETE":
                wanted.update(status="COMPLETE", score=str(getattr(row, "public_score", "") or ""))
                self._save()
                self.say(f"public score: {wanted['score']}")
                return
            if status == "ERROR":
                wanted.update(status="ERROR", error=str(getattr(row, "error_description", "") or ""))
                self._save()
                raise RunError(f"submission {wanted['ref']} to {wanted['competition']} failed scoring: "
                               f"{wanted['error']}", cause="submission")
            poller.wait()
        self.say(f"no public score after {self.options.score_timeout_s:.0f} s; `kaggle competitions submissions "
                 f"{wanted['competition']}` shows it when it arrives")


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _ago(when: float) -> str:
    return _duration(time.time() - when) if when else "some time"


def _print(message: str) -> None:
    print(f"[run] {message}", flush=True, file=sys.stdout)


def carry_run(project: Project, notebook: str, options: RunOptions | None = None, *, api: Any = None,
              say: Callable[[str], None] = _print) -> RunOutcome:
    """Carry the training run of ``notebook`` to its end (see the module docstring), then infer and submit if asked.

    Raises:
        RunError: the run stopped (no progress, an error in the notebook, quota below the reserve, the session
            budget spent, a refused submission), or another ``kaggle-kit run`` holds it; the state is kept, so
            running again carries on.
        DeclarationError, MetadataError: the notebook cannot be rendered.
    """
    from kaggle_kit.kaggle_api import make_api

    options = options or RunOptions()
    if options.max_sessions < 1:
        raise RunError(f"--max-sessions {options.max_sessions}: at least 1")
    if options.quota_reserve_s < 0:
        raise RunError("--quota-reserve must be zero or more hours")
    if options.submit:
        options = replace(options, then_infer=True)
    check_run_name(options.run or notebook)
    project.notebook(notebook)
    return _Carrier(project, notebook, options, api=api or make_api(), say=say).carry()
