"""`kaggle-kit rehearse`: a killed run resumed in a second session ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kaggle_kit.errors import KaggleKitError
from kaggle_kit.rehearsal import RehearsalOptions, RehearsalReport, SessionRow, format_report, rehearse

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """A small generated project (the kit's `init`): the rehearsal of any declared project, not of the CMFD one."""
    from kaggle_kit.scaffold import init_project

    root = tmp_path_factory.mktemp("rehearse") / "digits"
    init_project(root, name="digits", owner="alice")
    return root


@pytest.fixture(scope="module")
def readme_shell():
    # A shell that still holds the README's `sim serve` exports, its key a string the kit's own README contains:
    # the rehearsal must neither talk to that server nor take that key for a leak.
    example_key = re.search(r"KAGGLE_KEY=(\S+)", (ROOT / "README.md").read_text()).group(1)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": "http://127.0.0.1:9",
                            "KAGGLE_USERNAME": "alice", "KAGGLE_KEY": example_key,
                            "KAGGLE_KIT_API_ENDPOINT": "http://127.0.0.1:9"}.items():
            patch.setenv(name, value)
        yield


@pytest.fixture
def isolated(kaggle_isolation, monkeypatch):
    example_key = re.search(r"KAGGLE_KEY=(\S+)", (ROOT / "README.md").read_text()).group(1)
    monkeypatch.setenv("KAGGLE_KEY", example_key)
    return kaggle_isolation


@pytest.fixture(scope="module")
def batch(tiny_root, readme_shell, tmp_path_factory) -> tuple[RehearsalReport, Path]:
    """The rehearsal the README runs: a reference run, a run killed half-way and resumed, inference, the score."""
    workdir = tmp_path_factory.mktemp("batch") / "run"
    return rehearse(tiny_root, RehearsalOptions(checkpoint_every_s=2.0, workdir=workdir)), workdir


def _killed_then_resumed(report: RehearsalReport) -> tuple[SessionRow, SessionRow]:
    # A kill that missed (the machine got faster or slower) is tried once more: the pair is the killed session and
    # the one after it.
    killed = next((i for i, s in enumerate(report.sessions) if s.status == "KILLED"), None)
    assert killed is not None, format_report(report)
    first, second = report.sessions[killed], report.sessions[killed + 1]
    assert first.status == "KILLED" and second.status == "COMPLETE", format_report(report)
    assert second.resumed_from and second.resumed_from > 0, "the second session did not resume"
    return first, second


@pytest.mark.slow
def test_batch_kill_resumes_from_the_mirror_bit_identical_and_submits(batch):
    report, workdir = batch
    first, _ = _killed_then_resumed(report)
    assert report.sessions[0].name == "train #1 (reference)" and report.bit_identical is True
    assert report.kill_after_s is not None
    assert first.lost_steps is not None and first.lost_steps >= 0
    assert max(report.dataset_versions.values()) >= 2
    assert report.submission_valid and report.submission_score is not None and report.ok
    text = format_report(report)
    assert "resumed run bit-identical to the uninterrupted reference run: yes" in text
    assert "the sessions imported the kit from /kaggle/input/datasets/alice/kaggle-kit" in text
    assert not workdir.exists(), "without --keep nothing is left behind"


@pytest.mark.slow
def test_interactive_kill_loses_working_and_resumes_from_the_mirror(tiny_root, readme_shell, batch, tmp_path):
    # The kill measured by the Batch rehearsal, and its reference weights: the same training, no second reference.
    measured, _ = batch
    report = rehearse(tiny_root, RehearsalOptions(run_type="Interactive", infer=False, keep=True,
                                                  kill_after_s=measured.kill_after_s, checkpoint_every_s=2.0,
                                                  workdir=tmp_path / "interactive"))
    _killed_then_resumed(report)
    assert all("working folder wiped" in s.note for s in report.sessions)
    assert not list(tmp_path.glob("interactive/sandbox/**/progress.json")), "working must be gone"
    assert report.weights_sha256 == measured.reference_sha256


