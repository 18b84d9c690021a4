"""One classifier of how a Kaggle session ended, from the status and the evidence (kaggle_kit.session_outcome)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from kaggle_kit.session_outcome import (COMPLETE, ERROR, KILLED, QUEUED, RUNNING, SAVED, STOPPING, UNKNOWN, USER_ERROR,
                                        classify, status_name)


def _log(*records: tuple[str, float, str]) -> str:
    return json.dumps([{"stream_name": s, "time": t, "data": d} for s, t, d in records])


def test_status_names_come_from_every_shape_the_client_gives() -> None:
    from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

    reply = SimpleNamespace(status=KernelWorkerStatus.CANCEL_ACKNOWLEDGED, failure_message=None)
    assert status_name(reply) == "CANCEL_ACKNOWLEDGED"
    assert status_name({"status": "complete"}) == "COMPLETE"
    assert status_name("KernelWorkerStatus.ERROR") == "ERROR"
    assert status_name(None) == ""
    assert [classify(s).kind for s in ("QUEUED", "RUNNING", "CANCEL_REQUESTED", "NEW_SCRIPT", "COMPLETE")] == [
        QUEUED, RUNNING, STOPPING, SAVED, COMPLETE]
    assert not classify("RUNNING").terminal and classify("NEW_SCRIPT").ok and classify("COMPLETE").ok


def test_a_stop_is_killed_with_its_output_kept_whatever_the_failure_text() -> None:
    stopped = classify({"status": "CANCEL_ACKNOWLEDGED"}, _log(("stdout", 0.5, "epoch 1\n")), ["partial.txt"])
    assert stopped.kind == KILLED and stopped.terminal and not stopped.ok
    assert stopped.output_kept and stopped.cause == "unknown" and "1 output file(s) kept" in stopped.reason
    # The kit's or the stand-in's own wording decides nothing: an ERROR mentioning a time limit is no kill.
    worded = classify({"status": "ERROR", "failure_message": "Kernel stopped: the session ran past its time limit"})
    assert worded.kind == ERROR


def test_a_stop_at_the_time_limit_is_told_apart_by_time_not_text() -> None:
    log = _log(("stdout", 10.0, "step 1\n"), ("stdout", 3590.0, "step 900\n"))
    assert classify("CANCEL_ACKNOWLEDGED", log, time_limit_s=3600).cause == "time_limit"
    assert classify("CANCEL_ACKNOWLEDGED", log, time_limit_s=7200).cause == "unknown"
    assert classify("CANCEL_ACKNOWLEDGED", None, time_limit_s=60, elapsed_s=75).cause == "time_limit"
    assert classify("CANCEL_ACKNOWLEDGED", None, time_limit_s=60, elapsed_s=20).cause == "unknown"
    assert classify("CANCEL_ACKNOWLEDGED", None, []).output_kept is False


@pytest.mark.parametrize("log", [
    _log(("stdout", 0.1, "hello\n"),
         ("stderr", 1.2, "\x1b[0;31m-----\x1b[0m\n\x1b[0;31mValueError\x1b[0m   Traceback (most recent call last)\n"
                         "Cell In[2], line 1\n----> 1 raise ValueError('boom')\n\n\x1b[0;31mValueError\x1b[0m: boom\n")),
    "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nValueError: boom\n",
])
def test_an_error_with_the_notebooks_traceback_is_a_user_error(log: str) -> None:
    outcome = classify({"status": "ERROR"}, log)
    assert outcome.kind == USER_ERROR and outcome.cause == "ValueError: boom"
    assert "raised ValueError: boom" in outcome.reason


def test_an_error_without_a_traceback_is_a_platform_error() -> None:
    lost = classify({"status": "ERROR", "failureMessage": "the session was lost"}, _log(("stdout", 1.0, "hi\n")))
    assert lost.kind == ERROR and lost.reason == "the session was lost"
    assert "no exception" in classify("ERROR").reason
    # A traceback printed on stdout (logged, then handled) is not what ended the session.
    handled = classify("ERROR", _log(("stdout", 1.0, "Traceback (most recent call last):\nKeyError: 'x'\n")))
    assert handled.kind == ERROR


def test_unknown_statuses_and_garbage_logs_never_raise() -> None:
    assert classify("SOMETHING_NEW").kind == UNKNOWN
    for log in ("[" * 5000, "[1, 2, {\"time\": \"x\"}]", "not json at all", ""):
        assert classify("CANCEL_ACKNOWLEDGED", log).kind == KILLED
        assert classify("ERROR", log).kind == ERROR


def test_the_files_kaggle_adds_are_not_the_sessions_output() -> None:
    kaggle_files = ["__notebook__.ipynb", "__results__.html", "custom.css", "__output__.json"]
    bare = classify({"status": "CANCEL_ACKNOWLEDGED"}, output_files=kaggle_files)
    assert bare.output_kept is False and "no output kept" in bare.reason
    kept = classify({"status": "CANCEL_ACKNOWLEDGED"}, output_files=[*kaggle_files, "checkpoints/step-1.pt"])
    assert kept.output_files == ("checkpoints/step-1.pt",) and "1 output file(s) kept" in kept.reason
