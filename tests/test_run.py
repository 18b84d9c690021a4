"""``kaggle-kit run`` against the offline Kaggle with the real client: a run carried across sessions to a submission.

One stand-in and one small generated project serve every test. The kills are the stand-in's time limit, placed by
progress, not by speed: the test's notebook stops working (it hangs) after a set number of epochs in a session, so
the limit always lands after the same checkpoint, however fast the machine is; the limit itself is sized from a
measured uninterrupted run, generously.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from kaggle_kit.errors import RunError
from kaggle_kit.runs import Poller, RunLock, RunOptions, carry_run, load_state
from kaggle_kit.runs.state import RunState, SessionRecord, runs_dir, save_state, state_path

OWNER = "alice"
COMPETITION = "tiny-comp"
EPOCHS = 5
EPOCHS_PER_SESSION = 2  # so the run needs three sessions: 2 + 2 + 1 epochs
# The test's additions to the generated notebook: a failure on request, and a session that stops working after a
# number of epochs, so the stand-in's time limit kills it right after that epoch's checkpoint.
PARAMETERS = "train_options = {}\n"
EXTRA_PARAMETERS = "train_options = {}\nhang_after_epochs = None\nfail_on_purpose = False\n"
EVALUATE = "evaluate = ScoreFunction(accuracy, train_cfg.monitor, args=val_set.tensors)\n"
HANG = """
if fail_on_purpose:
    raise ValueError("broken on purpose")
if hang_after_epochs is not None:
    import time as _time

    _score, _epochs_here = evaluate, []

    def evaluate(model):
        _epochs_here.append(1)
        if len(_epochs_here) > hang_after_epochs:
            print(f"stopping work after {hang_after_epochs} epoch(s) this session", flush=True)
            _time.sleep(3600)
        return _score(model)