@pytest.mark.slow
def test_without_internet_the_batch_output_carries_the_run(tiny_root, readme_shell, batch, tmp_path):
    # The legacy input layout here (the other rehearsals use the current one): the notebooks find their inputs in both.
    measured, _ = batch
    # Without a mirror the kill is placed by progress: half the reference run's steps, on any machine.
    steps = measured.sessions[0].step_end
    report = rehearse(tiny_root, RehearsalOptions(internet=False, keep=True, input_layout="legacy",
                                                  kill_at_step=steps // 2, checkpoint_every_s=2.0,
                                                  workdir=tmp_path / "offline"))
    killed, _ = _killed_then_resumed(report)
    assert report.kill_step == steps // 2 and killed.step_end >= steps // 2
    assert f"killed at step {steps // 2} (placed by progress" in format_report(report)
    assert report.dataset_versions == {}, "nothing can be mirrored without internet"
    first_log = sorted((tmp_path / "offline" / "outputs").glob("train-1/*.log"))[-1].read_text()
    assert "NOT mirrored" in first_log, "mirroring off must be said loudly in the session's log"
    assert report.submission_valid and report.weights_sha256 == measured.reference_sha256
    assert report.input_layout == "legacy" and "inputs under the legacy layout" in format_report(report)
    # The sessions' logs are Kaggle's: nothing of the stand-in in them (its messages are in its own log).
    assert "kaggle-kit sandbox" not in first_log
    sandbox_logs = sorted(tmp_path.glob("offline/sandbox/sessions/*/sandbox.log"))
    assert sandbox_logs and all("inputs under the legacy layout" in p.read_text() for p in sandbox_logs)


def test_refuses_bad_options_and_a_busy_workdir(tmp_path, isolated):
    with pytest.raises(KaggleKitError, match="accelerator"):
        rehearse(ROOT, RehearsalOptions(accelerator="P100", workdir=tmp_path / "a"))
    with pytest.raises(KaggleKitError, match="run type"):
        rehearse(ROOT, RehearsalOptions(run_type="Live", workdir=tmp_path / "a"))
    with pytest.raises(KaggleKitError, match="input layout"):
        rehearse(ROOT, RehearsalOptions(input_layout="nested", workdir=tmp_path / "a"))
    with pytest.raises(KaggleKitError, match="--kill-after 'soon'"):
        rehearse(ROOT, RehearsalOptions(kill_after_s="soon", workdir=tmp_path / "a"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("keep me")
    with pytest.raises(KaggleKitError, match="not empty"):
        rehearse(ROOT, RehearsalOptions(workdir=busy))
    assert (busy / "precious.txt").read_text() == "keep me"


def test_summary_names_the_work_lost_and_the_baseline():
    report = RehearsalReport(
        sessions=[SessionRow("train #1 (Batch)", "KILLED", 40.0, steps=20, step_end=20, lost_steps=3,
                             lost_minutes=0.05),
                  SessionRow("train #2 (Batch)", "COMPLETE", 90.0, steps=34, step_end=54, resumed_from=17)],
        dataset_versions={"alice/x-ckpt": 7}, final_score=0.61, baseline_score=0.5, submission_valid=True,
        submission_score=0.66, weights_sha256="ab" * 32, wall_s=150.0, baseline_name="authentic everywhere",
        reference_sha256="ab" * 32, kit_origin="/kaggle/input/datasets/alice/kaggle-kit",
    )
    text = format_report(report)
    assert "3 steps, 0.05 min" in text
    assert "alice/x-ckpt: 7 version(s)" in text
    assert "0.6100 (baseline, predicting authentic everywhere: 0.5000)" in text
    assert "submission: valid, test score 0.6600" in text
    assert "bit-identical to the uninterrupted reference run: yes" in text
    assert "the sessions imported the kit from /kaggle/input/datasets/alice/kaggle-kit" in text
    report.submission_valid, report.submission_problem = False, "row 3: odd length"
    assert "NOT valid: row 3: odd length" in format_report(report)
    assert "NOT ISOLATED" not in text
    report.isolation_note = "no user namespaces here"
    assert "SANDBOX NOT ISOLATED: no user namespaces here" in format_report(report)
    report.reference_sha256 = "cd" * 32
    assert "bit-identical to the uninterrupted reference run: NO" in format_report(report) and not report.ok


class _Chains:
    """Stands in for the run engine: each call says how one run of it would end, as the rehearsal sees it."""

    def __init__(self, results):
        self.results = list(results)
        self.calls = []

    def __call__(self, first_limit):
        self.calls.append(None if first_limit is None else round(first_limit, 1))
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def _row(status, *, resumed=None, bounds=None):
    row = SessionRow("train", status, wall_s=1.0, resumed_from=resumed, step_end=10)
    row.training_bounds = bounds
    return row


def _no_progress():
    from kaggle_kit.errors import RunError

    return RunError("stopped without saving a new checkpoint", cause="no_progress")


def _orchestrator(tmp_path, monkeypatch, *, internet=False):
    from kaggle_kit import rehearsal
    from kaggle_kit.project import load_project

    project = load_project(ROOT)
    run = rehearsal._Rehearsal(project, RehearsalOptions(kill_after_s="auto", workdir=tmp_path, checkpoint_every_s=2.0,
                                                        internet=internet), rehearsal.RehearsalHooks())
    monkeypatch.setattr(run, "_digest_of", lambda row: "ref")
    return run


def test_the_auto_kill_lands_half_way_through_the_measured_training(tmp_path, monkeypatch):
    run = _orchestrator(tmp_path, monkeypatch)
    chains = _Chains([[_row("COMPLETE", bounds=(10.0, 50.0))], [_row("KILLED"), _row("COMPLETE", resumed=40)]])
    run._train_sessions(chains)
    assert chains.calls == [None, 30.0]
    assert run.kill_step == 5 and run.report.kill_step == 5, "without a mirror: half the reference's 10 steps"
    assert [s.status for s in run.report.sessions] == ["COMPLETE", "KILLED", "COMPLETE"]
    assert run.report.reference_sha256 == "ref" and run.report.sessions[0].name.endswith("reference)")
    assert run.session_cap == 120.0, "the sessions not meant to be killed are capped from the measured one"


def test_with_a_mirror_the_auto_kill_stays_a_time_limit(tmp_path, monkeypatch):
    # A kill by progress could come before the mirror uploaded a checkpoint: the measured seconds leave it time.
    run = _orchestrator(tmp_path, monkeypatch, internet=True)
    chains = _Chains([[_row("COMPLETE", bounds=(10.0, 50.0))], [_row("KILLED"), _row("COMPLETE", resumed=40)]])
    run._train_sessions(chains)
    assert chains.calls == [None, 30.0] and run.kill_step is None and run.report.kill_after_s == 30.0


def test_a_kill_that_missed_the_training_is_moved_and_tried_again(tmp_path, monkeypatch):
    run = _orchestrator(tmp_path, monkeypatch)
    late = _Chains([[_row("COMPLETE", bounds=(10.0, 50.0))], [_row("COMPLETE")],
                    [_row("KILLED"), _row("COMPLETE", resumed=20)]])
    run._train_sessions(late)
    assert late.calls == [None, 30.0, 18.0]
    assert run.kill_step == 3, "a kill that came after the training moves to an earlier step"
    run = _orchestrator(tmp_path, monkeypatch)
    early = _Chains([[_row("COMPLETE", bounds=(10.0, 50.0))], _no_progress(),
                     [_row("KILLED"), _row("COMPLETE", resumed=30)]])
    run._train_sessions(early)
    assert early.calls == [None, 30.0, 48.0]
    assert run.kill_step == 8, "a kill that came before the first checkpoint moves to a later step"
    assert any("before the first checkpoint" in note for note in run.report.notes)


def test_a_fixed_kill_before_the_first_checkpoint_is_said_not_hidden(tmp_path, monkeypatch):
    run = _orchestrator(tmp_path, monkeypatch)
    run.kill = 5.0
    chains = _Chains([_no_progress(), _no_progress()])
    run._train_sessions(chains)
    assert chains.calls == [5.0, 8.0], "a slower machine than the kill was set for gets one later kill"
    assert any("no resume was rehearsed" in note for note in run.report.notes)
    assert "no resume was rehearsed" in format_report(run.report) and not run.report.ok