"""


def _say(lines: list[str]):
    def say(message: str) -> None:
        lines.append(message)
        print(f"[run] {message}", flush=True)

    return say


class TinyKaggle:
    """The stand-in, the generated project published to it, and a client pointed at it."""

    def __init__(self, base: Path) -> None:
        from kaggle_kit.kaggle_api import Credentials, make_api, point_client_at
        from kaggle_kit.scaffold import init_project
        from kaggle_kit.sim.competitions import write_scoring
        from kaggle_kit.sim.sandbox import Sandbox
        from kaggle_kit.sim.server import SimServer

        self.root = base / "tiny"
        init_project(self.root, name="tiny", owner=OWNER)
        notebook = self.root / "notebooks" / "train.py"
        source = notebook.read_text()
        assert PARAMETERS in source and EVALUATE in source
        notebook.write_text(source.replace(PARAMETERS, EXTRA_PARAMETERS, 1).replace(EVALUATE, EVALUATE + HANG, 1))
        config = self.root / "configs" / "rehearse.yaml"
        config.write_text(config.read_text().replace("epochs: 3", f"epochs: {EPOCHS}"))
        declaration = self.root / "pyproject.toml"
        declaration.write_text(declaration.read_text().replace(
            'checkpoints = "read"', f'checkpoints = "read"\ncompetition = "{COMPETITION}"'))

        competitions = base / "competitions"
        data = base / "data" / "tiny-data"
        sys.path.insert(0, str(self.root))
        try:
            from tiny.data import write_dataset
        finally:
            sys.path.remove(str(self.root))
        labels = write_dataset(data, 0)
        (competitions / COMPETITION).mkdir(parents=True)
        rows = labels.read_text().splitlines()
        (competitions / COMPETITION / "sample_submission.csv").write_text(
            "\n".join([rows[0], *(f"{r.split(',')[0]},0" for r in rows[1:])]) + "\n")
        write_scoring(competitions, COMPETITION, labels=labels, score="tiny.data:score", root=self.root)

        self.key = secrets.token_hex(16)
        self.server = SimServer(base / "state", username=OWNER, key=self.key, sandbox=Sandbox(base / "sandbox"),
                                competitions_dir=competitions, processing_seconds=0.0)
        self.server.start()
        point_client_at(self.server.url)
        self.credentials = Credentials(username=OWNER, key=self.key, source="test")
        self.api = make_api(self.credentials)
        self._publish(data)

    def _publish(self, data: Path) -> None:
        from kaggle_kit.code_dataset import publish_code, publish_kit
        from kaggle_kit.project import load_project

        self.project = load_project(self.root)
        publish_kit(f"{OWNER}/kaggle-kit", api=self.api, credentials=self.credentials, notes="test")
        publish_code(self.project, api=self.api, credentials=self.credentials, notes="test")
        (data / "dataset-metadata.json").write_text(json.dumps(
            {"id": f"{OWNER}/tiny-data", "title": "tiny test data", "licenses": [{"name": "other"}]}))
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            self.api.dataset_create_new(str(data), public=False, quiet=True, dir_mode="zip")
        for ref in (f"{OWNER}/kaggle-kit", f"{OWNER}/tiny-code", f"{OWNER}/tiny-data"):
            deadline = time.monotonic() + 120
            while str(self.api.dataset_status(ref)).lower() != "ready":
                assert time.monotonic() < deadline, f"{ref} never became ready"
                time.sleep(0.1)

    def options(self, run: str, *, hang: int | None = None, fail: bool = False, mirror: str | None = None,
                **changes: Any) -> RunOptions:
        from kaggle_kit.notebooks import RenderOptions

        params: dict[str, Any] = {"checkpoint_every_minutes": 60.0, "train_options": {"deadline_margin_s": 0.0},
                                  "hang_after_epochs": hang, "fail_on_purpose": fail}
        render = RenderOptions(config="configs/rehearse.yaml", params=params,
                               checkpoint_dataset=mirror or f"{OWNER}/tiny-{run}-ckpt")
        settings: dict[str, Any] = dict(run=run, render=render, poll_s=0.2, max_poll_s=1.0, mirror_every_s=1.0,
                                        score_timeout_s=120.0, stall_timeout_s=600.0)
        settings.update(changes)
        return RunOptions(**settings)

    def versions(self, kernel: str = f"{OWNER}/tiny-train") -> int:
        record = self.server.store.data["kernels"].get(kernel)
        return len(record["versions"]) if record else 0

    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "HTTP", "http", "NO_PROXY"))}
        return self.server.client_env(env)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyKaggle]:
    base = tmp_path_factory.mktemp("run")
    home = base / "home"
    (home / ".kaggle").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_API_ENVIRONMENT", "HTTP_PROXY",
                     "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "KAGGLE_KIT_ROOT"):
            patch.delenv(name, raising=False)
        patch.setenv("HOME", str(home))
        patch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
        (base / "tmp").mkdir()
        patch.setenv("TMPDIR", str(base / "tmp"))
        patch.setattr(tempfile, "tempdir", str(base / "tmp"))
        kaggle = TinyKaggle(base)
        patch.setenv("KAGGLE_KIT_API_ENDPOINT", kaggle.server.url)
        try:
            yield kaggle
        finally:
            kaggle.server.stop()
            from kaggle_kit.kaggle_api import restore_default_endpoints

            restore_default_endpoints()


@pytest.fixture(scope="module")
def reference(tiny: TinyKaggle) -> dict[str, Any]:
    """The same training uninterrupted, in one session: its final weights, and how long a session takes here."""
    from kaggle_kit.runs.summary import summarize

    outcome = carry_run(tiny.project, "train", tiny.options("reference"), api=tiny.api, say=_say([]))
    (session,) = outcome.state.sessions
    assert session.kind == "finished", session
    progress = json.loads(next((outcome.folder / session.output).rglob("progress.json")).read_text())
    training_s = progress["time"] - progress["session_start_time"]
    return {"weights": summarize(outcome.state, outcome.folder).weights_sha256,
            "startup_s": max(0.0, session.ended_at - session.pushed_at - training_s),
            "epoch_s": training_s / EPOCHS}


@pytest.fixture(scope="module")
def carried(tiny: TinyKaggle, reference: dict[str, Any]) -> dict[str, Any]:
    """The run the done-when describes: started with the command line, killed while its first session runs, started
    again in a 429 storm; it must re-attach, let two sessions be killed by the time limit, finish in the third,
    infer and submit."""
    # A killed session starts up and trains EPOCHS_PER_SESSION epochs, then waits for the limit: sized from the
    # measured run, with room for a busier machine, the restore and the last upload.
    limit = round(1.6 * (reference["startup_s"] + EPOCHS_PER_SESSION * reference["epoch_s"]) + 8.0, 1)
    log = Path(tiny.root.parent / "cli.log")
    cmd = [sys.executable, "-m", "kaggle_kit", "run", "train", "--root", str(tiny.root), "--run", "main",
           "--config", "configs/rehearse.yaml", "--checkpoint-dataset", f"{OWNER}/tiny-main-ckpt",
           "--param", "checkpoint_every_minutes=60.0", "--param", "train_options={'deadline_margin_s': 0.0}",
           "--param", f"hang_after_epochs={EPOCHS_PER_SESSION}", "--session-timeout", str(limit), "--poll", "0.2",
           "--submit"]
    before = tiny.versions()
    with log.open("w") as out:
        cli = subprocess.Popen(cmd, env=tiny.cli_env(), stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            state = load_state(runs_dir(tiny.root), "main")
            if state and state.sessions and state.sessions[0].version is not None:
                break
            assert cli.poll() is None, f"kaggle-kit run ended early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the first push never happened:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        status = tiny.server.kernels.version_status(OWNER, "tiny-train", state.sessions[0].version)
    finally:
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait(timeout=60)
    tiny.server.inject_fault("429", count=6, match="GetKernelSessionStatus", retry_after=0.2)
    lines: list[str] = []
    options = tiny.options("main", hang=EPOCHS_PER_SESSION, mirror=f"{OWNER}/tiny-main-ckpt",
                           session_timeout_s=limit, submit=True)
    outcome = carry_run(tiny.project, "train", options, api=tiny.api, say=_say(lines))
    return {"outcome": outcome, "lines": lines, "versions_before": before, "status_at_kill": status,
            "cli_log": log.read_text(), "limit": limit, "pending_faults": tiny.server.pending_faults, "cmd": cmd}


@pytest.mark.slow
def test_a_run_needing_three_sessions_finishes_by_itself_and_submits(carried, reference):
    from kaggle_kit.runs.summary import format_summary, summarize

    state = carried["outcome"].state
    training = state.training_sessions()
    assert [s.status for s in training] == ["CANCEL_ACKNOWLEDGED", "CANCEL_ACKNOWLEDGED", "COMPLETE"], training
    assert [s.kind for s in training] == ["stopped", "stopped", "finished"]
    assert all(s.time_limit_s == carried["limit"] for s in training)
    assert training[1].resumed_from == training[0].mirror_step_after > 0
    assert training[2].resumed_from == training[1].mirror_step_after > training[0].mirror_step_after
    summary = summarize(state, carried["outcome"].folder)
    assert summary.weights_sha256 == reference["weights"], "the resumed run must end with the uninterrupted weights"
    assert state.phase == "done" and state.submission["status"] == "COMPLETE"
    assert 0.0 < float(state.submission["score"]) <= 1.0
    assert (carried["outcome"].folder / "training_curve.png").is_file()
    text = format_summary(summary)
    assert "KILLED" in text and f"submitted to {COMPETITION}: public score" in text
    assert summary.sessions[0].lost_steps is not None
    # Every session ran the code dataset's version pinned at the start.
    meta = json.loads((carried["outcome"].folder / "build" / "train" / "kernel-metadata.json").read_text())
    assert f"{OWNER}/tiny-code/{state.code_version}" in meta["dataset_sources"]


@pytest.mark.slow
def test_killing_run_mid_session_and_starting_it_again_reattaches_without_a_second_push(carried):
    state = carried["outcome"].state
    assert carried["status_at_kill"] in ("QUEUED", "RUNNING")
    assert "pushed alice/tiny-train version" in carried["cli_log"]
    assert any("re-attaching to session 1" in line for line in carried["lines"])
    # One version per session: the restart pushed none of its own.
    assert [s.version for s in state.training_sessions()] == [carried["versions_before"] + i for i in (1, 2, 3)]


@pytest.mark.slow
def test_running_a_finished_run_again_pushes_nothing_and_prints_its_summary(tiny, carried):
    before = tiny.versions(), tiny.versions(f"{OWNER}/tiny-infer")
    again = subprocess.run(carried["cmd"], env=tiny.cli_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (tiny.versions(), tiny.versions(f"{OWNER}/tiny-infer")) == before
    assert "Run summary" in again.stdout and f"checkpoint dataset {OWNER}/tiny-main-ckpt:" in again.stdout
    assert f"submitted to {COMPETITION}: public score" in again.stdout
    assert (carried["outcome"].folder / "summary.txt").read_text().strip() in again.stdout


@pytest.mark.slow
def test_a_429_storm_while_polling_is_ridden_out(carried):
    assert carried["pending_faults"] == [], "every 429 was served"
    assert sum("rate limited (429)" in line for line in carried["lines"]) >= 3


@pytest.mark.slow
def test_a_session_without_progress_stops_the_chain_with_the_log_tail(tiny):
    before = tiny.versions()
    with pytest.raises(RunError, match="without saving a new checkpoint") as stopped:
        carry_run(tiny.project, "train", tiny.options("stuck", hang=0, session_timeout_s=15.0), api=tiny.api,
                  say=_say([]))
    assert stopped.value.cause == "no_progress"
    assert "stopping work after 0 epoch(s) this session" in str(stopped.value), "the log's tail is shown"
    assert tiny.versions() == before + 1, "no second session after one that made no progress"
    state = load_state(runs_dir(tiny.root), "stuck")
    assert state.phase == "training" and "without saving" in state.stop_reason


@pytest.mark.slow
def test_an_error_in_the_notebook_stops_the_chain_with_the_traceback(tiny):
    before = tiny.versions()
    with pytest.raises(RunError, match="error in the notebook's code: ValueError: broken on purpose") as stopped:
        carry_run(tiny.project, "train", tiny.options("broken", fail=True), api=tiny.api, say=_say([]))
    assert stopped.value.cause == "user_error"
    assert "raise ValueError" in str(stopped.value) or "Traceback" in str(stopped.value)
    assert tiny.versions() == before + 1


def test_quota_below_the_reserve_stops_before_a_push_with_the_refresh_time(tiny):
    from dataclasses import replace

    before = tiny.versions()
    options = tiny.options("gpu", quota_reserve_s=31 * 3600.0)
    options.render = replace(options.render, accelerator="gpu")
    with pytest.raises(RunError, match=r"below the reserve of 31.00 h; it refreshes at 20\d\d-") as stopped:
        carry_run(tiny.project, "train", options, api=tiny.api, say=_say([]))
    assert stopped.value.cause == "quota" and "--wait-for-quota" in str(stopped.value)
    assert tiny.versions() == before, "nothing was pushed"


def test_two_runs_of_the_same_run_refuse_each_other(tiny):
    with RunLock(runs_dir(tiny.root), "locked"):
        with pytest.raises(RunError, match="already being carried"):
            carry_run(tiny.project, "train", tiny.options("locked"), api=tiny.api, say=_say([]))


def test_a_damaged_state_file_is_refused_with_what_to_do(tmp_path):
    path = state_path(tmp_path, "r1")
    path.write_text('{"format": "something else"}')
    with pytest.raises(RunError, match="move it away"):
        load_state(tmp_path, "r1")
    save_state(tmp_path, RunState(run="r1", notebook="train", kernel="a/b",
                                  sessions=[SessionRecord(index=1, notebook="train", version=3)]))
    assert load_state(tmp_path, "r1").sessions[0].version == 3
    with pytest.raises(RunError, match="run name"):
        state_path(tmp_path, "../escape")


def test_polling_backs_off_while_nothing_changes_and_honours_retry_after():
    from kaggle_kit.errors import TransientApiError

    slept: list[float] = []
    poller = Poller(1.0, 5.0, sleep=slept.append)
    for _ in range(6):
        poller.wait()
    assert slept == [1.0, 1.5, 2.25, 3.375, 5.0, 5.0]
    poller.changed()
    poller.wait()
    assert slept[-1] == 1.0
    poller.ride_out(TransientApiError("429", status=429, retry_after_s=3.0))
    assert 2.25 <= slept[-1] <= 3.75 and poller.transient_failures == 1
    poller.ride_out(TransientApiError("429", status=429, retry_after_s=3600.0))
    assert slept[-1] <= 5.0 * 1.25, "a Retry-After is bounded by the longest interval"


def test_with_wait_for_quota_it_sleeps_until_the_refresh_instead(tiny, monkeypatch):
    from dataclasses import replace

    from kaggle_kit.runs import engine

    class Slept(Exception):
        pass

    def sleep(seconds):
        raise Slept(seconds)

    monkeypatch.setattr(engine.time, "sleep", sleep)
    lines: list[str] = []
    options = tiny.options("gpu-wait", quota_reserve_s=31 * 3600.0, wait_for_quota=True)
    options.render = replace(options.render, accelerator="gpu")
    before = tiny.versions()
    with pytest.raises(Slept) as slept:
        carry_run(tiny.project, "train", options, api=tiny.api, say=_say(lines))
    assert 60.0 <= slept.value.args[0] <= 7 * 24 * 3600.0 + 60.0, "until the weekly refresh, never past it"
    assert any("sleeping" in line and "--wait-for-quota" in line for line in lines)
    assert tiny.versions() == before


def test_the_evidence_read_from_a_session_is_validated(tmp_path):
    from kaggle_kit.runs.evidence import log_tail, read_session_files, traceback_of

    out = tmp_path / "out"
    out.mkdir()
    (out / "progress.json").write_text('{"status": "finished", "step": "twelve", "last_checkpoint_step": 10}')
    (out / "history.json").write_text("[1, 2")  # cut off mid-write
    records = [{"stream_name": "stdout", "time": 1.0, "data": "epoch 1\n"},
               {"stream_name": "stderr", "time": 2.0, "data": "Traceback (most recent call last):\n"},
               {"stream_name": "stderr", "time": 2.0, "data": "  Cell In[4], line 2\n    raise ValueError('x')\n"},
               {"stream_name": "stderr", "time": 2.0, "data": "\x1b[31mValueError\x1b[0m: x\n"},
               {"stream_name": "stdout", "time": 3.0, "data": "after\n"}]
    (out / "train.log").write_text(json.dumps(records))
    files = read_session_files(out)
    assert files.status == "finished" and files.step is None and files.last_checkpoint_step == 10
    assert files.history == () and files.best is None
    block = traceback_of(files.log)
    assert block.startswith("Traceback") and "Cell In[4], line 2" in block and block.endswith("ValueError: x")
    assert log_tail(files.log, 2) == "ValueError: x\nafter"
    assert traceback_of("all fine\n") is None


def test_the_command_refuses_bad_options_before_reaching_kaggle(tiny, capsys):
    from kaggle_kit.commands import main

    assert main(["run", "train", "--root", str(tiny.root), "--max-sessions", "0"]) == 2
    assert "--max-sessions 0: at least 1" in capsys.readouterr().err
    assert main(["run", "train", "--root", str(tiny.root), "--run", "../x"]) == 2
    assert "run name" in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_stops_with_exit_status_1_and_the_summary_so_far(tiny, monkeypatch, capsys):
    from kaggle_kit.commands import main

    monkeypatch.setenv("KAGGLE_USERNAME", OWNER)
    monkeypatch.setenv("KAGGLE_KEY", tiny.key)
    status = main(["run", "train", "--root", str(tiny.root), "--run", "broken-cli", "--config",
                   "configs/rehearse.yaml", "--param", "fail_on_purpose=True", "--checkpoint-dataset",
                   f"{OWNER}/tiny-broken-cli-ckpt", "--poll", "0.2"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert "[run] stopped: session 1" in out and "ValueError: broken on purpose" in out
    assert "Run summary (stopped)" in out and "train #1 (v" in out
